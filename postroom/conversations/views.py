"""The team inbox pages: views with counts, conversation lists, the conversation page and one
thin view per action (parse → access → action → render).

Attacker: whoever sends mail to a member writes the subject, names, bodies and attachments
shown here. Defences, per SECURITY.md R27, R28, R29, R32:
- every header value is rendered through Django's auto-escaping; plain text through
  ``postroom.mime.text`` (escaped, then linkified);
- HTML bodies are sanitised (``postroom.mime.sanitize``, remote content blocked) and served from
  a separate URL into an ``<iframe sandbox>`` with neither ``allow-scripts`` nor
  ``allow-same-origin``: see ``views_frame``, which also serves inline images and decides when
  remote images are shown (through ``postroom.imageproxy``);
- attachments and raw sources are downloads only (``Content-Disposition: attachment``, a served
  type from an allowlist, ``nosniff``, ``CSP: sandbox``), access-checked and audited.

Attacker: a member (or an outsider) who names a conversation, team, label or member they may
not see, in the URL or in the form (R21). Every id goes through ``conversations.selectors``,
scoped to the acting membership: missing and forbidden are the same 404, before anything
changes. A role that does not allow an action (organization labels) is a 403. Every change is
a POST with the CSRF token; a GET changes nothing, not even the read state (the page marks a
conversation read with a POST of its own once it is shown).

htmx requests get the part of the page that changed (a list row, the conversation's header,
details and newest timeline entries, the sidebar counts); other requests get a redirect or the
full page, so every page works without JavaScript.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from csp.decorators import csp_exempt
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from postroom.conversations import actions, display, selectors
from postroom.conversations.bodies import messages_with_bodies
from postroom.conversations.forms import LABEL_COLOR_NAMES, SNOOZE_PRESETS, LabelForm, ShareForm, SnoozeForm
from postroom.conversations.models import Conversation, ConversationMember, ConversationShare, ConversationStatus, Label, Place
from postroom.conversations.selectors import VIEW_TITLES, View, ViewFilter
from postroom.conversations.views_frame import HtmlBodies
from postroom.core.blobs import blob_get
from postroom.core.http import wants_partial
from postroom.core.rows import Reads
from postroom.mime.filenames import content_disposition, served_content_type
from postroom.orgs.models import Membership
from postroom.orgs.policy import Permission, role_allows
from postroom.orgs.selectors import MemberName, member_names_read, membership_get, organization_teams
from postroom.web.links import link

DOWNLOAD_POLICY = "sandbox; default-src 'none'; frame-ancestors 'none'"
PAGE_SIZE = 50
MAX_BULK = 200

# The views in the sidebar, in order, with the last segment of their URL and their icon.
VIEW_PATHS = {
    View.ASSIGNED: "assigned", View.MENTIONS: "mentions", View.TASKS: "tasks", View.SENT: "sent",
    View.SNOOZED: "snoozed", View.CLOSED: "closed", View.ALL: "all", View.SPAM: "spam", View.TRASH: "trash",
}  # fmt: skip
VIEW_ICONS = {
    View.INBOX: "inbox", View.ASSIGNED: "user-check", View.MENTIONS: "at", View.TASKS: "check-square", View.SENT: "send",
    View.SNOOZED: "clock", View.CLOSED: "archive", View.ALL: "mail", View.SPAM: "alert", View.TRASH: "trash",
}  # fmt: skip
EMPTY_TEXT = {
    View.INBOX: "Nothing left in your inbox. New mail and conversations assigned to you land here.",
    View.ASSIGNED: "Nothing is assigned to you.",
    View.MENTIONS: "Nobody has mentioned you yet.",
    View.TASKS: "No open conversation has an assignee.",
    View.SENT: "Conversations you sent mail in appear here.",
    View.SNOOZED: "Nothing is snoozed.",
    View.CLOSED: "Closed and archived conversations appear here.",
    View.ALL: "No conversations yet. Mail appears here once a mailbox is connected or imported.",
    View.SPAM: "No spam.",
    View.TRASH: "The trash is empty.",
    View.TEAM: "Nothing open in this team's inbox.",
    View.LABEL: "No conversation has this label.",
}


# --- Reading what a request names ---------------------------------------------------------------------
def _actor(request: HttpRequest, slug: str) -> Membership:
    return membership_get(user=request.user, slug=slug)


def list_key(selected: ViewFilter) -> str:
    """A view as one string (``inbox``, ``team:3``, ``label:<id>``, ``tasks:7``): the sidebar's
    current entry, and what a list posts with an action so that its row can be redrawn."""
    if selected.view == View.TEAM and selected.team is not None:
        return f"team:{selected.team.pk}"
    if selected.view == View.LABEL and selected.label is not None:
        return f"label:{selected.label.pk}"
    if selected.view == View.TASKS and selected.assignee is not None:
        return f"tasks:{selected.assignee.pk}"
    return selected.view


def _filter_from_key(actor: Membership, key: str) -> ViewFilter:
    """The view a ``list_key`` names; 404 for a team, label or member the actor cannot name."""
    view, _, argument = key.partition(":")
    return selectors.view_filter_get(
        actor=actor, view=view, team_id=argument if view == View.TEAM else None,
        label_id=argument if view == View.LABEL else None, assignee_id=argument if view == View.TASKS else None,
    )  # fmt: skip


def _list_url(actor: Membership, selected: ViewFilter) -> str:
    slug = actor.organization.slug
    if selected.view == View.INBOX:
        return link("conversations:list", slug)
    if selected.view == View.TEAM and selected.team is not None:
        return link("conversations:team", slug, selected.team.pk)
    if selected.view == View.LABEL and selected.label is not None:
        return link("conversations:label", slug, selected.label.pk)
    url = link(f"conversations:view_{selected.view}", slug)
    return f"{url}?assignee={selected.assignee.pk}" if selected.assignee is not None else url


def _title(selected: ViewFilter) -> str:
    if selected.team is not None:
        return selected.team.name
    if selected.label is not None:
        return selected.label.name
    title = VIEW_TITLES[selected.view]
    return f"{title}: {selected.assignee.user.display_name}" if selected.assignee is not None else title


def _cursor(request: HttpRequest) -> tuple[datetime, UUID] | None:
    """``?before=<time>&before_id=<id>``: the last row of the previous page."""
    before, before_id = request.GET.get("before"), request.GET.get("before_id")
    if not before and not before_id:
        return None
    try:
        moment = datetime.fromisoformat(str(before))
        conversation_id = UUID(str(before_id))
    except ValueError:
        raise _BadCursorError from None
    if moment.tzinfo is None:
        raise _BadCursorError
    return moment, conversation_id


class _BadCursorError(Exception):
    pass


def _next_url(request: HttpRequest) -> str | None:
    target = request.POST.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return None


def _error_text(error: ValidationError | PermissionDenied) -> str:
    if isinstance(error, ValidationError):
        return " ".join(error.messages)
    return str(error) or "You are not allowed to do this."


# --- The sidebar --------------------------------------------------------------------------------------
def nav_context(
    actor: Membership, current: str, labels: list[Label] | None = None, sidebar: selectors.Sidebar | None = None
) -> dict[str, Any]:
    """The views of the sidebar with their counts (one query for the teams and all counts) and
    the labels (``labels``: ``selectors.labels_list``, and ``sidebar``: ``selectors.sidebar_get``,
    when the caller has read them already)."""
    slug = actor.organization.slug
    if sidebar is None:
        sidebar = selectors.sidebar_get(actor=actor)
    teams, counts = sidebar.teams, sidebar.counts
    if labels is None:
        labels = selectors.labels_list(actor=actor)

    def entry(key: str, title: str, url: str, icon: str, count: int = 0, unit: str = "", tone: int | None = None) -> dict[str, Any]:
        shown = f"{selectors.COUNT_LIMIT}+" if count > selectors.COUNT_LIMIT else str(count)
        return {"key": key, "title": title, "url": url, "icon": icon, "count": count, "count_text": shown, "unit": unit,
                "current": key == current, "tone": tone}  # fmt: skip

    main = [entry(View.INBOX, VIEW_TITLES[View.INBOX], link("conversations:list", slug), "inbox", counts[View.INBOX], "unread")]
    work = [
        entry(view, VIEW_TITLES[view], link(f"conversations:view_{view}", slug), VIEW_ICONS[view], counts.get(view, 0),
              "unread" if view == View.MENTIONS else "open")
        for view in (View.ASSIGNED, View.MENTIONS, View.TASKS)
    ]  # fmt: skip
    folders = [
        entry(view, VIEW_TITLES[view], link(f"conversations:view_{view}", slug), VIEW_ICONS[view])
        for view in (View.SENT, View.SNOOZED, View.CLOSED, View.ALL, View.SPAM, View.TRASH)
    ]
    folders.insert(1, entry("drafts", "Drafts", link("outbox:drafts", slug), "edit", counts["drafts"], "drafts"))
    return {
        "nav_main": main,
        "nav_teams": [
            entry(
                f"team:{team.pk}",
                team.name,
                link("conversations:team", slug, team.pk),
                "teams",
                counts[f"team:{team.pk}"],
                "unread",
            )
            for team in teams
        ],
        "nav_work": work,
        "nav_folders": folders,
        "nav_labels": [
            entry(f"label:{label.pk}", label.name, link("conversations:label", slug, label.pk), "tag", tone=_label_tone(label))
            | {"personal": label.owner_id is not None}
            for label in labels
        ],
        "inbox_nav": True,
        "nav_current": current,
    }


def _label_tone(label: Label) -> int:
    return actions.LABEL_COLORS.index(label.color) if label.color in actions.LABEL_COLORS else 0


@login_required
@require_GET
def inbox_nav(request: HttpRequest, slug: str) -> HttpResponse:
    """The sidebar's views and counts alone, for a page that refreshes them (live updates)."""
    actor = _actor(request, slug)
    return render(
        request, "conversations/_nav.html", {"organization": actor.organization, **nav_context(actor, request.GET.get("current", ""))}
    )


# --- Lists ---------------------------------------------------------------------------------------------
def _list_items(rows: list[selectors.PageRow]) -> list[display.ListItem]:
    now = timezone.now()
    return [display.list_item(row, now) for row in rows]


def _page_context(
    actor: Membership, selected: ViewFilter, before: tuple[datetime, UUID] | None, reads: Reads | None = None
) -> dict[str, Any]:
    """A page of the list (``reads``: the page's other reads, sent with its rows' details)."""
    rows = selectors.view_page(actor=actor, selected=selected, limit=PAGE_SIZE + 1, before=before, reads=reads)
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    last = rows[-1] if rows and more else None
    url = _list_url(actor, selected)
    cursor = urlencode({"before": last.last_activity_at.isoformat(), "before_id": str(last.conversation_id)}) if last else ""
    return {
        "items": _list_items(rows),
        "next_url": f"{url}{'&' if '?' in url else '?'}{cursor}" if cursor else "",
        "list_key": list_key(selected),
        "list_url": url,
    }


@login_required
@require_GET
def conversation_list(request: HttpRequest, slug: str, view: str, team_id: int | None = None, label_id: str | None = None) -> HttpResponse:
    actor = _actor(request, slug)
    assignee_id = request.GET.get("assignee") or None
    selected = selectors.view_filter_get(actor=actor, view=view, team_id=team_id, label_id=label_id, assignee_id=assignee_id)
    try:
        before = _cursor(request)
    except _BadCursorError:
        return HttpResponseBadRequest("This page link is broken: go back to the first page of the list.", content_type="text/plain")
    context: dict[str, Any] = {"organization": actor.organization, "actor": actor, "selected": selected, "title": _title(selected),
                               "empty_text": EMPTY_TEXT.get(selected.view, "")}  # fmt: skip
    if wants_partial(request):
        context.update(_page_context(actor, selected, before))
        return render(request, "conversations/_rows.html" if before else "conversations/_list.html", context)
    # The whole page: the labels, the members of the bulk bar and the sidebar go with the rows' details.
    reads = Reads()
    labels = reads.add(selectors.labels_read(actor=actor))
    members = reads.add(member_names_read(actor=actor))
    sidebar = reads.add(selectors.sidebar_read(actor=actor))
    context.update(_page_context(actor, selected, before, reads))
    context.update(_list_tools(actor, selected, labels.value, members.value))
    context.update(nav_context(actor, context["list_key"] if selected.assignee is None else View.TASKS, labels.value, sidebar.value))
    return render(request, "conversations/list.html", context)


def _list_tools(actor: Membership, selected: ViewFilter, labels: list[Label], members: list[MemberName]) -> dict[str, Any]:
    """What the bulk bar and the Tasks filter offer (``labels``: ``selectors.labels_list``,
    ``members``: ``member_names_read``)."""
    tools: dict[str, Any] = {"labels": labels, "members": members}
    if selected.view == View.TASKS:
        tools["assignee_counts"] = selectors.assigned_counts(actor=actor)
    return tools


# --- The conversation page -----------------------------------------------------------------------------
def _conversation_context(request: HttpRequest, actor: Membership, row: ConversationMember, with_sidebar: bool) -> dict[str, Any]:
    """``row``: ``selectors.conversation_row_get``, the actor's row with its conversation;
    ``with_sidebar``: read the sidebar's counts too (``sidebar``, for ``nav_context``)."""
    conversation = row.conversation
    page = selectors.conversation_page(actor=actor, conversation=conversation, with_sidebar=with_sidebar)
    # Bodies not parsed yet (the import's body pass has not reached them) are parsed now, once.
    shown = messages_with_bodies(page.messages)
    # The organization's members and teams and the actor's labels, read once for the menus, also
    # name the assignees, labels, shares and timeline entries.
    members, teams, visible_labels = page.directory.members, page.directory.teams, page.directory.labels
    events = page.events
    names = selectors.timeline_names_among(events=events, members=members, teams=teams, labels=visible_labels)
    entries = display.thread_entries(shown, events, names)
    bodies = HtmlBodies(request=request, actor=actor)  # images: blocked, shown once, or always (views_frame)
    for entry in entries:
        if entry.message is not None and entry.message.message.html_body:
            entry.message.html = bodies.display(entry.message.message)
    links = page.links
    members_by_id = {member.pk: member for member in members}
    teams_by_id = {team.pk: team for team in teams}
    assignees = [members_by_id[member_id] for member_id in links.assignee_ids if member_id in members_by_id]
    label_ids = set(links.label_ids)
    labels = [label for label in visible_labels if label.pk in label_ids]
    shares = [
        ConversationShare(
            pk=share_id, conversation=conversation, team=teams_by_id.get(team_id) if team_id is not None else None,
            membership=members_by_id.get(membership_id) if membership_id is not None else None,
        )
        for share_id, team_id, membership_id in links.shares
    ]  # fmt: skip
    assignee_ids = set(links.assignee_ids)
    shared_team_ids = {team_id for _, team_id, _ in links.shares if team_id is not None}
    shared_member_ids = {membership_id for _, _, membership_id in links.shares if membership_id is not None}
    return {
        "organization": actor.organization,
        "actor": actor,
        "conversation": conversation,
        "row": row,
        "entries": [entry for entry in entries if not entry.tail],
        "tail": [entry for entry in entries if entry.tail],
        "assignees": assignees,
        "labels": labels,
        "shares": shares,
        "members": [
            {"member": member, "assigned": member.pk in assignee_ids, "shared": member.pk in shared_member_ids} for member in members
        ],
        "all_labels": [{"label": label, "on": label.pk in label_ids} for label in visible_labels],
        "visible_labels": visible_labels,  # for nav_context
        "sidebar": page.sidebar,  # for nav_context
        "teams": [{"team": team, "shared": team.pk in shared_team_ids} for team in teams],
        "snooze_presets": SNOOZE_PRESETS,
        "snooze_form": SnoozeForm(),
        "is_binned": row.place in (Place.TRASH, Place.SPAM) or conversation.status in (ConversationStatus.TRASH, ConversationStatus.SPAM),
        "is_closed": conversation.status == ConversationStatus.CLOSED,
        "is_archived": row.place == Place.ARCHIVE,
        "can_manage_labels": role_allows(actor.role, Permission.MANAGE_TEAMS),
    }


def _list_from_query(actor: Membership, key: str) -> ViewFilter:
    """The list the conversation was opened from (for the way back), the inbox when it names
    nothing the actor can see."""
    if key:
        try:
            return _filter_from_key(actor, key)
        except Http404:
            pass
    return ViewFilter(View.INBOX)


@login_required
@require_GET
def conversation_detail(request: HttpRequest, slug: str, conversation_id: str) -> HttpResponse:
    actor = _actor(request, slug)
    row = selectors.conversation_row_get(actor=actor, conversation_id=conversation_id)
    whole = not wants_partial(request) or bool(request.GET.get("live"))  # ?live=1: the whole page, to select its thread from
    context = _conversation_context(request, actor, row, with_sidebar=whole)
    selected = _list_from_query(actor, request.GET.get("list", ""))
    context.update(list_key=list_key(selected), list_url=_list_url(actor, selected), list_title=_title(selected))
    if not whole:
        return render(request, "conversations/_state.html", context)
    context["compose"] = request.GET.get("compose", "")
    context.update(nav_context(actor, list_key(selected), context["visible_labels"], context["sidebar"]))
    return render(request, "conversations/detail.html", context)


# --- Actions -------------------------------------------------------------------------------------------
def _respond(request: HttpRequest, actor: Membership, conversation: Conversation, note: str, selected: ViewFilter | None) -> HttpResponse:
    """After an action: the changed parts for htmx (the list row of ``selected``, or the
    conversation page's header, details and newest timeline entries, with the sidebar counts),
    else a redirect."""
    try:
        visible: ConversationMember | None = selectors.conversation_row_get(actor=actor, conversation_id=conversation.pk)
    except Http404:
        visible = None
    key = list_key(selected) if selected is not None else ""
    if request.POST.get("quiet"):
        note = ""  # the page's own "read once shown": no toast
    if wants_partial(request):
        if selected is not None:
            rows = selectors.view_page(actor=actor, selected=selected, conversation_ids=[conversation.pk]) if visible else []
            return render(request, "conversations/_row_response.html", {
                "organization": actor.organization, "items": _list_items(rows), "list_key": key, "note": note,
                "list_url": _list_url(actor, selected), "removed_id": conversation.pk, **nav_context(actor, key),
            })  # fmt: skip
        if visible is None:
            response = HttpResponse(status=204)
            messages.success(request, note)
            response["HX-Redirect"] = reverse("conversations:list", args=[actor.organization.slug])
            return response
        context = _conversation_context(request, actor, visible, with_sidebar=True)
        origin = _list_from_query(actor, request.POST.get("from", ""))
        context.update(note=note, list_key=list_key(origin), list_url=_list_url(actor, origin), list_title=_title(origin))
        context.update(nav_context(actor, list_key(origin), context["visible_labels"], context["sidebar"]))
        return render(request, "conversations/_state.html", context)
    if note:
        messages.success(request, note)
    target = _next_url(request)
    if target:
        return redirect(target)
    if visible is None:
        return redirect("conversations:list", slug=actor.organization.slug)
    return redirect("conversations:detail", slug=actor.organization.slug, conversation_id=conversation.pk)


def _refused(
    request: HttpRequest, actor: Membership, conversation: Conversation | None, error: ValidationError | PermissionDenied
) -> HttpResponse:
    """A clear answer to an action that could not be done: 422 for bad input, 403 for a role
    that does not allow it. htmx shows it as a toast; a plain form gets the message on the page."""
    text = _error_text(error)
    status = 403 if isinstance(error, PermissionDenied) else 422
    if wants_partial(request):
        response = render(request, "conversations/_toast.html", {"text": text, "tone": "error"}, status=status)
        response["HX-Retarget"] = "#toasts"
        response["HX-Reswap"] = "beforeend"
        return response
    if isinstance(error, PermissionDenied):
        raise error
    messages.error(request, text)
    target = _next_url(request)
    if target:
        return redirect(target)
    if conversation is None:
        return redirect("conversations:list", slug=actor.organization.slug)
    return redirect("conversations:detail", slug=actor.organization.slug, conversation_id=conversation.pk)


Change = Callable[[Membership, Conversation], str]


def _act(request: HttpRequest, slug: str, conversation_id: str, change: Change) -> HttpResponse:
    """Access, then one action: ``change`` calls it and says what happened."""
    actor = _actor(request, slug)
    conversation = selectors.conversation_get(actor=actor, conversation_id=conversation_id)
    # The list the row is redrawn for: a team or label the actor cannot name is a 404 before any change.
    key = request.POST.get("list", "")
    selected = _filter_from_key(actor, key) if key else None
    try:
        note = change(actor, conversation)
    except (ValidationError, PermissionDenied) as error:
        return _refused(request, actor, conversation, error)
    return _respond(request, actor, conversation, note, selected)


@login_required
@require_POST
def conversation_read(request: HttpRequest, slug: str, conversation_id: str) -> HttpResponse:
    """``state=read`` or ``state=unread``; the page posts ``read`` itself once it is shown."""
    state = request.POST.get("state", "read")
    if state not in ("read", "unread"):
        return HttpResponseBadRequest("Unknown state.", content_type="text/plain")

    def change(actor: Membership, conversation: Conversation) -> str:
        actions.conversation_mark_read(actor=actor, conversation=conversation, read=state == "read", request=request)
        return f"Marked as {state}."

    return _act(request, slug, conversation_id, change)


@login_required
@require_POST
def conversation_archive(request: HttpRequest, slug: str, conversation_id: str) -> HttpResponse:
    def change(actor: Membership, conversation: Conversation) -> str:
        actions.conversation_archive(actor=actor, conversation=conversation, request=request)
        return "Archived."

    return _act(request, slug, conversation_id, change)


@login_required
@require_POST
def conversation_move_to_inbox(request: HttpRequest, slug: str, conversation_id: str) -> HttpResponse:
    def change(actor: Membership, conversation: Conversation) -> str:
        actions.conversation_move_to_inbox(actor=actor, conversation=conversation, request=request)
        return "Moved to your inbox."

    return _act(request, slug, conversation_id, change)


@login_required
@require_POST
def conversation_trash(request: HttpRequest, slug: str, conversation_id: str) -> HttpResponse:
    def change(actor: Membership, conversation: Conversation) -> str:
        actions.conversation_trash(actor=actor, conversation=conversation, request=request)
        return "Moved to the trash."

    return _act(request, slug, conversation_id, change)


@login_required
@require_POST
def conversation_spam(request: HttpRequest, slug: str, conversation_id: str) -> HttpResponse:
    def change(actor: Membership, conversation: Conversation) -> str:
        actions.conversation_mark_spam(actor=actor, conversation=conversation, request=request)
        return "Marked as spam."

    return _act(request, slug, conversation_id, change)


@login_required
@require_POST
def conversation_close(request: HttpRequest, slug: str, conversation_id: str) -> HttpResponse:
    def change(actor: Membership, conversation: Conversation) -> str:
        shared = conversation.is_shared
        actions.conversation_close(actor=actor, conversation=conversation, request=request)
        return "Closed for the team." if shared else "Archived (a private conversation has no team to close it for)."

    return _act(request, slug, conversation_id, change)


@login_required
@require_POST
def conversation_reopen(request: HttpRequest, slug: str, conversation_id: str) -> HttpResponse:
    def change(actor: Membership, conversation: Conversation) -> str:
        actions.conversation_reopen(actor=actor, conversation=conversation, request=request)
        return "Reopened."

    return _act(request, slug, conversation_id, change)


@login_required
@require_POST
def conversation_snooze(request: HttpRequest, slug: str, conversation_id: str) -> HttpResponse:
    form = SnoozeForm(request.POST)

    def change(actor: Membership, conversation: Conversation) -> str:
        if not form.is_valid():
            raise ValidationError([str(message) for messages_ in form.errors.values() for message in messages_])
        until = form.until_time()
        actions.conversation_snooze(actor=actor, conversation=conversation, until=until, request=request)
        return "Snoozed. It comes back to your inbox when the time comes, or sooner when someone writes."

    return _act(request, slug, conversation_id, change)


@login_required
@require_POST
def conversation_unsnooze(request: HttpRequest, slug: str, conversation_id: str) -> HttpResponse:
    def change(actor: Membership, conversation: Conversation) -> str:
        actions.conversation_unsnooze(actor=actor, conversation=conversation, request=request)
        return "No longer snoozed."

    return _act(request, slug, conversation_id, change)


@login_required
@require_POST
def conversation_follow(request: HttpRequest, slug: str, conversation_id: str) -> HttpResponse:
    following = request.POST.get("following", "1") == "1"

    def change(actor: Membership, conversation: Conversation) -> str:
        actions.conversation_follow(actor=actor, conversation=conversation, following=following)
        return "You follow this conversation." if following else "You no longer follow this conversation."

    return _act(request, slug, conversation_id, change)


def _member(actor: Membership, request: HttpRequest) -> Membership:
    return selectors.member_get(actor=actor, membership_id=request.POST.get("member"))


@login_required
@require_POST
def conversation_assign(request: HttpRequest, slug: str, conversation_id: str) -> HttpResponse:
    def change(actor: Membership, conversation: Conversation) -> str:
        assignee = _member(actor, request)
        actions.conversation_assign(actor=actor, conversation=conversation, assignee=assignee, request=request)
        return f"Assigned to {assignee.user.display_name}."

    return _act(request, slug, conversation_id, change)


@login_required
@require_POST
def conversation_unassign(request: HttpRequest, slug: str, conversation_id: str) -> HttpResponse:
    def change(actor: Membership, conversation: Conversation) -> str:
        assignee = _member(actor, request)
        actions.conversation_unassign(actor=actor, conversation=conversation, assignee=assignee, request=request)
        return f"{assignee.user.display_name} is no longer assigned."

    return _act(request, slug, conversation_id, change)


@login_required
@require_POST
def conversation_label(request: HttpRequest, slug: str, conversation_id: str) -> HttpResponse:
    def change(actor: Membership, conversation: Conversation) -> str:
        label = selectors.label_get(actor=actor, label_id=request.POST.get("label"))
        actions.conversation_label(actor=actor, conversation=conversation, label=label, request=request)
        return f"Labelled {label.name}."

    return _act(request, slug, conversation_id, change)


@login_required
@require_POST
def conversation_unlabel(request: HttpRequest, slug: str, conversation_id: str) -> HttpResponse:
    def change(actor: Membership, conversation: Conversation) -> str:
        label = selectors.label_get(actor=actor, label_id=request.POST.get("label"))
        actions.conversation_unlabel(actor=actor, conversation=conversation, label=label, request=request)
        return f"Label {label.name} removed."

    return _act(request, slug, conversation_id, change)


def _share_target(actor: Membership, request: HttpRequest) -> dict[str, Any]:
    form = ShareForm(request.POST)
    if not form.is_valid():
        raise ValidationError([str(message) for messages_ in form.errors.values() for message in messages_])
    data = form.cleaned_data
    if data.get("team") is not None:
        # Any team of the organization (sharing with a team one is not in is how work is handed over).
        team = organization_teams(actor=actor).filter(pk=data["team"]).first()
        if team is None:
            raise Http404
        return {"team": team}
    if data.get("member") is not None:
        return {"member": selectors.member_get(actor=actor, membership_id=data["member"])}
    return {"organization": True}


def _share_phrase(target: dict[str, Any]) -> str:
    if "team" in target:
        return f"team {target['team'].name}"
    if "member" in target:
        return str(target["member"].user.display_name)
    return "the whole organization"


@login_required
@require_POST
def conversation_share(request: HttpRequest, slug: str, conversation_id: str) -> HttpResponse:
    def change(actor: Membership, conversation: Conversation) -> str:
        target = _share_target(actor, request)  # a team or member of another organization is a 404
        shared = actions.conversation_share(actor=actor, conversation=conversation, request=request, **target)
        return f"Shared with {_share_phrase(target)}." if shared else f"Already shared with {_share_phrase(target)}."

    return _act(request, slug, conversation_id, change)


@login_required
@require_POST
def conversation_unshare(request: HttpRequest, slug: str, conversation_id: str) -> HttpResponse:
    def change(actor: Membership, conversation: Conversation) -> str:
        target = _share_target(actor, request)  # a team or member of another organization is a 404
        unshared = actions.conversation_unshare(actor=actor, conversation=conversation, request=request, **target)
        return f"No longer shared with {_share_phrase(target)}." if unshared else f"It was not shared with {_share_phrase(target)}."

    return _act(request, slug, conversation_id, change)


# --- Bulk -----------------------------------------------------------------------------------------------
BULK_OPERATIONS = ("archive", "close", "reopen", "read", "unread", "trash", "spam", "inbox", "label", "assign")


@login_required
@require_POST
def conversation_bulk(request: HttpRequest, slug: str) -> HttpResponse:
    """One action on the selected conversations of a list. Every id is checked before anything
    changes: one that the actor cannot see makes the whole request a 404."""
    actor = _actor(request, slug)
    operation = request.POST.get("operation", "")
    key = request.POST.get("list", View.INBOX)
    selected = _filter_from_key(actor, key)
    ids = request.POST.getlist("conversation")[:MAX_BULK]
    conversations = [selectors.conversation_get(actor=actor, conversation_id=conversation_id) for conversation_id in ids]
    label = selectors.label_get(actor=actor, label_id=request.POST.get("label")) if operation == "label" else None
    assignee = _member(actor, request) if operation == "assign" else None
    if operation not in BULK_OPERATIONS:
        return _refused(request, actor, None, ValidationError("Choose what to do with the selected conversations."))
    if not conversations:
        return _refused(request, actor, None, ValidationError("Select at least one conversation first."))
    try:
        for conversation in conversations:
            _bulk_one(actor, conversation, operation, label, assignee, request)
    except (ValidationError, PermissionDenied) as error:
        return _refused(request, actor, None, error)
    note = f"{len(conversations)} conversation{'s' if len(conversations) != 1 else ''} updated."
    if wants_partial(request):
        context = {"organization": actor.organization, "actor": actor, "selected": selected, "title": _title(selected),
                   "empty_text": EMPTY_TEXT.get(selected.view, ""), "note": note, **_page_context(actor, selected, None)}  # fmt: skip
        context.update(nav_context(actor, key))
        return render(request, "conversations/_list_response.html", context)
    messages.success(request, note)
    return redirect(_list_url(actor, selected))


def _bulk_one(actor: Membership, conversation: Conversation, operation: str, label: Label | None, assignee: Membership | None,
              request: HttpRequest) -> None:  # fmt: skip
    if operation == "archive":
        actions.conversation_archive(actor=actor, conversation=conversation, request=request)
    elif operation == "close":
        actions.conversation_close(actor=actor, conversation=conversation, request=request)
    elif operation == "reopen":
        actions.conversation_reopen(actor=actor, conversation=conversation, request=request)
    elif operation in ("read", "unread"):
        actions.conversation_mark_read(actor=actor, conversation=conversation, read=operation == "read", request=request)
    elif operation == "trash":
        actions.conversation_trash(actor=actor, conversation=conversation, request=request)
    elif operation == "spam":
        actions.conversation_mark_spam(actor=actor, conversation=conversation, request=request)
    elif operation == "inbox":
        actions.conversation_move_to_inbox(actor=actor, conversation=conversation, request=request)
    elif operation == "label" and label is not None:
        actions.conversation_label(actor=actor, conversation=conversation, label=label, request=request)
    elif operation == "assign" and assignee is not None:
        actions.conversation_assign(actor=actor, conversation=conversation, assignee=assignee, request=request)


# --- Labels ---------------------------------------------------------------------------------------------
def _labels_page(request: HttpRequest, actor: Membership, form: LabelForm, status: int = 200) -> HttpResponse:
    labels = selectors.labels_list(actor=actor)
    context = {
        "organization": actor.organization, "actor": actor, "form": form, "colors": list(zip(range(len(actions.LABEL_COLORS)), actions.LABEL_COLORS, LABEL_COLOR_NAMES, strict=True)),
        "organization_labels": [label for label in labels if label.owner_id is None],
        "personal_labels": [label for label in labels if label.owner_id is not None],
        "can_manage": role_allows(actor.role, Permission.MANAGE_TEAMS), **nav_context(actor, "labels"),
    }  # fmt: skip
    return render(request, "conversations/labels.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def label_list(request: HttpRequest, slug: str) -> HttpResponse:
    """The labels page; a POST creates one (personal for anyone, organization-wide for admins)."""
    actor = _actor(request, slug)
    if request.method != "POST":
        return _labels_page(request, actor, LabelForm())
    form = LabelForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            label = actions.label_create(actor=actor, name=data["name"], personal=data["personal"], color=data["color"], request=request)
        except ValidationError as error:
            form.add_error("name", error)
        else:
            messages.success(request, f"Label {label.name} created.")
            return redirect("conversations:labels", slug=actor.organization.slug)
    return _labels_page(request, actor, form, status=422)


@login_required
@require_POST
def label_update(request: HttpRequest, slug: str, label_id: str) -> HttpResponse:
    actor = _actor(request, slug)
    label = selectors.label_get(actor=actor, label_id=label_id)
    form = LabelForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(str(message) for messages_ in form.errors.values() for message in messages_))
        return redirect("conversations:labels", slug=actor.organization.slug)
    try:
        actions.label_update(actor=actor, label=label, name=form.cleaned_data["name"], color=form.cleaned_data["color"], request=request)
    except ValidationError as error:
        messages.error(request, _error_text(error))
    else:
        messages.success(request, f"Label {label.name} saved.")
    return redirect("conversations:labels", slug=actor.organization.slug)


@login_required
@require_POST
def label_delete(request: HttpRequest, slug: str, label_id: str) -> HttpResponse:
    actor = _actor(request, slug)
    label = selectors.label_get(actor=actor, label_id=label_id)
    name = label.name
    actions.label_delete(actor=actor, label=label, request=request)
    messages.success(request, f"Label {name} deleted.")
    return redirect("conversations:labels", slug=actor.organization.slug)


# --- Compatibility, the HTML frame and downloads ------------------------------------------------------------
@login_required
@require_POST
def conversation_change(request: HttpRequest, slug: str, conversation_id: str) -> HttpResponse:
    """Mark read/unread, archive or trash: always an explicit POST from the conversation page.
    Opening the page does not mark it read, because a GET changes nothing (and link previews or
    prefetching would otherwise read mail on the member's behalf, on their server too)."""
    actor = membership_get(user=request.user, slug=slug)
    conversation = selectors.conversation_get(actor=actor, conversation_id=conversation_id)
    change = request.POST.get("change", "")
    if change in ("read", "unread"):
        actions.conversation_mark_read(actor=actor, conversation=conversation, read=change == "read", request=request)
        messages.success(request, f"Marked as {change}.")
        return redirect("conversations:detail", slug=actor.organization.slug, conversation_id=conversation.pk)
    if change == "archive":
        moved = actions.conversation_archive(actor=actor, conversation=conversation, request=request)
        messages.success(request, "Archived." if moved else "Nothing to archive: no message of it is in your inbox.")
    elif change == "trash":
        moved = actions.conversation_trash(actor=actor, conversation=conversation, request=request)
        messages.success(request, "Moved to the trash." if moved else "Nothing to move: the server offers no Trash folder.")
    else:
        return HttpResponseBadRequest("Unknown change.")
    return redirect("conversations:list", slug=actor.organization.slug)


def _download(content: bytes, filename: str, content_type: str) -> HttpResponse:
    response = HttpResponse(content, content_type=served_content_type(content_type))
    response["Content-Disposition"] = content_disposition(filename)
    response["Content-Security-Policy"] = DOWNLOAD_POLICY
    response["X-Content-Type-Options"] = "nosniff"
    return response


@login_required
@require_GET
@csp_exempt()  # type: ignore[arg-type]  # django-csp types views as taking only the request
def attachment_download(request: HttpRequest, slug: str, attachment_id: str) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    attachment = selectors.attachment_get(actor=actor, attachment_id=attachment_id)
    content = blob_get(attachment.key_scope(), attachment.blob)
    actions.attachment_download_record(actor=actor, attachment=attachment, request=request)
    return _download(content, attachment.filename or "", attachment.content_type)


@login_required
@require_GET
@csp_exempt()  # type: ignore[arg-type]  # django-csp types views as taking only the request
def message_raw(request: HttpRequest, slug: str, message_id: str) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    message = selectors.message_get(actor=actor, message_id=message_id)
    content = blob_get(message.key_scope(), message.raw_blob)
    actions.raw_message_download_record(actor=actor, message=message, request=request)
    # Served as an opaque file, never as message/rfc822, which some browsers would render.
    return _download(content, "message.eml", "application/octet-stream")
