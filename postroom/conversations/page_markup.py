"""The HTML of the conversation page's own parts — the header with its toolbar and menus, and
the details pane — written in Python instead of templates (``{% conversation_header %}`` and
``{% conversation_details %}`` in ``conversation_page``).

Through templates these parts cost a conversation page about as much CPU as all its queries
(issue #4): ~60 ``{% url %}`` tags and thousands of variable look-ups, the menus repeating both
for every member and label. Here the conversation's URLs come from one reversed address plus
constant suffixes (``ACTION_PATHS``; ``test_page_markup`` checks each against ``reverse``), and
each value is escaped once with ``html.escape``, as Django's ``escape`` does. The markup is the
one the templates drew (``conversation.js``, the live updates and the tests read its
``data-action``, ``data-menu``, ``data-member`` and ids).

Attacker: whoever sends mail writes the subject; members name labels, teams and themselves
(SECURITY.md R28). Defence: every value that is not constant markup of this module, a number or
an icon goes through ``_text`` before it is placed into the HTML, in text and in quoted attribute
values alike (``html.escape`` with ``quote=True`` escapes ``& < > " '``); ``test_page_markup``
checks it with hostile values in every field.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any
from uuid import UUID

from django.template.defaultfilters import filesizeformat
from django.template.loader import get_template
from django.urls import reverse
from django.utils import timezone
from django.utils.dateformat import format as date_format
from django.utils.html import conditional_escape
from django.utils.safestring import SafeString, mark_safe

from postroom.conversations.display import ShownMessage, ThreadEntry
from postroom.conversations.models import Direction
from postroom.conversations.templatetags.inbox import label_tone, subject_differs
from postroom.web.templatetags.ui import avatar_tone, icon, initials

# The conversation's action URLs: its page's address followed by these (one ``reverse`` a page).
ACTION_PATHS = {
    "read": "read/", "archive": "archive/", "move_to_inbox": "inbox/", "trash": "trash/", "spam": "spam/", "close": "close/",
    "reopen": "reopen/", "snooze": "snooze/", "unsnooze": "unsnooze/", "follow": "follow/", "assign": "assign/",
    "unassign": "unassign/", "label_add": "label/", "label_remove": "unlabel/", "share": "share/", "unshare": "unshare/",
}  # fmt: skip
_OOB = ' hx-swap-oob="true"'
_YOU = ' <span class="muted">(you)</span>'
_PERSONAL = ' <span class="muted">(personal)</span>'


def _text(value: Any) -> str:
    """A value as HTML text or a quoted attribute value: what Django's ``escape`` does, without its laziness checks."""
    return escape(str(value))


def _csrf(context: Mapping[Any, Any]) -> str:
    """What ``{% csrf_token %}`` draws."""
    token = context.get("csrf_token")
    if not token or token == "NOTPROVIDED":  # noqa: S105 - Django's mark for "no token here", not a secret
        return ""
    return f'<input type="hidden" name="csrfmiddlewaretoken" value="{_text(token)}">'


def _local(moment: Any, pattern: str) -> str:
    """What ``{{ moment|date:pattern }}`` draws (in the current time zone; a naive time as it is)."""
    return _text(date_format(timezone.localtime(moment) if timezone.is_aware(moment) else moment, pattern))


def _snoozed(until: Any) -> str:
    return f'<time datetime="{_local(until, "c")}" data-time="long">{_local(until, "M j, H:i")}</time>'


def _avatar(user: Any) -> str:
    return (
        f'<span class="avatar avatar-xs avatar-{avatar_tone(user.email):d}" aria-hidden="true">{_text(initials(user.display_name))}</span>'
    )


def conversation_urls(organization_slug: str, conversation_id: Any) -> dict[str, str]:
    """The conversation's page and action URLs by URL name (``conversations:<name>``), escaped for an attribute."""
    page = reverse("conversations:detail", args=[organization_slug, conversation_id])
    return {"detail": _text(page), **{name: _text(f"{page}{path}") for name, path in ACTION_PATHS.items()}}


def _post(url: str, csrf: str) -> str:
    return f'<form method="post" action="{url}" hx-post="{url}">{csrf}'


def header(context: Mapping[Any, Any], *, oob: bool = False) -> SafeString:
    """``conversations/_header.html`` as it was: the title, badges, toolbar and menus."""
    conversation, row = context["conversation"], context["row"]
    slug = context["organization"].slug
    urls = conversation_urls(slug, conversation.pk)
    csrf = _csrf(context)
    is_closed, is_binned, is_archived = context["is_closed"], context["is_binned"], context["is_archived"]
    reply = _text(reverse("outbox:reply", args=[slug, conversation.pk]))
    shared = conversation.is_shared
    badges = (
        f'<span class="badge badge-accent" title="Others can read this conversation">{icon("users")}Shared</span>'
        if shared
        else f'<span class="badge" title="Only you can read this conversation">{icon("lock")}Private</span>'
    )
    closed_badge = f'<span class="badge badge-ok">{icon("check")}Closed</span>' if is_closed else ""
    snoozed = (
        f'<span class="badge badge-warn">{icon("clock")}Snoozed until {_snoozed(row.snoozed_until)}</span>' if row.snoozed_until else ""
    )
    if row.place == "trash" or conversation.status == "trash":
        place = f'<span class="badge badge-danger">{icon("trash")}In the trash</span>'
    elif row.place == "spam" or conversation.status == "spam":
        place = f'<span class="badge badge-warn">{icon("alert")}Spam</span>'
    elif is_archived:
        place = f'<span class="badge">{icon("archive")}Archived</span>'
    else:
        place = ""
    if is_archived or is_binned:
        restore = "Restore" if is_binned else "Move to inbox"
        filing = (
            f'\n      {_post(urls["move_to_inbox"], csrf)}<button class="btn btn-sm" type="submit" data-action="inbox" title="{restore}">'
            f"{icon('inbox')}{restore}</button></form>\n      "
        )
    else:
        filing = (
            f'\n      {_post(urls["archive"], csrf)}<button class="btn btn-sm" type="submit" data-action="archive" title="Archive: done for me (e)">'
            f"{icon('archive')}Archive</button></form>\n      "
        )
    if not shared:
        status = ""
    elif is_closed:
        status = (
            f'\n        \n        {_post(urls["reopen"], csrf)}<button class="btn btn-sm" type="submit" data-action="reopen">'
            f"{icon('refresh')}Reopen</button></form>\n        \n      "
        )
    else:
        status = (
            f'\n        \n        {_post(urls["close"], csrf)}<button class="btn btn-sm" type="submit" data-action="close" title="Close for the team">'
            f"{icon('check')}Close</button></form>\n        \n      "
        )
    if row.unread:
        read = '<button class="btn btn-sm btn-ghost" type="submit" name="state" value="read" data-action="read">Mark as read</button>'
    else:
        read = (
            '<button class="btn btn-sm btn-ghost" type="submit" name="state" value="unread" data-action="unread" title="Mark unread (shift+u)" '
            f'aria-label="Mark unread">{icon("mail")}</button>'
        )
    if row.following:
        follow = (
            '<button class="btn btn-sm btn-ghost" type="submit" name="following" value="0" aria-pressed="true" aria-label="Following" '
            f'title="Following: new messages and comments notify you. Click to stop.">{icon("bell")}</button>'
        )
    else:
        follow = (
            '<button class="btn btn-sm btn-ghost" type="submit" name="following" value="1" aria-pressed="false" aria-label="Follow" '
            f'title="Follow: be notified of new messages and comments">{icon("bell-off")}</button>'
        )
    binning = (
        ""
        if is_binned
        else (
            f'\n      {_post(urls["spam"], csrf)}<button class="btn btn-sm btn-ghost" type="submit" data-action="spam" title="Mark as spam (!)" '
            f'aria-label="Mark as spam">{icon("alert")}</button></form>\n'
            f'      {_post(urls["trash"], csrf)}<button class="btn btn-sm btn-ghost btn-danger" type="submit" data-action="trash" '
            f'title="Move to trash (#)" aria-label="Move to trash">{icon("trash")}</button></form>\n      '
        )
    )
    compose = "\n".join(
        f'      <a class="btn btn-sm" href="{reply}?kind={kind}" hx-get="{reply}?kind={kind}" hx-target="#composer-slot" hx-swap="innerHTML" '
        f'data-compose="{kind}" title="{title}">{icon(name)}{text}</a>'
        for kind, title, name, text in (
            ("reply", "Reply (r)", "reply", "Reply"),
            ("reply_all", "Reply all (shift+r)", "reply-all", '<span class="hide-below-wide">Reply all</span>'),
            ("forward", "Forward (f)", "forward", '<span class="hide-below-wide">Forward</span>'),
        )
    )
    html = (
        f'\n<header class="conversation-header" id="conversation-header"{_OOB if oob else ""}>\n'
        '  <div class="conversation-topline">\n'
        f'    <a class="back-link" href="{_text(context["list_url"])}" data-back title="Back to the list (u)">{icon("arrow-left", "icon-sm")}'
        f"{_text(context['list_title'])}</a>\n"
        '    <span class="neighbours" hidden data-neighbours>\n'
        '      <a class="icon-button" href="#" data-neighbour="previous" title="Newer conversation (k)" aria-label="Newer conversation">'
        f"{icon('chevron-up', 'icon-sm')}</a>\n"
        '      <a class="icon-button" href="#" data-neighbour="next" title="Older conversation (j)" aria-label="Older conversation">'
        f"{icon('chevron-down', 'icon-sm')}</a>\n"
        "    </span>\n"
        "  </div>\n"
        '  <div class="conversation-title-row">\n'
        f"    <h1>{_text(conversation.subject or '(no subject)')}</h1>\n"
        '    <div class="conversation-badges">\n'
        f"      {badges}\n      {closed_badge}\n      {snoozed}\n      {place}\n"
        "    </div>\n"
        "  </div>\n"
        '  <div class="toolbar" role="toolbar" aria-label="Conversation actions">\n'
        '    <div class="toolbar-group">\n'
        f"{compose}\n"
        "    </div>\n"
        '    <div class="toolbar-group">\n'
        f"      {filing}\n      {status}\n"
        "    </div>\n"
        '    <div class="toolbar-group">\n'
        f"      {_menu_assign(context, urls, csrf)}\n"
        f"      {_menu_labels(context, urls, csrf)}\n"
        f"      {_menu_snooze(context, urls, csrf)}\n"
        f"      {_menu_share(context, urls, csrf)}\n"
        "    </div>\n"
        '    <div class="toolbar-group toolbar-end">\n'
        f"      {_post(urls['read'], csrf)}{read}</form>\n"
        f"      {_post(urls['follow'], csrf)}{follow}</form>\n"
        f"      {binning}\n"
        "    </div>\n"
        "  </div>\n"
        "</header>\n\n"
    )
    return mark_safe(html)  # noqa: S308 - every value in it passed _text  # nosec B308 B703


def _menu_assign(context: Mapping[Any, Any], urls: dict[str, str], csrf: str) -> str:
    assignees, actor = context["assignees"], context["actor"]
    check = icon("check", "icon-sm menu-check")
    entries = []
    for entry in context["members"]:
        member, assigned = entry["member"], entry["assigned"]
        user = member.user
        url = urls["unassign"] if assigned else urls["assign"]
        entries.append(
            f'\n      <li data-filter-text="{_text(user.display_name)} {_text(user.email)}">\n'
            f'        {_post(url, csrf)}<input type="hidden" name="member" value="{_text(member.pk)}">\n'
            f'          <button class="menu-item" type="submit" aria-pressed="{"true" if assigned else "false"}" data-member="{_text(user.email)}">'
            f'{_avatar(user)}<span class="menu-item-text">{_text(user.display_name)}{_YOU if member.pk == actor.pk else ""}'
            f"</span>{check if assigned else ''}</button>\n"
            "        </form>\n"
            "      </li>\n      "
        )
    count = f' <span class="menu-count">{len(assignees):d}</span>' if assignees else ""
    return (
        '<details class="menu" data-menu="assign">\n'
        f'  <summary class="btn btn-sm" title="Assign (a)">{icon("user-plus")}Assign{count}</summary>\n'
        '  <div class="menu-panel" role="group" aria-label="Assign to">\n'
        '    <div class="menu-title">Assign to</div>\n'
        '    <input type="search" class="menu-filter" placeholder="Find a member" aria-label="Find a member" autocomplete="off" data-menu-filter>\n'
        '    <ul class="menu-list">\n'
        f"      {''.join(entries)}\n"
        "    </ul>\n"
        '    <p class="menu-note">Assigning shares the conversation with them and puts it in their inbox.</p>\n'
        "  </div>\n"
        "</details>\n"
    )


def _menu_labels(context: Mapping[Any, Any], urls: dict[str, str], csrf: str) -> str:
    all_labels = context["all_labels"]
    check = icon("check", "icon-sm menu-check")
    if all_labels:
        entries = []
        for entry in all_labels:
            label, on = entry["label"], entry["on"]
            url = urls["label_remove"] if on else urls["label_add"]
            entries.append(
                f'\n      <li data-filter-text="{_text(label.name)}">\n'
                f'        {_post(url, csrf)}<input type="hidden" name="label" value="{_text(label.pk)}">\n'
                f'          <button class="menu-item" type="submit" aria-pressed="{"true" if on else "false"}">'
                f'<span class="label-dot label-tone-{label_tone(label):d}" aria-hidden="true"></span><span class="menu-item-text">{_text(label.name)}'
                f"{_PERSONAL if label.owner_id else ''}</span>{check if on else ''}</button>\n"
                "        </form>\n"
                "      </li>\n      "
            )
        listing = (
            "\n"
            '    <input type="search" class="menu-filter" placeholder="Find a label" aria-label="Find a label" autocomplete="off" data-menu-filter>\n'
            '    <ul class="menu-list">\n'
            f"      {''.join(entries)}\n"
            "    </ul>\n    "
        )
    else:
        listing = '<p class="menu-note">No labels yet.</p>'
    manage = _text(reverse("conversations:labels", args=[context["organization"].slug]))
    return (
        '<details class="menu" data-menu="labels">\n'
        f'  <summary class="btn btn-sm" title="Label (l)">{icon("tag")}Label</summary>\n'
        '  <div class="menu-panel" role="group" aria-label="Labels">\n'
        '    <div class="menu-title">Labels</div>\n'
        f"    {listing}\n"
        f'    <a class="menu-link" href="{manage}">{icon("settings", "icon-sm")}Manage labels</a>\n'
        "  </div>\n"
        "</details>\n"
    )


def _menu_snooze(context: Mapping[Any, Any], urls: dict[str, str], csrf: str) -> str:
    pk = _text(context["conversation"].pk)
    wake = (
        f'\n    {_post(urls["unsnooze"], csrf)}<button class="menu-item" type="submit">{icon("x", "icon-sm")}'
        '<span class="menu-item-text">Wake it now</span></button></form>\n    '
        if context["row"].snoozed_until
        else ""
    )
    presets = "".join(
        f'<li><button class="menu-item" type="submit" name="preset" value="{_text(value)}"><span class="menu-item-text">{_text(label)}</span>'
        f'<span class="muted small" data-snooze-hint="{_text(value)}"></span></button></li>'
        for value, label in context["snooze_presets"].items()
    )
    snooze = urls["snooze"]
    return (
        '<details class="menu" data-menu="snooze">\n'
        f'  <summary class="btn btn-sm" title="Snooze (s)">{icon("clock")}Snooze</summary>\n'
        '  <div class="menu-panel" role="group" aria-label="Snooze until">\n'
        '    <div class="menu-title">Snooze until</div>\n'
        f"    {wake}\n"
        f'    {_post(snooze, csrf)}<input type="hidden" name="offset" value="0" data-timezone-offset>\n'
        f'      <ul class="menu-list">{presets}</ul>\n'
        "    </form>\n"
        f'    <form method="post" class="menu-form" action="{snooze}" hx-post="{snooze}">{csrf}<input type="hidden" name="offset" value="0" data-timezone-offset>\n'
        f'      <label for="snooze-until-{pk}">Custom</label>\n'
        f'      <div class="menu-row"><input type="datetime-local" id="snooze-until-{pk}" name="until" required><button class="btn btn-sm btn-primary" type="submit">Snooze</button></div>\n'
        "    </form>\n"
        "  </div>\n"
        "</details>\n"
    )


def _menu_share(context: Mapping[Any, Any], urls: dict[str, str], csrf: str) -> str:
    conversation, actor = context["conversation"], context["actor"]
    pk = _text(conversation.pk)
    share, unshare = urls["share"], urls["unshare"]
    whole = conversation.shared_with_organization
    rows = []
    if whole:
        rows.append(
            f'<li class="menu-row"><span class="menu-item-text">{icon("building", "icon-sm")} The whole organization</span>\n'
            f'        {_post(unshare, csrf)}<input type="hidden" name="organization" value="on"><button class="btn btn-sm btn-ghost" type="submit">Stop</button></form></li>'
        )
    rows.append("\n      ")
    shares = context["shares"]
    for each in shares:
        if each.team:
            who = f"{icon('teams', 'icon-sm')} Team {_text(each.team.name)}"
            field = f'<input type="hidden" name="team" value="{_text(each.team_id)}">'
        else:
            user = each.membership.user
            who = f"{_avatar(user)} {_text(user.display_name)}"
            field = f'<input type="hidden" name="member" value="{_text(each.membership_id)}">'
        rows.append(
            f'<li class="menu-row"><span class="menu-item-text">{who}</span>\n'
            f'        {_post(unshare, csrf)}{field}<button class="btn btn-sm btn-ghost" type="submit">Stop</button></form></li>\n      '
        )
    if not shares and not whole:
        rows.append('<li class="menu-note">Nobody else: it is private to the people whose mailboxes received it.</li>')
    teams = "".join(
        f'<option value="{_text(entry["team"].pk)}">{_text(entry["team"].name)}</option>'
        for entry in context["teams"]
        if not entry["shared"]
    )
    members = "".join(
        f'<option value="{_text(entry["member"].pk)}">{_text(entry["member"].user.display_name)}</option>'
        for entry in context["members"]
        if not entry["shared"] and entry["member"].pk != actor.pk
    )
    whole_form = (
        ""
        if whole
        else (
            f'\n    <form method="post" class="menu-form" action="{share}" hx-post="{share}">{csrf}<input type="hidden" name="organization" value="on">'
            f'<button class="menu-item" type="submit">{icon("building", "icon-sm")}<span class="menu-item-text">Share with the whole organization</span></button></form>\n    '
        )
    )
    return (
        '<details class="menu" data-menu="share">\n'
        f'  <summary class="btn btn-sm">{icon("share")}Share</summary>\n'
        '  <div class="menu-panel menu-panel-wide" role="group" aria-label="Share">\n'
        '    <div class="menu-title">Shared with</div>\n'
        '    <ul class="menu-list">\n'
        f"      {''.join(rows)}\n"
        "    </ul>\n"
        f'    <form method="post" class="menu-form" action="{share}" hx-post="{share}">{csrf}\n'
        f'      <label for="share-team-{pk}">With a team</label>\n'
        f'      <div class="menu-row"><select id="share-team-{pk}" name="team" class="select-sm" required>{teams}</select><button class="btn btn-sm" type="submit">Share</button></div>\n'
        "    </form>\n"
        f'    <form method="post" class="menu-form" action="{share}" hx-post="{share}">{csrf}\n'
        f'      <label for="share-member-{pk}">With a member</label>\n'
        f'      <div class="menu-row"><select id="share-member-{pk}" name="member" class="select-sm" required>{members}</select><button class="btn btn-sm" type="submit">Share</button></div>\n'
        "    </form>\n"
        f"    {whole_form}\n"
        f'    <p class="menu-note">{icon("shield", "icon-sm")} Sharing lets others read the conversation\'s shared messages; every share and unshare is recorded in the audit log.</p>\n'
        "  </div>\n"
        "</details>\n"
    )


def details(context: Mapping[Any, Any], *, oob: bool = False) -> SafeString:
    """``conversations/_details.html`` as it was: status, assignees, labels, shares and following."""
    conversation, row = context["conversation"], context["row"]
    urls = conversation_urls(context["organization"].slug, conversation.pk)
    csrf = _csrf(context)
    if not conversation.is_shared:
        team_status = "Private"
    elif context["is_closed"]:
        team_status = "Closed"
    elif conversation.status == "open":
        team_status = "Open"
    else:
        team_status = _text(conversation.get_status_display())
    if row.snoozed_until:
        mine = f"Snoozed until {_snoozed(row.snoozed_until)}"
    else:
        mine = _text(row.get_place_display() or "Not in your inbox")
    unread = " · unread" if row.unread else ""
    assignees = context["assignees"]
    if assignees:
        remove = icon("x", "icon-sm")
        people = "".join(
            f'\n      <li>{_avatar(member.user)}<span class="grow-text">{_text(member.user.display_name)}</span>\n'
            f'        {_post(urls["unassign"], csrf)}<input type="hidden" name="member" value="{_text(member.pk)}">'
            f'<button class="icon-button icon-button-sm" type="submit" title="Unassign {_text(member.user.display_name)}" '
            f'aria-label="Unassign {_text(member.user.display_name)}">{remove}</button></form></li>\n    '
            for member in assignees
        )
        assigned = f'<ul class="details-people">{people}</ul>'
    else:
        assigned = (
            '<p class="muted small">Nobody. <button class="btn-link" type="button" data-open-menu="assign">Assign someone</button></p>'
        )
    labels = context["labels"]
    if labels:
        remove = icon("x", "icon-xs")
        chips = "".join(
            f'\n      <li class="label-chip label-tone-{label_tone(label):d}">{_text(label.name)}{_post(urls["label_remove"], csrf)}'
            f'<input type="hidden" name="label" value="{_text(label.pk)}"><button class="chip-remove" type="submit" '
            f'title="Remove the label {_text(label.name)}" aria-label="Remove the label {_text(label.name)}">{remove}</button></form></li>\n    '
            for label in labels
        )
        labelled = f'<ul class="label-list">{chips}</ul>'
    else:
        labelled = '<p class="muted small">None. <button class="btn-link" type="button" data-open-menu="labels">Add a label</button></p>'
    shares = context["shares"]
    whole = conversation.shared_with_organization
    if whole or shares:
        everyone = f'<li>{icon("building", "icon-sm")}<span class="grow-text">The whole organization</span></li>' if whole else ""
        people = "".join(
            f'<li>{icon("teams", "icon-sm")}<span class="grow-text">Team {_text(share.team.name)}</span></li>'
            if share.team
            else f'<li>{_avatar(share.membership.user)}<span class="grow-text">{_text(share.membership.user.display_name)}</span></li>'
            for share in shares
        )
        shared = f'<ul class="details-people">\n      {everyone}\n      {people}\n    </ul>'
    else:
        shared = f'<p class="muted small">{icon("lock", "icon-sm")} Private. <button class="btn-link" type="button" data-open-menu="share">Share…</button></p>'
    following = (
        "You follow this conversation: new messages and comments notify you." if row.following else "You do not follow this conversation."
    )
    html = (
        "\n"
        f'<aside class="details-pane" aria-label="Conversation details" id="conversation-details"{_OOB if oob else ""}>\n'
        '  <section class="details-section">\n'
        "    <h2>Status</h2>\n"
        '    <dl class="details-list">\n'
        f"      <dt>For the team</dt><dd>{team_status}</dd>\n"
        f"      <dt>For you</dt><dd>{mine}{unread}</dd>\n"
        "    </dl>\n"
        "  </section>\n"
        '  <section class="details-section">\n'
        "    <h2>Assignees</h2>\n"
        f"    {assigned}\n"
        "  </section>\n"
        '  <section class="details-section">\n'
        "    <h2>Labels</h2>\n"
        f"    {labelled}\n"
        "  </section>\n"
        '  <section class="details-section">\n'
        "    <h2>Shared with</h2>\n"
        f"    {shared}\n"
        "  </section>\n"
        '  <section class="details-section">\n'
        "    <h2>Notifications</h2>\n"
        f'    <p class="muted small">{following}</p>\n'
        "  </section>\n"
        "</aside>\n"
    )
    return mark_safe(html)  # noqa: S308 - every value in it passed _text  # nosec B308 B703


# --- The thread: messages and timeline events ----------------------------------------------------------
# Reversed once per page with this id in place of each message's or attachment's, then filled in.
_PLACEHOLDER = str(UUID(int=0))


class _ThreadUrls:
    """The per-message and per-attachment URLs of one page, from one ``reverse`` each."""

    def __init__(self, organization_slug: str) -> None:
        self.raw = reverse("conversations:raw", args=[organization_slug, _PLACEHOLDER]).rpartition(_PLACEHOLDER)
        self.attachment = reverse("conversations:attachment", args=[organization_slug, _PLACEHOLDER]).rpartition(_PLACEHOLDER)
        self.from_sender = reverse("contacts:from_sender", args=[organization_slug, _PLACEHOLDER]).rpartition(_PLACEHOLDER)

    @staticmethod
    def fill(parts: tuple[str, str, str], pk: Any) -> str:
        return _text(f"{parts[0]}{pk}{parts[2]}")


def thread(context: Mapping[Any, Any]) -> SafeString:
    """The messages and events before the tail (``entries``), oldest first."""
    urls = _ThreadUrls(context["organization"].slug)
    html = "".join(_entry(context, entry, urls) for entry in context["entries"])
    return mark_safe(html)  # noqa: S308 - every value in it passed _text, or is sanitised markup  # nosec B308 B703


def tail(context: Mapping[Any, Any], *, oob: bool = False) -> SafeString:
    """The timeline entries after the last message (what an action adds, redrawn alone)."""
    urls = _ThreadUrls(context["organization"].slug)
    entries = "".join(_entry(context, entry, urls) for entry in context["tail"])
    html = f'<div class="thread-tail" id="thread-tail"{_OOB if oob else ""}>{entries}</div>\n'
    return mark_safe(html)  # noqa: S308 - every value in it passed _text, or is sanitised markup  # nosec B308 B703


def _entry(context: Mapping[Any, Any], entry: ThreadEntry, urls: _ThreadUrls) -> str:
    if entry.message is not None:
        return f"{_message(context, entry.message, urls)}\n"
    line = entry.event
    if line is None:
        return "\n"
    event = line.event
    target = f" <strong>{_text(line.target)}</strong>" if line.target else ""
    until = f' <time datetime="{_local(line.until, "c")}" data-time="long">{_local(line.until, "M j, H:i")}</time>' if line.until else ""
    return (
        f'\n<div class="timeline-event" id="event-{_text(event.pk)}">\n'
        f'  <span class="timeline-icon" aria-hidden="true">{icon(line.icon, "icon-sm")}</span>\n'
        f'  <span class="timeline-text"><strong>{_text(line.actor)}</strong> {_text(line.text)}{target}{until}</span>\n'
        f'  <time class="timeline-time" datetime="{_local(event.created_at, "c")}" data-time="long">{_local(event.created_at, "M j, H:i")}</time>\n'
        "</div>\n\n"
    )


def _address(pair: Any, index: int) -> Any:
    """``{{ pair.0 }}`` of an address pair: its name or address, nothing when it has none."""
    try:
        return pair[index]
    except (LookupError, TypeError):
        return ""


def _addresses(pairs: list[Any], *, bracketed: str) -> str:
    return ", ".join(f"{_text(_address(pair, 0) or _address(pair, 1))} {bracketed.format(_text(_address(pair, 1)))}" for pair in pairs)


def _message(context: Mapping[Any, Any], item: ShownMessage, urls: _ThreadUrls) -> str:
    message, addresses = item.message, item.addresses
    pk = message.pk
    senders = addresses.get("from") or []
    label = "".join(_text(_address(pair, 0) or _address(pair, 1)) for pair in senders) if senders else "an unknown sender"
    who = _addresses(senders, bracketed='<span class="muted small">&lt;{}&gt;</span>') if senders else "(unknown sender)"
    to, cc = addresses.get("to"), addresses.get("cc")
    to_line = f'<span class="small muted">To: {_addresses(to, bracketed="&lt;{}&gt;")}</span>' if to else ""
    cc_line = f'<span class="small muted">Cc: {_addresses(cc, bracketed="&lt;{}&gt;")}</span>' if cc else ""
    subject = message.subject
    subject_line = (
        f'<span class="small muted">Subject: {_text(subject)}</span>' if subject_differs(subject, context["conversation"].subject) else ""
    )
    sent = (
        f'<time class="small muted" datetime="{_local(message.sent_at, "c")}" data-time="long">{_local(message.sent_at, "M j, Y H:i")}</time>'
        if message.sent_at
        else ""
    )
    csrf = _csrf(context)
    add_contact = (
        f'<form method="post" class="inline sender-actions" action="{urls.fill(urls.from_sender, pk)}">{csrf}'
        f'<button class="btn btn-small" type="submit" title="Add the sender to your contacts">{icon("user-plus")}Add to contacts</button></form>'
        if senders
        else ""
    )
    raw = urls.fill(urls.raw, pk)
    if message.quarantine_reason:
        body = (
            f'\n    <div class="alert alert-warning">This message could not be shown safely ({_text(message.quarantine_reason)}). It is kept as received.\n'
            f'      <a href="{raw}">Download its raw source</a></div>\n  '
        )
    elif item.html:
        body = f"\n    {_html_body(context, item.html)}\n  "
    else:
        body = f"\n    {_text_body(item.blocks)}\n  "
    attachments = list(message.attachments.all())
    if attachments:
        clip = icon("paperclip", "icon-sm")
        listed = "".join(
            f'\n      <li><a class="attachment" href="{urls.fill(urls.attachment, attachment.pk)}" download>{clip}'
            f'<span>{_text(attachment.filename)}</span> <span class="muted small">{_text(filesizeformat(attachment.size))}</span></a></li>\n    '
            for attachment in attachments
            if not attachment.is_inline
        )
        attached = f'\n    <ul class="attachment-list">{listed}</ul>\n  '
    else:
        attached = ""
    return (
        f'\n<article class="card message{" message-outbound" if message.direction == Direction.OUTBOUND else ""}" id="message-{_text(pk)}" aria-label="Message from {label}">\n'
        '  <div class="card-header message-header">\n'
        '    <div class="person">\n'
        f'      <span class="avatar avatar-sm avatar-{avatar_tone(item.sender_address):d}" aria-hidden="true">{_text(initials(item.sender_name or "?"))}</span>\n'
        '      <div class="who">\n'
        f"        <strong>{who}</strong>\n"
        f"        {to_line}\n"
        f"        {cc_line}\n"
        f"        {subject_line}\n"
        "      </div>\n"
        "    </div>\n"
        f'    <div class="message-meta">{sent}\n'
        f"      \n{add_contact}\n\n"
        f'      <a class="icon-button" href="{raw}" title="Download the original message" aria-label="Download the original message">{icon("download", "icon-sm")}</a></div>\n'
        "  </div>\n"
        '  <div class="card-body message-body">\n'
        f"  {body}\n"
        f"  {attached}\n"
        "  </div>\n"
        "</article>\n\n"
    )


def _text_body(blocks: list[Any]) -> str:
    """A plain-text body: escaped, linkified blocks; quotes, attributions and signatures folded behind a "…" toggle."""
    parts = []
    for shown in blocks:
        block = shown.block
        text = conditional_escape(block.html)
        if shown.folded:
            what = "the signature" if block.kind == "signature" else "quoted text"
            parts.append(
                f'\n  <details class="message-quote"><summary title="Show {what}"><span aria-hidden="true">…</span>'
                f'<span class="visually-hidden">Show {what}</span></summary><pre class="message-text">{text}</pre></details>\n  \n'
            )
        else:
            parts.append(f'\n  <pre class="message-text">{text}</pre>\n')
    return f'\n<div class="message-plain">\n{"".join(parts)}\n</div>\n'


def _html_body(context: Mapping[Any, Any], body: Any) -> str:
    """An HTML body's notice and sandboxed frame: rare enough to keep its template."""
    return str(get_template("conversations/_message_html.html").render({"body": body, "csrf_token": context.get("csrf_token")}))
