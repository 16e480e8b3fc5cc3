"""Bringing one mailbox's folders up to date with its IMAP server, and members' changes back.

Attackers and failure modes:

- A hostile sender or server sending enormous or pathological messages (R31): each message's
  ``RFC822.SIZE`` is fetched before its body (for the first import, one ``SEARCH LARGER`` finds
  them all), and a message over the size limit is never downloaded: only a bounded part of its header is, and it is stored quarantined, so it is
  visible as such and never blocks the folder. Parsing limits are ``message_ingest``'s.
- A server sending folder names or UIDs that would inject commands when sent back (R33): names
  pass ``imap_folder_name`` before they are stored or selected, UIDs ``imap_uids`` before any
  command carries them.
- Crashes and lost connections at any moment: the folder state (UIDVALIDITY, highest UID, the
  backfill position) advances only after a batch's messages are committed, and storing is
  idempotent per (folder, UIDVALIDITY, UID), so a restart refetches at most one batch and stores
  nothing twice.
- Postroom changing the member's mail behind their back: sync selects folders read-only
  (EXAMINE) and fetches ``BODY.PEEK[]``, which cannot set ``\\Seen``; flags are written and
  messages moved only by ``copy_set_seen`` and ``copy_move``, which a member's action calls,
  and a move without the MOVE extension expunges only the moved UID (UIDPLUS), never another
  message that happens to be marked ``\\Deleted``.

Network I/O never happens inside a database transaction: each batch is fetched, then stored.

Speed of the first import: the UIDs still to import are searched once, then the batches below
the first are fetched and their headers parsed by a ``_Prefetcher`` over a second session of
its own, while the sync thread stores the batch before (a bounded queue keeps it at most
``PREFETCH_DEPTH`` batches ahead). It reads nothing from the database and writes nothing: the
folder state still advances only in the sync thread, after each commit, so a crash loses at
most the batches held in memory, which the next run fetches again.

The body pass (texts, snippets, attachments: ``conversations.bodies``, in the task worker) of
the first import is queued at once for the newest ``IMPORT_BODIES_AT_ONCE`` messages only, which
are the ones a member looks at first; the rest is queued when the folder's import is done (newest
first), so that it does not take the second core from the import's header parsing while it runs.
Until then a member who opens an older message has its body parsed on the spot
(``messages_with_bodies``), and new mail's bodies are queued at once, as always. Should the
process die before the end, the resumed import queues them when it ends, and the hourly
``message_bodies_sweep`` catches whatever is still left.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import queue
import threading
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Q
from django.dispatch import Signal
from django.utils import timezone
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError
from imapclient.response_parser import parse_fetch_response

from postroom.conversations import arrival
from postroom.conversations.bodies import folder_bodies_fill_later
from postroom.conversations.ingest import IngestItem, messages_ingest_batch
from postroom.conversations.models import Message, MessageCopy
from postroom.mailboxes.connection import ServerSettings, TlsMode, open_imap
from postroom.mailboxes.models import Folder, FolderRole, Mailbox
from postroom.mailboxes.oauth import mailbox_sign_in_credentials
from postroom.mailboxes.protocol_values import UnsafeProtocolValue, imap_folder_name, imap_uid, imap_uids
from postroom.mime.isolation import import_parser
from postroom.mime.parse import DEFAULT_LIMITS, QuarantineReason
from postroom.sync.fetch_response import fetch_messages

logger = logging.getLogger(__name__)

# Messages per batch of the first import: each batch costs a transaction, a pass of fsyncs and a
# fixed round of queries (threading, access, events), which at 100 messages took about a third
# of the sync process's CPU (bench/README.md, "First-import CPU"). New mail comes in batches of at
# most NEW_MAIL_BATCH_SIZE, so that the first of a burst is not held back by the rest.
BATCH_SIZE = 250
NEW_MAIL_BATCH_SIZE = 100
# UIDs per command when a command has to name each one (IMAPClient sends no ranges).
UIDS_PER_COMMAND = 1000
# UID ranges per database query when looking up the copies a VANISHED answer names.
RANGES_PER_QUERY = 200
# What is kept of a message too large to fetch: the start of its header, for the sender and subject.
OVERSIZED_HEADER_BYTES = 64 * 1024
MAX_MESSAGE_BYTES = DEFAULT_LIMITS.max_message_bytes
# Messages of a folder's first import (the newest) whose body pass is queued batch by batch; the
# rest is queued when the import of the folder is done (see the module docstring).
IMPORT_BODIES_AT_ONCE = 1000
# Batches of the first import fetched and parsed ahead of the one being stored (memory: about
# this many batches of raw messages more, i.e. 15-20 MB at 30 KB a message).
PREFETCH_DEPTH = 2
# A prefetcher nobody takes from for this long signs out and ends (its MailboxSync was dropped).
PREFETCH_IDLE_SECONDS = 60.0

# SPECIAL-USE attributes (RFC 6154) of the folders Postroom syncs besides INBOX.
SPECIAL_USE_ROLES = {b"\\sent": FolderRole.SENT, b"\\archive": FolderRole.ARCHIVE, b"\\trash": FolderRole.TRASH, b"\\junk": FolderRole.JUNK}
SYNCED_ROLES = (FolderRole.INBOX, FolderRole.SENT, FolderRole.ARCHIVE, FolderRole.TRASH, FolderRole.JUNK)

# Sent after each batch of messages is stored (keyword arguments: mailbox_id, folder_id, uids),
# for whatever shows mail live; receivers run in the sync thread and must be quick.
messages_stored = Signal()

SEEN = b"\\Seen"
DELETED = b"\\Deleted"


class FolderChanged(Exception):  # noqa: N818 (an outcome the caller handles, not a failure)
    """The server's folder is no longer the one a stored copy belongs to (UIDVALIDITY changed)."""


class MoveUnsupported(Exception):  # noqa: N818
    """The server can neither MOVE nor expunge a single UID, so a move would touch other mail."""


class MissingFolder(Exception):  # noqa: N818
    """The mailbox has no folder with the wanted role (the server offers none by SPECIAL-USE)."""


# --- connecting ----------------------------------------------------------------------------------
def mailbox_imap_server(mailbox: Mailbox) -> ServerSettings:
    return ServerSettings(
        host=mailbox.imap_host, port=mailbox.imap_port, tls=TlsMode(mailbox.imap_tls), private_ca_pem=mailbox.private_ca_pem or None
    )


def imap_open_for(mailbox: Mailbox, *, timeout: float = 30.0) -> IMAPClient:
    """A signed-in session for ``mailbox``, ready for sync: timezone-aware dates, CONDSTORE and
    QRESYNC on where offered (``MailboxSync`` relies on that: QRESYNC must be enabled before a
    SELECT may carry its parameters, RFC 7162 3.2.3).

    An OAuth2 access token about to expire is renewed first; ``OAuthGrantRevoked`` (the mailbox
    now needs reconnecting) and ``OAuthRefreshFailed`` (try later) come from there."""
    client = open_imap(mailbox_imap_server(mailbox), mailbox_sign_in_credentials(mailbox), timeout=timeout)
    client.normalise_times = False
    if client.has_capability("ENABLE"):
        extensions = [name for name in ("CONDSTORE", "QRESYNC") if client.has_capability(name)]
        if extensions:
            client.enable(*extensions)
    return client


@contextlib.contextmanager
def imap_session(mailbox: Mailbox) -> Iterator[IMAPClient]:
    client = imap_open_for(mailbox)
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            client.logout()


def _ingest_item(uid: int, raw: bytes, data: dict[bytes, Any]) -> IngestItem:
    modseq = data.get(b"MODSEQ")
    internal_date = data.get(b"INTERNALDATE")
    return IngestItem(
        uid=uid,
        raw=bytes(raw),
        flags=data.get(b"FLAGS", ()),
        modseq=int(modseq[0]) if modseq else None,
        internal_date=internal_date if isinstance(internal_date, datetime) else None,
    )


def _chunks(values: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


# --- what changed on the server since the last look (CONDSTORE/QRESYNC, RFC 7162) ----------------
class UidRanges:
    """A set of UIDs as the server wrote it ("1:4,7,9:12"), tested without expanding it: a
    VANISHED (EARLIER) answer may name ranges of millions of UIDs that never existed."""

    def __init__(self, sequence_set: str) -> None:
        ranges: list[tuple[int, int]] = []
        for part in sequence_set.split(","):
            first, _, last = part.strip().partition(":")
            try:
                low, high = int(first), int(last or first)
            except ValueError:
                raise IMAPClientError("the server sent an unreadable set of UIDs") from None
            ranges.append((min(low, high), max(low, high)))
        merged: list[tuple[int, int]] = []
        for low, high in sorted(ranges):
            if merged and low <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(merged[-1][1], high))
            else:
                merged.append((low, high))
        self._starts = [low for low, _ in merged]
        self.spans = merged

    def __contains__(self, uid: object) -> bool:
        if not isinstance(uid, int):
            return False
        index = bisect.bisect_right(self._starts, uid) - 1
        return index >= 0 and uid <= self.spans[index][1]


@dataclass
class ServerChanges:
    """What the server reported changed in a folder since the HIGHESTMODSEQ we had stored."""

    vanished: list[UidRanges]
    flags: dict[int, tuple[bytes, ...]]

    def is_vanished(self, uid: int) -> bool:
        return any(uid in ranges for ranges in self.vanished)


@dataclass
class Selected:
    uidvalidity: int
    highest_modseq: int | None
    changes: ServerChanges | None  # set only by a QRESYNC select whose state the server accepted


def _fetched_flags(data: list[Any]) -> dict[int, tuple[bytes, ...]]:
    """FETCH responses as imaplib collected them, parsed as IMAPClient parses its own, keyed by UID."""
    parsed = parse_fetch_response(data, normalise_times=False, uid_is_key=True)
    return {int(uid): tuple(values[b"FLAGS"]) for uid, values in parsed.items() if b"FLAGS" in values}


# --- the first import, fetched ahead ------------------------------------------------------------
@dataclass
class _Fetched:
    """One batch as fetched: the messages that fit (headers parsed), the UIDs too large to fetch."""

    uids: list[int]
    items: list[IngestItem]
    oversized: list[int]


def _fetch_batch(
    client: IMAPClient, uids: Sequence[int], *, condstore: bool, parse: bool, too_large: Collection[int] | None = None
) -> _Fetched:
    """Sizes first (a message over the limit is never downloaded), then the messages that fit;
    with ``parse``, their header pass too (in the parser processes). ``too_large``: the UIDs over
    the limit, when a search has found them already (the import plan's), instead of the sizes."""
    if too_large is None:
        sizes = client.fetch(list(uids), ["RFC822.SIZE"])
        fitting = [uid for uid in uids if int(sizes.get(uid, {}).get(b"RFC822.SIZE", 0)) <= MAX_MESSAGE_BYTES]
        oversized = [uid for uid in uids if uid in sizes and uid not in fitting]
    else:
        fitting = [uid for uid in uids if uid not in too_large]
        oversized = [uid for uid in uids if uid in too_large]
    fetched = fetch_messages(client, fitting, modseq=condstore)
    # Without BODY[]: an unsolicited FLAGS update, or the message was expunged meanwhile.
    batch = [_ingest_item(uid, fetched[uid][b"BODY[]"], fetched[uid]) for uid in sorted(fetched) if b"BODY[]" in fetched[uid]]
    if parse and batch:
        parsed = list(import_parser().headers([item.raw for item in batch]))
        batch = [
            IngestItem(uid=item.uid, raw=item.raw, flags=item.flags, modseq=item.modseq, internal_date=item.internal_date, parsed=result)
            for item, result in zip(batch, parsed, strict=True)
        ]
    return _Fetched(uids=list(uids), items=batch, oversized=oversized)


class _Prefetcher(threading.Thread):
    """Fetches (and parses the headers of) the given batches of one folder over its own signed-in
    session, in order, into a queue the sync thread takes them from. Touches no database: the
    session is opened by the caller, and the folder is checked to still have ``uidvalidity``."""

    def __init__(
        self,
        client: IMAPClient,
        folder_name: str,
        uidvalidity: int,
        batches: list[list[int]],
        *,
        condstore: bool,
        too_large: frozenset[int],
    ) -> None:
        super().__init__(name="sync-prefetch", daemon=True)
        self.client = client
        self.folder_name = folder_name
        self.uidvalidity = uidvalidity
        self.batches = batches
        self.condstore = condstore
        self.too_large = too_large
        self.results: queue.Queue[_Fetched | BaseException] = queue.Queue(maxsize=PREFETCH_DEPTH)
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            status = self.client.select_folder(self.folder_name, readonly=True)
            if int(status[b"UIDVALIDITY"]) != self.uidvalidity:
                raise FolderChanged(f"{self.folder_name} was renumbered by the server")
            for uids in self.batches:
                fetched: _Fetched | BaseException = _fetch_batch(
                    self.client, uids, condstore=self.condstore, parse=True, too_large=self.too_large
                )
                if not self._put(fetched):
                    return
        except Exception as error:  # handed to the sync thread, which fetches the batch itself
            self._put(error)
        finally:
            with contextlib.suppress(Exception):
                self.client.logout()

    def _put(self, result: _Fetched | BaseException) -> bool:
        waited = 0.0
        while not self.stopping.is_set():
            try:
                self.results.put(result, timeout=1.0)
                return True
            except queue.Full:
                waited += 1.0
                if waited >= PREFETCH_IDLE_SECONDS:
                    return False
        return False

    def take(self, uids: Sequence[int]) -> _Fetched | None:
        """The next batch, if it is ``uids`` and was fetched; None: fetch it yourself."""
        while True:
            try:
                result = self.results.get(timeout=1.0)
                break
            except queue.Empty:
                if not self.is_alive() and self.results.empty():
                    return None
        if isinstance(result, BaseException):
            logger.info("prefetching the import stopped (%s); fetching in the sync session", result)
            return None
        return result if result.uids == list(uids) else None

    def stop(self) -> None:
        self.stopping.set()


@dataclass
class _ImportPlan:
    """The UIDs of a folder's first import still to fetch, found by one UID SEARCH, in batches
    from the newest; ``next`` is the batch to store next."""

    folder_pk: Any
    uidvalidity: int
    start_below_uid: int
    batches: list[list[int]]
    # The UIDs below ``start_below_uid`` over MAX_MESSAGE_BYTES (a message's size never changes),
    # found by the same search: no batch fetches its messages' sizes.
    too_large: frozenset[int] = frozenset()
    next: int = 0
    prefetcher: _Prefetcher | None = None
    bodies_deferred: bool = False  # a batch was stored without queueing its body pass

    def below_uid(self) -> int:
        """The ``backfill_below_uid`` of the folder once every batch before ``next`` is stored."""
        return self.start_below_uid if self.next == 0 else self.batches[self.next - 1][0]

    def close(self) -> None:
        if self.prefetcher is not None:
            self.prefetcher.stop()
            self.prefetcher = None


# --- the sync of one mailbox ---------------------------------------------------------------------
@dataclass
class FolderOutcome:
    stored: int = 0
    backfill_left: bool = False


class MailboxSync:
    """Sync of one mailbox over one signed-in IMAP session (the caller owns the session)."""

    def __init__(self, mailbox: Mailbox, client: IMAPClient, *, batch_size: int = BATCH_SIZE, prefetch: bool = True) -> None:
        self.mailbox = mailbox
        self.client = client
        self.batch_size = batch_size
        self.condstore = client.has_capability("CONDSTORE")
        # ``imap_open_for`` enabled it; without it, removals are found by UID SEARCH ALL.
        self.qresync = self.condstore and client.has_capability("QRESYNC")
        # Fetch the first import's next batches over a second session while one is stored.
        self.prefetch = prefetch
        self._plan: _ImportPlan | None = None

    def close(self) -> None:
        """Stop fetching ahead (the caller still owns and closes ``client``)."""
        if self._plan is not None:
            self._plan.close()
            self._plan = None

    # folders ---------------------------------------------------------------------------------
    def discover_folders(self) -> list[Folder]:
        """INBOX and the special-use folders, as Folder rows, INBOX first; run again during a
        session so folders created, renamed or removed on the server meanwhile are followed.

        A folder seen for the first time gets a row (and is imported by ``sync_folder``). A
        synced role now on a folder under another name, with the old name gone from the list,
        was renamed: the row takes the new name and keeps its state (the UIDVALIDITY check of
        the next select decides whether it must be imported again). A synced folder no longer
        listed with its role (deleted, renamed away, no longer special-use) is dropped: its
        copies are marked gone, it is no longer synced, and should it come back, the copies the
        server still holds are revived by the import rather than stored twice."""
        found: dict[str, str] = {}
        listed: set[str] = set()
        for attributes, _delimiter, raw_name in self.client.list_folders():
            name = raw_name.decode("utf-8", "replace") if isinstance(raw_name, bytes) else str(raw_name)
            lowered = {attribute.lower() for attribute in attributes}
            if b"\\noselect" in lowered or b"\\nonexistent" in lowered:
                continue
            listed.add(name)
            role = (
                FolderRole.INBOX
                if name.upper() == "INBOX"
                else next((SPECIAL_USE_ROLES[a] for a in lowered if a in SPECIAL_USE_ROLES), None)
            )
            if role is None or role in found:
                continue
            try:
                found[role] = imap_folder_name(name)
            except UnsafeProtocolValue:
                logger.warning("mailbox %s: skipping a %s folder whose name cannot be used safely", self.mailbox.pk, role)
        rows = {folder.name: folder for folder in Folder.objects.filter(mailbox=self.mailbox)}
        if FolderRole.INBOX not in found:
            # Every IMAP server has an INBOX: a list without it is not one to drop folders by.
            logger.warning("mailbox %s: the server listed no INBOX; keeping the folders as they were", self.mailbox.pk)
            unchanged = [folder for folder in rows.values() if folder.role in SYNCED_ROLES]
            return sorted(unchanged, key=lambda folder: SYNCED_ROLES.index(folder.role))
        synced = {folder.role: folder for folder in rows.values() if folder.role in SYNCED_ROLES}
        folders = []
        for role in SYNCED_ROLES:
            if role not in found:
                continue
            name, current = found[role], synced.get(role)
            if current is not None and current.name == name:
                folder = current
            elif name in rows:
                folder = rows[name]  # known under its name (with another role, or dropped earlier)
                if folder.role != role:
                    self._update_folder(folder, role=role)
            elif current is not None and current.name not in listed:
                logger.info("mailbox %s: folder %s was renamed on the server", self.mailbox.pk, current.pk)
                self._update_folder(current, name=name)
                folder = current
            else:
                folder, _ = Folder.objects.get_or_create(mailbox=self.mailbox, name=name, defaults={"role": role})
                if folder.role != role:
                    self._update_folder(folder, role=role)
            folders.append(folder)
        kept = {folder.pk for folder in folders}
        for folder in rows.values():
            if folder.role in SYNCED_ROLES and folder.pk not in kept:
                self._drop_folder(folder)
        return folders

    def _drop_folder(self, folder: Folder) -> None:
        """Stop syncing a folder the server no longer lists with its role: its copies are gone
        from where Postroom looks, and it starts again from nothing if it returns."""
        logger.info("mailbox %s: folder %s is no longer on the server's list; its copies are marked gone", self.mailbox.pk, folder.pk)
        dropped = list(MessageCopy.objects.filter(folder=folder, gone_at__isnull=True).values_list("id", flat=True))
        MessageCopy.objects.filter(id__in=dropped).update(gone_at=timezone.now())
        arrival.copies_changed(dropped)
        self._update_folder(
            folder, role=FolderRole.OTHER, uidvalidity=None, highest_uid=0, highest_modseq=None,
            backfill_below_uid=None, messages_total=0, messages_done=0,
        )  # fmt: skip

    def sync_folder(self, folder: Folder, *, backfill_batches: int = 1) -> FolderOutcome:
        """New mail, server-side flag changes and removals, then up to ``backfill_batches`` batches
        of the first import (newest first). Leaves the folder selected (read-only)."""
        selected = self._select(folder)
        uidvalidity, highest_modseq = selected.uidvalidity, selected.highest_modseq
        if folder.uidvalidity != uidvalidity:
            self._start_import(folder, uidvalidity, highest_modseq)
            outcome = FolderOutcome()
        elif selected.changes is not None:
            # Applied before new mail is fetched: the flags the SELECT reported are older than
            # those the fetch of new mail brings.
            self._apply_changes(folder, uidvalidity, selected.changes)
            outcome = FolderOutcome(stored=self._fetch_new(folder, uidvalidity))
            self._update_folder(folder, highest_modseq=highest_modseq)
        else:
            outcome = FolderOutcome(stored=self._fetch_new(folder, uidvalidity))
            self._refresh_known(folder, uidvalidity, highest_modseq)
        if backfill_batches > 0 and folder.backfill_below_uid is not None:
            outcome.stored += self._backfill(folder, uidvalidity, folder.backfill_below_uid, backfill_batches)
        outcome.backfill_left = folder.backfill_below_uid is not None
        now = timezone.now()
        Folder.objects.filter(pk=folder.pk).update(last_synced_at=now)
        folder.last_synced_at = now
        return outcome

    def _select(self, folder: Folder) -> Selected:
        """Select ``folder`` read-only; with QRESYNC and a stored state, the server's report of
        what changed since comes with it."""
        if self.qresync and folder.uidvalidity is not None and folder.highest_modseq is not None:
            selected = self._examine_qresync(folder, folder.uidvalidity, folder.highest_modseq)
            if selected.changes is None or (selected.highest_modseq is not None and selected.highest_modseq >= folder.highest_modseq):
                return selected
            # The server's mod-sequences went backwards (its index was rebuilt) or are gone: its
            # report since our value cannot be trusted; the UID SEARCH sweep finds everything.
            logger.info("mailbox %s: folder %s lost its HIGHESTMODSEQ; checking every message", self.mailbox.pk, folder.pk)
            return Selected(selected.uidvalidity, selected.highest_modseq, changes=None)
        status = self.client.select_folder(folder.name, readonly=True)
        highest_modseq = int(status[b"HIGHESTMODSEQ"]) if b"HIGHESTMODSEQ" in status else None
        return Selected(int(status[b"UIDVALIDITY"]), highest_modseq, changes=None)

    def _examine_qresync(self, folder: Folder, uidvalidity: int, highest_modseq: int) -> Selected:
        """EXAMINE with the QRESYNC parameter (RFC 7162 3.2.5): given the UIDVALIDITY and the
        HIGHESTMODSEQ we stored, the server answers with VANISHED (EARLIER) for every UID
        expunged since and a FETCH (UID, FLAGS, MODSEQ) for every message changed since, in the
        SELECT response itself: no UID SEARCH ALL, no flag sweep.

        IMAPClient's ``select_folder`` cannot pass the parameter, so this does what it does
        (imaplib's ``select``: forget older untagged responses, run the command, mark the session
        read-only and selected) with the parameter added. The numbers come from our database."""
        imap = self.client._imap
        imap.untagged_responses = {}
        imap.is_readonly = True
        parameter = f"(QRESYNC ({int(uidvalidity)} {int(highest_modseq)}))"
        typ, data = imap._simple_command("EXAMINE", self.client._normalise_folder(folder.name), parameter)
        if typ != "OK":
            imap.state = "AUTH"  # a failed SELECT leaves no folder selected (RFC 3501 6.3.1)
            self.client._checkok("examine", typ, data)
        imap.state = "SELECTED"
        fetched = imap.untagged_responses.pop("FETCH", [])
        vanished = imap.untagged_responses.pop("VANISHED", [])
        status = self.client._process_select_response(imap.untagged_responses)
        selected_uidvalidity = int(status[b"UIDVALIDITY"])
        current_modseq = int(status[b"HIGHESTMODSEQ"]) if b"HIGHESTMODSEQ" in status else None
        if selected_uidvalidity != uidvalidity:
            return Selected(selected_uidvalidity, current_modseq, changes=None)  # renumbered: nothing reported applies
        try:
            ranges = []
            for line in vanished:
                text = (line.decode("ascii", "replace") if isinstance(line, bytes) else str(line)).strip()
                if text.upper().startswith("(EARLIER)"):
                    text = text[len("(EARLIER)") :]
                ranges.append(UidRanges(text))
            changes = ServerChanges(vanished=ranges, flags=_fetched_flags(fetched))
        except (IMAPClientError, ValueError):
            # An answer we cannot read: the sweep without QRESYNC still finds every change.
            logger.warning("mailbox %s: unreadable QRESYNC answer for folder %s; checking every message", self.mailbox.pk, folder.pk)
            changes = None
        return Selected(selected_uidvalidity, current_modseq, changes=changes)

    def _update_folder(self, folder: Folder, **values: Any) -> None:
        Folder.objects.filter(pk=folder.pk).update(**values)
        for name, value in values.items():
            setattr(folder, name, value)

    def _start_import(self, folder: Folder, uidvalidity: int, highest_modseq: int | None) -> None:
        """First sight of the folder, or its UIDVALIDITY changed (the server renumbered it, e.g.
        the folder was recreated): every stored copy under the old numbering is gone, and the
        folder is imported again; ``message_ingest`` links the new copies to the Messages
        already stored, so nothing is duplicated."""
        if folder.uidvalidity is not None:
            logger.info("mailbox %s: folder %s has a new UIDVALIDITY; importing it again", self.mailbox.pk, folder.pk)
            renumbered = MessageCopy.objects.filter(folder=folder, gone_at__isnull=True).exclude(uidvalidity=uidvalidity)
            renumbered_ids = list(renumbered.values_list("id", flat=True))
            MessageCopy.objects.filter(id__in=renumbered_ids).update(gone_at=timezone.now())
            arrival.copies_changed(renumbered_ids)
        criteria: list[Any] = ["ALL"]
        if self.mailbox.import_since:
            criteria = ["SINCE", self.mailbox.import_since]
        wanted = imap_uids(self.client.search(criteria))
        present = imap_uids(self.client.search(["ALL"]))
        self._revive_copies(folder, uidvalidity, present)
        # Everything above the current top is new mail; everything up to it, the import.
        top = max(present or [0])
        self._update_folder(
            folder,
            uidvalidity=uidvalidity,
            highest_uid=top,
            highest_modseq=highest_modseq,
            backfill_below_uid=top + 1 if wanted else None,
            messages_total=len(wanted),
            messages_done=0,
        )

    def _fetch_new(self, folder: Folder, uidvalidity: int) -> int:
        """Messages above the highest UID seen, oldest first, the state advanced per batch."""
        # "n:*" always matches the last message, even below n: keep only what is really new.
        new = [uid for uid in imap_uids(self.client.search(["UID", f"{folder.highest_uid + 1}:*"])) if uid > folder.highest_uid]
        for batch in _chunks(new, min(self.batch_size, NEW_MAIL_BATCH_SIZE)):
            self._store_batch(folder, uidvalidity, batch)
            self._update_folder(folder, highest_uid=max(batch))
        return len(new)

    def _backfill(self, folder: Folder, uidvalidity: int, below_uid: int, batches: int) -> int:
        """Up to ``batches`` batches of the first import, walking down from the folder's
        ``backfill_below_uid``; the folder's state advances after each batch is committed."""
        plan = self._import_plan(folder, uidvalidity, below_uid)
        count = 0
        for _ in range(batches):
            if plan.next >= len(plan.batches):
                break
            uids = plan.batches[plan.next]
            fetched = None
            if plan.prefetcher is not None and plan.next > 0:
                fetched = plan.prefetcher.take(uids)
                if fetched is None:
                    plan.close()  # it failed or fell out of step: the rest is fetched here
            if fetched is None:
                fetched = _fetch_batch(self.client, uids, condstore=self.condstore, parse=False, too_large=plan.too_large)
            bodies_now = sum(len(batch) for batch in plan.batches[: plan.next]) < IMPORT_BODIES_AT_ONCE
            plan.bodies_deferred = plan.bodies_deferred or not bodies_now
            self._store_fetched(folder, uidvalidity, fetched, bodies_later=bodies_now)
            plan.next += 1
            count += len(uids)
            if plan.next < len(plan.batches):
                done = min(folder.messages_total, folder.messages_done + len(uids))
                self._update_folder(folder, backfill_below_uid=min(uids), messages_done=done)
        if plan.next >= len(plan.batches):
            self._update_folder(folder, backfill_below_uid=None, messages_done=folder.messages_total)
            plan.close()
            self._plan = None
            # The body pass of what the import stored without queueing it (by this plan, or by one
            # a crash or restart cut short: this plan then started below the top), newest first.
            if plan.bodies_deferred or plan.start_below_uid <= folder.highest_uid:
                folder_bodies_fill_later(folder_id=folder.pk)
        return count

    def _import_plan(self, folder: Folder, uidvalidity: int, below_uid: int) -> _ImportPlan:
        """The plan that goes on from where the folder's import stands: the current one, or a
        new one from a UID SEARCH (with its prefetcher when there is more than one batch)."""
        plan = self._plan
        if plan is not None and (plan.folder_pk, plan.uidvalidity, plan.below_uid()) == (folder.pk, uidvalidity, below_uid):
            return plan
        self.close()
        remaining: list[int] = []
        too_large: frozenset[int] = frozenset()
        if below_uid > 1:
            criteria: list[Any] = ["UID", f"1:{below_uid - 1}"]
            if self.mailbox.import_since:
                criteria += ["SINCE", self.mailbox.import_since]
            remaining = sorted(uid for uid in imap_uids(self.client.search(criteria)) if uid < below_uid)
            if remaining:
                # SEARCH LARGER counts the octets RFC822.SIZE reports (RFC 3501 6.4.4, 7.4.2).
                too_large = frozenset(imap_uids(self.client.search([*criteria, "LARGER", MAX_MESSAGE_BYTES])))
        batches = [remaining[max(0, end - self.batch_size) : end] for end in range(len(remaining), 0, -self.batch_size)]
        plan = self._plan = _ImportPlan(
            folder_pk=folder.pk, uidvalidity=uidvalidity, start_below_uid=below_uid, batches=batches, too_large=too_large
        )
        if self.prefetch and len(batches) > 1:
            try:
                session = imap_open_for(self.mailbox)
            except Exception as error:  # the import goes on over the one session
                logger.info("mailbox %s: no second session to fetch the import ahead (%s)", self.mailbox.pk, error)
            else:
                plan.prefetcher = _Prefetcher(session, folder.name, uidvalidity, batches[1:], condstore=self.condstore, too_large=too_large)
                plan.prefetcher.start()
        return plan

    def _store_batch(self, folder: Folder, uidvalidity: int, uids: Sequence[int]) -> None:
        self._store_fetched(folder, uidvalidity, _fetch_batch(self.client, uids, condstore=self.condstore, parse=False))

    def _store_fetched(self, folder: Folder, uidvalidity: int, fetched: _Fetched, *, bodies_later: bool = True) -> None:
        """Store a fetched batch; ``bodies_later``: queue the body pass of its new messages (else
        the end of the import does, see the module docstring)."""
        if fetched.items:
            messages_ingest_batch(mailbox=self.mailbox, folder=folder, uidvalidity=uidvalidity, items=fetched.items, later=bodies_later)
        if fetched.oversized:
            self._store_oversized(folder, uidvalidity, fetched.oversized)
        messages_stored.send(sender=MailboxSync, mailbox_id=self.mailbox.pk, folder_id=folder.pk, uids=fetched.uids)

    def _store_oversized(self, folder: Folder, uidvalidity: int, uids: Sequence[int]) -> None:
        section = f"BODY.PEEK[HEADER]<0.{OVERSIZED_HEADER_BYTES}>"
        fetched = self.client.fetch(list(uids), [section, "FLAGS", "INTERNALDATE"])
        for uid in sorted(fetched):
            data = fetched[uid]
            header = next((value for key, value in data.items() if isinstance(key, bytes) and key.startswith(b"BODY[HEADER]")), None)
            if header is None:
                continue
            copy = self._ingest(folder, uidvalidity, uid, bytes(header), data)
            # Only a header was fetched: there is no body for the body pass to parse.
            Message.objects.filter(pk=copy.message_id).update(quarantine_reason=QuarantineReason.TOO_LARGE, body_pending=False)

    def _ingest(self, folder: Folder, uidvalidity: int, uid: int, raw: bytes, data: dict[bytes, Any]) -> MessageCopy:
        return messages_ingest_batch(mailbox=self.mailbox, folder=folder, uidvalidity=uidvalidity, items=[_ingest_item(uid, raw, data)])[
            uid
        ]

    # changes made by other clients -----------------------------------------------------------------
    def _known_copies(
        self, folder: Folder, uidvalidity: int, only: Q | None = None
    ) -> dict[int, tuple[int, tuple[bool, bool, bool], bool | None]]:
        """The folder's live copies (those matching ``only``, when given): UID -> (copy id,
        (seen, flagged, answered), seen_pending)."""
        copies = MessageCopy.objects.filter(folder=folder, uidvalidity=uidvalidity, gone_at__isnull=True)
        if only is not None:
            copies = copies.filter(only)
        return {
            uid: (copy_id, (seen, flagged, answered), seen_pending)
            for copy_id, uid, seen, flagged, answered, seen_pending in copies.values_list(
                "id", "uid", "seen", "flagged", "answered", "seen_pending"
            )
        }

    def _apply_changes(self, folder: Folder, uidvalidity: int, changes: ServerChanges) -> None:
        """What a QRESYNC SELECT reported: copies expunged (or moved away) since, and new flags.
        Only the copies concerned are read, a few ranges or UIDs at a time."""
        known: dict[int, tuple[int, tuple[bool, bool, bool], bool | None]] = {}
        for chunk in _chunks(sorted(changes.flags), UIDS_PER_COMMAND):
            known |= self._known_copies(folder, uidvalidity, Q(uid__in=list(chunk)))
        spans = [span for ranges in changes.vanished for span in ranges.spans]
        for start in range(0, len(spans), RANGES_PER_QUERY):
            only = Q()
            for low, high in spans[start : start + RANGES_PER_QUERY]:
                only |= Q(uid__range=(low, high))
            known |= self._known_copies(folder, uidvalidity, only)
        vanished = [copy_id for uid, (copy_id, _flags, _pending) in known.items() if changes.is_vanished(uid)]
        if vanished:
            MessageCopy.objects.filter(id__in=vanished).update(gone_at=timezone.now())
            arrival.copies_changed(vanished)
        self._store_flags(known, {uid: flags for uid, flags in changes.flags.items() if not changes.is_vanished(uid)})

    def _refresh_known(self, folder: Folder, uidvalidity: int, highest_modseq: int | None) -> None:
        """Flags changed and messages removed on the server since the last look, on a server
        without QRESYNC: removals by comparing UID SEARCH ALL with what we know; flag changes by
        a CHANGEDSINCE fetch with CONDSTORE, else by reading every known message's flags."""
        known = self._known_copies(folder, uidvalidity)
        present = set(imap_uids(self.client.search(["ALL"])))
        vanished = [copy_id for uid, (copy_id, _flags, _pending) in known.items() if uid not in present]
        if vanished:
            MessageCopy.objects.filter(id__in=vanished).update(gone_at=timezone.now())
            arrival.copies_changed(vanished)
        still_known = sorted(uid for uid in known if uid in present)
        if not still_known:
            self._update_folder(folder, highest_modseq=highest_modseq)
            return
        stored_modseq = folder.highest_modseq
        if self.condstore and highest_modseq is not None and stored_modseq is not None and highest_modseq >= stored_modseq:
            if highest_modseq == stored_modseq:
                return  # nothing changed in the folder at all
            self._store_flags(known, self._flags_changed_since(stored_modseq, top_uid=still_known[-1]))
        else:
            # No CONDSTORE (or its mod-sequences went backwards): read every known message's flags.
            for chunk in _chunks(still_known, UIDS_PER_COMMAND):
                fetched = self.client.fetch(list(chunk), ["FLAGS"])
                self._store_flags(known, {uid: data[b"FLAGS"] for uid, data in fetched.items() if b"FLAGS" in data})
        self._update_folder(folder, highest_modseq=highest_modseq)

    def _flags_changed_since(self, modseq: int, *, top_uid: int) -> dict[int, tuple[bytes, ...]]:
        """``UID FETCH 1:top (FLAGS) (CHANGEDSINCE modseq)`` (RFC 7162 3.1.4): the flags of only
        the messages changed since. IMAPClient's ``fetch`` wants every UID listed (and a range
        breaks it), so this is imaplib's ``uid`` parsed the way IMAPClient parses FETCH."""
        typ, data = self.client._imap.uid("FETCH", f"1:{imap_uid(top_uid)}", "(UID FLAGS)", f"(CHANGEDSINCE {int(modseq)})")
        self.client._checkok("fetch", typ, data)
        return _fetched_flags(data)

    def _store_flags(
        self, known: dict[int, tuple[int, tuple[bool, bool, bool], bool | None]], server_flags: dict[int, tuple[bytes, ...]]
    ) -> None:
        reflagged: list[int] = []
        for uid, flag_list in server_flags.items():
            if uid not in known:
                continue  # new mail (stored by the fetch of new mail) or not imported yet
            flags = {flag.lower() for flag in flag_list}
            seen, flagged, answered = b"\\seen" in flags, b"\\flagged" in flags, b"\\answered" in flags
            copy_id, stored, seen_pending = known[uid]
            if seen_pending is not None:
                seen = seen_pending  # a member's choice not yet on the server wins over its old flag
            if stored != (seen, flagged, answered):
                MessageCopy.objects.filter(id=copy_id).update(seen=seen, flagged=flagged, answered=answered)
                reflagged.append(copy_id)
        arrival.copies_changed(reflagged)

    def _revive_copies(self, folder: Folder, uidvalidity: int, present: Sequence[int]) -> None:
        """Copies marked gone when the folder disappeared from the folder list (deleted, renamed
        or no longer special-use) that the server still holds under the same UIDVALIDITY: the
        folder came back unchanged. A UID is never reused within one UIDVALIDITY, so these are
        the same messages."""
        gone = MessageCopy.objects.filter(folder=folder, uidvalidity=uidvalidity, gone_at__isnull=False)
        if not gone.exists():
            return
        for chunk in _chunks(sorted(present), UIDS_PER_COMMAND):
            revived = list(gone.filter(uid__in=list(chunk)).values_list("id", flat=True))
            MessageCopy.objects.filter(id__in=revived).update(gone_at=None)
            arrival.copies_changed(revived)


def mailbox_sync_once(mailbox: Mailbox, *, backfill_batches: int = 1_000_000, batch_size: int = BATCH_SIZE) -> dict[str, FolderOutcome]:
    """Connect, sync every folder (the whole first import unless limited), sign out."""
    outcomes = {}
    with imap_session(mailbox) as client:
        engine = MailboxSync(mailbox, client, batch_size=batch_size)
        try:
            for folder in engine.discover_folders():
                outcomes[folder.role] = engine.sync_folder(folder, backfill_batches=backfill_batches)
        finally:
            engine.close()
    Mailbox.objects.filter(pk=mailbox.pk).update(last_synced_at=timezone.now())
    return outcomes


# --- a member's changes, sent to the server --------------------------------------------------------
def _select_for_change(client: IMAPClient, copy: MessageCopy) -> int:
    """Select the copy's folder read-write; its UID, if the server still numbers it the same way."""
    status = client.select_folder(imap_folder_name(copy.folder.name))
    if int(status[b"UIDVALIDITY"]) != copy.uidvalidity:
        raise FolderChanged(f"folder {copy.folder_id} was renumbered by the server")
    return imap_uid(copy.uid)


def copy_set_seen(copy: MessageCopy, seen: bool) -> None:
    """Mark the server copy read or unread (a member read it, or asked for it to be unread)."""
    with imap_session(copy.mailbox) as client:
        uid = _select_for_change(client, copy)
        if seen:
            client.add_flags([uid], [SEEN], silent=True)
        else:
            client.remove_flags([uid], [SEEN], silent=True)
    # Confirmed, unless the member has changed their mind since (a newer task will apply that).
    MessageCopy.objects.filter(Q(seen_pending=seen) | Q(seen_pending__isnull=True), pk=copy.pk).update(seen=seen, seen_pending=None)
    copy.seen = seen
    arrival.copies_changed([copy.pk])


def copy_move(copy: MessageCopy, role: str) -> None:
    """Move the server copy to the mailbox's folder with ``role`` (archive, trash…). The copy in
    the target folder is stored by the next sync of that folder, linked to the same Message."""
    target = Folder.objects.filter(mailbox_id=copy.mailbox_id, role=role).first()
    if target is None:
        raise MissingFolder(f"mailbox {copy.mailbox_id} has no {role} folder")
    if target.pk == copy.folder_id:
        return
    target_name = imap_folder_name(target.name)
    with imap_session(copy.mailbox) as client:
        uid = _select_for_change(client, copy)
        if client.has_capability("MOVE"):
            client.move([uid], target_name)
        elif client.has_capability("UIDPLUS"):
            client.copy([uid], target_name)
            client.add_flags([uid], [DELETED], silent=True)
            client.uid_expunge([uid])
        else:
            raise MoveUnsupported("the server offers neither MOVE nor UIDPLUS")
    MessageCopy.objects.filter(pk=copy.pk).update(gone_at=timezone.now())
    arrival.copies_changed([copy.pk])
