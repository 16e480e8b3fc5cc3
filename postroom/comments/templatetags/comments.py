"""Comment blocks for the conversation page.

- ``{% comment_thread conversation row %}``: the whole thread and the composer (the page as it is;
  ``row``, the viewer's row of the conversation, is optional).
- ``{% comment_entry comment %}``: one comment, for a page that interleaves comments with
  messages and timeline events (``comments.selectors.conversation_feed``).
- ``{% comment_composer conversation %}``: the composer alone (textarea ``#comment-body``).

Each acts as the signed-in member of the conversation's organization and checks that they see
the conversation, so a page cannot show a comment its viewer may not see. ``comment_entry``
expects comments read with ``comments.selectors`` (authors, attachments and mentions prefetched).
"""

from __future__ import annotations

from typing import Any

from django import template

from postroom.comments.display import comment_context, composer_context, thread_context
from postroom.comments.models import Comment
from postroom.conversations.models import Conversation, ConversationMember
from postroom.orgs.models import Membership
from postroom.orgs.selectors import membership_of_viewer

register = template.Library()


def _actor(context: template.Context, organization_id: Any) -> Membership | None:
    """The viewer's membership of that organization: the page's ``actor`` when it is that, else looked up once per page render."""
    key = f"comments:actor:{organization_id}"
    if key not in context.render_context:
        user = getattr(context.get("request"), "user", None)
        context.render_context[key] = (
            membership_of_viewer(user=user, organization_id=organization_id, known=context.get("actor")) if user is not None else None
        )
    return context.render_context[key]


def _sees(context: template.Context, actor: Membership, conversation_id: Any) -> bool:
    key = f"comments:sees:{actor.pk}:{conversation_id}"
    if key not in context.render_context:
        context.render_context[key] = ConversationMember.objects.filter(conversation_id=conversation_id, membership=actor).exists()
    return bool(context.render_context[key])


@register.inclusion_tag("comments/_thread.html", takes_context=True)
def comment_thread(context: template.Context, conversation: Conversation, row: ConversationMember | None = None) -> dict[str, Any]:
    """``row``: the viewer's ``ConversationMember`` row of the conversation, when the page has it (one query fewer)."""
    actor = _actor(context, conversation.organization_id)
    if actor is None:
        return {"hidden": True}
    return {**thread_context(context["request"], actor, conversation, row), "csrf_token": context.get("csrf_token")}


@register.inclusion_tag("comments/_comment.html", takes_context=True)
def comment_entry(context: template.Context, comment: Comment) -> dict[str, Any]:
    actor = _actor(context, comment.organization_id)
    if actor is None or not _sees(context, actor, comment.conversation_id):
        return {"hidden": True}
    return {**comment_context(actor, comment), "request": context.get("request"), "csrf_token": context.get("csrf_token")}


@register.inclusion_tag("comments/_composer.html", takes_context=True)
def comment_composer(context: template.Context, conversation: Conversation) -> dict[str, Any]:
    actor = _actor(context, conversation.organization_id)
    if actor is None:
        return {"hidden": True}
    return {**composer_context(context["request"], actor, conversation), "csrf_token": context.get("csrf_token")}
