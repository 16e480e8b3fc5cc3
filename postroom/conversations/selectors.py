"""Reads of conversations, messages and attachments, scoped to the member asking.

A member sees a conversation while a ``ConversationMember`` row says so (``conversations.access``
keeps those rows in step with mailboxes and shares). Inside it they see the messages of their
own mailboxes and, when the conversation reaches them through a share, its shared messages.
Missing, foreign and forbidden all answer 404, so ids reveal nothing about other members' or
organizations' mail.

The views of the inbox (``VIEWS``) are each one range of an index: the member's rows by place
and last activity, or a team's shares, so a page costs the same queries with ten conversations
or a hundred thousand.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.db import connection
from django.db.models import Count, Exists, F, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404
from django.utils import timezone

from postroom.accounts.models import User
from postroom.conversations.models import (
    Assignment,
    Attachment,
    Conversation,
    ConversationLabel,
    ConversationMember,
    ConversationShare,
    ConversationStatus,
    Label,
    Message,
    MessageCopy,
    Place,
    TimelineEvent,
)
from postroom.core.rows import Fetched, Query, Read, Reads, instances, prefetched, rows_joined
from postroom.orgs.models import Membership, Team


def _uuid(value: Any) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise Http404 from None


def _own_copy(actor: Membership, message_field: str = "pk") -> Exists:
    return Exists(MessageCopy.objects.filter(message_id=OuterRef(message_field), mailbox__owner=actor, gone_at__isnull=True))


def _row(actor: Membership, conversation_field: str = "pk") -> QuerySet[ConversationMember]:
    return ConversationMember.objects.filter(conversation_id=OuterRef(conversation_field), membership=actor)


def messages_visible(*, actor: Membership) -> QuerySet[Message]:
    """Messages of the actor's own mailboxes, and shared messages of conversations shared with them."""
    shared_with_actor = Exists(_row(actor, "conversation_id").filter(via_share=True))
    return Message.objects.filter(organization_id=actor.organization_id).filter(_own_copy(actor) | (Q(shared=True) & shared_with_actor))


def conversations_visible(*, actor: Membership) -> QuerySet[Conversation]:
    return Conversation.objects.filter(organization_id=actor.organization_id, members__membership=actor).order_by("-last_message_at")


def conversation_get(*, actor: Membership, conversation_id: Any) -> Conversation:
    conversation = conversations_visible(actor=actor).filter(pk=_uuid(conversation_id)).first()
    if conversation is None:
        raise Http404
    return conversation


def conversation_row_get(*, actor: Membership, conversation_id: Any) -> ConversationMember:
    """The actor's row of a conversation they see, with the conversation (one query; 404
    otherwise, as ``conversation_get``)."""
    parameters = {"conversation": _uuid_parameter(_uuid(conversation_id)), "member": actor.pk, "organization": actor.organization_id}
    found = rows_joined(ConversationMember, [("conversation", Conversation)], _CONVERSATION_ROW_SQL, parameters)
    if not found:
        raise Http404
    return found[0]


# ``conversation_row_get``'s query as a constant text (every conversation page opens with it);
# ``test_conversation_row_matches_the_orm`` compares it with the ORM's.
_CONVERSATION_ROW_SQL = """
SELECT m.*, c.* FROM conversations_conversationmember m INNER JOIN conversations_conversation c ON c.id = m.conversation_id
WHERE m.conversation_id = %(conversation)s AND m.membership_id = %(member)s AND c.organization_id = %(organization)s
"""


def conversation_member_row(*, actor: Membership, conversation: Conversation) -> ConversationMember:
    row = ConversationMember.objects.filter(conversation=conversation, membership=actor).first()
    if row is None:
        raise Http404
    return row


def conversation_messages(*, actor: Membership, conversation: Conversation) -> QuerySet[Message]:
    return messages_visible(actor=actor).filter(conversation=conversation).prefetch_related("attachments").order_by("sent_at", "created_at")


# The messages of one conversation that the member sees, as ``messages_visible`` decides (a copy
# in one of their own mailboxes, or a shared message of a conversation shared with them), in the
# order of ``conversation_messages``: a constant text with parameters (SECURITY.md R58) instead of
# the query Django builds and compiles with two subqueries on every conversation page (issue #4);
# ``test_thread_messages_are_the_visible_ones`` compares it with ``conversation_messages``.
_THREAD_MESSAGES_SQL = """
SELECT m.* FROM conversations_message m
WHERE m.organization_id = %(organization)s AND m.conversation_id = %(conversation)s
  AND (EXISTS (SELECT 1 FROM conversations_messagecopy k INNER JOIN mailboxes_mailbox b ON b.id = k.mailbox_id
               WHERE k.message_id = m.id AND k.gone_at IS NULL AND b.owner_id = %(member)s)
       OR (m.shared AND EXISTS (SELECT 1 FROM conversations_conversationmember r
                                WHERE r.conversation_id = m.conversation_id AND r.membership_id = %(member)s AND r.via_share)))
ORDER BY m.sent_at, m.created_at
"""


def _conversation_parameter(conversation: Conversation) -> Any:
    return Message._meta.get_field("conversation").target_field.get_db_prep_value(conversation.pk, connection)


def thread_read(*, actor: Membership, conversation: Conversation) -> Read[list[Message]]:
    """``conversation_messages`` with their attachments, for the conversation page: the messages,
    then the attachments of every message of the conversation (those the member sees are kept)."""
    parameters = {"organization": actor.organization_id, "member": actor.pk, "conversation": _conversation_parameter(conversation)}

    def build(fetched: list[Fetched]) -> list[Message]:
        messages = instances(Message, fetched[0])
        by_message: dict[uuid.UUID, list[Attachment]] = {message.pk: [] for message in messages}
        for attachment in instances(Attachment, fetched[1]):
            if attachment.message_id in by_message:  # the attachments of messages the member sees
                by_message[attachment.message_id].append(attachment)
        for message in messages:
            for attachment in by_message[message.pk]:
                attachment.message = message
            prefetched(message, "attachments", by_message[message.pk])
        return messages

    return Read(((_THREAD_MESSAGES_SQL, parameters), (_THREAD_ATTACHMENTS_SQL, parameters)), build)


# The attachments of every message of the conversation, in the order they were stored (uuid7 ids);
# ``thread_read`` keeps those of the messages the member sees. ``test_thread_attachments_match_the_orm``.
_THREAD_ATTACHMENTS_SQL = """
SELECT a.* FROM conversations_attachment a INNER JOIN conversations_message m ON m.id = a.message_id
WHERE m.organization_id = %(organization)s AND m.conversation_id = %(conversation)s
ORDER BY a.id
"""


def conversation_has_unread(*, actor: Membership, conversation: Conversation) -> bool:
    return ConversationMember.objects.filter(conversation=conversation, membership=actor, unread=True).exists()


def message_get(*, actor: Membership, message_id: Any) -> Message:
    message = messages_visible(actor=actor).filter(pk=_uuid(message_id)).first()
    if message is None:
        raise Http404
    return message


def attachment_get(*, actor: Membership, attachment_id: Any) -> Attachment:
    visible = messages_visible(actor=actor).filter(pk=OuterRef("message_id"))
    attachment = (
        Attachment.objects.filter(organization_id=actor.organization_id, pk=_uuid(attachment_id))
        .filter(Exists(visible))
        .select_related("message")
        .first()
    )
    if attachment is None:
        raise Http404
    return attachment


# Views of the inbox ------------------------------------------------------------------------------


class View:
    INBOX = "inbox"
    TEAM = "team"
    ASSIGNED = "assigned"
    MENTIONS = "mentions"
    TASKS = "tasks"
    SENT = "sent"
    CLOSED = "closed"
    SNOOZED = "snoozed"
    TRASH = "trash"
    SPAM = "spam"
    LABEL = "label"
    ALL = "all"


VIEW_TITLES = {
    View.INBOX: "Inbox", View.ASSIGNED: "Assigned to me", View.MENTIONS: "Mentions", View.TASKS: "Tasks",
    View.SENT: "Sent", View.CLOSED: "Closed & archived", View.SNOOZED: "Snoozed", View.TRASH: "Trash", View.SPAM: "Spam",
    View.ALL: "All mail",
}  # fmt: skip
# Views a count is shown beside (unread ones for inboxes, all for work lists).
COUNTED_VIEWS = (View.INBOX, View.ASSIGNED, View.MENTIONS, View.TASKS)


@dataclass(frozen=True)
class ViewFilter:
    view: str
    team: Team | None = None
    label: Label | None = None
    assignee: Membership | None = None


def _not_binned() -> Q:
    return ~Q(conversation__status__in=[ConversationStatus.TRASH, ConversationStatus.SPAM])


def _live(queryset: QuerySet[ConversationMember]) -> QuerySet[ConversationMember]:
    return queryset.filter(_not_binned()).exclude(place__in=[Place.TRASH, Place.SPAM])


def view_rows(*, actor: Membership, selected: ViewFilter) -> QuerySet[ConversationMember]:
    """The actor's ``ConversationMember`` rows in a view, newest activity first."""
    rows = ConversationMember.objects.filter(membership=actor)
    view = selected.view
    now = timezone.now()
    if view == View.INBOX:
        rows = _live(rows.filter(place=Place.INBOX)).filter(Q(snoozed_until__isnull=True) | Q(snoozed_until__lte=now))
        rows = rows.exclude(conversation__status=ConversationStatus.CLOSED)
    elif view == View.TEAM:
        if selected.team is None:
            raise Http404
        shared = ConversationShare.objects.filter(conversation_id=OuterRef("conversation_id"), team=selected.team)
        rows = rows.filter(Exists(shared), conversation__status=ConversationStatus.OPEN)
    elif view == View.ASSIGNED:
        rows = rows.filter(Exists(Assignment.objects.filter(conversation_id=OuterRef("conversation_id"), membership=actor)))
        rows = rows.filter(conversation__status=ConversationStatus.OPEN)
    elif view == View.MENTIONS:
        rows = _live(rows.filter(mentioned_at__isnull=False))
    elif view == View.TASKS:
        assignments = Assignment.objects.filter(conversation_id=OuterRef("conversation_id"))
        if selected.assignee is not None:
            assignments = assignments.filter(membership=selected.assignee)
        rows = rows.filter(Exists(assignments), conversation__status=ConversationStatus.OPEN)
    elif view == View.SENT:
        sent = MessageCopy.objects.filter(
            message__conversation_id=OuterRef("conversation_id"), mailbox__owner=actor, folder__role="sent", gone_at__isnull=True
        )
        rows = rows.filter(Exists(sent))
    elif view == View.CLOSED:
        rows = _live(rows.filter(Q(place=Place.ARCHIVE) | Q(conversation__status=ConversationStatus.CLOSED)))
    elif view == View.SNOOZED:
        rows = _live(rows.filter(snoozed_until__gt=now))
    elif view == View.TRASH:
        rows = rows.filter(Q(place=Place.TRASH) | Q(conversation__status=ConversationStatus.TRASH))
    elif view == View.SPAM:
        rows = rows.filter(Q(place=Place.SPAM) | Q(conversation__status=ConversationStatus.SPAM))
    elif view == View.LABEL:
        if selected.label is None:
            raise Http404
        labelled = ConversationLabel.objects.filter(conversation_id=OuterRef("conversation_id"), label=selected.label)
        rows = _live(rows.filter(Exists(labelled)))
    elif view == View.ALL:
        rows = _live(rows)
    else:
        raise Http404
    return rows.order_by("-last_activity_at", "-conversation_id")


# Pages of a view as constant SQL ------------------------------------------------------------------
#
# A list page is the most requested page of the inbox (issue #4). Built with the ORM, its queries
# cost more Python to build and compile than the database spent running them, and its rows were
# model instances made to be read once. Here each view is one constant text with ``%(name)s``
# parameters (SECURITY.md R58: nothing in a text comes from a value), the rows are tuples, and
# what the rows show of their messages, labels and assignees is one constant query each for the
# whole page. Each text is ``view_rows``'s filter written out, with the same order and limit, so
# PostgreSQL walks the member's index and stops as it did for the ORM's query;
# ``test_page_rows_match_the_orm`` compares every view, first and later pages, with ``view_rows``.
#
# A page after the first passes the last row shown (``before``: its time and conversation id);
# the first page passes the greatest time and id there are (``_FIRST_PAGE``), which every stored
# row is before, so one text serves both. The columns are ``PageRow``'s, in its order.
_PAGE_SQL = {
    View.INBOX: """
SELECT m.conversation_id, m.last_activity_at, m.unread, m.place, m.snoozed_until, c.organization_id, c.subject_sealed, c.status, c.is_shared
FROM conversations_conversationmember m INNER JOIN conversations_conversation c ON c.id = m.conversation_id
WHERE m.membership_id = %(member)s AND m.last_activity_at <= %(before_at)s AND (m.last_activity_at < %(before_at)s OR m.conversation_id < %(before_id)s)
  AND m.place = 'inbox' AND c.status NOT IN ('trash', 'spam', 'closed') AND (m.snoozed_until IS NULL OR m.snoozed_until <= %(now)s)
ORDER BY m.last_activity_at DESC, m.conversation_id DESC LIMIT %(limit)s
""",
    View.TEAM: """
SELECT m.conversation_id, m.last_activity_at, m.unread, m.place, m.snoozed_until, c.organization_id, c.subject_sealed, c.status, c.is_shared
FROM conversations_conversationmember m INNER JOIN conversations_conversation c ON c.id = m.conversation_id
WHERE m.membership_id = %(member)s AND m.last_activity_at <= %(before_at)s AND (m.last_activity_at < %(before_at)s OR m.conversation_id < %(before_id)s)
  AND c.status = 'open'
  AND EXISTS (SELECT 1 FROM conversations_conversationshare s WHERE s.conversation_id = m.conversation_id AND s.team_id = %(team)s)
ORDER BY m.last_activity_at DESC, m.conversation_id DESC LIMIT %(limit)s
""",
    View.ASSIGNED: """
SELECT m.conversation_id, m.last_activity_at, m.unread, m.place, m.snoozed_until, c.organization_id, c.subject_sealed, c.status, c.is_shared
FROM conversations_conversationmember m INNER JOIN conversations_conversation c ON c.id = m.conversation_id
WHERE m.membership_id = %(member)s AND m.last_activity_at <= %(before_at)s AND (m.last_activity_at < %(before_at)s OR m.conversation_id < %(before_id)s)
  AND c.status = 'open'
  AND EXISTS (SELECT 1 FROM conversations_assignment a WHERE a.conversation_id = m.conversation_id AND a.membership_id = %(member)s)
ORDER BY m.last_activity_at DESC, m.conversation_id DESC LIMIT %(limit)s
""",
    View.MENTIONS: """
SELECT m.conversation_id, m.last_activity_at, m.unread, m.place, m.snoozed_until, c.organization_id, c.subject_sealed, c.status, c.is_shared
FROM conversations_conversationmember m INNER JOIN conversations_conversation c ON c.id = m.conversation_id
WHERE m.membership_id = %(member)s AND m.last_activity_at <= %(before_at)s AND (m.last_activity_at < %(before_at)s OR m.conversation_id < %(before_id)s)
  AND m.mentioned_at IS NOT NULL AND m.place NOT IN ('trash', 'spam') AND c.status NOT IN ('trash', 'spam')
ORDER BY m.last_activity_at DESC, m.conversation_id DESC LIMIT %(limit)s
""",
    View.TASKS: """
SELECT m.conversation_id, m.last_activity_at, m.unread, m.place, m.snoozed_until, c.organization_id, c.subject_sealed, c.status, c.is_shared
FROM conversations_conversationmember m INNER JOIN conversations_conversation c ON c.id = m.conversation_id
WHERE m.membership_id = %(member)s AND m.last_activity_at <= %(before_at)s AND (m.last_activity_at < %(before_at)s OR m.conversation_id < %(before_id)s)
  AND c.status = 'open'
  AND EXISTS (SELECT 1 FROM conversations_assignment a WHERE a.conversation_id = m.conversation_id)
ORDER BY m.last_activity_at DESC, m.conversation_id DESC LIMIT %(limit)s
""",
    # Tasks of one assignee (``?assignee=``).
    f"{View.TASKS}:assignee": """
SELECT m.conversation_id, m.last_activity_at, m.unread, m.place, m.snoozed_until, c.organization_id, c.subject_sealed, c.status, c.is_shared
FROM conversations_conversationmember m INNER JOIN conversations_conversation c ON c.id = m.conversation_id
WHERE m.membership_id = %(member)s AND m.last_activity_at <= %(before_at)s AND (m.last_activity_at < %(before_at)s OR m.conversation_id < %(before_id)s)
  AND c.status = 'open'
  AND EXISTS (SELECT 1 FROM conversations_assignment a WHERE a.conversation_id = m.conversation_id AND a.membership_id = %(assignee)s)
ORDER BY m.last_activity_at DESC, m.conversation_id DESC LIMIT %(limit)s
""",
    View.SENT: """
SELECT m.conversation_id, m.last_activity_at, m.unread, m.place, m.snoozed_until, c.organization_id, c.subject_sealed, c.status, c.is_shared
FROM conversations_conversationmember m INNER JOIN conversations_conversation c ON c.id = m.conversation_id
WHERE m.membership_id = %(member)s AND m.last_activity_at <= %(before_at)s AND (m.last_activity_at < %(before_at)s OR m.conversation_id < %(before_id)s)
  AND EXISTS (SELECT 1 FROM conversations_messagecopy k INNER JOIN conversations_message g ON g.id = k.message_id
              INNER JOIN mailboxes_mailbox b ON b.id = k.mailbox_id INNER JOIN mailboxes_folder f ON f.id = k.folder_id
              WHERE g.conversation_id = m.conversation_id AND b.owner_id = %(member)s AND f.role = 'sent' AND k.gone_at IS NULL)
ORDER BY m.last_activity_at DESC, m.conversation_id DESC LIMIT %(limit)s
""",
    View.CLOSED: """
SELECT m.conversation_id, m.last_activity_at, m.unread, m.place, m.snoozed_until, c.organization_id, c.subject_sealed, c.status, c.is_shared
FROM conversations_conversationmember m INNER JOIN conversations_conversation c ON c.id = m.conversation_id
WHERE m.membership_id = %(member)s AND m.last_activity_at <= %(before_at)s AND (m.last_activity_at < %(before_at)s OR m.conversation_id < %(before_id)s)
  AND (m.place = 'archive' OR c.status = 'closed') AND m.place NOT IN ('trash', 'spam') AND c.status NOT IN ('trash', 'spam')
ORDER BY m.last_activity_at DESC, m.conversation_id DESC LIMIT %(limit)s
""",
    View.SNOOZED: """
SELECT m.conversation_id, m.last_activity_at, m.unread, m.place, m.snoozed_until, c.organization_id, c.subject_sealed, c.status, c.is_shared
FROM conversations_conversationmember m INNER JOIN conversations_conversation c ON c.id = m.conversation_id
WHERE m.membership_id = %(member)s AND m.last_activity_at <= %(before_at)s AND (m.last_activity_at < %(before_at)s OR m.conversation_id < %(before_id)s)
  AND m.snoozed_until > %(now)s AND m.place NOT IN ('trash', 'spam') AND c.status NOT IN ('trash', 'spam')
ORDER BY m.last_activity_at DESC, m.conversation_id DESC LIMIT %(limit)s
""",
    View.TRASH: """
SELECT m.conversation_id, m.last_activity_at, m.unread, m.place, m.snoozed_until, c.organization_id, c.subject_sealed, c.status, c.is_shared
FROM conversations_conversationmember m INNER JOIN conversations_conversation c ON c.id = m.conversation_id
WHERE m.membership_id = %(member)s AND m.last_activity_at <= %(before_at)s AND (m.last_activity_at < %(before_at)s OR m.conversation_id < %(before_id)s)
  AND (m.place = 'trash' OR c.status = 'trash')
ORDER BY m.last_activity_at DESC, m.conversation_id DESC LIMIT %(limit)s
""",
    View.SPAM: """
SELECT m.conversation_id, m.last_activity_at, m.unread, m.place, m.snoozed_until, c.organization_id, c.subject_sealed, c.status, c.is_shared
FROM conversations_conversationmember m INNER JOIN conversations_conversation c ON c.id = m.conversation_id
WHERE m.membership_id = %(member)s AND m.last_activity_at <= %(before_at)s AND (m.last_activity_at < %(before_at)s OR m.conversation_id < %(before_id)s)
  AND (m.place = 'spam' OR c.status = 'spam')
ORDER BY m.last_activity_at DESC, m.conversation_id DESC LIMIT %(limit)s
""",
    View.LABEL: """
SELECT m.conversation_id, m.last_activity_at, m.unread, m.place, m.snoozed_until, c.organization_id, c.subject_sealed, c.status, c.is_shared
FROM conversations_conversationmember m INNER JOIN conversations_conversation c ON c.id = m.conversation_id
WHERE m.membership_id = %(member)s AND m.last_activity_at <= %(before_at)s AND (m.last_activity_at < %(before_at)s OR m.conversation_id < %(before_id)s)
  AND m.place NOT IN ('trash', 'spam') AND c.status NOT IN ('trash', 'spam')
  AND EXISTS (SELECT 1 FROM conversations_conversationlabel l WHERE l.conversation_id = m.conversation_id AND l.label_id = %(label)s)
ORDER BY m.last_activity_at DESC, m.conversation_id DESC LIMIT %(limit)s
""",
    View.ALL: """
SELECT m.conversation_id, m.last_activity_at, m.unread, m.place, m.snoozed_until, c.organization_id, c.subject_sealed, c.status, c.is_shared
FROM conversations_conversationmember m INNER JOIN conversations_conversation c ON c.id = m.conversation_id
WHERE m.membership_id = %(member)s AND m.last_activity_at <= %(before_at)s AND (m.last_activity_at < %(before_at)s OR m.conversation_id < %(before_id)s)
  AND m.place NOT IN ('trash', 'spam') AND c.status NOT IN ('trash', 'spam')
ORDER BY m.last_activity_at DESC, m.conversation_id DESC LIMIT %(limit)s
""",
}  # fmt: skip
# Before every row that can be stored: the greatest moment and conversation id there are.
_FIRST_PAGE = (datetime.max.replace(tzinfo=UTC), uuid.UUID(int=(1 << 128) - 1))
# The columns of ``_PAGE_SQL``, as ``_page_rows_orm`` reads them with the ORM.
_PAGE_COLUMNS = ("conversation_id", "last_activity_at", "unread", "place", "snoozed_until", "conversation__organization_id",
                 "conversation__subject_sealed", "conversation__status", "conversation__is_shared")  # fmt: skip


@dataclass(frozen=True)
class RowMessage:
    """What a list row reads of its conversation's latest visible message (sealed)."""

    id: uuid.UUID
    direction: str
    addresses_sealed: bytes | None
    snippet_sealed: bytes | None


@dataclass(frozen=True)
class RowLabel:
    id: uuid.UUID
    name: str
    color: str
    owner_id: int | None


@dataclass(frozen=True)
class RowAssignee:
    membership_id: int
    email: str
    display_name: str  # ``User.display_name``


@dataclass
class PageRow:
    """One row of a list page: the member's row of a conversation and what the list shows of it."""

    conversation_id: uuid.UUID
    last_activity_at: datetime
    unread: bool
    place: str
    snoozed_until: datetime | None
    organization_id: int
    subject_sealed: bytes | None
    status: str
    is_shared: bool
    # From the messages the actor can see (never a teammate's private one):
    last_message: RowMessage | None = None
    visible_messages: int = 0
    with_attachments: bool = False
    labels: list[RowLabel] = field(default_factory=list)  # those the actor can see, by name
    assignees: list[RowAssignee] = field(default_factory=list)  # first assigned first


def _as_uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _as_moment(value: Any) -> datetime | None:
    """A timestamp as the ORM reads it: aware, in UTC (SQLite hands back naive UTC text)."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        value = datetime.fromisoformat(str(value))
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _page_row(found: tuple[Any, ...]) -> PageRow:
    conversation_id, activity, unread, place, snoozed_until, organization_id, subject_sealed, status, is_shared = found
    return PageRow(
        conversation_id=_as_uuid(conversation_id), last_activity_at=_as_moment(activity), unread=bool(unread),  # type: ignore[arg-type]
        place=place, snoozed_until=_as_moment(snoozed_until), organization_id=organization_id,
        subject_sealed=None if subject_sealed is None else bytes(subject_sealed), status=status, is_shared=bool(is_shared),
    )  # fmt: skip


def _uuid_parameter(value: uuid.UUID) -> Any:
    return Conversation._meta.pk.get_db_prep_value(value, connection)


def _page_rows_sql(*, actor: Membership, selected: ViewFilter, limit: int, before: tuple[Any, Any] | None) -> list[PageRow]:
    """A page of a view with its constant text (``_PAGE_SQL``)."""
    key = f"{View.TASKS}:assignee" if selected.view == View.TASKS and selected.assignee is not None else selected.view
    if key not in _PAGE_SQL or (key == View.TEAM and selected.team is None) or (key == View.LABEL and selected.label is None):
        raise Http404
    before_at, before_id = before if before is not None else _FIRST_PAGE
    adapt = connection.ops.adapt_datetimefield_value
    parameters = {
        "member": actor.pk, "limit": limit, "now": adapt(timezone.now()), "before_at": adapt(before_at),
        "before_id": _uuid_parameter(_as_uuid(before_id)),
        "team": selected.team.pk if selected.team is not None else None,
        "label": _uuid_parameter(selected.label.pk) if selected.label is not None else None,
        "assignee": selected.assignee.pk if selected.assignee is not None else None,
    }  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(_PAGE_SQL[key], parameters)
        return [_page_row(found) for found in cursor.fetchall()]


def _page_rows_orm(
    *, actor: Membership, selected: ViewFilter, limit: int, before: tuple[Any, Any] | None = None,
    conversation_ids: list[Any] | None = None,
) -> list[PageRow]:  # fmt: skip
    """The same rows as ``_page_rows_sql``, through ``view_rows``: for rows named by id (a row
    re-drawn after an action), and what the constant texts are tested against."""
    rows = view_rows(actor=actor, selected=selected)
    if before is not None:
        activity, conversation_id = before
        rows = rows.filter(Q(last_activity_at__lt=activity) | Q(last_activity_at=activity, conversation_id__lt=conversation_id))
    if conversation_ids is not None:
        rows = rows.filter(conversation_id__in=conversation_ids)
    return [_page_row(found) for found in rows.values_list(*_PAGE_COLUMNS)[:limit]]


def view_page(
    *, actor: Membership, selected: ViewFilter, limit: int = 50, before: tuple[Any, Any] | None = None,
    conversation_ids: list[Any] | None = None, reads: Reads | None = None,
) -> list[PageRow]:  # fmt: skip
    """One page of a view with everything a list row shows, in a fixed number of queries.

    Each row also carries, from the messages the actor can see (never a teammate's private
    one): ``last_message`` (sender and snippet, sealed), ``visible_messages`` and
    ``with_attachments``; and ``labels`` (those the actor can see, by name) and ``assignees``
    (first assigned first). ``conversation_ids`` limits the page to those conversations (a row
    re-drawn after an action). ``reads``: the page's other reads, sent with the rows' details
    (and run even when the page has no rows).
    """
    if conversation_ids is None:
        page = _page_rows_sql(actor=actor, selected=selected, limit=limit, before=before)
    else:
        page = _page_rows_orm(actor=actor, selected=selected, limit=limit, before=before, conversation_ids=conversation_ids)
    if reads is None:
        reads = Reads()
    details = reads.add(_row_details_read(actor=actor, conversation_ids=[row.conversation_id for row in page])) if page else None
    reads.run()
    if details is None:
        return page
    summaries, labels, assignees = details.value
    for row in page:
        summary = summaries.get(row.conversation_id)
        if summary is not None:
            row.last_message, row.visible_messages, row.with_attachments = summary
        row.labels = labels.get(row.conversation_id, [])
        row.assignees = assignees.get(row.conversation_id, [])
    return page


def _batches(conversation_ids: list[uuid.UUID]) -> Iterator[list[Any]]:
    """The ids as the database takes them, ``_BATCH`` at a time, unused places NULL (matching nothing)."""
    for start in range(0, len(conversation_ids), _BATCH):
        batch = [_uuid_parameter(value) for value in conversation_ids[start : start + _BATCH]]
        yield [*batch, *[None] * (_BATCH - len(batch))]


# The page's queries below take up to 51 conversation ids (a page and one more) in one constant text.
_BATCH = 51

# The messages of the page's conversations that the member sees, as ``messages_visible`` decides —
# a copy in one of their own mailboxes, or a shared message of a conversation shared with them —
# summed up per conversation: the latest (by sending time, then arrival) with what a row shows of
# it, how many, and whether one has attachments. ``test_list_rows_count_only_visible_messages``
# compares it with ``messages_visible``.
_VISIBLE_SUMMARY_SQL = """
SELECT conversation_id, id, direction, addresses_sealed, snippet_sealed, total, attached FROM (
    SELECT v.conversation_id, v.id, v.direction, v.addresses_sealed, v.snippet_sealed,
        ROW_NUMBER() OVER (PARTITION BY v.conversation_id ORDER BY v.sent_at DESC NULLS LAST, v.created_at DESC) AS position,
        COUNT(*) OVER (PARTITION BY v.conversation_id) AS total,
        MAX(CASE WHEN v.has_attachments THEN 1 ELSE 0 END) OVER (PARTITION BY v.conversation_id) AS attached
    FROM conversations_message v
    WHERE v.organization_id = %s
      AND v.conversation_id IN (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
                                %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
      AND (EXISTS (SELECT 1 FROM conversations_messagecopy k INNER JOIN mailboxes_mailbox b ON b.id = k.mailbox_id
                   WHERE k.message_id = v.id AND k.gone_at IS NULL AND b.owner_id = %s)
           OR (v.shared AND EXISTS (SELECT 1 FROM conversations_conversationmember r
                                    WHERE r.conversation_id = v.conversation_id AND r.membership_id = %s AND r.via_share)))
) AS ranked
WHERE position = 1
"""


RowDetails = tuple[
    dict[uuid.UUID, tuple[RowMessage, int, bool]],  # _VISIBLE_SUMMARY_SQL
    dict[uuid.UUID, list[RowLabel]],  # _PAGE_LABELS_SQL
    dict[uuid.UUID, list[RowAssignee]],  # _PAGE_ASSIGNEES_SQL
]


def _row_details_read(*, actor: Membership, conversation_ids: list[uuid.UUID]) -> Read[RowDetails]:
    """Per conversation of ``conversation_ids``: what the actor sees of its messages (the latest
    visible one, how many they see, whether one has attachments), its labels and its assignees;
    three queries per batch of ids."""
    queries: list[Query] = []
    for batch in _batches(conversation_ids):
        queries += [
            (_VISIBLE_SUMMARY_SQL, [actor.organization_id, *batch, actor.pk, actor.pk]),
            (_PAGE_LABELS_SQL, [*batch, actor.organization_id, actor.pk]),
            (_PAGE_ASSIGNEES_SQL, batch),
        ]

    def build(fetched: list[Fetched]) -> RowDetails:
        summaries = {}
        labels: dict[uuid.UUID, list[RowLabel]] = defaultdict(list)
        assignees: dict[uuid.UUID, list[RowAssignee]] = defaultdict(list)
        for start in range(0, len(fetched), 3):
            for conversation_id, message_id, direction, addresses, snippet, total, attached in fetched[start][1]:
                message = RowMessage(_as_uuid(message_id), direction, None if addresses is None else bytes(addresses),
                                     None if snippet is None else bytes(snippet))  # fmt: skip
                summaries[_as_uuid(conversation_id)] = (message, int(total), bool(attached))
            for conversation_id, label_id, name, color, owner_id in fetched[start + 1][1]:
                labels[_as_uuid(conversation_id)].append(RowLabel(_as_uuid(label_id), name, color, owner_id))
            for conversation_id, membership_id, email, name in fetched[start + 2][1]:
                display_name = User(email=email, name=name).display_name
                assignees[_as_uuid(conversation_id)].append(RowAssignee(membership_id, email, display_name))
        return summaries, labels, assignees

    return Read(tuple(queries), build)


# The labels of the page's conversations that the member sees (``labels_visible``: the
# organization's and their own), by name.
_PAGE_LABELS_SQL = """
SELECT r.conversation_id, l.id, l.name, l.color, l.owner_id
FROM conversations_conversationlabel r INNER JOIN conversations_label l ON l.id = r.label_id
WHERE r.conversation_id IN (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
                            %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
  AND l.organization_id = %s AND (l.owner_id IS NULL OR l.owner_id = %s)
ORDER BY l.name, l.id
"""


# The assignees of the page's conversations, first assigned first, with the name a row shows.
_PAGE_ASSIGNEES_SQL = """
SELECT a.conversation_id, a.membership_id, u.email, u.name
FROM conversations_assignment a INNER JOIN orgs_membership p ON p.id = a.membership_id INNER JOIN accounts_user u ON u.id = p.user_id
WHERE a.conversation_id IN (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
                            %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ORDER BY a.created_at, a.id
"""


# The sidebar counts up to this many and then says "99+": a count stops at the hundredth row
# it finds, so it costs the same with a hundred thousand conversations as with a hundred.
COUNT_LIMIT = 99


# The sidebar in one constant query (SECURITY.md R58: parameters only, never text built from
# values): the member's teams and every count beside a view, instead of a team query, six
# Django-built counts and a drafts count, whose building and compiling cost a fifth of a list
# page's CPU (issue #4). Each count is the view's own filter (``view_rows``, with ``unread`` for
# the inboxes) walking the member's rows newest first and stopping at ``COUNT_LIMIT + 1``; the
# order makes PostgreSQL walk the member's index (the unread counts: the ``member_unread``
# partial index) and stop, where a sequential scan of every member's rows looked as cheap.
# "Assigned to me" starts from the actor's assignments instead: walking the member's rows, most
# of them not assigned to the actor, read ~10 ms of rows for Bob in the bench (3,335 open
# assignments among 130,000 rows); any hundred rows give the same capped count.
# ``test_sidebar_counts_match_the_views`` checks each count against ``view_rows``.
_SIDEBAR_SQL = """
SELECT 'inbox', CAST(NULL AS INTEGER), NULL, (SELECT COUNT(*) FROM (
    SELECT 1 FROM conversations_conversationmember m INNER JOIN conversations_conversation c ON c.id = m.conversation_id
    WHERE m.membership_id = %(member)s AND m.unread AND m.place = 'inbox' AND c.status NOT IN ('trash', 'spam', 'closed')
      AND (m.snoozed_until IS NULL OR m.snoozed_until <= %(now)s)
    ORDER BY m.last_activity_at DESC, m.conversation_id DESC LIMIT %(limit)s) AS counted)
UNION ALL
SELECT 'assigned', NULL, NULL, (SELECT COUNT(*) FROM (
    SELECT 1 FROM conversations_assignment a INNER JOIN conversations_conversation c ON c.id = a.conversation_id
    WHERE a.membership_id = %(member)s AND c.status = 'open'
      AND EXISTS (SELECT 1 FROM conversations_conversationmember m WHERE m.conversation_id = a.conversation_id AND m.membership_id = %(member)s)
    LIMIT %(limit)s) AS counted)
UNION ALL
SELECT 'mentions', NULL, NULL, (SELECT COUNT(*) FROM (
    SELECT 1 FROM conversations_conversationmember m INNER JOIN conversations_conversation c ON c.id = m.conversation_id
    WHERE m.membership_id = %(member)s AND m.unread AND m.mentioned_at IS NOT NULL AND m.place NOT IN ('trash', 'spam')
      AND c.status NOT IN ('trash', 'spam')
    ORDER BY m.last_activity_at DESC, m.conversation_id DESC LIMIT %(limit)s) AS counted)
UNION ALL
SELECT 'tasks', NULL, NULL, (SELECT COUNT(*) FROM (
    SELECT 1 FROM conversations_conversationmember m INNER JOIN conversations_conversation c ON c.id = m.conversation_id
    WHERE m.membership_id = %(member)s AND c.status = 'open'
      AND EXISTS (SELECT 1 FROM conversations_assignment a WHERE a.conversation_id = m.conversation_id)
    ORDER BY m.last_activity_at DESC, m.conversation_id DESC LIMIT %(limit)s) AS counted)
UNION ALL
SELECT 'drafts', NULL, NULL, (SELECT COUNT(*) FROM outbox_draft d WHERE d.author_id = %(member)s AND d.organization_id = %(organization)s)
UNION ALL
SELECT 'team', t.id, t.name, (SELECT COUNT(*) FROM (
    SELECT 1 FROM conversations_conversationmember m INNER JOIN conversations_conversation c ON c.id = m.conversation_id
    WHERE m.membership_id = %(member)s AND m.unread AND c.status = 'open'
      AND EXISTS (SELECT 1 FROM conversations_conversationshare s WHERE s.conversation_id = m.conversation_id AND s.team_id = t.id)
    ORDER BY m.last_activity_at DESC, m.conversation_id DESC LIMIT %(limit)s) AS counted)
FROM orgs_team t INNER JOIN orgs_teammembership tm ON tm.team_id = t.id
WHERE t.organization_id = %(organization)s AND tm.membership_id = %(member)s
ORDER BY 3, 2
"""


@dataclass(frozen=True)
class Sidebar:
    """The actor's teams (by name) and the counts beside the views: ``inbox``, ``assigned``,
    ``mentions``, ``tasks``, ``team:<id>`` (each up to ``COUNT_LIMIT + 1``) and ``drafts``."""

    teams: list[Team]  # by name, as the database sorts
    counts: dict[str, int]


def sidebar_get(*, actor: Membership) -> Sidebar:
    """Unread conversations in the inbox views, open ones in the work lists and the actor's
    drafts, in one query; each view's count stops at ``COUNT_LIMIT + 1`` rows (more than
    ``COUNT_LIMIT`` reads "99+")."""
    return sidebar_read(actor=actor).alone()


def sidebar_read(*, actor: Membership) -> Read[Sidebar]:
    """``sidebar_get`` as a ``Read``."""
    parameters = {
        "member": actor.pk, "organization": actor.organization_id, "limit": COUNT_LIMIT + 1,
        "now": connection.ops.adapt_datetimefield_value(timezone.now()),
    }  # fmt: skip

    def build(fetched: list[Fetched]) -> Sidebar:
        counts: dict[str, int] = {}
        teams = []
        for kind, team_id, team_name, count in fetched[0][1]:
            if kind == "team":
                teams.append(Team(pk=team_id, organization_id=actor.organization_id, name=team_name))
                counts[f"team:{team_id}"] = count
            else:
                counts[kind] = count
        return Sidebar(teams=teams, counts=counts)

    return Read(((_SIDEBAR_SQL, parameters),), build)


def labels_visible(*, actor: Membership) -> QuerySet[Label]:
    """Organization labels and the actor's personal ones."""
    return Label.objects.filter(organization_id=actor.organization_id).filter(Q(owner__isnull=True) | Q(owner=actor))


def labels_list(*, actor: Membership) -> list[Label]:
    """``labels_visible``'s labels, in its order (by name), from a constant text: every list page
    and the sidebar read them (``test_page_directory_matches_the_selectors`` compares the two)."""
    return labels_read(actor=actor).alone()


def labels_read(*, actor: Membership) -> Read[list[Label]]:
    """``labels_list`` as a ``Read``."""
    parameters = {"organization": actor.organization_id, "member": actor.pk}
    return Read(((_DIRECTORY_LABELS_SQL, parameters),), lambda fetched: instances(Label, fetched[0]))


def label_get(*, actor: Membership, label_id: Any) -> Label:
    label = labels_visible(actor=actor).filter(pk=_uuid(label_id)).first()
    if label is None:
        raise Http404
    return label


def team_get(*, actor: Membership, team_id: Any) -> Team:
    """A team of the actor's organization (any member may open any team's inbox they belong to)."""
    try:
        team_pk = int(team_id)
    except (TypeError, ValueError):
        raise Http404 from None
    team = Team.objects.filter(organization_id=actor.organization_id, pk=team_pk, team_memberships__membership=actor).first()
    if team is None:
        raise Http404
    return team


def member_get(*, actor: Membership, membership_id: Any) -> Membership:
    try:
        membership_pk = int(membership_id)
    except (TypeError, ValueError):
        raise Http404 from None
    membership = Membership.objects.filter(organization_id=actor.organization_id, pk=membership_pk).select_related("user").first()
    if membership is None:
        raise Http404
    return membership


# Who and what the conversation page names beside the thread, in one constant query (SECURITY.md
# R58: parameters only): the conversation's assignees, labels and shares as ids, in the order they
# were added. The page finds them among the organization's members and teams and the actor's
# labels, which it reads anyway for its menus, instead of three queries that Django builds and
# compiles on every page (issue #4); ``test_page_links_match_the_selectors`` compares them.
_PAGE_LINKS_SQL = """
SELECT 'assignee', a.membership_id, CAST(NULL AS BIGINT), CAST(NULL AS UUID), a.id FROM conversations_assignment a WHERE a.conversation_id = %(conversation)s
UNION ALL
SELECT 'label', CAST(NULL AS BIGINT), CAST(NULL AS BIGINT), l.label_id, l.id FROM conversations_conversationlabel l WHERE l.conversation_id = %(conversation)s
UNION ALL
SELECT 'share', s.membership_id, s.team_id, CAST(NULL AS UUID), s.id FROM conversations_conversationshare s WHERE s.conversation_id = %(conversation)s
ORDER BY 1, 5
"""


@dataclass(frozen=True)
class PageLinks:
    """Ids of a conversation's assignees (memberships), labels and shares (``(share id, team id,
    membership id)``, one of the two set), each in the order they were added."""

    assignee_ids: list[int]
    label_ids: list[uuid.UUID]
    shares: list[tuple[int, int | None, int | None]]


def links_read(*, conversation: Conversation) -> Read[PageLinks]:
    """The ids of the conversation's assignees, labels and shares, in one query (the caller has
    checked that the actor sees ``conversation``; labels are still to be matched against
    ``labels_visible``, which hides other members' personal labels)."""

    def build(fetched: list[Fetched]) -> PageLinks:
        links = PageLinks([], [], [])
        for kind, membership_id, team_id, label_id, row_id in fetched[0][1]:
            if kind == "assignee":
                links.assignee_ids.append(int(membership_id))
            elif kind == "label":
                links.label_ids.append(uuid.UUID(str(label_id)))
            else:
                links.shares.append((int(row_id), team_id, membership_id))
        return links

    return Read(((_PAGE_LINKS_SQL, {"conversation": _conversation_parameter(conversation)}),), build)


def conversation_assignees(*, conversation: Conversation) -> list[Membership]:
    return [assignment.membership for assignment in Assignment.objects.filter(conversation=conversation).select_related("membership__user")]


def conversation_labels(*, actor: Membership, conversation: Conversation) -> list[Label]:
    return list(labels_visible(actor=actor).filter(conversation_rows__conversation=conversation))


def conversation_shares(*, conversation: Conversation) -> list[ConversationShare]:
    return list(ConversationShare.objects.filter(conversation=conversation).select_related("team", "membership__user"))


# The organization's members (with their users, by email) and teams (by name) and the labels the
# actor sees (``labels_visible``, by name): what the conversation page's menus list and what its
# assignees, shares and timeline are named from. Constant texts with parameters (SECURITY.md R58)
# instead of three queries that Django builds and compiles on every page (issue #4);
# ``test_page_directory_matches_the_selectors`` compares them with the ORM selectors.
_DIRECTORY_MEMBERS_SQL = """
SELECT u.*, m.id AS membership_pk, m.role AS membership_role
FROM orgs_membership m INNER JOIN accounts_user u ON u.id = m.user_id
WHERE m.organization_id = %(organization)s
ORDER BY u.email
"""
_DIRECTORY_TEAMS_SQL = "SELECT * FROM orgs_team WHERE organization_id = %(organization)s ORDER BY name"
_DIRECTORY_LABELS_SQL = """
SELECT * FROM conversations_label WHERE organization_id = %(organization)s AND (owner_id IS NULL OR owner_id = %(member)s) ORDER BY name
"""


@dataclass(frozen=True)
class Directory:
    members: list[Membership]  # id, organization, role and ``user`` (all of it), by email
    teams: list[Team]  # by name
    labels: list[Label]  # the actor's: organization labels and their personal ones, by name


def directory_read(*, actor: Membership) -> Read[Directory]:
    """The actor's organization's members and teams and the labels they see, for the conversation page."""
    parameters = {"organization": actor.organization_id, "member": actor.pk}

    def build(fetched: list[Fetched]) -> Directory:
        members = []
        for user in instances(User, fetched[0]):
            extra = user.__dict__  # the membership's columns, beside the user's own
            members.append(
                Membership(pk=extra["membership_pk"], organization_id=actor.organization_id, user=user, role=extra["membership_role"])
            )  # fmt: skip
        return Directory(members=members, teams=instances(Team, fetched[1]), labels=instances(Label, fetched[2]))

    return Read(((_DIRECTORY_MEMBERS_SQL, parameters), (_DIRECTORY_TEAMS_SQL, parameters), (_DIRECTORY_LABELS_SQL, parameters)), build)


# A conversation's timeline in the order of ``conversation_timeline``, each event's actor taken
# from ``members`` (the organization's, read by the page already) instead of a join.
_TIMELINE_SQL = "SELECT * FROM conversations_timelineevent WHERE conversation_id = %(conversation)s ORDER BY created_at, id"


def timeline_read(*, conversation: Conversation) -> Read[list[TimelineEvent]]:
    """``conversation_timeline``'s events, their actors not yet given (``timeline_with_actors``)."""
    parameters = {"conversation": _conversation_parameter(conversation)}
    return Read(((_TIMELINE_SQL, parameters),), lambda fetched: instances(TimelineEvent, fetched[0]))


def timeline_with_actors(events: list[TimelineEvent], members: list[Membership]) -> list[TimelineEvent]:
    """``events`` with each actor found among ``members`` (an actor not among them is looked up if used)."""
    by_id = {member.pk: member for member in members}
    for event in events:
        if event.actor_id in by_id:
            event.actor = by_id[event.actor_id]
    return events


@dataclass(frozen=True)
class ConversationPage:
    """What the conversation page reads once it knows the actor sees the conversation."""

    messages: list[Message]  # thread_read
    directory: Directory
    events: list[TimelineEvent]  # timeline_read, their actors among the directory's members
    links: PageLinks
    sidebar: Sidebar | None  # when asked for


def conversation_page(*, actor: Membership, conversation: Conversation, with_sidebar: bool) -> ConversationPage:
    """The thread, the directory, the timeline, the conversation's links and, ``with_sidebar``,
    the sidebar: up to eight queries sent together (``Reads``: one round trip on PostgreSQL).
    ``conversation`` must be one the actor sees (``conversation_row_get``)."""
    reads = Reads()
    messages = reads.add(thread_read(actor=actor, conversation=conversation))
    directory = reads.add(directory_read(actor=actor))
    events = reads.add(timeline_read(conversation=conversation))
    links = reads.add(links_read(conversation=conversation))
    sidebar = reads.add(sidebar_read(actor=actor)) if with_sidebar else None
    reads.run()
    return ConversationPage(
        messages=messages.value, directory=directory.value, events=timeline_with_actors(events.value, directory.value.members),
        links=links.value, sidebar=sidebar.value if sidebar is not None else None,
    )  # fmt: skip


def conversation_timeline(*, conversation: Conversation) -> QuerySet[TimelineEvent]:
    return TimelineEvent.objects.filter(conversation=conversation).select_related("actor__user")


# Lists of conversations for the API --------------------------------------------------------------


def view_rows_narrowed(
    rows: QuerySet[ConversationMember], *, team: Team | None = None, label: Label | None = None,
    assignee: Membership | None = None, unread: bool | None = None,
) -> QuerySet[ConversationMember]:  # fmt: skip
    """A view's rows narrowed further: shared with ``team``, carrying ``label``, assigned to
    ``assignee``, and/or (un)read. The team, label and member must come from the selectors
    (``team_get``, ``label_get``, ``member_get``): this only filters."""
    if team is not None:
        rows = rows.filter(Exists(ConversationShare.objects.filter(conversation_id=OuterRef("conversation_id"), team=team)))
    if label is not None:
        rows = rows.filter(Exists(ConversationLabel.objects.filter(conversation_id=OuterRef("conversation_id"), label=label)))
    if assignee is not None:
        rows = rows.filter(Exists(Assignment.objects.filter(conversation_id=OuterRef("conversation_id"), membership=assignee)))
    if unread is not None:
        rows = rows.filter(unread=unread)
    return rows


def _visible_of_row(actor: Membership) -> QuerySet[Message]:
    """The actor's visible messages of the conversation of the outer ``ConversationMember`` row."""
    return messages_visible(actor=actor).filter(conversation_id=OuterRef("conversation_id"))


def rows_with_summary(*, actor: Membership, rows: QuerySet[ConversationMember]) -> QuerySet[ConversationMember]:
    """``rows`` with what a list item shows, counted from the messages the actor can see (never
    a teammate's private message threaded into a shared conversation): ``last_message_pk``,
    ``visible_messages`` and ``with_attachments``; the conversation, its assignees and the
    labels the actor can see come along. A fixed number of queries for any number of rows, with
    ``attach_last_messages`` after the page is cut."""
    labels = Prefetch(
        "conversation__label_rows",
        queryset=ConversationLabel.objects.filter(label__in=labels_visible(actor=actor)).select_related("label").order_by("label__name"),
    )
    assignments = Prefetch(
        "conversation__assignments", queryset=Assignment.objects.select_related("membership__user").order_by("created_at", "pk")
    )
    visible = _visible_of_row(actor)  # built once: each use below clones it
    latest = visible.order_by(F("sent_at").desc(nulls_last=True), "-created_at").values("pk")[:1]
    counted = visible.order_by().values("conversation_id").annotate(total=Count("pk")).values("total")
    return (
        rows.select_related("conversation")
        .prefetch_related(labels, assignments)
        .annotate(
            last_message_pk=Subquery(latest),
            visible_messages=Coalesce(Subquery(counted), 0),
            with_attachments=Exists(visible.filter(has_attachments=True)),
        )
    )


# What a list item reads of its conversation's latest message: nothing else is fetched.
_LAST_MESSAGE_FIELDS = ("id", "organization_id", "conversation_id", "sent_at", "created_at", "snippet_sealed")


def attach_last_messages(rows: list[ConversationMember]) -> list[ConversationMember]:
    """Set ``row.last_message`` (or None) on rows from ``rows_with_summary``, in one query."""
    wanted = [row.last_message_pk for row in rows if row.last_message_pk is not None]  # type: ignore[attr-defined]
    found = {message.pk: message for message in Message.objects.filter(pk__in=wanted).only(*_LAST_MESSAGE_FIELDS)} if wanted else {}
    for row in rows:
        row.last_message = found.get(row.last_message_pk)  # type: ignore[attr-defined]
    return rows


def conversation_summary_row(*, actor: Membership, conversation: Conversation) -> ConversationMember:
    """The actor's row of a conversation they can see, as ``rows_with_summary`` gives it (404 otherwise)."""
    rows = rows_with_summary(actor=actor, rows=ConversationMember.objects.filter(membership=actor, conversation=conversation))
    row = next(iter(attach_last_messages(list(rows))), None)
    if row is None:
        raise Http404
    return row


@dataclass(frozen=True)
class TimelineRefs:
    """What timeline events name, looked up once for all of them."""

    members: dict[int, Membership]
    teams: dict[int, Team]
    labels: dict[str, Label]


def timeline_refs(*, actor: Membership, events: list[TimelineEvent]) -> TimelineRefs:
    """The members, teams and labels that timeline events name, one query each (and none when
    no event names one); labels only when the actor can see them."""

    def ids(key: str) -> set[Any]:
        return {event.details.get(key) for event in events if isinstance(event.details, dict)} - {None}

    member_ids = {value for value in ids("membership_id") if isinstance(value, int)}
    team_ids = {value for value in ids("team_id") if isinstance(value, int)}
    label_ids = []
    for value in ids("label_id"):
        try:
            label_ids.append(uuid.UUID(str(value)))
        except ValueError:
            continue
    members = (
        Membership.objects.filter(organization_id=actor.organization_id, pk__in=member_ids).select_related("user") if member_ids else []
    )
    teams = Team.objects.filter(organization_id=actor.organization_id, pk__in=team_ids) if team_ids else []
    labels = labels_visible(actor=actor).filter(pk__in=label_ids) if label_ids else []
    return TimelineRefs(
        members={member.pk: member for member in members},
        teams={team.pk: team for team in teams},
        labels={str(label.pk): label for label in labels},
    )


def assigned_counts(*, actor: Membership) -> list[dict[str, Any]]:
    """Open assigned conversations per assignee among those the actor can see (the Tasks view's filter)."""
    visible = ConversationMember.objects.filter(membership=actor, conversation__status=ConversationStatus.OPEN).values("conversation_id")
    return list(
        Assignment.objects.filter(conversation_id__in=visible)
        .values("membership_id", "membership__user__email")
        .annotate(open=Count("id"))
        .order_by("membership__user__email")
    )


def view_filter_get(*, actor: Membership, view: str, team_id: Any = None, label_id: Any = None, assignee_id: Any = None) -> ViewFilter:
    """The view a request names, with its team, label or assignee checked against the actor
    (404 for anything of another organization, a team they are not in, or someone else's label)."""
    if view not in VIEW_TITLES and view not in (View.TEAM, View.LABEL):
        raise Http404
    team = team_get(actor=actor, team_id=team_id) if view == View.TEAM else None
    label = label_get(actor=actor, label_id=label_id) if view == View.LABEL else None
    assignee = member_get(actor=actor, membership_id=assignee_id) if view == View.TASKS and assignee_id else None
    return ViewFilter(view, team=team, label=label, assignee=assignee)


def timeline_names(*, actor: Membership, events: list[TimelineEvent]) -> dict[str, dict[Any, Any]]:
    """The members, teams and labels that timeline events name, in one query each (labels only
    when the actor can see them)."""
    member_ids, team_ids, label_ids = _timeline_ids(events)
    members = Membership.objects.filter(organization_id=actor.organization_id, pk__in=member_ids).select_related("user")
    teams = Team.objects.filter(organization_id=actor.organization_id, pk__in=team_ids)
    labels = labels_visible(actor=actor).filter(pk__in=[_uuid(label_id) for label_id in label_ids])
    return {
        "members": {member.pk: member for member in members} if member_ids else {},
        "teams": {team.pk: team for team in teams} if team_ids else {},
        "labels": {str(label.pk): label for label in labels} if label_ids else {},
    }


def _timeline_ids(events: list[TimelineEvent]) -> tuple[set[Any], set[Any], set[Any]]:
    """The member, team and label ids that timeline events name."""
    # A rule's run names what each of its actions touched in ``changes``.
    named = [event.details for event in events]
    named += [change for event in events for change in event.details.get("changes", ()) if isinstance(change, dict)]
    member_ids = {details.get("membership_id") for details in named} - {None}
    team_ids = {details.get("team_id") for details in named} - {None}
    label_ids = {details.get("label_id") for details in named} - {None}
    return member_ids, team_ids, label_ids


def timeline_names_among(
    *, events: list[TimelineEvent], members: list[Membership], teams: list[Team], labels: list[Label]
) -> dict[str, dict[Any, Any]]:
    """``timeline_names`` without a query, for a page that has read the organization's
    ``members`` and ``teams`` and the actor's ``labels`` (``labels_visible``) already."""
    member_ids, team_ids, label_ids = _timeline_ids(events)
    wanted_labels = {str(label_id) for label_id in label_ids}
    return {
        "members": {member.pk: member for member in members if member.pk in member_ids},
        "teams": {team.pk: team for team in teams if team.pk in team_ids},
        "labels": {str(label.pk): label for label in labels if str(label.pk) in wanted_labels},
    }
