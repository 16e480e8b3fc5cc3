"""Bringing one mailbox's folders up to date with its IMAP server, and members' changes back.

Attackers and failure modes:

- A hostile sender or server sending enormous or pathological messages (R31): each message's
  ``RFC822.SIZE`` is fetched before its body, and a message over the size limit is never
  downloaded: only a bounded part of its header is, and it is stored quarantined, so it is
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
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Q
from django.dispatch import Signal
from django.utils import timezone
from imapclient import IMAPClient

from postroom.conversations.ingest import IngestItem, messages_ingest_batch
from postroom.conversations.models import Message, MessageCopy
from postroom.mailboxes.connection import ServerSettings, TlsMode, open_imap
from postroom.mailboxes.models import Folder, FolderRole, Mailbox
from postroom.mailboxes.oauth import mailbox_sign_in_credentials
from postroom.mailboxes.protocol_values import UnsafeProtocolValue, imap_folder_name, imap_uid, imap_uids
from postroom.mime.parse import DEFAULT_LIMITS, QuarantineReason

logger = logging.getLogger(__name__)

BATCH_SIZE = 100
# UIDs per command when a command has to name each one (IMAPClient sends no ranges).
UIDS_PER_COMMAND = 1000
# What is kept of a message too large to fetch: the start of its header, for the sender and subject.
OVERSIZED_HEADER_BYTES = 64 * 1024
MAX_MESSAGE_BYTES = DEFAULT_LIMITS.max_message_bytes

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
    return ServerSettings(host=mailbox.imap_host, port=mailbox.imap_port, tls=TlsMode(mailbox.imap_tls), private_ca_pem=mailbox.private_ca_pem or None)


def imap_open_for(mailbox: Mailbox, *, timeout: float = 30.0) -> IMAPClient:
    """A signed-in session for ``mailbox``, ready for sync: timezone-aware dates, CONDSTORE on.

    An OAuth2 access token about to expire is renewed first; ``OAuthGrantRevoked`` (the mailbox
    now needs reconnecting) and ``OAuthRefreshFailed`` (try later) come from there."""
    client = open_imap(mailbox_imap_server(mailbox), mailbox_sign_in_credentials(mailbox), timeout=timeout)
    client.normalise_times = False
    if client.has_capability("CONDSTORE") and client.has_capability("ENABLE"):
        client.enable("CONDSTORE")
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


# --- the sync of one mailbox ---------------------------------------------------------------------
@dataclass
class FolderOutcome:
    stored: int = 0
    backfill_left: bool = False


class MailboxSync:
    """Sync of one mailbox over one signed-in IMAP session (the caller owns the session)."""

    def __init__(self, mailbox: Mailbox, client: IMAPClient, *, batch_size: int = BATCH_SIZE) -> None:
        self.mailbox = mailbox
        self.client = client
        self.batch_size = batch_size
        self.condstore = client.has_capability("CONDSTORE")

    # folders ---------------------------------------------------------------------------------
    def discover_folders(self) -> list[Folder]:
        """INBOX and the special-use folders, as Folder rows (created on first sight), INBOX first."""
        found: dict[str, str] = {}
        for attributes, _delimiter, raw_name in self.client.list_folders():
            name = raw_name.decode("utf-8", "replace") if isinstance(raw_name, bytes) else str(raw_name)
            lowered = {attribute.lower() for attribute in attributes}
            if b"\\noselect" in lowered or b"\\nonexistent" in lowered:
                continue
            role = FolderRole.INBOX if name.upper() == "INBOX" else next((SPECIAL_USE_ROLES[a] for a in lowered if a in SPECIAL_USE_ROLES), None)
            if role is None or role in found:
                continue
            try:
                found[role] = imap_folder_name(name)
            except UnsafeProtocolValue:
                logger.warning("mailbox %s: skipping a %s folder whose name cannot be used safely", self.mailbox.pk, role)
        folders = []
        for role in SYNCED_ROLES:
            if role not in found:
                continue
            folder, _ = Folder.objects.get_or_create(mailbox=self.mailbox, name=found[role], defaults={"role": role})
            if folder.role != role:
                Folder.objects.filter(pk=folder.pk).update(role=role)
                folder.role = role
            folders.append(folder)
        return folders

    def sync_folder(self, folder: Folder, *, backfill_batches: int = 1) -> FolderOutcome:
        """New mail, server-side flag changes and removals, then up to ``backfill_batches`` batches
        of the first import (newest first). Leaves the folder selected (read-only)."""
        status = self.client.select_folder(folder.name, readonly=True)
        uidvalidity = int(status[b"UIDVALIDITY"])
        highest_modseq = int(status[b"HIGHESTMODSEQ"]) if b"HIGHESTMODSEQ" in status else None
        if folder.uidvalidity != uidvalidity:
            self._start_import(folder, uidvalidity, highest_modseq)
            outcome = FolderOutcome()
        else:
            outcome = FolderOutcome(stored=self._fetch_new(folder, uidvalidity))
            self._refresh_known(folder, uidvalidity, highest_modseq)
        for _ in range(backfill_batches):
            if folder.backfill_below_uid is None:
                break
            outcome.stored += self._backfill_batch(folder, uidvalidity, folder.backfill_below_uid)
        outcome.backfill_left = folder.backfill_below_uid is not None
        now = timezone.now()
        Folder.objects.filter(pk=folder.pk).update(last_synced_at=now)
        folder.last_synced_at = now
        return outcome

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
            MessageCopy.objects.filter(folder=folder, gone_at__isnull=True).exclude(uidvalidity=uidvalidity).update(gone_at=timezone.now())
        criteria: list[Any] = ["ALL"]
        if self.mailbox.import_since:
            criteria = ["SINCE", self.mailbox.import_since]
        wanted = imap_uids(self.client.search(criteria))
        # Everything above the current top is new mail; everything up to it, the import.
        top = max(self.client.search(["ALL"]) or [0])
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
        for batch in _chunks(new, self.batch_size):
            self._store_batch(folder, uidvalidity, batch)
            self._update_folder(folder, highest_uid=max(batch))
        return len(new)

    def _backfill_batch(self, folder: Folder, uidvalidity: int, below_uid: int) -> int:
        """The next batch of the first import, walking down from ``below_uid``."""
        if below_uid <= 1:
            self._update_folder(folder, backfill_below_uid=None)
            return 0
        criteria: list[Any] = ["UID", f"1:{below_uid - 1}"]
        if self.mailbox.import_since:
            criteria += ["SINCE", self.mailbox.import_since]
        remaining = [uid for uid in imap_uids(self.client.search(criteria)) if uid < below_uid]
        batch = remaining[-self.batch_size :]
        if batch:
            self._store_batch(folder, uidvalidity, batch)
        finished = len(batch) == len(remaining)
        done = folder.messages_total if finished else min(folder.messages_total, folder.messages_done + len(batch))
        self._update_folder(folder, backfill_below_uid=None if finished else min(batch), messages_done=done)
        return len(batch)

    def _store_batch(self, folder: Folder, uidvalidity: int, uids: Sequence[int]) -> None:
        sizes = self.client.fetch(list(uids), ["RFC822.SIZE"])
        fitting = [uid for uid in uids if int(sizes.get(uid, {}).get(b"RFC822.SIZE", 0)) <= MAX_MESSAGE_BYTES]
        oversized = [uid for uid in uids if uid in sizes and uid not in fitting]
        items = ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"] + (["MODSEQ"] if self.condstore else [])
        fetched = self.client.fetch(fitting, items) if fitting else {}
        # Without BODY[]: an unsolicited FLAGS update, or the message was expunged meanwhile.
        batch = [_ingest_item(uid, fetched[uid][b"BODY[]"], fetched[uid]) for uid in sorted(fetched) if b"BODY[]" in fetched[uid]]
        if batch:
            messages_ingest_batch(mailbox=self.mailbox, folder=folder, uidvalidity=uidvalidity, items=batch)
        if oversized:
            self._store_oversized(folder, uidvalidity, oversized)
        messages_stored.send(sender=MailboxSync, mailbox_id=self.mailbox.pk, folder_id=folder.pk, uids=list(uids))

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
    def _refresh_known(self, folder: Folder, uidvalidity: int, highest_modseq: int | None) -> None:
        """Flags changed and messages removed on the server since the last look."""
        known = {
            uid: (copy_id, (seen, flagged, answered), seen_pending)
            for copy_id, uid, seen, flagged, answered, seen_pending in MessageCopy.objects.filter(
                folder=folder, uidvalidity=uidvalidity, gone_at__isnull=True
            ).values_list("id", "uid", "seen", "flagged", "answered", "seen_pending")
        }
        present = set(imap_uids(self.client.search(["ALL"])))
        vanished = [copy_id for uid, (copy_id, _flags, _pending) in known.items() if uid not in present]
        if vanished:
            MessageCopy.objects.filter(id__in=vanished).update(gone_at=timezone.now())
        still_known = sorted(uid for uid in known if uid in present)
        if not still_known:
            self._update_folder(folder, highest_modseq=highest_modseq)
            return
        if self.condstore and highest_modseq is not None and folder.highest_modseq is not None:
            if highest_modseq == folder.highest_modseq:
                return  # nothing changed in the folder at all
            changed = set(imap_uids(self.client.search(["MODSEQ", str(folder.highest_modseq + 1)])))
            to_check = [uid for uid in still_known if uid in changed]
        else:
            to_check = still_known  # no CONDSTORE: sweep the flags of every known message
        for chunk in _chunks(to_check, UIDS_PER_COMMAND):
            for uid, data in self.client.fetch(list(chunk), ["FLAGS"]).items():
                if uid not in known or b"FLAGS" not in data:
                    continue
                flags = {flag.lower() for flag in data[b"FLAGS"]}
                seen, flagged, answered = b"\\seen" in flags, b"\\flagged" in flags, b"\\answered" in flags
                copy_id, stored, seen_pending = known[uid]
                if seen_pending is not None:
                    seen = seen_pending  # a member's choice not yet on the server wins over its old flag
                if stored != (seen, flagged, answered):
                    MessageCopy.objects.filter(id=copy_id).update(seen=seen, flagged=flagged, answered=answered)
        self._update_folder(folder, highest_modseq=highest_modseq)


def mailbox_sync_once(mailbox: Mailbox, *, backfill_batches: int = 1_000_000, batch_size: int = BATCH_SIZE) -> dict[str, FolderOutcome]:
    """Connect, sync every folder (the whole first import unless limited), sign out."""
    outcomes = {}
    with imap_session(mailbox) as client:
        engine = MailboxSync(mailbox, client, batch_size=batch_size)
        for folder in engine.discover_folders():
            outcomes[folder.role] = engine.sync_folder(folder, backfill_batches=backfill_batches)
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
