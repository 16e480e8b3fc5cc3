"""Presentation helpers of the inbox templates (no data access here)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from django import template
from django.utils import timezone
from django.utils.dates import MONTHS_3
from django.utils.safestring import SafeString

from postroom.conversations.actions import LABEL_COLORS

register = template.Library()


@register.filter
def label_tone(label: Any) -> int:
    """The colour class of a label (``label-tone-<n>``): CSP allows no inline styles."""
    color = getattr(label, "color", label)
    return LABEL_COLORS.index(color) if color in LABEL_COLORS else 0


@register.filter
def short_time(value: datetime | None) -> str:
    """A list's time column: the time today, the day this year, else the date (UTC; the page
    shows it in the reader's own time zone when scripts run)."""
    if value is None:
        return ""
    # What ``date_format`` gives for "H:i", "M j" and "M j, Y" (the month's translated
    # abbreviation, as its "M" takes it), without building a formatter per row: 50 a list page
    # cost ~7 % of its CPU (issue #4). ``test_short_time_is_what_date_format_gives`` compares them.
    now = timezone.now()
    if value.date() == now.date():
        return f"{value.hour:02d}:{value.minute:02d}"
    month = MONTHS_3[value.month].title()
    if value.year == now.year:
        return f"{month} {value.day}"
    return f"{month} {value.day}, {value.year:04d}"


_PREFIX = re.compile(r"^\s*((re|fwd?|aw|wg|tr|sv)\s*:\s*)+", re.IGNORECASE)


@register.filter
def subject_differs(subject: Any, conversation_subject: Any) -> bool:
    """Whether a message's subject says more than the conversation's (not just "Re:" added)."""

    def bare(value: Any) -> str:
        return _PREFIX.sub("", str(value or "")).strip().casefold()

    return bare(subject) != bare(conversation_subject)


@register.simple_tag(takes_context=True)
def list_rows(context: template.Context, items: Any) -> SafeString:
    """``{% list_rows items %}``: the rows of a conversation list (``conversations.markup``)."""
    from postroom.conversations import markup

    return markup.list_rows(items, organization_slug=context["organization"].slug, list_key=context["list_key"])


@register.simple_tag
def nav_entries(entries: Any) -> SafeString:
    """``{% nav_entries nav_main %}``: entries of the sidebar's views (``conversations.markup``)."""
    from postroom.conversations import markup

    return markup.nav_entries(entries)
