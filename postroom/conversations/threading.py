"""Which conversation a new message belongs to.

The rules, in order (all within one organization; Message-IDs are compared as blind indexes):

1. Parents: the first of In-Reply-To, then References from the nearest ancestor backwards,
   that names a message already stored gives the conversation.
2. Children: messages stored earlier that point at this message's Message-ID (it arrived after
   its replies, as happens when a first import runs newest first or folders sync in any order).
   Their conversation is used when there is no parent; when parent and children sit in
   different conversations those conversations are merged into the parent's, since this message
   proves they are one thread.
3. Subject fallback, for clients that drop the reference headers: a conversation with the same
   normalised subject (reply and forward prefixes in several languages and ``[list]`` tags
   removed, case and whitespace folded; an empty subject never matches), whose last message is
   within ``SUBJECT_WINDOW`` of this one, which already holds a message with a copy in the same
   mailbox, and which shares at least one participant address with that mailbox's messages in
   it that is not one of the organization's own mailboxes (every message to a shared support
   address "shares" that address, which would merge unrelated requests). A subject is no proof
   of anything: it never joins mail of one member's mailbox to a conversation of another's
   (each member's mailbox is private until shared on purpose), and automated mail
   (auto-replies, bulk and list mail) never threads by subject: notifications reuse one subject
   for unrelated events.
4. Otherwise a new conversation.

``BatchThreading`` applies the rules to a whole batch of new messages of one mailbox, in order,
exactly as one message after the other would, with one query per rule for the batch instead of
several per message: the conversations it needs are read once (by the blind indexes of every
Message-ID, reference and subject in the batch) and then kept up to date in memory as the batch
is threaded. ``store()`` then writes the new conversations, merges and counters.
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Exists, F, OuterRef

from postroom.conversations import merging
from postroom.conversations.models import Conversation, Message, MessageCopy
from postroom.core.bulk import as_uuid, instances_insert, model_instance, values_parameter
from postroom.mailboxes.models import Mailbox

SUBJECT_WINDOW = timedelta(days=7)
# Candidates examined for the subject fallback: the most recent ones with the subject.
_SUBJECT_CANDIDATES = 5
_PARTICIPANT_SAMPLE = 20

# Re:, Fwd:, and their common translations, optionally counted ("Re[2]:", "AW(3):").
_PREFIX = re.compile(
    r"^\s*(?:(?:re|fw|fwd|aw|wg|sv|vs|antw|tr|rif|r|ref|odp|res|enc|doorst|vl|bls|ynt)\s*(?:\[\d+\]|\(\d+\))?\s*[:：]|\[[^\]]{0,80}\])\s*",
    re.IGNORECASE,
)


def normalised_subject(subject: str) -> str:
    """The subject without reply/forward prefixes and list tags, case- and space-folded."""
    text = subject
    while True:
        stripped = _PREFIX.sub("", text, count=1)
        if stripped == text:
            break
        text = stripped
    return " ".join(text.casefold().split())


def message_participants(addresses: dict[str, list[list[str]]]) -> set[str]:
    return {pair[1].lower() for role in ("from", "to", "cc", "reply_to") for pair in addresses.get(role, []) if len(pair) == 2 and pair[1]}


def organization_addresses(organization_id: Any) -> set[str]:
    return {address.lower() for address in Mailbox.objects.filter(organization_id=organization_id).values_list("email_address", flat=True)}


# The batch's look-ups by Message-ID: constant texts (SECURITY.md R58) with the organization and
# the list of blind indexes as parameters (``core.bulk.values_parameter``), instead of IN lists
# the ORM compiles for every batch. The messages holding any of the Message-IDs:
_HOLDERS_SQL = {
    "sqlite": "SELECT message_id_index, id, content_index, conversation_id FROM conversations_message"
    " WHERE organization_id = %s AND message_id_index IN (SELECT value FROM json_each(%s))",
    "postgresql": "SELECT message_id_index, id, content_index, conversation_id FROM conversations_message"
    " WHERE organization_id = %s AND message_id_index = ANY(%s)",
}
# The conversations of the messages that point at any of them:
_CHILDREN_SQL = {
    "sqlite": "SELECT r.message_id_index, m.conversation_id FROM conversations_messagereference r"
    " INNER JOIN conversations_message m ON m.id = r.message_id"
    " WHERE r.organization_id = %s AND r.message_id_index IN (SELECT value FROM json_each(%s))",
    "postgresql": "SELECT r.message_id_index, m.conversation_id FROM conversations_messagereference r"
    " INNER JOIN conversations_message m ON m.id = r.message_id"
    " WHERE r.organization_id = %s AND r.message_id_index = ANY(%s)",
}

# The conversations with any of the batch's subjects in its time window, by the subject's index:
# SQLite, which keeps no statistics, would walk the organization's conversations of the window
# instead (hundreds in a first import), testing each for the subject and a copy in the mailbox;
# the unary plus keeps it off those columns' indexes. (Which of them hold a message with a copy
# in the mailbox is then asked of these few.)
_SUBJECT_SQL = {
    "sqlite": "SELECT id FROM conversations_conversation WHERE subject_index IN (SELECT value FROM json_each(%s))"
    " AND +organization_id = %s AND +last_message_at >= %s AND +last_message_at <= %s",
    "postgresql": "SELECT id FROM conversations_conversation WHERE subject_index = ANY(%s)"
    " AND organization_id = %s AND last_message_at >= %s AND last_message_at <= %s",
}


def _rows(statement: dict[str, str], organization_id: Any, indexes: set[str]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(statement[connection.vendor], [organization_id, values_parameter(indexes)])
        return cursor.fetchall()


@dataclass(frozen=True)
class NewMessage:
    """What threading needs to know of a message about to be stored."""

    pk: uuid.UUID
    message_id_index: str  # "" when it has none (or another message holds it)
    content_index: str
    reference_indexes: Sequence[str]  # nearest ancestor first
    subject: str
    subject_index: str
    received_at: datetime
    participants: frozenset[str]  # lower-cased addresses of every role but Bcc
    is_automated: bool


@dataclass(frozen=True)
class Holder:
    """A message that already has some Message-ID (stored, or earlier in the batch)."""

    message_pk: uuid.UUID
    content_index: str
    conversation_pk: uuid.UUID


@dataclass
class _Thread:
    pk: uuid.UUID
    created_at: datetime
    order: int  # ties of created_at: the conversations of a batch are created in this order
    subject_index: str
    last_message_at: datetime
    in_mailbox: bool  # holds a message with a copy in the batch's mailbox
    new: Conversation | None = None  # not stored yet
    # Participants of its messages in the mailbox, newest first; None until the subject rule asks.
    participants: list[frozenset[str]] | None = None
    merged_away: list[_Thread] = field(default_factory=list)  # stored conversations merged into it


class BatchThreading:
    """The rules of the module docstring for new messages of one mailbox, in order (see there)."""

    def __init__(self, *, organization_id: Any, mailbox_id: Any, messages: Sequence[NewMessage]) -> None:
        self.organization_id = organization_id
        self.mailbox_id = mailbox_id
        self._order = itertools.count(1)
        self._threads: dict[uuid.UUID, _Thread] = {}
        self._merged_into: dict[uuid.UUID, uuid.UUID] = {}
        self._placed: list[uuid.UUID] = []  # the conversation of each placed message, in order
        self._own_addresses: set[str] | None = None
        own_ids = {message.message_id_index for message in messages if message.message_id_index}
        references = {index for message in messages for index in message.reference_indexes if index}
        self._holders: dict[str, Holder] = {}
        if own_ids | references:
            # A Message-ID is held by one message of the organization (a unique constraint).
            for message_id_index, pk, content_index, conversation_pk in _rows(_HOLDERS_SQL, organization_id, own_ids | references):
                self._holders[message_id_index] = Holder(as_uuid(pk), content_index, as_uuid(conversation_pk))
        self._children: dict[str, set[uuid.UUID]] = {}
        if own_ids:
            for message_id_index, conversation_pk in _rows(_CHILDREN_SQL, organization_id, own_ids):
                self._children.setdefault(message_id_index, set()).add(as_uuid(conversation_pk))
        named = {holder.conversation_pk for holder in self._holders.values()} | {pk for pks in self._children.values() for pk in pks}
        # Whether a conversation holds a message with a copy in the mailbox: from the conversation's
        # messages to their copies, both by index (the other way round walks the mailbox's copies).
        in_mailbox = Exists(
            Message.objects.filter(conversation_id=OuterRef("pk")).filter(
                Exists(MessageCopy.objects.filter(mailbox_id=mailbox_id, message_id=OuterRef("pk")))
            )
        )
        conversations = Conversation.objects.filter(organization_id=organization_id).annotate(in_mailbox=in_mailbox)
        fields = ("pk", "created_at", "subject_index", "last_message_at", "in_mailbox")
        found: list[tuple[Any, ...]] = list(conversations.filter(pk__in=named).values_list(*fields)) if named else []
        subjects = {message.subject_index for message in messages if message.subject_index and not message.is_automated}
        if subjects:
            earliest = min(message.received_at for message in messages) - SUBJECT_WINDOW
            latest = max(message.received_at for message in messages) + SUBJECT_WINDOW
            with connection.cursor() as cursor:
                adapt = connection.ops.adapt_datetimefield_value
                cursor.execute(
                    _SUBJECT_SQL[connection.vendor], [values_parameter(subjects), organization_id, adapt(earliest), adapt(latest)]
                )
                by_subject = [as_uuid(pk) for (pk,) in cursor.fetchall()]
            if by_subject:
                candidates = conversations.filter(pk__in=by_subject, last_message_at__gte=earliest, last_message_at__lte=latest)
                found += candidates.filter(in_mailbox=True).values_list(*fields)
        for pk, created_at, subject_index, last_message_at, is_in_mailbox in found:
            self._threads[pk] = _Thread(pk, created_at, 0, subject_index, last_message_at, is_in_mailbox)

    # -- threading, in memory --------------------------------------------------------------------
    def holder(self, message_id_index: str) -> Holder | None:
        """The message stored (or placed earlier in the batch) with this Message-ID, if any."""
        holder = self._holders.get(message_id_index) if message_id_index else None
        return Holder(holder.message_pk, holder.content_index, self.resolve(holder.conversation_pk)) if holder else None

    def resolve(self, conversation_pk: uuid.UUID) -> uuid.UUID:
        """Where a conversation's messages are now (it may have been merged into another)."""
        while conversation_pk in self._merged_into:
            conversation_pk = self._merged_into[conversation_pk]
        return conversation_pk

    def place(self, message: NewMessage, *, conversation_pk: uuid.UUID | None = None) -> uuid.UUID:
        """Thread ``message`` (into ``conversation_pk`` if given); the pk of its conversation, which
        a later message of the batch may merge into another: ``resolve`` it once all are placed."""
        thread = self._threads[self.resolve(conversation_pk)] if conversation_pk is not None else self._thread_for(message)
        thread.last_message_at = max(thread.last_message_at, message.received_at)
        thread.in_mailbox = True
        if thread.participants is not None:
            thread.participants.insert(0, message.participants)
        if message.message_id_index:
            self._holders[message.message_id_index] = Holder(message.pk, message.content_index, thread.pk)
        for index in message.reference_indexes:
            if index:
                self._children.setdefault(index, set()).add(thread.pk)
        self._placed.append(thread.pk)
        return thread.pk

    def _thread_for(self, message: NewMessage) -> _Thread:
        parent = next(
            (
                self._threads[self.resolve(self._holders[index].conversation_pk)]
                for index in message.reference_indexes
                if index in self._holders
            ),
            None,
        )
        children: list[_Thread] = []
        if message.message_id_index:
            children_pks = {self.resolve(pk) for pk in self._children.get(message.message_id_index, ())}
            children = sorted((self._threads[pk] for pk in children_pks), key=lambda thread: (thread.created_at, thread.order))
        if parent is None and children:
            parent = children[0]
        if parent is not None:
            for child in children:
                if child.pk != parent.pk:
                    self._merge(parent, child)
            return parent
        if not message.is_automated:
            found = self._by_subject(message)
            if found is not None:
                return found
        return self._new_thread(message)

    def _merge(self, target: _Thread, other: _Thread) -> None:
        self._merged_into[other.pk] = target.pk
        target.last_message_at = max(target.last_message_at, other.last_message_at)
        target.in_mailbox = target.in_mailbox or other.in_mailbox
        if target.participants is not None or other.participants is not None:
            target.participants = (target.participants or []) + (other.participants or [])
        if other.new is None:
            target.merged_away.append(other)
        target.merged_away.extend(other.merged_away)
        other.merged_away = []

    def _by_subject(self, message: NewMessage) -> _Thread | None:
        if not message.subject_index:
            return None
        if self._own_addresses is None:
            self._own_addresses = organization_addresses(self.organization_id)
        participants = message.participants - self._own_addresses
        if not participants:
            return None
        candidates = sorted(
            (
                thread
                for pk, thread in self._threads.items()
                if pk not in self._merged_into
                and thread.in_mailbox
                and thread.subject_index == message.subject_index
                and abs(thread.last_message_at - message.received_at) <= SUBJECT_WINDOW
            ),
            key=lambda thread: thread.last_message_at,
            reverse=True,
        )[:_SUBJECT_CANDIDATES]
        for candidate in candidates:
            if any(participants & sample for sample in self._participants(candidate)):
                return candidate
        return None

    def _participants(self, thread: _Thread) -> list[frozenset[str]]:
        if thread.participants is None:
            stored: list[frozenset[str]] = []
            if thread.new is None:
                # Only the mailbox's own messages: another member's mail is no evidence here.
                in_mailbox = Exists(MessageCopy.objects.filter(mailbox_id=self.mailbox_id, message_id=OuterRef("pk")))
                pks = [thread.pk] + [other.pk for other in thread.merged_away]
                for message in (
                    Message.objects.filter(conversation_id__in=pks).filter(in_mailbox).order_by("-created_at")[:_PARTICIPANT_SAMPLE]
                ):
                    stored.append(frozenset(message_participants(message.addresses or {})))
            thread.participants = stored
        return thread.participants[:_PARTICIPANT_SAMPLE]

    def _new_thread(self, message: NewMessage) -> _Thread:
        conversation = model_instance(
            Conversation,
            {"organization_id": self.organization_id, "subject_index": message.subject_index, "last_message_at": message.received_at},
        )
        conversation.subject = message.subject
        thread = _Thread(conversation.pk, datetime.max.replace(tzinfo=message.received_at.tzinfo), next(self._order), message.subject_index,
                         message.received_at, True, new=conversation, participants=[])  # fmt: skip
        self._threads[thread.pk] = thread
        return thread

    # -- storing (inside the caller's transaction) -------------------------------------------------
    def store(self) -> None:
        """Create the new conversations, carry out the merges, update the counters. Call before the
        batch's messages are inserted, with their conversations ``resolve``d."""
        added: dict[uuid.UUID, int] = {}
        for pk in self._placed:
            resolved = self.resolve(pk)
            added[resolved] = added.get(resolved, 0) + 1
        created = []
        for pk, thread in self._threads.items():
            if thread.new is not None and pk not in self._merged_into and pk in added:
                thread.new.message_count = added[pk]
                thread.new.last_message_at = thread.last_message_at
                created.append(thread.new)
        instances_insert(created)
        for pk, thread in self._threads.items():
            if pk in self._merged_into:
                continue
            moved = 0
            for other in thread.merged_away:
                moved += Message.objects.filter(conversation_id=other.pk).update(conversation_id=pk)
                # Its team state (shares, assignments, labels, timeline, comments) carries over;
                # what is left goes with it.
                merging.conversation_state_carry(source=Conversation.objects.get(pk=other.pk), target=Conversation.objects.get(pk=pk))
                Conversation.objects.filter(pk=other.pk).delete()
            if thread.new is None and (moved or pk in added):
                Conversation.objects.filter(pk=pk).update(message_count=F("message_count") + moved + added.get(pk, 0))
                Conversation.objects.filter(pk=pk, last_message_at__lt=thread.last_message_at).update(
                    last_message_at=thread.last_message_at
                )
            elif thread.new is not None and moved:
                Conversation.objects.filter(pk=pk).update(message_count=F("message_count") + moved)
