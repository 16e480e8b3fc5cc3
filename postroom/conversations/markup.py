"""The HTML of the inbox's repeated parts — the rows of a conversation list and the entries of
the sidebar — written in Python instead of templates.

A list page draws 50 rows and ~20 sidebar entries. Through ``{% include %}`` the rows alone cost
as much CPU as everything else on the page (issue #4), and through ``format_html`` still a fifth
of it (every value passes Django's lazy-aware ``escape``); here each value is escaped once with
``html.escape``, as Django's ``escape`` does, and the markup is one f-string per row. The markup
is the one ``inbox.js``, the live updates and the tests read (``data-row``, ``data-row-link``,
``data-row-check``, ``data-row-actions``, ``data-nav-key``...).

Attacker: whoever sends mail to a member writes the sender names, subjects and snippets, and a
member names labels, teams and themselves (SECURITY.md R28). Defence: every value that is not
constant markup of this module, a number or an icon goes through ``_text`` before it is placed
into the HTML, in text and in quoted attribute values alike (``html.escape`` with ``quote=True``
escapes ``& < > " '``); ``test_markup`` checks it with hostile values in every field.
"""

from __future__ import annotations

from html import escape
from typing import Any
from uuid import UUID

from django.template.defaultfilters import urlencode
from django.urls import reverse
from django.utils import timezone
from django.utils.dateformat import format as date_format
from django.utils.safestring import SafeString, mark_safe

from postroom.conversations.display import ListItem
from postroom.conversations.templatetags.inbox import label_tone, short_time
from postroom.web.templatetags.ui import avatar_tone, icon, initials

# Reversed once per list with this id in place of each row's, then filled in per row.
_PLACEHOLDER = str(UUID(int=0))
_UNREAD = '<span class="unread-dot" aria-hidden="true"></span><span class="visually-hidden">Unread: </span>'
_CURRENT = ' aria-current="page"'
_BADGES = {
    "closed": '<span class="badge">Closed</span>',
    "trash": '<span class="badge badge-danger">Trash</span>',
    "spam": '<span class="badge badge-warn">Spam</span>',
}
_ICONS = {
    "reply": ("reply", "icon-xs"), "clock": ("clock", "icon-sm"), "paperclip": ("paperclip", "icon-sm"), "users": ("users", "icon-sm"),
    "archive": ("archive", "icon-sm"), "mail": ("mail", "icon-sm"), "trash": ("trash", "icon-sm"),
}  # fmt: skip


def _text(value: Any) -> str:
    """A value as HTML text or a quoted attribute value: what Django's ``escape`` does, without its laziness checks."""
    return escape(str(value))


def list_rows(items: list[ListItem], *, organization_slug: str, list_key: str) -> SafeString:
    """The ``<li>`` of each item, as ``conversations/_list.html`` shows them (``{% list_rows %}``)."""
    detail = reverse("conversations:detail", args=[organization_slug, _PLACEHOLDER])
    head, _, tail = detail.rpartition(_PLACEHOLDER)
    query = _text(f"?list={urlencode(list_key)}")
    icons = {key: str(icon(name, css_class)) for key, (name, css_class) in _ICONS.items()}
    html = "".join(_row(item, _text(f"{head}{item.conversation_id}{tail}"), query, icons) for item in items)
    return mark_safe(html)  # noqa: S308 - every value in it passed _text  # nosec B308 B703


def _row(item: ListItem, url: str, query: str, icons: dict[str, str]) -> str:
    pk = _text(item.conversation_id)
    subject = _text(item.subject or "(no subject)")
    unread = item.unread
    answered = (
        f'<span class="row-answered" title="Answered: the latest message is ours">{icons["reply"]}<span class="visually-hidden">Answered, to </span></span>'
        if item.answered
        else ""
    )
    count = f'<span class="row-count" title="{item.messages:d} messages">{item.messages:d}</span>' if item.messages > 1 else ""
    snippet = f'<span class="row-snippet"> — {_text(item.snippet)}</span>' if item.snippet else ""
    labels = "".join(
        f'<span class="label-chip label-tone-{label_tone(label):d}">{_text(label.name)}</span>\n      ' for label in item.labels
    )
    activity = item.last_activity_at
    read_action, read_title = ("read", "Mark read") if unread else ("unread", "Mark unread")
    return (
        f'\n<li class="conversation-row{" is-unread" if unread else ""}" id="row-{pk}" data-row data-url="{url}">\n'
        f'  <label class="row-select"><input type="checkbox" class="row-check" name="conversation" value="{pk}" form="bulk-form" data-row-check><span class="visually-hidden">Select “{subject}”</span></label>\n'
        f'  <a class="row-link" href="{url}{query}" data-row-link>\n'
        f'    <span class="row-sender">{_UNREAD if unread else ""}{answered}<span class="row-sender-name">{_text(item.sender or "(no messages you can see)")}</span>{count}</span>\n'
        f'    <span class="row-main"><span class="row-subject">{subject}</span>{snippet}</span>\n'
        f'    <span class="row-meta">\n      {labels}{_meta(item, icons)}'
        f'<time class="row-time" datetime="{_text(timezone.localtime(activity).isoformat())}" data-time="short">{_text(short_time(activity))}</time>\n'
        "    </span>\n"
        "  </a>\n"
        '  <span class="row-actions" hidden data-row-actions>\n'
        f'    <button type="button" class="icon-button" data-row-action="archive" title="Archive (e)" aria-label="Archive">{icons["archive"]}</button>\n'
        f'    <button type="button" class="icon-button" data-row-action="{read_action}" title="{read_title}" aria-label="{read_title}">{icons["mail"]}</button>\n'
        f'    <button type="button" class="icon-button" data-row-action="trash" title="Trash (#)" aria-label="Move to trash">{icons["trash"]}</button>\n'
        "  </span>\n"
        "</li>\n"
    )


def _meta(item: ListItem, icons: dict[str, str]) -> str:
    """The status badge, the icons and the assignees' avatars of a row, each followed by a line break."""
    parts = [_BADGES[item.status]] if item.status in _BADGES else []
    if item.snoozed:
        until = _text(date_format(timezone.localtime(item.snoozed_until), "M j, H:i"))
        parts.append(
            f'<span class="row-icon" title="Snoozed until {until}">{icons["clock"]}<span class="visually-hidden">Snoozed</span></span>'
        )
    if item.attachments:
        parts.append(
            f'<span class="row-icon" title="Has attachments">{icons["paperclip"]}<span class="visually-hidden">Has attachments</span></span>'
        )
    if item.shared:
        parts.append(f'<span class="row-icon row-shared" title="Shared">{icons["users"]}<span class="visually-hidden">Shared</span></span>')
    if item.assignees:
        avatars = "".join(
            f'<span class="avatar avatar-xs avatar-{avatar_tone(member.email):d}" title="Assigned to {_text(member.display_name)}">'
            f"{_text(initials(member.display_name))}</span>"
            for member in item.assignees[:3]
        )
        names = _text(", ".join(member.display_name for member in item.assignees))
        parts.append(f'<span class="avatar-stack">{avatars}<span class="visually-hidden">Assigned to {names}</span></span>')
    return "".join(f"{part}\n      " for part in parts)


def nav_entries(entries: list[dict[str, Any]]) -> SafeString:
    """The links of the sidebar's views and team inboxes (``views.nav_context``; ``{% nav_entries %}``)."""
    html = "".join(
        f'<a href="{_text(entry["url"])}"{_CURRENT if entry["current"] else ""} data-nav-key="{_text(entry["key"])}">'
        f'{icon(entry["icon"])}<span class="nav-text">{_text(entry["title"])}</span>'
        f"{_count(entry) if entry['count'] else ''}</a>"
        for entry in entries
    )
    return mark_safe(html)  # noqa: S308 - every value in it passed _text  # nosec B308 B703


def _count(entry: dict[str, Any]) -> str:
    return f'<span class="count">{_text(entry["count_text"])}<span class="visually-hidden"> {_text(entry["unit"])}</span></span>'
