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
- Parsing never raises: a message that breaks a limit or the parser is stored raw, encrypted,
  with ``quarantine_reason`` set (and its subject and addresses when the headers were readable).
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
  other would. A lost race rolls the whole batch back; its messages are then stored one at a
  time as above. ``message_ingest`` is a batch of one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from html.parser import HTMLParser
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from postroom.conversations import arrival, threading
from postroom.conversations.models import Attachment, Conversation, Direction, Message, MessageCopy, MessageReference
from postroom.core.blobs import BlobBatch, blob_put
from postroom.core.keys import keyring, org_scope
from postroom.mailboxes.models import Folder, Mailbox
from postroom.mime.addresses import Mailbox as Address
from postroom.mime.filenames import safe_filename
from postroom.mime.parse import MessageBody, ParsedMessage, Quarantined, parse_message

SNIPPET_LENGTH = 200
_HEADER_END = re.compile(rb"\r?\n\r?\n")


@dataclass(frozen=True)
class IngestItem:
    """One fetched server copy for ``messages_ingest_batch``."""

    uid: int
    raw: bytes
    flags: Iterable[bytes | str] = ()
    modseq: int | None = None
    internal_date: datetime | None = None


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
    """Store the message at (``folder``, ``uidvalidity``, ``uid``) of ``mailbox``; see the module docstring."""
    item = IngestItem(uid=uid, raw=raw, flags=flags, modseq=modseq, internal_date=internal_date)
    return messages_ingest_batch(mailbox=mailbox, folder=folder, uidvalidity=uidvalidity, items=[item], direction=direction)[uid]


def messages_ingest_batch(
    *, mailbox: Mailbox, folder: Folder, uidvalidity: int, items: Sequence[IngestItem], direction: str = Direction.INBOUND
) -> dict[int, MessageCopy]:
    """``message_ingest`` for each item, in order (threading sees them in that order), in one
    transaction. Returns the copy of each UID; an item repeating an earlier UID is ignored."""
    unique = list({item.uid: item for item in reversed(items)}.values())[::-1]
    try:
        return _ingest_batch(mailbox, folder, uidvalidity, unique, direction)
    except IntegrityError:
        # Lost a race to another worker: the same server copy, or the same Message-ID, was
        # stored meanwhile. The winner has committed (the constraint waited for it), so a second
        # pass finds its rows; one item at a time, so that one more lost race costs one item.
        if len(unique) == 1:
            return _ingest_batch(mailbox, folder, uidvalidity, unique, direction)
        copies: dict[int, MessageCopy] = {}
        for item in unique:
            copies.update(messages_ingest_batch(mailbox=mailbox, folder=folder, uidvalidity=uidvalidity, items=[item], direction=direction))
        return copies


@dataclass
class _Incoming:
    item: IngestItem
    flag_names: set[str]
    message_id_index: str
    content_index: str
    message: Message | None = None  # known already, or
    prepared: _Prepared | None = None  # new (unless stored meanwhile)


def _flag_names(flags: Iterable[bytes | str]) -> set[str]:
    return {(flag.decode("ascii", "replace") if isinstance(flag, bytes) else flag).lower() for flag in flags}


def _ingest_batch(mailbox: Mailbox, folder: Folder, uidvalidity: int, items: list[IngestItem], direction: str) -> dict[int, MessageCopy]:
    copies: dict[int, MessageCopy] = {}
    existing = MessageCopy.objects.filter(folder=folder, uidvalidity=uidvalidity, uid__in=[item.uid for item in items])
    for copy in existing:
        item = next(item for item in items if item.uid == copy.uid)
        copies[copy.uid] = _update_flags(copy, _flag_names(item.flags), item.modseq)
    if copies:
        arrival.copies_changed(copy.pk for copy in copies.values())
    organization_id = mailbox.organization_id
    scope = org_scope(organization_id)
    incoming: list[_Incoming] = []
    parsed_of: dict[int, ParsedMessage | Quarantined] = {}
    for item in items:
        if item.uid in copies:
            continue
        parsed = parsed_of[item.uid] = parse_message(item.raw)
        headers = parsed if isinstance(parsed, ParsedMessage) else None
        incoming.append(
            _Incoming(
                item=item,
                flag_names=_flag_names(item.flags),
                message_id_index=_message_id_index(scope, headers.message_id) if headers and headers.message_id else "",
                content_index=keyring().blind_index(scope, "message-content", _content_fingerprint(item.raw, headers)),
            )
        )
    if not incoming:
        return copies
    known = _KnownMessages(organization_id, [entry.content_index for entry in incoming])
    blobs = BlobBatch()
    try:
        for entry in incoming:
            entry.message = known.find(entry.message_id_index, entry.content_index)
            if entry.message is None:
                entry.prepared = _prepare(
                    scope,
                    entry.item.raw,
                    parsed_of[entry.item.uid],
                    entry.item.internal_date,
                    direction,
                    entry.message_id_index,
                    entry.content_index,
                    blobs.put,
                )
        blobs.durable()
    finally:
        blobs.discard()
    with transaction.atomic():
        new = [entry for entry in incoming if entry.prepared is not None]
        # Sorted, so that two workers taking several locks cannot deadlock.
        for content_index in sorted({entry.content_index for entry in new if not entry.message_id_index}):
            _lock_content(content_index)
        known_now = _KnownMessages(organization_id, [entry.content_index for entry in new])
        pending: list[MessageCopy] = []
        created_ids: set[Any] = set()
        for entry in incoming:
            message = entry.message
            if entry.prepared is not None:
                message = known_now.find(entry.message_id_index, entry.content_index)
                if message is None:
                    message = _create_message(organization_id, entry.prepared)
                    known_now.add(message)
                    created_ids.add(message.pk)
            item = entry.item
            pending.append(
                MessageCopy(
                    mailbox=mailbox,
                    folder=folder,
                    uidvalidity=uidvalidity,
                    uid=item.uid,
                    message=message,
                    modseq=item.modseq,
                    **_flag_values(entry.flag_names),
                )
            )
        for copy in MessageCopy.objects.bulk_create(pending):
            copies[copy.uid] = copy
        arrival.copies_stored(copies=pending, new_message_ids=created_ids)
    return {item.uid: copies[item.uid] for item in items}


class _KnownMessages:
    """The organization's messages with any of some content indexes, plus those stored meanwhile."""

    def __init__(self, organization_id: Any, content_indexes: list[str]) -> None:
        self.by_content: dict[str, list[Message]] = {}
        for message in Message.objects.filter(organization_id=organization_id, content_index__in=set(content_indexes)).order_by("pk"):
            self.add(message)

    def add(self, message: Message) -> None:
        self.by_content.setdefault(message.content_index, []).append(message)

    def find(self, message_id_index: str, content_index: str) -> Message | None:
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
    return keyring().blind_index(scope, "message-id", message_id)


def _content_fingerprint(raw: bytes, headers: ParsedMessage | None) -> str:
    match = _HEADER_END.search(raw)
    body = raw[match.end() :] if match else raw
    body = b"\n".join(line.rstrip() for line in body.replace(b"\r\n", b"\n").split(b"\n")).strip(b"\n")
    digest = hashlib.sha256(body if headers else raw.replace(b"\r\n", b"\n")).hexdigest()
    if headers is None:
        return f"raw:{digest}"
    senders = ",".join(sorted(address.address.lower() for address in headers.from_))
    date = headers.date.isoformat() if headers.date else ""
    return f"v1:{senders}|{date}|{hashlib.sha256(headers.subject.encode('utf-8')).hexdigest()}|{digest}"


# --- A new message -----------------------------------------------------------------------------


@dataclass
class _PreparedAttachment:
    filename: str
    content_type: str
    size: int
    blob: str
    content_id_index: str
    is_inline: bool


@dataclass
class _Prepared:
    """Everything about a new message, computed (and its blobs written) outside the transaction."""

    scope: str
    message_id_index: str
    content_index: str
    reference_indexes: list[str]  # nearest ancestor first
    direction: str
    sent_at: datetime | None
    received_at: datetime
    size: int
    raw_blob: str
    subject: str
    addresses: dict[str, list[list[str]]]
    snippet: str
    text_body: str | None
    html_body: str | None
    quarantine_reason: str
    is_automated: bool
    attachments: list[_PreparedAttachment] = field(default_factory=list)


def _address_list(mailboxes: tuple[Address, ...]) -> list[list[str]]:
    return [[mailbox.display_name, mailbox.address] for mailbox in mailboxes]


class _TextExtractor(HTMLParser):
    _SKIPPED = frozenset({"script", "style", "head", "title", "template"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0
        self.length = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIPPED:
            self.skipping += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIPPED and self.skipping:
            self.skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self.skipping and self.length < SNIPPET_LENGTH * 4:
            self.parts.append(data)
            self.length += len(data)


def _snippet(text: str | None, html: str | None) -> str:
    if text and text.strip():
        source = text[: SNIPPET_LENGTH * 20]
    elif html:
        extractor = _TextExtractor()
        # Enough of the document for a snippet; the parser's cost grows with its input.
        extractor.feed(html[:100_000])
        source = " ".join(extractor.parts)
    else:
        return ""
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(">")]
    collapsed = " ".join(" ".join(lines).split())
    return collapsed[:SNIPPET_LENGTH]


def _prepare(
    scope: str,
    raw: bytes,
    parsed: ParsedMessage | Quarantined,
    internal_date: datetime | None,
    direction: str,
    message_id_index: str,
    content_index: str,
    put_blob: Callable[[str, bytes], str] = blob_put,
) -> _Prepared:
    now = timezone.now()
    headers = parsed if isinstance(parsed, ParsedMessage) else None
    body: MessageBody | Quarantined = parsed if isinstance(parsed, Quarantined) else parsed.body
    prepared = _Prepared(
        scope=scope,
        message_id_index=message_id_index,
        content_index=content_index,
        reference_indexes=[],
        direction=direction,
        sent_at=headers.date if headers else internal_date,
        received_at=min(internal_date or (headers.date if headers else None) or now, now),
        size=len(raw),
        raw_blob=put_blob(scope, raw),
        subject=headers.subject if headers else "",
        addresses={},
        snippet="",
        text_body=None,
        html_body=None,
        quarantine_reason=body.reason.value if isinstance(body, Quarantined) else "",
        is_automated=headers.is_automated if headers else False,
    )
    if headers is not None:
        ancestors = ([headers.in_reply_to] if headers.in_reply_to else []) + list(reversed(headers.references))
        prepared.reference_indexes = list(dict.fromkeys(_message_id_index(scope, identifier) for identifier in ancestors))
        prepared.addresses = {
            "from": _address_list(headers.from_),
            "to": _address_list(headers.to),
            "cc": _address_list(headers.cc),
            "bcc": _address_list(headers.bcc),
            "reply_to": _address_list(headers.reply_to),
        }
    if isinstance(body, MessageBody):
        prepared.text_body = body.text
        prepared.html_body = body.html
        prepared.snippet = _snippet(body.text, body.html)
        for part, inline in [*((part, True) for part in body.inline_parts.values()), *((part, False) for part in body.attachments)]:
            prepared.attachments.append(
                _PreparedAttachment(
                    filename=safe_filename(part.filename, part.content_type),
                    content_type=part.content_type[:127],
                    size=part.size,
                    blob=put_blob(scope, part.content),
                    content_id_index=keyring().blind_index(scope, "content-id", part.content_id) if part.content_id else "",
                    is_inline=inline,
                )
            )
    return prepared


def _lock_content(content_index: str) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [int(content_index[:15], 16)])


def _create_message(organization_id: Any, prepared: _Prepared) -> Message:
    claimed_id_holder = None
    message_id_index = prepared.message_id_index
    if message_id_index:
        claimed_id_holder = Message.objects.filter(organization_id=organization_id, message_id_index=message_id_index).first()
        if claimed_id_holder is not None:
            if claimed_id_holder.content_index == prepared.content_index:
                # Another worker committed this very message since our lookup (read committed).
                return claimed_id_holder
            message_id_index = ""  # same Message-ID, different content: see the module docstring
    conversation = _conversation_for(organization_id, prepared, claimed_id_holder)
    message = Message(
        organization_id=organization_id,
        conversation=conversation,
        direction=prepared.direction,
        message_id_index=message_id_index,
        content_index=prepared.content_index,
        sent_at=prepared.sent_at,
        size=prepared.size,
        raw_blob=prepared.raw_blob,
        has_attachments=any(not attachment.is_inline for attachment in prepared.attachments),
        quarantine_reason=prepared.quarantine_reason,
    )
    message.subject = prepared.subject
    message.addresses = prepared.addresses
    message.snippet = prepared.snippet
    message.text_body = prepared.text_body
    message.html_body = prepared.html_body
    message.save(force_insert=True)
    MessageReference.objects.bulk_create(
        MessageReference(message=message, organization_id=organization_id, message_id_index=index) for index in prepared.reference_indexes
    )
    for prepared_attachment in prepared.attachments:
        attachment = Attachment(
            organization_id=organization_id,
            message=message,
            content_type=prepared_attachment.content_type,
            size=prepared_attachment.size,
            blob=prepared_attachment.blob,
            content_id=prepared_attachment.content_id_index,
            is_inline=prepared_attachment.is_inline,
        )
        attachment.filename = prepared_attachment.filename
        attachment.save(force_insert=True)
    Conversation.objects.filter(pk=conversation.pk).update(message_count=F("message_count") + 1)
    Conversation.objects.filter(pk=conversation.pk, last_message_at__lt=prepared.received_at).update(last_message_at=prepared.received_at)
    return message


def _conversation_for(organization_id: Any, prepared: _Prepared, claimed_id_holder: Message | None) -> Conversation:
    if claimed_id_holder is not None:
        return claimed_id_holder.conversation
    conversation = threading.conversation_by_references(organization_id, prepared.reference_indexes)
    children = threading.conversations_of_children(organization_id, prepared.message_id_index)
    if conversation is None and children:
        conversation = children[0]
    if conversation is not None:
        threading.merge_into(conversation, children)
        return conversation
    subject_index = _subject_index(prepared.scope, prepared.subject)
    if not prepared.is_automated:
        own_addresses = threading.organization_addresses(organization_id)
        participants = threading.message_participants(prepared.addresses) - own_addresses
        conversation = threading.conversation_by_subject(organization_id, subject_index, prepared.received_at, participants)
        if conversation is not None:
            return conversation
    conversation = Conversation(organization_id=organization_id, subject_index=subject_index, last_message_at=prepared.received_at)
    conversation.subject = prepared.subject
    conversation.save(force_insert=True)
    return conversation


def _subject_index(scope: str, subject: str) -> str:
    normalised = threading.normalised_subject(subject)
    return keyring().blind_index(scope, "subject", normalised) if normalised else ""
