"""The body pass: texts, snippet and attachments of messages stored from their headers alone.

Storing a received message needs only its header block (see ``conversations.ingest``); its raw
bytes are stored at once, sealed. This pass reads them back, parses the body in a parser process
(``postroom.mime.isolation``: CPU, memory and wall-clock limits, niced below the import), and
stores what it found, sealed like everything else. It runs

- as a task (``message_bodies_fill_task``) queued after each batch of new mail the sync engine
  stores, in another process (the task worker) and on the other core; for a first import, after
  each of its first batches (the newest mail) and then for the rest once the folder's import is
  done, so that it does not compete with the import for the cores (``sync.engine``);
- at once, for the messages of a conversation a member opens before the task reached them
  (``messages_with_bodies``);
- again for any message still waiting an hour after it was stored (``message_bodies_sweep``, from
  the sync service's loop), in case a task was lost.

Filling is idempotent: each message is updated only while it is still pending, so two passes
over one message (a task and an opened conversation) store its body once. A body that breaks a
limit quarantines the message (stored raw, shown as such), exactly as a header would have.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import TypeVar

from django.db import transaction
from django.utils import timezone

from postroom.conversations.models import Attachment, Message
from postroom.core.blobs import BlobBatch, blob_get
from postroom.core.crypto import DecryptionError
from postroom.core.keys import keyring
from postroom.mime.filenames import safe_filename
from postroom.mime.isolation import Body, Part, body_parser
from postroom.mime.parse import Quarantined

logger = logging.getLogger(__name__)

# Raw bytes read and parsed together: a batch of big messages is taken in several rounds.
_ROUND_BYTES = 32 * 1024 * 1024
TASK_SIZE = 100
SWEEP_AFTER = timedelta(hours=1)
SWEEP_LIMIT = 5_000

_M = TypeVar("_M", bound=Message)


def _rounds(messages: Sequence[Message]) -> Iterator[list[Message]]:
    current: list[Message] = []
    size = 0
    for message in messages:
        if current and size + message.size > _ROUND_BYTES:
            yield current
            current, size = [], 0
        current.append(message)
        size += message.size
    if current:
        yield current


def message_bodies_fill(*, message_ids: Sequence[uuid.UUID | str]) -> int:
    """Parse and store the bodies of those of ``message_ids`` still pending; how many were filled."""
    pending = list(
        Message.objects.filter(pk__in=list(message_ids), body_pending=True).only("pk", "organization_id", "raw_blob", "size").order_by("pk")
    )
    filled = 0
    for round_ in _rounds(pending):
        filled += _fill(round_)
    return filled


def _fill(messages: list[Message]) -> int:
    readable: list[tuple[Message, bytes]] = []
    for message in messages:
        try:
            readable.append((message, blob_get(message.key_scope(), message.raw_blob)))
        except (OSError, DecryptionError) as error:
            # Left pending: the sweep tries again, and an operator sees it in the logs.
            logger.warning("message %s: raw message unreadable for the body pass (%s)", message.pk, type(error).__name__)
    results = list(body_parser().bodies([raw for _, raw in readable]))
    blobs = BlobBatch()
    attachments: dict[uuid.UUID, list[Attachment]] = {}
    try:
        for (message, _), result in zip(readable, results, strict=True):
            if isinstance(result, Body):
                attachments[message.pk] = [_attachment(message, part, blobs.put) for part in result.parts]
        blobs.durable()
    finally:
        blobs.discard()
    filled = 0
    with transaction.atomic():
        for (message, _), result in zip(readable, results, strict=True):
            values: dict[str, object] = {"body_pending": False}
            if isinstance(result, Quarantined):
                values["quarantine_reason"] = result.reason.value
            else:
                message.text_body = result.text
                message.html_body = result.html
                message.snippet = result.snippet
                values |= {
                    "text_body_sealed": message.text_body_sealed,
                    "html_body_sealed": message.html_body_sealed,
                    "snippet_sealed": message.snippet_sealed,
                    "has_attachments": any(not part.is_inline for part in result.parts),
                }
            if Message.objects.filter(pk=message.pk, body_pending=True).update(**values):
                filled += 1
                Attachment.objects.bulk_create(attachments.get(message.pk, []))
    return filled


def _attachment(message: Message, part: Part, put_blob: Callable[[str, bytes], str]) -> Attachment:
    scope = message.key_scope()
    attachment = Attachment(
        organization_id=message.organization_id,
        message_id=message.pk,
        content_type=part.content_type[:127],
        size=len(part.content),
        blob=put_blob(scope, part.content),
        content_id=keyring().blind_index(scope, "content-id", part.content_id) if part.content_id else "",
        is_inline=part.is_inline,
    )
    attachment.filename = safe_filename(part.filename, part.content_type)
    return attachment


def message_bodies_fill_later(*, message_ids: Sequence[uuid.UUID]) -> None:
    """Queue the body pass for ``message_ids`` (after the commit that stored them)."""
    from postroom.conversations.tasks import message_bodies_fill_task

    ids = [str(message_id) for message_id in message_ids]
    for start in range(0, len(ids), TASK_SIZE):
        message_bodies_fill_task.enqueue(ids[start : start + TASK_SIZE])


def folder_bodies_fill_later(*, folder_id: int) -> int:
    """Queue the body pass for every message with a copy in the folder that still waits for it,
    newest first, and say how many.

    The ids are read to the end before the first task is queued (on SQLite a write during the
    read would hold the write lock, and stall the task worker, until the read is done) and kept
    as 16 bytes each: at the end of a first import of 100,000 messages, holding them as UUIDs,
    deduplicated in a dict and then as text raised the sync process's peak memory by ~20 MB."""
    # A join, each message once (DISTINCT): SQLite runs an EXISTS here through the folder's index,
    # once per message, which took minutes at 100,000.
    waiting = (
        Message.objects.filter(copies__folder_id=folder_id, body_pending=True).order_by("-sent_at").values_list("pk", flat=True).distinct()
    )
    packed = bytearray()
    for message_id in waiting.iterator(chunk_size=2_000):
        packed += message_id.bytes
    step = 16 * TASK_SIZE
    for start in range(0, len(packed), step):
        chunk = packed[start : start + step]
        message_bodies_fill_later(message_ids=[uuid.UUID(bytes=bytes(chunk[at : at + 16])) for at in range(0, len(chunk), 16)])
    return len(packed) // 16


def messages_with_bodies(messages: Sequence[_M]) -> list[_M]:
    """``messages``, the bodies of those still pending parsed and stored first (a member opened them)."""
    waiting = [message.pk for message in messages if message.body_pending]
    if not waiting:
        return list(messages)
    message_bodies_fill(message_ids=waiting)
    fresh = {message.pk: message for message in type(messages[0]).objects.filter(pk__in=waiting).prefetch_related("attachments")}
    return [fresh.get(message.pk, message) if message.body_pending else message for message in messages]


def message_bodies_sweep(*, older_than: timedelta = SWEEP_AFTER, limit: int = SWEEP_LIMIT) -> int:
    """Queue the body pass again for messages still pending long after they were stored."""
    stale = list(
        Message.objects.filter(body_pending=True, created_at__lt=timezone.now() - older_than)
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )
    if stale:
        message_bodies_fill_later(message_ids=stale)
    return len(stale)
