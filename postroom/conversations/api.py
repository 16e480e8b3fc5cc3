"""API for the team inbox: conversations (list, filter, read, act), their messages, attachments,
labels, and sending replies, forwards and new messages.

Same rules as the pages, from the same selectors and actions (parse → access → action → typed
answer):

- Access: every id in a path or a body goes through a selector scoped to the caller. A
  conversation they cannot see, a message or attachment that is not theirs to read (a
  teammate's private message threaded into a shared conversation), another organization's
  anything, a teammate's personal label or mailbox: all the same 404. A rule the role does not
  allow (an organization label for a member) is 403; a read-scope token is refused every POST,
  PATCH and DELETE with 403 before any endpoint runs (``postroom.api.auth``).
- Content: subjects, snippets, addresses and bodies are decrypted from their sealed columns only
  to answer the caller who may read them; counts, snippets and attachment flags are computed
  from the messages the caller can see, never from the whole conversation. HTML bodies are
  answered sanitised by ``postroom.mime.sanitize`` with remote content blocked (as the page's
  frame shows them before "Show images"); ``cid:`` images point at the API's own attachment
  download. A client that puts that HTML in a page must still isolate it (SECURITY.md R28).
- Input: request bodies are ``Input`` schemas (R23): only their fields are read; an
  organization, an author, a status or a sender address cannot be written through them.
- Sending: a JSON body, or the same JSON in the ``message`` field of a multipart body with the
  files in ``attachments`` (the ``…/multipart`` twins; JSON bodies are capped at Django's 2.5 MB,
  file parts are not, and uploads never touch the disk: ``postroom.core.uploads``). An HTML
  body goes through the received-mail sanitiser before it is sent (no script, form or remote
  image leaves from us); without a text body, the text alternative is derived from it.
- Attachments download as ``application/octet-stream`` with ``nosniff`` and a sandboxing CSP,
  whatever type the sender declared, and each download is audited (R32, R53).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.db.models.functions import Coalesce
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse
from ninja import Field, File, Form, Query, Router, Schema, Status, UploadedFile
from ninja.errors import ValidationError as NinjaValidationError
from pydantic import AfterValidator, AwareDatetime, BeforeValidator, ConfigDict, StrictBool, StrictInt, StringConstraints, field_validator
from pydantic import ValidationError as PydanticValidationError

from postroom.api.errors import ERRORS
from postroom.api.pagination import Page, PageParams, paginate
from postroom.api.schemas import Input
from postroom.conversations import actions, selectors
from postroom.conversations.bodies import messages_with_bodies
from postroom.conversations.models import (
    Attachment,
    Conversation,
    ConversationMember,
    ConversationShare,
    ConversationStatus,
    Direction,
    Label,
    Message,
    Place,
    TimelineEvent,
)
from postroom.conversations.selectors import View, ViewFilter
from postroom.core.blobs import blob_get
from postroom.core.keys import keyring
from postroom.mime.build import OutgoingAttachment
from postroom.mime.filenames import OPAQUE_CONTENT_TYPE, content_disposition, safe_filename
from postroom.mime.sanitize import sanitize_html
from postroom.orgs import selectors as org_selectors
from postroom.orgs.models import Membership, Team
from postroom.orgs.selectors import membership_get
from postroom.outbox import actions as outbox_actions
from postroom.outbox import selectors as outbox_selectors
from postroom.outbox.models import OutgoingKind, OutgoingMessage, OutgoingStatus, SentCopy
from postroom.responses.sanitize import html_to_text

router = Router(tags=["conversations"])

DOWNLOAD_POLICY = "sandbox; default-src 'none'; frame-ancestors 'none'"
CONTENT_ID_PURPOSE = "content-id"  # as in conversations.ingest
MAX_RECIPIENTS = 100


def _storable_line(value: str) -> str:
    # Lone surrogates cannot be encoded for the database; the pattern below says the rest.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("Use text without unpaired surrogate characters.") from None
    return value


# Numbers, booleans and times in request bodies are taken only as JSON gives them (StrictInt,
# StrictBool, _a_string): pydantic's lax mode would read true as the id 1, or a number as a time,
# and act on a member or a moment the client never named.
def _a_string(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("Write the time as text, e.g. 2026-05-01T09:00:00+02:00.")
    return value


# Text that is stored in plain columns: no control characters (PostgreSQL refuses NUL, and a
# label is a single line).
SingleLine = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]*$"), AfterValidator(_storable_line)]
LabelColor = Literal["#6b7280", "#dc2626", "#ea580c", "#ca8a04", "#16a34a", "#0891b2", "#2563eb", "#7c3aed", "#db2777"]


class ViewName(StrEnum):
    INBOX = View.INBOX
    TEAM = View.TEAM
    ASSIGNED = View.ASSIGNED
    MENTIONS = View.MENTIONS
    TASKS = View.TASKS
    SENT = View.SENT
    CLOSED = View.CLOSED
    SNOOZED = View.SNOOZED
    TRASH = View.TRASH
    SPAM = View.SPAM
    LABEL = View.LABEL
    ALL = View.ALL


# --- answers ---------------------------------------------------------------------------------------
class MemberRef(Schema):
    id: int = Field(description="The membership id.")
    name: str
    email: str


class TeamRef(Schema):
    id: int
    name: str


class LabelOut(Schema):
    id: uuid.UUID
    name: str
    color: str
    personal: bool = Field(description="A personal label is yours alone; an organization label is everyone's (admins manage it).")


class LabelPage(Page[LabelOut]):
    """One page of labels (the organization's and your own), by name."""


class ConversationOut(Schema):
    id: uuid.UUID
    subject: str
    snippet: str = Field(description="The start of the latest message you can see.")
    last_activity_at: datetime
    unread: bool
    status: ConversationStatus = Field(description="The team's state: open, closed, trash or spam.")
    place: Place = Field(description="Where it sits for you: inbox, archive, trash, spam, or none (seen through a team inbox only).")
    is_shared: bool
    snoozed_until: datetime | None
    following: bool
    assignees: list[MemberRef]
    labels: list[LabelOut] = Field(description="Organization labels and your own personal ones.")
    message_count: int = Field(description="Messages you can see.")
    has_attachments: bool


class ConversationPage(Page[ConversationOut]):
    """One page of conversations, latest activity first."""


class SharesOut(Schema):
    organization: bool = Field(description="Shared with the whole organization.")
    teams: list[TeamRef]
    members: list[MemberRef]


class TimelineEventOut(Schema):
    id: uuid.UUID
    kind: str = Field(description="What happened: shared, unshared, assigned, unassigned, closed, reopened, snoozed, labelled, …")
    actor: MemberRef | None = Field(description="Who did it; null for Postroom itself (a snooze ending, new mail).")
    created_at: datetime
    member: MemberRef | None = Field(None, description="The member it concerned (assigned, shared with, …).")
    team: TeamRef | None = None
    label: LabelOut | None = None
    organization: bool = Field(False, description="It concerned the whole organization (shared with it, or unshared).")
    until: datetime | None = Field(None, description="For a snooze: until when.")


class ConversationDetailOut(ConversationOut):
    shares: SharesOut
    timeline: list[TimelineEventOut] = Field(description="Everything done to the conversation, oldest first.")


class ActionOut(Schema):
    changed: bool = Field(description="Whether the action changed anything (false when it was already so).")
    conversation: ConversationOut | None = Field(description="The conversation afterwards; null when the action took it out of your sight.")


class AddressOut(Schema):
    name: str
    address: str


class AttachmentOut(Schema):
    id: uuid.UUID
    filename: str
    content_type: str = Field(description="As the sender declared it; the download is always application/octet-stream.")
    size: int
    is_inline: bool
    download_url: str = Field(description="The API path that downloads it (with the same credentials).")


class MessageOut(Schema):
    model_config = ConfigDict(populate_by_name=True)  # "from" is a Python keyword: the field is from_

    id: uuid.UUID
    conversation_id: uuid.UUID
    direction: Direction
    subject: str
    sent_at: datetime | None
    from_: list[AddressOut] = Field(alias="from")
    to: list[AddressOut]
    cc: list[AddressOut]
    reply_to: list[AddressOut]
    text: str = Field(description="The plain-text body (empty when the message has only HTML).")
    html: str | None = Field(
        description="The HTML body, sanitised, with remote content (images, CSS, fonts) removed; null without one. "
        "Show it only in an isolated frame (sandbox without scripts) under a strict Content-Security-Policy."
    )
    remote_content_blocked: int = Field(description="Remote references removed from the HTML.")
    trackers_removed: int = Field(description="Tracking pixels removed from the HTML.")
    quarantine_reason: str = Field(description="Why the message could not be read (kept raw); empty for a normal message.")
    attachments: list[AttachmentOut]


class MessagePage(Page[MessageOut]):
    """One page of a conversation's messages, oldest first."""


class OutgoingOut(Schema):
    id: uuid.UUID
    kind: OutgoingKind
    status: OutgoingStatus
    mailbox_id: uuid.UUID
    conversation_id: uuid.UUID | None
    attempts: int
    next_attempt_at: datetime | None
    last_error: str = Field(description="What the server answered to the last failed attempt; empty otherwise.")
    sent_at: datetime | None
    sent_copy: SentCopy
    created_at: datetime


# --- request bodies --------------------------------------------------------------------------------
class SnoozeIn(Input):
    until: Annotated[AwareDatetime, BeforeValidator(_a_string)] = Field(
        description="When it comes back to your inbox, with a time zone; in the future."
    )

    @field_validator("until")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        try:
            return value.astimezone(UTC)
        except OverflowError:  # 9999-12-31T23:00-05:00 is in the year 10000 in UTC
            raise ValueError("Choose a time before the year 9999.") from None


class AssigneeIn(Input):
    membership_id: StrictInt = Field(description="The member to (un)assign.")


class ShareIn(Input):
    """Exactly one of ``team_id``, ``membership_id`` and ``organization: true`` (checked after the
    ids, so that an id that is not the caller's is a 404 whatever else the body holds)."""

    team_id: StrictInt | None = None
    membership_id: StrictInt | None = None
    organization: StrictBool = False


class LabelRefIn(Input):
    label_id: uuid.UUID


class LabelIn(Input):
    name: SingleLine = Field(min_length=1, max_length=60)
    color: LabelColor = "#6b7280"
    personal: StrictBool = Field(description="True: a label of your own. False: an organization label (admins only).")


class LabelPatch(Input):
    name: SingleLine | None = Field(None, min_length=1, max_length=60, description="Leave out to keep the name.")
    color: LabelColor | None = Field(None, description="Leave out to keep the colour.")


class AddressIn(Input):
    name: str = Field("", max_length=200, description="Display name (optional).")
    address: str = Field(min_length=3, max_length=254)


class ReplyKind(StrEnum):
    REPLY = OutgoingKind.REPLY
    REPLY_ALL = OutgoingKind.REPLY_ALL
    FORWARD = OutgoingKind.FORWARD


class NewMessageIn(Input):
    mailbox_id: uuid.UUID = Field(
        description="One of your own mailboxes, or the team mailbox of a team you are a member of (not an observer): the message "
        "is sent from its address."
    )
    to: list[AddressIn] = Field(default_factory=list, max_length=MAX_RECIPIENTS)
    cc: list[AddressIn] = Field(default_factory=list, max_length=MAX_RECIPIENTS)
    bcc: list[AddressIn] = Field(default_factory=list, max_length=MAX_RECIPIENTS)
    subject: str = Field("", max_length=998)
    text: str = Field("", max_length=1_000_000)
    html: str | None = Field(
        None, max_length=1_000_000,
        description="An HTML alternative (optional). Sanitised before sending: scripts, forms, event handlers and remote images are "
        "removed. Without text, the text alternative is derived from it.",
    )  # fmt: skip


class ReplyIn(NewMessageIn):
    kind: ReplyKind = Field(
        ReplyKind.REPLY,
        description="reply: to the sender of the latest message; reply_all: and its other recipients; forward: the latest message "
        'attached. Without recipients, a reply goes where the latest message says; an empty subject becomes "Re: …"/"Fwd: …".',
    )


# --- building answers ------------------------------------------------------------------------------
def _member_ref(membership: Membership) -> MemberRef:
    return MemberRef(id=membership.pk, name=membership.user.display_name, email=membership.user.email)


def _label_out(label: Label) -> LabelOut:
    return LabelOut(id=label.pk, name=label.name, color=label.color, personal=label.owner_id is not None)


def _conversation_fields(row: ConversationMember) -> dict[str, Any]:
    """The list item's fields, from a row of ``selectors.rows_with_summary``."""
    conversation = row.conversation
    last_message = getattr(row, "last_message", None)
    return {
        "id": conversation.pk,
        "subject": conversation.subject or "",
        "snippet": (last_message.snippet or "") if last_message is not None else "",
        "last_activity_at": row.last_activity_at,
        "unread": row.unread,
        "status": ConversationStatus(conversation.status),
        "place": Place(row.place),
        "is_shared": conversation.is_shared,
        "snoozed_until": row.snoozed_until,
        "following": row.following,
        "assignees": [_member_ref(assignment.membership) for assignment in conversation.assignments.all()],
        "labels": [_label_out(label_row.label) for label_row in conversation.label_rows.all()],
        "message_count": getattr(row, "visible_messages", 0),
        "has_attachments": bool(getattr(row, "with_attachments", False)),
    }


def _conversation_out(row: ConversationMember) -> ConversationOut:
    return ConversationOut(**_conversation_fields(row))


def _shares_out(conversation: Conversation, shares: list[ConversationShare]) -> SharesOut:
    return SharesOut(
        organization=conversation.shared_with_organization,
        teams=[TeamRef(id=share.team.pk, name=share.team.name) for share in shares if share.team is not None],
        members=[_member_ref(share.membership) for share in shares if share.membership is not None],
    )


def _timeline_out(event: TimelineEvent, refs: selectors.TimelineRefs) -> TimelineEventOut:
    details = event.details if isinstance(event.details, dict) else {}
    member = refs.members.get(details.get("membership_id"))  # type: ignore[arg-type]
    team = refs.teams.get(details.get("team_id"))  # type: ignore[arg-type]
    label = refs.labels.get(str(details.get("label_id")))
    until = None
    if isinstance(details.get("until"), str):
        try:
            until = datetime.fromisoformat(details["until"])
        except ValueError:
            until = None
    return TimelineEventOut(
        id=event.pk,
        kind=event.kind,
        actor=_member_ref(event.actor) if event.actor is not None else None,
        created_at=event.created_at,
        member=_member_ref(member) if member is not None else None,
        team=TeamRef(id=team.pk, name=team.name) if team is not None else None,
        label=_label_out(label) if label is not None else None,
        organization=details.get("organization") is True,
        until=until,
    )


def _conversation_detail_out(actor: Membership, conversation: Conversation) -> ConversationDetailOut:
    row = selectors.conversation_summary_row(actor=actor, conversation=conversation)
    events = list(selectors.conversation_timeline(conversation=conversation))
    refs = selectors.timeline_refs(actor=actor, events=events)
    return ConversationDetailOut(
        **_conversation_fields(row),
        shares=_shares_out(row.conversation, selectors.conversation_shares(conversation=conversation)),
        timeline=[_timeline_out(event, refs) for event in events],
    )


def _addresses(pairs: Any) -> list[AddressOut]:
    found = []
    for pair in pairs if isinstance(pairs, list) else []:
        if isinstance(pair, list | tuple) and len(pair) == 2 and pair[1]:
            found.append(AddressOut(name=str(pair[0] or ""), address=str(pair[1])))
    return found


def _download_url(actor: Membership, attachment: Attachment) -> str:
    return reverse("api:attachment_download", kwargs={"slug": actor.organization.slug, "attachment_id": attachment.pk})


def _message_out(actor: Membership, message: Message) -> MessageOut:
    attachments = list(message.attachments.all())  # prefetched by the selectors
    html = None
    remote_blocked = trackers_removed = 0
    if message.html_body:
        scope = message.key_scope()
        by_content_id = {attachment.content_id: attachment for attachment in attachments if attachment.content_id}

        def inline(content_id: str) -> str | None:
            attachment = by_content_id.get(keyring().blind_index(scope, CONTENT_ID_PURPOSE, content_id))
            return _download_url(actor, attachment) if attachment is not None else None

        sanitized = sanitize_html(message.html_body, allow_remote=False, inline=inline)
        html, remote_blocked, trackers_removed = sanitized.html, sanitized.remote_blocked, sanitized.trackers_removed
    addresses = message.addresses if isinstance(message.addresses, dict) else {}
    sender: dict[str, Any] = {"from": _addresses(addresses.get("from"))}
    return MessageOut(
        id=message.pk,
        conversation_id=message.conversation_id,
        direction=Direction(message.direction),
        subject=message.subject or "",
        sent_at=message.sent_at,
        **sender,
        to=_addresses(addresses.get("to")),
        cc=_addresses(addresses.get("cc")),
        reply_to=_addresses(addresses.get("reply_to")),
        text=message.text_body or "",
        html=html,
        remote_content_blocked=remote_blocked,
        trackers_removed=trackers_removed,
        quarantine_reason=message.quarantine_reason,
        attachments=[
            AttachmentOut(
                id=attachment.pk,
                filename=safe_filename(attachment.filename, attachment.content_type),
                content_type=attachment.content_type,
                size=attachment.size,
                is_inline=attachment.is_inline,
                download_url=_download_url(actor, attachment),
            )
            for attachment in attachments
        ],
    )


def _outgoing_out(outgoing: OutgoingMessage) -> OutgoingOut:
    return OutgoingOut(
        id=outgoing.pk,
        kind=OutgoingKind(outgoing.kind),
        status=OutgoingStatus(outgoing.status),
        mailbox_id=outgoing.mailbox_id,
        conversation_id=outgoing.conversation_id,
        attempts=outgoing.attempts,
        next_attempt_at=outgoing.next_attempt_at,
        last_error=outgoing.last_error,
        sent_at=outgoing.sent_at,
        sent_copy=SentCopy(outgoing.sent_copy),
        created_at=outgoing.created_at,
    )


# --- conversations ---------------------------------------------------------------------------------
def _listed_rows(
    actor: Membership, *, view: ViewName, team_id: int | None, label_id: uuid.UUID | None, assignee_id: int | None, unread: bool | None
) -> QuerySet[ConversationMember]:
    """The rows of a view, narrowed by the filters; every id checked against the actor (404)."""
    if view == ViewName.TEAM and team_id is None:
        raise ValidationError({"team_id": "The team view needs a team_id (a team you belong to)."})
    if view == ViewName.LABEL and label_id is None:
        raise ValidationError({"label_id": "The label view needs a label_id."})
    team = selectors.team_get(actor=actor, team_id=team_id) if team_id is not None else None
    label = selectors.label_get(actor=actor, label_id=label_id) if label_id is not None else None
    assignee = selectors.member_get(actor=actor, membership_id=assignee_id) if assignee_id is not None else None
    selected = ViewFilter(
        view.value,
        team=team if view == ViewName.TEAM else None,
        label=label if view == ViewName.LABEL else None,
        assignee=assignee if view == ViewName.TASKS else None,
    )
    rows = selectors.view_rows(actor=actor, selected=selected)
    return selectors.view_rows_narrowed(
        rows,
        team=team if view != ViewName.TEAM else None,
        label=label if view != ViewName.LABEL else None,
        assignee=assignee if view != ViewName.TASKS else None,
        unread=unread,
    )


@router.get("/orgs/{slug}/conversations", response={200: ConversationPage, **ERRORS}, summary="List conversations of a view")
def conversation_list(
    request: HttpRequest,
    slug: str,
    page: Query[PageParams],
    view: Query[ViewName] = ViewName.INBOX,
    team_id: Query[int | None] = None,
    label_id: Query[uuid.UUID | None] = None,
    assignee_id: Query[int | None] = None,
    unread: Query[bool | None] = None,
) -> ConversationPage:
    """The views of the web app: `inbox`, `team` (needs `team_id`), `assigned` (to you),
    `mentions`, `tasks` (every open assigned conversation you can see), `sent`, `closed`,
    `snoozed`, `trash`, `spam`, `label` (needs `label_id`) and `all`. On any other view,
    `team_id` keeps the conversations shared with that team, `label_id` those with that label,
    `assignee_id` those assigned to that member; `unread` keeps unread (true) or read (false)
    ones. Keep the filters the same while following `next`."""
    actor = membership_get(user=request.user, slug=slug)
    rows = _listed_rows(actor, view=view, team_id=team_id, label_id=label_id, assignee_id=assignee_id, unread=unread)
    paged = paginate(
        selectors.rows_with_summary(actor=actor, rows=rows),
        order=("-last_activity_at", "-conversation_id"),
        params=page,
        key=f"conversations:{actor.pk}",
    )
    items = selectors.attach_last_messages(paged.items)
    return ConversationPage(items=[_conversation_out(row) for row in items], next=paged.next)


@router.get(
    "/orgs/{slug}/conversations/{uuid:conversation_id}",
    response={200: ConversationDetailOut, **ERRORS},
    summary="One conversation, with its shares and timeline",
)
def conversation_detail(request: HttpRequest, slug: str, conversation_id: uuid.UUID) -> ConversationDetailOut:
    actor = membership_get(user=request.user, slug=slug)
    conversation = selectors.conversation_get(actor=actor, conversation_id=conversation_id)
    return _conversation_detail_out(actor, conversation)


@router.get(
    "/orgs/{slug}/conversations/{uuid:conversation_id}/messages",
    response={200: MessagePage, **ERRORS},
    by_alias=True,
    summary="The messages of a conversation that you can see, oldest first",
)
def conversation_message_list(request: HttpRequest, slug: str, conversation_id: uuid.UUID, page: Query[PageParams]) -> MessagePage:
    actor = membership_get(user=request.user, slug=slug)
    conversation = selectors.conversation_get(actor=actor, conversation_id=conversation_id)
    messages = selectors.conversation_messages(actor=actor, conversation=conversation).annotate(sort_at=Coalesce("sent_at", "created_at"))
    paged = paginate(messages, order=("sort_at", "id"), params=page, key=f"messages:{conversation.pk}")
    return MessagePage(items=[_message_out(actor, message) for message in messages_with_bodies(paged.items)], next=paged.next)


@router.get("/orgs/{slug}/messages/{uuid:message_id}", response={200: MessageOut, **ERRORS}, by_alias=True, summary="One message")
def message_detail(request: HttpRequest, slug: str, message_id: uuid.UUID) -> MessageOut:
    actor = membership_get(user=request.user, slug=slug)
    [message] = messages_with_bodies([selectors.message_get(actor=actor, message_id=message_id)])  # parsed now if still pending
    return _message_out(actor, message)


@router.get(
    "/orgs/{slug}/attachments/{uuid:attachment_id}",
    response={200: None, **ERRORS},
    summary="Download an attachment",
    openapi_extra={
        "responses": {
            200: {
                "description": "The attachment's content, always as application/octet-stream.",
                "content": {OPAQUE_CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}}},
            }
        }
    },
)
def attachment_download(request: HttpRequest, slug: str, attachment_id: uuid.UUID) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    attachment = selectors.attachment_get(actor=actor, attachment_id=attachment_id)
    content = blob_get(attachment.key_scope(), attachment.blob)
    actions.attachment_download_record(actor=actor, attachment=attachment, request=request)
    response = HttpResponse(content, content_type=OPAQUE_CONTENT_TYPE)
    response["Content-Disposition"] = content_disposition(attachment.filename or "")
    response["Content-Security-Policy"] = DOWNLOAD_POLICY
    response["X-Content-Type-Options"] = "nosniff"
    return response


# --- actions on a conversation ---------------------------------------------------------------------
def _own_state(actor: Membership, conversation: Conversation) -> tuple[Any, ...]:
    """What a member can see change: their place, read state, snooze and follow, and the team's status."""
    row = ConversationMember.objects.filter(conversation=conversation, membership=actor).values_list(
        "place", "unread", "snoozed_until", "following", "conversation__status"
    )
    return tuple(row.first() or ())


def _acted(actor: Membership, conversation: Conversation, act: Callable[[], object], *, from_state: bool = False) -> ActionOut:
    """Run an action. ``changed`` is the action's own answer (True/False: assign, share, label and
    their undoing say whether there was anything to do), or with ``from_state`` whether the
    actor's place, read state, snooze, follow or the team's status changed (the other actions
    answer a count of server copies moved, or always True, as closing a private conversation)."""
    before = _own_state(actor, conversation) if from_state else ()
    outcome = act()
    changed = _own_state(actor, conversation) != before if from_state else bool(outcome)
    try:
        row = selectors.conversation_summary_row(actor=actor, conversation=conversation)
    except Http404:  # e.g. unshared from the only share that let the actor see it
        return ActionOut(changed=changed, conversation=None)
    return ActionOut(changed=changed, conversation=_conversation_out(row))


# name → (summary, the action). Each takes no body: POST /orgs/{slug}/conversations/{id}/<name>.
SimpleAction = Callable[[Membership, Conversation, HttpRequest], object]
SIMPLE_ACTIONS: dict[str, tuple[str, SimpleAction]] = {
    "read": ("Mark read (your copies too, on your mail server)",
             lambda actor, conversation, request: actions.conversation_mark_read(actor=actor, conversation=conversation, read=True, request=request)),
    "unread": ("Mark unread",
               lambda actor, conversation, request: actions.conversation_mark_read(actor=actor, conversation=conversation, read=False, request=request)),
    "archive": ("Archive (done, for you)",
                lambda actor, conversation, request: actions.conversation_archive(actor=actor, conversation=conversation, request=request)),
    "inbox": ("Move back to your inbox (undoes archive, trash and spam)",
              lambda actor, conversation, request: actions.conversation_move_to_inbox(actor=actor, conversation=conversation, request=request)),
    "trash": ("Move to the trash",
              lambda actor, conversation, request: actions.conversation_trash(actor=actor, conversation=conversation, request=request)),
    "spam": ("Mark as spam",
             lambda actor, conversation, request: actions.conversation_mark_spam(actor=actor, conversation=conversation, request=request)),
    "close": ("Close for the team (a private conversation is archived)",
              lambda actor, conversation, request: actions.conversation_close(actor=actor, conversation=conversation, request=request)),
    "reopen": ("Reopen for the team",
               lambda actor, conversation, request: actions.conversation_reopen(actor=actor, conversation=conversation, request=request)),
    "unsnooze": ("End your snooze now",
                 lambda actor, conversation, request: actions.conversation_unsnooze(actor=actor, conversation=conversation, request=request)),
    "follow": ("Follow (be notified of new messages and comments)",
               lambda actor, conversation, request: actions.conversation_follow(actor=actor, conversation=conversation, following=True)),
    "unfollow": ("Stop following",
                 lambda actor, conversation, request: actions.conversation_follow(actor=actor, conversation=conversation, following=False)),
}  # fmt: skip


def _simple_endpoint(name: str, summary: str, act: SimpleAction) -> None:
    def endpoint(request: HttpRequest, slug: str, conversation_id: uuid.UUID) -> ActionOut:
        actor = membership_get(user=request.user, slug=slug)
        conversation = selectors.conversation_get(actor=actor, conversation_id=conversation_id)
        return _acted(actor, conversation, lambda: act(actor, conversation, request), from_state=True)

    operation = f"conversation_{name}"
    endpoint.__name__ = endpoint.__qualname__ = operation
    router.post(
        f"/orgs/{{slug}}/conversations/{{uuid:conversation_id}}/{name}",
        response={200: ActionOut, **ERRORS},
        summary=summary,
        operation_id=operation,
        url_name=operation,
    )(endpoint)


for _name, (_summary, _act) in SIMPLE_ACTIONS.items():
    _simple_endpoint(_name, _summary, _act)


@router.post(
    "/orgs/{slug}/conversations/{uuid:conversation_id}/snooze",
    response={200: ActionOut, **ERRORS},
    summary="Snooze until a time (out of your inbox until then)",
)
def conversation_snooze(request: HttpRequest, slug: str, conversation_id: uuid.UUID, payload: SnoozeIn) -> ActionOut:
    actor = membership_get(user=request.user, slug=slug)
    conversation = selectors.conversation_get(actor=actor, conversation_id=conversation_id)

    def snooze() -> None:
        try:
            actions.conversation_snooze(actor=actor, conversation=conversation, until=payload.until, request=request)
        except ValidationError as error:
            raise ValidationError({"until": error.messages}) from None

    return _acted(actor, conversation, snooze, from_state=True)


@router.post(
    "/orgs/{slug}/conversations/{uuid:conversation_id}/assign",
    response={200: ActionOut, **ERRORS},
    summary="Assign a member (it moves into their inbox, shared with them if needed)",
)
def conversation_assign(request: HttpRequest, slug: str, conversation_id: uuid.UUID, payload: AssigneeIn) -> ActionOut:
    actor = membership_get(user=request.user, slug=slug)
    conversation = selectors.conversation_get(actor=actor, conversation_id=conversation_id)
    assignee = selectors.member_get(actor=actor, membership_id=payload.membership_id)
    return _acted(
        actor, conversation, lambda: actions.conversation_assign(actor=actor, conversation=conversation, assignee=assignee, request=request)
    )


@router.post("/orgs/{slug}/conversations/{uuid:conversation_id}/unassign", response={200: ActionOut, **ERRORS}, summary="Unassign a member")
def conversation_unassign(request: HttpRequest, slug: str, conversation_id: uuid.UUID, payload: AssigneeIn) -> ActionOut:
    actor = membership_get(user=request.user, slug=slug)
    conversation = selectors.conversation_get(actor=actor, conversation_id=conversation_id)
    assignee = selectors.member_get(actor=actor, membership_id=payload.membership_id)
    return _acted(
        actor,
        conversation,
        lambda: actions.conversation_unassign(actor=actor, conversation=conversation, assignee=assignee, request=request),
    )


def _share_target(actor: Membership, payload: ShareIn) -> dict[str, Any]:
    """The team or member of the actor's organization the body names (404 for anyone else's)."""
    team: Team | None = org_selectors.team_get(actor=actor, team_id=payload.team_id) if payload.team_id is not None else None
    member = selectors.member_get(actor=actor, membership_id=payload.membership_id) if payload.membership_id is not None else None
    if sum((team is not None, member is not None, payload.organization)) != 1:
        raise ValidationError("Give exactly one of team_id, membership_id, or organization: true.")
    return {"team": team, "member": member, "organization": payload.organization}


@router.post(
    "/orgs/{slug}/conversations/{uuid:conversation_id}/share",
    response={200: ActionOut, **ERRORS},
    summary="Share with a team (into its inbox), a member, or the whole organization",
)
def conversation_share(request: HttpRequest, slug: str, conversation_id: uuid.UUID, payload: ShareIn) -> ActionOut:
    actor = membership_get(user=request.user, slug=slug)
    conversation = selectors.conversation_get(actor=actor, conversation_id=conversation_id)
    target = _share_target(actor, payload)
    return _acted(
        actor, conversation, lambda: actions.conversation_share(actor=actor, conversation=conversation, request=request, **target)
    )


@router.post(
    "/orgs/{slug}/conversations/{uuid:conversation_id}/unshare",
    response={200: ActionOut, **ERRORS},
    summary="Withdraw a share (who shared it, a member whose mailbox holds it, or an admin)",
)
def conversation_unshare(request: HttpRequest, slug: str, conversation_id: uuid.UUID, payload: ShareIn) -> ActionOut:
    actor = membership_get(user=request.user, slug=slug)
    conversation = selectors.conversation_get(actor=actor, conversation_id=conversation_id)
    target = _share_target(actor, payload)
    return _acted(
        actor, conversation, lambda: actions.conversation_unshare(actor=actor, conversation=conversation, request=request, **target)
    )


@router.post("/orgs/{slug}/conversations/{uuid:conversation_id}/label", response={200: ActionOut, **ERRORS}, summary="Add a label")
def conversation_label(request: HttpRequest, slug: str, conversation_id: uuid.UUID, payload: LabelRefIn) -> ActionOut:
    actor = membership_get(user=request.user, slug=slug)
    conversation = selectors.conversation_get(actor=actor, conversation_id=conversation_id)
    label = selectors.label_get(actor=actor, label_id=payload.label_id)
    return _acted(
        actor, conversation, lambda: actions.conversation_label(actor=actor, conversation=conversation, label=label, request=request)
    )


@router.post("/orgs/{slug}/conversations/{uuid:conversation_id}/unlabel", response={200: ActionOut, **ERRORS}, summary="Remove a label")
def conversation_unlabel(request: HttpRequest, slug: str, conversation_id: uuid.UUID, payload: LabelRefIn) -> ActionOut:
    actor = membership_get(user=request.user, slug=slug)
    conversation = selectors.conversation_get(actor=actor, conversation_id=conversation_id)
    label = selectors.label_get(actor=actor, label_id=payload.label_id)
    return _acted(
        actor, conversation, lambda: actions.conversation_unlabel(actor=actor, conversation=conversation, label=label, request=request)
    )


# --- labels ----------------------------------------------------------------------------------------
@router.get("/orgs/{slug}/labels", response={200: LabelPage, **ERRORS}, summary="List labels (the organization's and your own)")
def label_list(request: HttpRequest, slug: str, page: Query[PageParams]) -> LabelPage:
    actor = membership_get(user=request.user, slug=slug)
    paged = paginate(selectors.labels_visible(actor=actor), order=("name", "id"), params=page, key="labels")
    return LabelPage(items=[_label_out(label) for label in paged.items], next=paged.next)


@router.post("/orgs/{slug}/labels", response={201: LabelOut, **ERRORS}, summary="Create a label (organization labels: admins)")
def label_create(request: HttpRequest, slug: str, payload: LabelIn) -> Status[LabelOut]:
    actor = membership_get(user=request.user, slug=slug)
    try:
        label = actions.label_create(actor=actor, name=payload.name, personal=payload.personal, color=payload.color, request=request)
    except ValidationError as error:
        raise _on_label_field(error) from None
    return Status(201, _label_out(label))


@router.get("/orgs/{slug}/labels/{uuid:label_id}", response={200: LabelOut, **ERRORS}, summary="One label")
def label_detail(request: HttpRequest, slug: str, label_id: uuid.UUID) -> LabelOut:
    actor = membership_get(user=request.user, slug=slug)
    return _label_out(selectors.label_get(actor=actor, label_id=label_id))


@router.patch(
    "/orgs/{slug}/labels/{uuid:label_id}",
    response={200: LabelOut, **ERRORS},
    summary="Rename or recolour a label (organization labels: admins)",
)
def label_update(request: HttpRequest, slug: str, label_id: uuid.UUID, payload: LabelPatch) -> LabelOut:
    actor = membership_get(user=request.user, slug=slug)
    label = selectors.label_get(actor=actor, label_id=label_id)
    try:
        label = actions.label_update(
            actor=actor, label=label, name=payload.name if payload.name is not None else label.name,
            color=payload.color if payload.color is not None else label.color, request=request,
        )  # fmt: skip
    except ValidationError as error:
        raise _on_label_field(error) from None
    return _label_out(label)


@router.delete(
    "/orgs/{slug}/labels/{uuid:label_id}", response={204: None, **ERRORS}, summary="Delete a label (organization labels: admins)"
)
def label_delete(request: HttpRequest, slug: str, label_id: uuid.UUID) -> Status[None]:
    actor = membership_get(user=request.user, slug=slug)
    label = selectors.label_get(actor=actor, label_id=label_id)
    actions.label_delete(actor=actor, label=label, request=request)
    return Status(204, None)


def _on_label_field(error: ValidationError) -> ValidationError:
    """The label actions' messages are about the name or the colour: say which."""
    if hasattr(error, "error_dict"):
        return error
    return ValidationError({"color" if "colour" in " ".join(error.messages) else "name": error.messages})


# --- sending ---------------------------------------------------------------------------------------
def _pairs(addresses: list[AddressIn]) -> list[tuple[str, str]]:
    return [(address.name, address.address) for address in addresses]


def _bodies(payload: NewMessageIn) -> tuple[str, str | None]:
    """The text and the sanitised HTML alternative (R27: what we send is held to the same
    allowlist as what we show)."""
    if payload.html is None or not payload.html.strip():
        return payload.text, None
    html = sanitize_html(payload.html).html
    return (payload.text or html_to_text(html)), html


def _send(
    request: HttpRequest, actor: Membership, payload: NewMessageIn, *, kind: str, conversation: Conversation | None,
    files: list[UploadedFile] | None = None,
) -> Status[OutgoingOut]:  # fmt: skip
    mailbox = outbox_selectors.sending_mailbox_get(actor=actor, mailbox_id=payload.mailbox_id)
    if files and len(files) > outbox_actions.MAX_ATTACHMENT_FILES:
        raise ValidationError({"attachments": [f"Attach at most {outbox_actions.MAX_ATTACHMENT_FILES} files."]})
    # In memory already (the upload handler refuses more than the limit); read once, here.
    attachments = [
        OutgoingAttachment(
            filename=upload.name or "attachment", content_type=upload.content_type or "application/octet-stream", content=upload.read()
        )
        for upload in files or []
    ]
    text, html = _bodies(payload)
    outgoing = outbox_actions.outgoing_create(
        actor=actor, mailbox=mailbox, kind=kind, conversation=conversation,
        to=_pairs(payload.to), cc=_pairs(payload.cc), bcc=_pairs(payload.bcc), subject=payload.subject, text=text, html=html,
        attachments=attachments, request=request,
    )  # fmt: skip
    return Status(202, _outgoing_out(outgoing))


def _parsed(schema: type[NewMessageIn], message: str | None) -> NewMessageIn:
    """The ``message`` field of a multipart send: the same JSON as the JSON endpoint's body."""
    if message is None:
        raise NinjaValidationError([{"loc": ("form", "message"), "msg": "Send the message as JSON in the multipart field message."}])
    try:
        return schema.model_validate_json(message)
    except PydanticValidationError as error:
        raise NinjaValidationError(
            [{"loc": ("form", "message", *item["loc"]), "msg": item["msg"]} for item in error.errors(include_url=False)]
        ) from None


@router.post(
    "/orgs/{slug}/messages",
    response={202: OutgoingOut, **ERRORS},
    summary="Send a new message from one of your mailboxes (queued; follow its status)",
)
def message_send(request: HttpRequest, slug: str, payload: NewMessageIn) -> Status[OutgoingOut]:
    actor = membership_get(user=request.user, slug=slug)
    return _send(request, actor, payload, kind=OutgoingKind.NEW, conversation=None)


@router.post(
    "/orgs/{slug}/conversations/{uuid:conversation_id}/messages",
    response={202: OutgoingOut, **ERRORS},
    summary="Reply, reply all or forward in a conversation (queued; follow its status)",
)
def conversation_reply(request: HttpRequest, slug: str, conversation_id: uuid.UUID, payload: ReplyIn) -> Status[OutgoingOut]:
    actor = membership_get(user=request.user, slug=slug)
    selectors.conversation_get(actor=actor, conversation_id=conversation_id)  # one the actor can see
    conversation = outbox_selectors.conversation_get(actor=actor, conversation_id=conversation_id)  # and may answer
    return _send(request, actor, payload, kind=payload.kind.value, conversation=conversation)


MULTIPART = (
    " Multipart: the field message holds the same JSON as the JSON endpoint's body; each file goes in a field named attachments "
    f"(at most {outbox_actions.MAX_ATTACHMENT_FILES}, {outbox_actions.MAX_ATTACHMENTS_BYTES // (1024 * 1024)} MB together)."
)


@router.post(
    "/orgs/{slug}/messages/multipart",
    response={202: OutgoingOut, **ERRORS},
    summary="Send a new message with attachments (multipart; queued; follow its status)",
    description="Like POST /orgs/{slug}/messages, with files." + MULTIPART,
)
def message_send_multipart(
    request: HttpRequest, slug: str, message: Form[str | None] = None, attachments: File[list[UploadedFile] | None] = None
) -> Status[OutgoingOut]:
    # Both optional in the schema, so that access is decided (404) before the input (422).
    actor = membership_get(user=request.user, slug=slug)
    return _send(request, actor, _parsed(NewMessageIn, message), kind=OutgoingKind.NEW, conversation=None, files=attachments)


@router.post(
    "/orgs/{slug}/conversations/{uuid:conversation_id}/messages/multipart",
    response={202: OutgoingOut, **ERRORS},
    summary="Reply, reply all or forward with attachments (multipart; queued; follow its status)",
    description="Like POST /orgs/{slug}/conversations/{conversation_id}/messages, with files." + MULTIPART,
)
def conversation_reply_multipart(
    request: HttpRequest, slug: str, conversation_id: uuid.UUID, message: Form[str | None] = None,
    attachments: File[list[UploadedFile] | None] = None,
) -> Status[OutgoingOut]:  # fmt: skip
    actor = membership_get(user=request.user, slug=slug)
    selectors.conversation_get(actor=actor, conversation_id=conversation_id)
    conversation = outbox_selectors.conversation_get(actor=actor, conversation_id=conversation_id)
    payload = _parsed(ReplyIn, message)
    assert isinstance(payload, ReplyIn)  # noqa: S101 (narrowing for the type checker)
    return _send(request, actor, payload, kind=payload.kind.value, conversation=conversation, files=attachments)


@router.get("/orgs/{slug}/outgoing/{uuid:outgoing_id}", response={200: OutgoingOut, **ERRORS}, summary="A message you sent: its status")
def outgoing_detail(request: HttpRequest, slug: str, outgoing_id: uuid.UUID) -> OutgoingOut:
    actor = membership_get(user=request.user, slug=slug)
    return _outgoing_out(outbox_selectors.outgoing_get(actor=actor, outgoing_id=outgoing_id))
