"""The sync service (``postroom sync``): keeps every claimed mailbox current.

One thread per mailbox this service holds a lease on (bounded by ``max_mailboxes``), each with
its own IMAP session: INBOX waits in IDLE, so new mail is fetched as soon as the server says it
arrived; the other folders are polled every ``poll_seconds``, and each poll lists the folders
again, so a folder created, renamed or removed on the server meanwhile is followed without a new
connection; the first import runs in batches between those. The main thread renews the leases,
takes free mailboxes, and stops the thread of a mailbox whose lease it lost (or that a member
paused or must reconnect).

A session signed in with an OAuth2 access token signs in again before the token expires
(``access_token_renew_at``): a new session is opened with a renewed token and replaces the
old one, so push continues; if the token endpoint or the server cannot be reached then, the old
session goes on and the renewal is tried again shortly.

Failures: a lost or refused connection is retried with exponential backoff (1 s … 5 min); a
server unreachable for more than 30 minutes marks the mailbox disconnected, with the reason,
until it answers again, and then everything missed is fetched (the folder state says where sync
stopped). A rejected password or token marks the mailbox as needing reconnection and stops
syncing it, rather than retrying credentials the server refuses; so does an OAuth2 grant the
token endpoint revoked (an access token about to expire is renewed before each connection). SIGTERM stops every thread
and releases the leases, so another service takes over at once.

The main thread also wakes snoozed conversations, repairs the outbox queue and sends the
notification digests that are due, every minute (``snoozes_wake``, ``outgoing_sweep``,
``digests_send_due``), and queues the body pass again for messages it has not reached an hour
after they were stored (``message_bodies_sweep``): the sync service is the one long-running
Postroom process with a loop of its own (the task worker runs only queued tasks, and a lost task
is exactly what it cannot see).
"""

from __future__ import annotations

import contextlib
import imaplib
import logging
import ssl
import threading
import time
import uuid
from collections import Counter
from datetime import datetime
from typing import Any

from django.db import OperationalError, close_old_connections, connection
from django.utils import timezone
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from postroom.conversations.actions import snoozes_wake
from postroom.conversations.bodies import message_bodies_sweep
from postroom.mailboxes.actions import mailbox_mark_needs_reconnect, mailbox_record_reachable, mailbox_record_unreachable
from postroom.mailboxes.connection import AuthenticationFailed, MailConnectionError
from postroom.mailboxes.models import Folder, FolderRole, Mailbox
from postroom.mailboxes.oauth import OAuthGrantRevoked, OAuthRefreshFailed, access_token_renew_at
from postroom.notifications.actions import digests_send_due
from postroom.outbox.actions import outgoing_sweep
from postroom.sync.engine import MailboxSync, imap_open_for
from postroom.sync.leases import LEASE_SECONDS, lease_claim, lease_release, lease_renew, service_identity

logger = logging.getLogger(__name__)

POLL_SECONDS = 60.0
MAX_BACKOFF_SECONDS = 300.0
# RFC 2177: servers may end an IDLE after 30 minutes of inactivity; restart it before that.
IDLE_RESTART_SECONDS = 25 * 60
IDLE_CHECK_SECONDS = 1.0
# Defence in depth: IDLE is left this often to look for new INBOX mail with a UID SEARCH, so a
# change notice the server never sent (or that got lost) costs seconds, not a poll interval.
IDLE_RECHECK_SECONDS = 5.0
# A failed renewal of an OAuth2 sign-in is tried again this soon (the old session goes on).
SIGN_IN_RENEWAL_RETRY_SECONDS = 30.0
# The outbox queue is repaired this often (see ``outgoing_sweep``).
OUTBOX_SWEEP_SECONDS = 60.0
BODY_SWEEP_SECONDS = 300.0
# How long the first import runs between two looks for new mail, in batches of at most this many.
IMPORT_SLICE_SECONDS = 1.0
MAX_IMPORT_BATCHES = 20
# Network failures that a new connection (or a new request to the token endpoint) may cure.
RETRYABLE = (MailConnectionError, OAuthRefreshFailed, imaplib.IMAP4.error, IMAPClientError, OSError)


class MailboxWorker(threading.Thread):
    """Syncs one mailbox until told to stop; reconnects with backoff."""

    def __init__(self, mailbox_id: uuid.UUID, *, poll_seconds: float) -> None:
        super().__init__(name=f"sync-{mailbox_id}", daemon=True)
        self.mailbox_id = mailbox_id
        self.poll_seconds = poll_seconds
        self.stopping = threading.Event()
        # New INBOX messages stored, by what found them (see ``_idle_until_change``; "poll" for
        # the poll at connection and every ``poll_seconds``), for tests and diagnosis.
        self.inbox_found: Counter[str] = Counter()

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        delay = 1.0
        client: IMAPClient | None = None  # a session to go on with (one that replaced its predecessor)
        try:
            while not self.stopping.is_set():
                close_old_connections()
                mailbox = Mailbox.objects.filter(pk=self.mailbox_id).first()
                if mailbox is None:
                    return
                if client is None:
                    try:
                        client = imap_open_for(mailbox)
                    except AuthenticationFailed as error:
                        logger.warning("mailbox %s: the server rejected the credentials; waiting for the member", self.mailbox_id)
                        mailbox_mark_needs_reconnect(mailbox=Mailbox.objects.get(pk=self.mailbox_id), reason=error.message)
                        return
                    except OAuthGrantRevoked:
                        # mailbox_access_token has marked it as needing reconnection, with the reason.
                        logger.warning("mailbox %s: the OAuth2 grant was revoked; waiting for the member", self.mailbox_id)
                        return
                    except RETRYABLE as error:
                        logger.info("mailbox %s: cannot connect (%s); retrying in %.0f s", self.mailbox_id, error, delay)
                        mailbox_record_unreachable(mailbox_id=self.mailbox_id, reason=str(error))
                        self.stopping.wait(delay)
                        delay = min(delay * 2, MAX_BACKOFF_SECONDS)
                        continue
                replacement = None
                try:
                    replacement = self._session(mailbox, client)
                    delay = 1.0
                except RETRYABLE as error:
                    logger.info("mailbox %s: connection lost (%s); reconnecting in %.0f s", self.mailbox_id, error, delay)
                    mailbox_record_unreachable(mailbox_id=self.mailbox_id, reason=str(error))
                    self.stopping.wait(delay)
                    delay = min(delay * 2, MAX_BACKOFF_SECONDS)
                except OperationalError as error:
                    # The database, not the mail server, failed (restarting, or SQLite busy): the
                    # folder state still says where to resume.
                    logger.warning("mailbox %s: database error (%s); resuming in %.0f s", self.mailbox_id, error, delay)
                    self.stopping.wait(delay)
                    delay = min(delay * 2, MAX_BACKOFF_SECONDS)
                finally:
                    with contextlib.suppress(Exception):
                        client.logout()
                client = replacement
        except Exception:
            logger.exception("mailbox %s: sync stopped by an unexpected error", self.mailbox_id)
        finally:
            if client is not None:
                with contextlib.suppress(Exception):
                    client.logout()
            connection.close()

    def _session(self, mailbox: Mailbox, client: IMAPClient) -> IMAPClient | None:
        """Sync over ``client`` until told to stop, or until its OAuth2 sign-in must be renewed.
        The session to go on with: one signed in with a renewed token, or None to connect anew
        (a revoked grant or a refused token is then found out and reported by ``run``)."""
        sync = MailboxSync(mailbox, client)
        try:
            return self._sync_until_stopped(sync, mailbox, client)
        finally:
            sync.close()  # the first import's second session, if one is open

    def _sync_until_stopped(self, sync: MailboxSync, mailbox: Mailbox, client: IMAPClient) -> IMAPClient | None:
        renew_at = _monotonic(access_token_renew_at(mailbox))
        folders: list[Folder] = []
        next_poll = 0.0
        import_batches = 1
        # Whether INBOX is still selected from the last IDLE (nothing else was selected since).
        idled = False
        while not self.stopping.is_set():
            if renew_at is not None and time.monotonic() >= renew_at:
                try:
                    # The token expires within the refresh margin: signing in renews it first.
                    return imap_open_for(Mailbox.objects.get(pk=self.mailbox_id))
                except (OAuthGrantRevoked, AuthenticationFailed):
                    return None
                except RETRYABLE as error:
                    logger.info("mailbox %s: signing in again with a renewed token failed (%s); retrying soon", self.mailbox_id, error)
                    renew_at = time.monotonic() + SIGN_IN_RENEWAL_RETRY_SECONDS
            if time.monotonic() >= next_poll:
                # Listed again each round: folders created, renamed or removed since appear.
                folders = sync.discover_folders()
                for folder in folders:
                    outcome = sync.sync_folder(folder, backfill_batches=0)
                    if folder.role == FolderRole.INBOX and outcome.stored:
                        self.inbox_found["poll"] += outcome.stored
                idled = False
                next_poll = time.monotonic() + self.poll_seconds
                mailbox_record_reachable(mailbox_id=self.mailbox_id)
            inbox = next((folder for folder in folders if folder.role == FolderRole.INBOX), None)
            wake_at = next_poll if renew_at is None else min(next_poll, renew_at)
            importing = [folder for folder in folders if folder.backfill_below_uid is not None]
            if importing:
                # About a second of the backlog, then new mail again: recent mail never waits long for
                # the import, and the folder's checks for new mail and flag changes (which cost the
                # more the larger the folder is) are not repeated for every batch.
                started = time.monotonic()
                sync.sync_folder(importing[0], backfill_batches=import_batches)
                idled = False
                per_batch = (time.monotonic() - started) / import_batches
                import_batches = max(1, min(MAX_IMPORT_BATCHES, int(IMPORT_SLICE_SECONDS / max(per_batch, 0.001))))
                if inbox is not None and inbox.pk != importing[0].pk:  # (the INBOX import looked for new mail first)
                    sync.sync_folder(inbox, backfill_batches=0)
                continue
            if inbox is None or not client.has_capability("IDLE"):
                self.stopping.wait(max(0.0, wake_at - time.monotonic()))
                continue
            found_by = self._idle_until_change(client, inbox, wake_at, select=not idled)
            idled = found_by is None
            if found_by is not None:
                outcome = sync.sync_folder(inbox, backfill_batches=0)
                self.inbox_found[found_by] += outcome.stored
        return None

    def _idle_until_change(self, client: IMAPClient, inbox: Folder, next_poll: float, *, select: bool = True) -> str | None:
        """Wait in IDLE on INBOX until the server reports a change, or until ``next_poll`` (the
        next poll or sign-in renewal), ``IDLE_RECHECK_SECONDS`` or a stop request (None). What
        found the change: "push" (the server reported it), "catch-up" (mail that arrived since
        INBOX was last synced, found before idling) or "recheck" (found by the look for new mail
        after an IDLE that reported nothing: a notice went missing, or was still to come, as
        Dovecot waits half a second before it tells).

        Two ways a notice got lost, both seen against Dovecot (bench/README.md, "new-mail
        latency"): mail arriving while the server answers the UID SEARCH below is reported by an
        EXISTS inside that answer, which imaplib files away and IDLE does not repeat; and a
        notice sent right after the IDLE continuation arrives in the same read as it, so it sits
        in imaplib's buffer, where ``idle_check``'s wait on the socket never sees it."""
        if select:
            client.select_folder(inbox.name, readonly=True)
        imap = client._imap
        imap.untagged_responses.clear()  # what the SELECT (or the last IDLE) said is read already
        # IDLE reports only what happens once it has started: mail that arrived after INBOX was
        # last synced (while the other folders were) would otherwise wait for the next poll.
        if any(uid > inbox.highest_uid for uid in client.search(["UID", f"{inbox.highest_uid + 1}:*"])):
            return "catch-up" if select else "recheck"
        if any(key in imap.untagged_responses for key in ("EXISTS", "EXPUNGE", "FETCH", "VANISHED")):
            return "push"
        client.idle()
        changed = False
        try:
            now = time.monotonic()
            deadline = min(next_poll, now + IDLE_RESTART_SECONDS, now + IDLE_RECHECK_SECONDS)
            while not self.stopping.is_set() and time.monotonic() < deadline:
                if _unread_input(client):
                    break  # leaving IDLE reads it (below)
                # A short wait so a stop request is noticed within a second.
                waited_from = time.monotonic()
                responses = client.idle_check(timeout=IDLE_CHECK_SECONDS)
                if _reports_change(responses):
                    changed = True
                    break
                if not responses and time.monotonic() - waited_from < IDLE_CHECK_SECONDS / 2:
                    # Readable but nothing to read: IMAPClient hides the end of the connection
                    # this way. Leaving IDLE finds out (it fails on a closed connection).
                    changed = True
                    break
        finally:
            _, responses = client.idle_done()
        # What the server said since the last check (e.g. with the IDLE continuation) or when
        # IDLE ended.
        if changed or _reports_change(responses):
            return "push"
        return None


def _reports_change(responses: list[Any]) -> bool:
    """Whether untagged responses (as IMAPClient parses them) report a change to the folder:
    "* 3 EXISTS", "* 3 EXPUNGE", "* 3 FETCH (...)"; with QRESYNC on, "* VANISHED 5:7"."""
    return any(
        isinstance(response, tuple)
        and len(response) > 1
        and (response[1] in (b"EXISTS", b"EXPUNGE", b"FETCH") or response[0] == b"VANISHED")
        for response in responses
    )


def _unread_input(client: IMAPClient) -> bool:
    """Whether server output is waiting that was already read off the socket (into imaplib's
    buffered reader, or decrypted and held by the TLS layer): waiting for the socket to become
    readable would not see it."""
    sock = client.socket()
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        # Returns what is buffered without reading; with an empty buffer, one non-blocking read.
        return bool(client._imap.file.peek(1))
    except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
        return False
    finally:
        sock.settimeout(timeout)


class SyncService:
    def __init__(
        self,
        *,
        max_mailboxes: int = 100,
        lease_seconds: float = LEASE_SECONDS,
        poll_seconds: float = POLL_SECONDS,
        owner: str | None = None,
    ) -> None:
        self.owner = owner or service_identity()
        self.max_mailboxes = max_mailboxes
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        # Renew three times per lease, so one slow round never lets a lease lapse.
        self.tick_seconds = min(5.0, lease_seconds / 3)
        self.stopping = threading.Event()
        self.workers: dict[uuid.UUID, MailboxWorker] = {}
        self.next_outbox_sweep = 0.0
        self.next_body_sweep = 0.0

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        logger.info("sync service %s started", self.owner)
        try:
            while not self.stopping.is_set():
                try:
                    self.tick()
                except Exception:  # the database went away for a moment: try again next round
                    logger.exception("sync service %s: lease round failed", self.owner)
                    close_old_connections()
                self.stopping.wait(self.tick_seconds)
        finally:
            self.shutdown()

    def tick(self) -> None:
        held = lease_renew(self.owner, self.workers, lease_seconds=self.lease_seconds)
        for mailbox_id, worker in list(self.workers.items()):
            if mailbox_id not in held or not worker.is_alive():
                worker.stop()
                del self.workers[mailbox_id]
                lease_release(self.owner, [mailbox_id])
        for mailbox_id in lease_claim(self.owner, limit=self.max_mailboxes - len(self.workers), lease_seconds=self.lease_seconds):
            worker = MailboxWorker(mailbox_id, poll_seconds=self.poll_seconds)
            self.workers[mailbox_id] = worker
            worker.start()
        if time.monotonic() >= self.next_outbox_sweep:
            self.next_outbox_sweep = time.monotonic() + OUTBOX_SWEEP_SECONDS
            swept = outgoing_sweep()
            if swept.requeued or swept.interrupted:
                logger.info("outbox: %d lost sends queued again, %d interrupted ones marked failed", swept.requeued, swept.interrupted)
            woken = snoozes_wake()
            if woken:
                logger.info("%d snoozed conversations came back", woken)
            # Each digest is claimed in the database, so several sync services send it once.
            digests = digests_send_due()
            if digests:
                logger.info("notifications: %d email digest(s) queued", digests)
        if time.monotonic() >= self.next_body_sweep:
            self.next_body_sweep = time.monotonic() + BODY_SWEEP_SECONDS
            queued = message_bodies_sweep()
            if queued:
                logger.info("body pass: %d messages still waiting an hour after they were stored, queued again", queued)

    def shutdown(self) -> None:
        for worker in self.workers.values():
            worker.stop()
        for worker in self.workers.values():
            worker.join(timeout=30)
        lease_release(self.owner, list(self.workers))
        self.workers.clear()
        connection.close()
        logger.info("sync service %s stopped", self.owner)


def _monotonic(moment: datetime | None) -> float | None:
    """A wall-clock moment as a deadline on the monotonic clock the loops wait with."""
    if moment is None:
        return None
    return time.monotonic() + max(0.0, (moment - timezone.now()).total_seconds())
