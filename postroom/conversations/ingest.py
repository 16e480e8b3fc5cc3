"""Store one message fetched from a server (or read from a file): ``message_ingest``.

Attacker: anyone can send a member's mailbox arbitrary bytes, including a forged Message-ID,
hostile MIME, or ten thousand copies of one attachment. Two sync workers (a lease handover, an
import running beside the sync) may also store the same message at the same moment.

Defences and guarantees:
- Idempotent by (folder, UIDVALIDITY, UID): the same server copy is stored once, whatever the
  number of retries or crashes; a second call only updates its flags.
- One ``Message`` per distinct email in an organization, found by the Message-ID's blind index,
  else by a content index. A forged Message-ID must not let a stranger hide a message behind
  one already stored (the teammate would see the old message instead of the new one): a
  Message-ID match is a duplicate only when the content index matches too; otherwise the new
  message is stored on its own (with no Message-ID index, so threading still finds the first
  one) in the conversation of the message whose ID it claims.
- The content index is a keyed hash of the sender, date, subject and the body bytes with line
  endings normalised: stable across servers and mailboxes, which rewrite trace headers
  (Received, Delivered-To) and line endings, but not across content changes.
- Parsing never raises, and never runs in this process: the header pass runs in a parser process
  with CPU, memory and wall-clock limits (``postroom.mime.isolation``). A message that breaks a
  limit, the parser or the parser process is stored raw, encrypted, with ``quarantine_reason``
  set (and its subject and addresses when the headers were readable).
- What is parsed when: storing needs only the header block (threading, duplicate detection and
  the conversation list: subject, addresses, date). The raw message is stored (sealed) at once,
  so nothing is lost if the process dies; texts, snippet and attachments are filled in by the
  body pass (``postroom.conversations.bodies``: a task after each batch, in another process,
  and at once when a member opens a message the pass has not reached). ``message_ingest``
  (one message: sent mail, file import) runs the body pass itself before it returns.
- Blobs (raw message, attachments; encrypted, deduplicated per organization) are written before
  the transaction, which then creates every row or none. The race of two workers inserting one
  Message-ID ends in the unique constraint: the loser's transaction rolls back and it re-reads
  the winner's row, then adds only its copy. Messages without a Message-ID have no such
  constraint; on SQLite writers are serialised (``BEGIN IMMEDIATE``) and the content index is
  checked again inside the transaction, on PostgreSQL a transaction-scoped advisory lock on the
  content index serialises the two.
- ``messages_ingest_batch`` (the sync engine's path) keeps every guarantee above for a batch of
  fetched messages: it parses them all and looks up their copies and known messages with a few
  queries outside the transaction, makes all their blobs durable once, then stores the batch in
  one transaction, threading each message in order exactly as one ``message_ingest`` after the
  other would (``threading.BatchThreading``: one query per rule for the batch). A lost race
  rolls the whole batch back; its messages are then stored one at a time as above.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from threading import local as threading_local
from typing import Any, NamedTuple

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from postroom.conversations import arrival, bodies, threading
from postroom.conversations.models import Direction, Message, MessageCopy, MessageReference
from postroom.core.blobs import BlobBatch
from postroom.core.bulk import as_uuid, instances_insert, model_instance, rows_insert, values_parameter
from postroom.core.ids import uuid7
from postroom.core.keys import Keyring, keyring, org_scope
from postroom.mailboxes.models import Folder, Mailbox
from postroom.mime.isolation import Headers, import_parser
from postroom.mime.parse import Quarantined

# Parsed results are looked up and their blobs written this many at a time, while the parser
# process works on the next ones.
_CHUNK = 25


@dataclass(frozen=True)
class IngestItem:
    """One fetched server copy for ``messages_ingest_batch``."""

    uid: int
    raw: bytes
    flags: Iterable[bytes | str] = ()
    modseq: int | None = None
    internal_date: datetime | None = None
    # The header pass of ``raw``, when the caller has run it already (the sync engine parses the
    # next batch while this one is stored); None: ``messages_ingest_batch`` runs it.
    parsed: Headers | Quarantined | None = None


def _header_pass(items: Sequence[IngestItem]) -> Iterator[Headers | Quarantined]:
    """The header pass of each item, in order: the parser processes run it for the items that
    come without one."""
    missing = [item.raw for item in items if item.parsed is None]
    results = import_parser().headers(missing) if missing else iter(())
    for item in items:
        yield item.parsed if item.parsed is not None else next(results)


def message_ingest(
    *,
    mailbox: Mailbox,
    folder: Folder,
    uidvalidity: int,
    uid: int,
    raw: bytes,
    flags: Iterable[bytes | str] = (),
    modseq: int | None = None,
    internal_date: datetime | None = None,
    direction: str = Direction.INBOUND,
) -> MessageCopy:
    """Store the message at (``folder``, ``uidvalidity``, ``uid``) of ``mailbox``, body included;
    see the module docstring."""
    item = IngestItem(uid=uid, raw=raw, flags=flags, modseq=modseq, internal_date=internal_date)
    copy = messages_ingest_batch(mailbox=mailbox, folder=folder, uidvalidity=uidvalidity, items=[item], direction=direction, later=False)[
        uid
    ]
    bodies.message_bodies_fill(message_ids=[copy.message_id])
    return copy


def messages_ingest_batch(
    *,
    mailbox: Mailbox,
    folder: Folder,
    uidvalidity: int,
    items: Sequence[IngestItem],
    direction: str = Direction.INBOUND,
    later: bool = True,
) -> dict[int, MessageCopy]:
    """``message_ingest`` for each item, in order (threading sees them in that order), in one
    transaction, but the bodies of the new messages are left to the body pass, queued after the
    commit (``later``). Returns the copy of each UID; an item repeating an earlier UID is ignored."""
    unique = list({item.uid: item for item in reversed(items)}.values())[::-1]
    try:
        return _ingest_batch(mailbox, folder, uidvalidity, unique, direction, later)
    except IntegrityError:
        # Lost a race to another worker: the same server copy, or the same Message-ID, was
        # stored meanwhile. The winner has committed (the constraint waited for it), so a second
        # pass finds its rows; one item at a time, so that one more lost race costs one item.
        if len(unique) == 1:
            return _ingest_batch(mailbox, folder, uidvalidity, unique, direction, later)
        copies: dict[int, MessageCopy] = {}
        for item in unique:
            copies.update(
                messages_ingest_batch(
                    mailbox=mailbox, folder=folder, uidvalidity=uidvalidity, items=[item], direction=direction, later=later
                )
            )
        return copies


@dataclass
class _Incoming:
    item: IngestItem
    flag_names: set[str]
    headers: Headers | None
    quarantined: Quarantined | None
    message_id_index: str
    content_index: str
    message: _Known | None = None  # known already, or
    prepared: _Prepared | None = None  # new (unless stored meanwhile)


def _flag_names(flags: Iterable[bytes | str]) -> set[str]:
    return {(flag.decode("ascii", "replace") if isinstance(flag, bytes) else flag).lower() for flag in flags}


def _ingest_batch(
    mailbox: Mailbox, folder: Folder, uidvalidity: int, items: list[IngestItem], direction: str, later: bool
) -> dict[int, MessageCopy]:
    copies: dict[int, MessageCopy] = {}
    existing = MessageCopy.objects.filter(folder=folder, uidvalidity=uidvalidity, uid__in=[item.uid for item in items])
    for copy in existing:
        item = next(item for item in items if item.uid == copy.uid)
        copies[copy.uid] = _update_flags(copy, _flag_names(item.flags), item.modseq)
    if copies:
        arrival.copies_changed(copy.pk for copy in copies.values())
    organization_id = mailbox.organization_id
    scope = org_scope(organization_id)
    to_store = [item for item in items if item.uid not in copies]
    if not to_store:
        return copies
    incoming: list[_Incoming] = []
    blobs = BlobBatch()
    flushed: Future[None] | None = None
    # Parsed already (the sync engine's prefetched batches): nothing to overlap with, so one lookup.
    chunk_size = len(to_store) if all(item.parsed is not None for item in to_store) else _CHUNK
    try:
        chunk: list[_Incoming] = []
        for item, parsed in zip(to_store, _header_pass(to_store), strict=True):
            headers = parsed if isinstance(parsed, Headers) else None
            entry = _Incoming(
                item=item,
                flag_names=_flag_names(item.flags),
                headers=headers,
                quarantined=parsed if isinstance(parsed, Quarantined) else None,
                message_id_index=_message_id_index(scope, headers.message_id) if headers and headers.message_id else "",
                content_index=keyring().blind_index(scope, "message-content", _content_fingerprint(item.raw, headers)),
            )
            incoming.append(entry)
            chunk.append(entry)
            if len(chunk) == chunk_size:
                _prepare_new(organization_id, scope, chunk, direction, blobs.put)
                chunk = []
        _prepare_new(organization_id, scope, chunk, direction, blobs.put)
        # The disk writes the blobs while the transaction is prepared; it commits only once they are durable.
        flushed = blobs.durable_soon()
        _store(mailbox, folder, uidvalidity, incoming, copies, later, flushed)
    finally:
        if flushed is not None:
            with contextlib.suppress(Exception):  # its failure, if any, was raised by _store
                flushed.result()
        blobs.discard()
    return {item.uid: copies[item.uid] for item in items}


_batch = threading_local()

# The keys of a batch's new copies (constant texts, R58; see ``core.bulk.values_parameter``).
_COPY_IDS_SQL = {
    "sqlite": "SELECT uid, id FROM conversations_messagecopy"
    " WHERE folder_id = %s AND uidvalidity = %s AND uid IN (SELECT value FROM json_each(%s))",
    "postgresql": "SELECT uid, id FROM conversations_messagecopy WHERE folder_id = %s AND uidvalidity = %s AND uid = ANY(%s)",
}


def raw_blobs_ready() -> None:
    """Wait until the raw messages of the batch being stored are on disk under their names.

    Rules run inside the batch's transaction while its blobs are still being written
    (``BlobBatch.durable_soon``); the few rules that read a raw message (body conditions, the
    auto-reply's headers) call this first, and the others keep the overlap."""
    flushed = getattr(_batch, "flushed", None)
    if flushed is not None:
        flushed.result()


def _store(
    mailbox: Mailbox,
    folder: Folder,
    uidvalidity: int,
    incoming: list[_Incoming],
    copies: dict[int, MessageCopy],
    later: bool,
    flushed: Future[None],
) -> None:
    """The batch's rows, in one transaction that commits once ``flushed`` (its blobs) is done."""
    organization_id = mailbox.organization_id
    with transaction.atomic():
        new = [entry for entry in incoming if entry.prepared is not None]
        # Sorted, so that two workers taking several locks cannot deadlock.
        for content_index in sorted({entry.content_index for entry in new if not entry.message_id_index}):
            _lock_content(content_index)
        known_now = _KnownMessages(organization_id, [entry.content_index for entry in new])
        threads = threading.BatchThreading(
            organization_id=organization_id, mailbox_id=mailbox.pk, messages=[entry.prepared.thread for entry in new if entry.prepared]
        )
        created: list[Message] = []
        references: list[tuple[uuid.UUID, Any, str]] = []  # MessageReference rows
        pending: list[MessageCopy] = []
        for entry in incoming:
            message_pk: uuid.UUID
            if entry.message is not None:
                message_pk = entry.message.pk
            elif entry.prepared is not None:
                known = known_now.find(entry.message_id_index, entry.content_index)
                if known is None:
                    message_pk, message = _place(organization_id, entry.prepared, threads)
                    if message is not None:
                        known_now.add(_Known(message.pk, message.message_id_index, message.content_index))
                        created.append(message)
                        references.extend((message.pk, organization_id, index) for index in entry.prepared.thread.reference_indexes)
                else:
                    message_pk = known.pk
            else:  # pragma: no cover (every entry is known or prepared)
                raise AssertionError(entry)
            item = entry.item
            copy = model_instance(
                MessageCopy,
                {
                    "mailbox_id": mailbox.pk,
                    "folder_id": folder.pk,
                    "uidvalidity": uidvalidity,
                    "uid": item.uid,
                    "message_id": message_pk,
                    "modseq": item.modseq,
                    **_flag_values(entry.flag_names),
                },
            )
            # As MessageCopy(mailbox=…, folder=…) would: the instances in hand are cached.
            MessageCopy.mailbox.field.set_cached_value(copy, mailbox)
            MessageCopy.folder.field.set_cached_value(copy, folder)
            pending.append(copy)
        threads.store()
        for message in created:
            message.conversation_id = threads.resolve(message.conversation_id)
        instances_insert(created)
        rows_insert(MessageReference, ("message", "organization", "message_id_index"), references)
        instances_insert(pending)
        with connection.cursor() as cursor:
            cursor.execute(_COPY_IDS_SQL[connection.vendor], [folder.pk, uidvalidity, values_parameter(copy.uid for copy in pending)])
            copy_ids = dict(cursor.fetchall())
        for copy in pending:
            copy.pk = copy_ids[copy.uid]
            copies[copy.uid] = copy
        _batch.flushed = flushed
        try:
            arrival.copies_stored(copies=pending, new_message_ids={message.pk for message in created}, new_messages=created)
        finally:
            _batch.flushed = None
        flushed.result()
        waiting = [message.pk for message in created if message.body_pending]
        if later and waiting:
            transaction.on_commit(lambda: bodies.message_bodies_fill_later(message_ids=waiting), robust=True)


class _Known(NamedTuple):
    """A message with some content index: stored, or new in this batch."""

    pk: uuid.UUID
    message_id_index: str
    content_index: str


# The organization's messages with any of some content indexes (a constant text, R58; the list
# is one parameter, see ``core.bulk.values_parameter``), in the order of their keys.
_KNOWN_SQL = {
    "sqlite": "SELECT id, message_id_index, content_index FROM conversations_message"
    " WHERE organization_id = %s AND content_index IN (SELECT value FROM json_each(%s)) ORDER BY id",
    "postgresql": "SELECT id, message_id_index, content_index FROM conversations_message"
    " WHERE organization_id = %s AND content_index = ANY(%s) ORDER BY id",
}


class _KnownMessages:
    """The organization's messages with any of some content indexes, plus those stored meanwhile."""

    def __init__(self, organization_id: Any, content_indexes: list[str]) -> None:
        self.by_content: dict[str, list[_Known]] = {}
        if content_indexes:
            with connection.cursor() as cursor:
                cursor.execute(_KNOWN_SQL[connection.vendor], [organization_id, values_parameter(set(content_indexes))])
                for pk, message_id_index, content_index in cursor.fetchall():
                    self.add(_Known(as_uuid(pk), message_id_index, content_index))

    def add(self, message: _Known) -> None:
        self.by_content.setdefault(message.content_index, []).append(message)

    def find(self, message_id_index: str, content_index: str) -> _Known | None:
        # A message whose Message-ID was taken by different content is stored without its index.
        id_indexes = {message_id_index, ""} if message_id_index else {""}
        return next((message for message in self.by_content.get(content_index, ()) if message.message_id_index in id_indexes), None)


# --- Copies ----------------------------------------------------------------------------------


def _flag_values(flag_names: set[str]) -> dict[str, bool]:
    return {"seen": "\\seen" in flag_names, "flagged": "\\flagged" in flag_names, "answered": "\\answered" in flag_names}


def _update_flags(copy: MessageCopy, flag_names: set[str], modseq: int | None) -> MessageCopy:
    values: dict[str, Any] = _flag_values(flag_names)
    if copy.seen_pending is not None:
        values.pop("seen")  # the member's newer choice is still on its way to the server
    if modseq is not None:
        values["modseq"] = modseq
    if any(getattr(copy, name) != value for name, value in values.items()):
        for name, value in values.items():
            setattr(copy, name, value)
        copy.save(update_fields=list(values))
    return copy


# --- Finding a message already stored ----------------------------------------------------------


def _message_id_index(scope: str, message_id: str) -> str:
    return _keyed_message_id_index(keyring(), scope, message_id)


@functools.lru_cache(maxsize=16384)
def _keyed_message_id_index(ring: Keyring, scope: str, message_id: str) -> str:
    # Remembered: a thread's Message-IDs come back in the References of each of its replies, and
    # a first import names each of them several times. (Per keyring, which tests replace.)
    return ring.blind_index(scope, "message-id", message_id)


def _content_fingerprint(raw: bytes, headers: Headers | None) -> str:
    if headers is None:
        return "raw:" + hashlib.sha256(raw.replace(b"\r\n", b"\n")).hexdigest()
    senders = ",".join(sorted(address.lower() for _name, address in headers.addresses["from"]))
    date = headers.date.isoformat() if headers.date else ""
    return f"v1:{senders}|{date}|{hashlib.sha256(headers.subject.encode('utf-8')).hexdigest()}|{headers.body_digest}"


# --- A new message -----------------------------------------------------------------------------


@dataclass
class _Prepared:
    """Everything about a new message, computed (and its raw blob written) outside the transaction."""

    thread: threading.NewMessage
    direction: str
    sent_at: datetime | None
    size: int
    raw_blob: str
    addresses: dict[str, list[list[str]]]
    quarantine_reason: str


def _prepare_new(organization_id: Any, scope: str, entries: list[_Incoming], direction: str, put_blob: Callable[[str, bytes], str]) -> None:
    """Find which of ``entries`` are stored already; prepare the others (their raw blobs written)."""
    if not entries:
        return
    known = _KnownMessages(organization_id, [entry.content_index for entry in entries])
    for entry in entries:
        entry.message = known.find(entry.message_id_index, entry.content_index)
        if entry.message is None:
            entry.prepared = _prepare(scope, entry, direction, put_blob)


def _prepare(scope: str, entry: _Incoming, direction: str, put_blob: Callable[[str, bytes], str]) -> _Prepared:
    now = timezone.now()
    headers, raw, internal_date = entry.headers, entry.item.raw, entry.item.internal_date
    received_at = min(internal_date or (headers.date if headers else None) or now, now)
    subject = headers.subject if headers else ""
    addresses = headers.addresses if headers else {}
    reference_indexes: list[str] = []
    if headers is not None:
        ancestors = ([headers.in_reply_to] if headers.in_reply_to else []) + list(reversed(headers.references))
        reference_indexes = list(dict.fromkeys(_message_id_index(scope, identifier) for identifier in ancestors))
    return _Prepared(
        thread=threading.NewMessage(
            pk=uuid7(),
            message_id_index=entry.message_id_index,
            content_index=entry.content_index,
            reference_indexes=reference_indexes,
            subject=subject,
            subject_index=_subject_index(scope, subject),
            received_at=received_at,
            participants=frozenset(threading.message_participants(addresses)),
            is_automated=headers.is_automated if headers else False,
        ),
        direction=direction,
        sent_at=headers.date if headers else internal_date,
        size=len(raw),
        raw_blob=put_blob(scope, raw),
        addresses=addresses,
        quarantine_reason=entry.quarantined.reason.value if entry.quarantined else "",
    )


def _lock_content(content_index: str) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [int(content_index[:15], 16)])


def _place(organization_id: Any, prepared: _Prepared, threads: threading.BatchThreading) -> tuple[uuid.UUID, Message | None]:
    """Thread a new message: (its pk, the unsaved Message), or (the pk of the stored one, None)."""
    new = prepared.thread
    holder = threads.holder(new.message_id_index)
    claimed_conversation = None
    if holder is not None:
        if holder.content_index == new.content_index:
            # Another worker committed this very message since our lookup (read committed).
            return holder.message_pk, None
        # Same Message-ID, different content: see the module docstring.
        new = threading.NewMessage(**{**new.__dict__, "message_id_index": ""})
        claimed_conversation = holder.conversation_pk
    conversation_pk = threads.place(new, conversation_pk=claimed_conversation)
    message = model_instance(
        Message,
        {
            "id": new.pk,
            "organization_id": organization_id,
            "conversation_id": conversation_pk,
            "direction": prepared.direction,
            "message_id_index": new.message_id_index,
            "content_index": new.content_index,
            "sent_at": prepared.sent_at,
            "size": prepared.size,
            "raw_blob": prepared.raw_blob,
            "quarantine_reason": prepared.quarantine_reason,
            "body_pending": not prepared.quarantine_reason,
        },
    )
    message.subject = new.subject
    message.addresses = prepared.addresses
    return new.pk, message


def _subject_index(scope: str, subject: str) -> str:
    normalised = threading.normalised_subject(subject)
    return keyring().blind_index(scope, "subject", normalised) if normalised else ""
