"""The conversation page's header and details pane (``conversations.page_markup``)."""

from __future__ import annotations

from django import template
from django.utils.safestring import SafeString

from postroom.conversations import page_markup

register = template.Library()


@register.simple_tag(takes_context=True)
def conversation_header(context: template.Context, oob: bool = False) -> SafeString:
    """``{% conversation_header %}``: the title, badges, toolbar and menus (``oob=True``: swapped in by htmx)."""
    return page_markup.header(context.flatten(), oob=oob)


@register.simple_tag(takes_context=True)
def conversation_details(context: template.Context, oob: bool = False) -> SafeString:
    """``{% conversation_details %}``: status, assignees, labels, shares and following."""
    return page_markup.details(context.flatten(), oob=oob)


@register.simple_tag(takes_context=True)
def conversation_thread(context: template.Context) -> SafeString:
    """``{% conversation_thread %}``: the messages and events before the tail, oldest first."""
    return page_markup.thread(context.flatten())


@register.simple_tag(takes_context=True)
def conversation_tail(context: template.Context, oob: bool = False) -> SafeString:
    """``{% conversation_tail %}``: the events after the last message (``oob=True``: swapped in by htmx)."""
    return page_markup.tail(context.flatten(), oob=oob)
