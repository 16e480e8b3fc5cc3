"""The sync service: IDLE push, reconnection and disconnection, credentials refused, clean stop."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.db import OperationalError, close_old_connections
from django.utils import timezone

from postroom.audit.models import AuditEvent
from postroom.conversations.models import MessageCopy
from postroom.mailboxes.models import Folder, FolderRole, Mailbox, MailboxStatus
from postroom.sync.engine import MailboxSync, imap_session, messages_stored
from postroom.sync.service import MailboxWorker, SyncService
from postroom.sync.tests.test_engine import deliver, make_message
from postroom.testing.dovecot import Dovecot, MailUser, free_port

pytestmark = pytest.mark.django_db(transaction=True)
WAIT_SECONDS = 30.0


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT_SECONDS) -> None:
    """Poll the database until ``condition`` holds; fail (not hang) after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not _holds(condition):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)
        close_old_connections()


def _holds(condition: Callable[[], bool]) -> bool:
    try:
        return condition()
    except OperationalError:  # the in-memory SQLite of the tests locks tables while a writer writes
        return False


@pytest.fixture
def running_service() -> Iterator[Callable[..., SyncService]]:
    started: list[tuple[SyncService, threading.Thread]] = []

    def start(**options: Any) -> SyncService:
        service = SyncService(**options)
        thread = threading.Thread(target=service.run, daemon=True)
        thread.start()
        started.append((service, thread))
        return service

    yield start
    for service, thread in started:
        service.stop()
        thread.join(timeout=60)


def test_new_mail_is_pushed_by_idle(
    dovecot: Dovecot, mail_user: MailUser, make_mailbox: Callable[..., Mailbox], running_service: Callable[..., SyncService]
) -> None:
    deliver(dovecot, mail_user, range(2))
    mailbox = make_mailbox(mail_user)
    arrived = threading.Event()
    stored_uids: list[int] = []

    def on_stored(sender: object, *, mailbox_id: object, folder_id: int, uids: list[int], **kwargs: object) -> None:
        stored_uids.extend(uids)
        if new_uid_holder and new_uid_holder[0] in uids:
            arrived.set()

    new_uid_holder: list[int] = []
    messages_stored.connect(on_stored, weak=False)
    try:
        # Polling once every ten minutes: only IDLE can bring the new message in time.
        service = running_service(poll_seconds=600)
        wait_until(lambda: MessageCopy.objects.filter(mailbox=mailbox).count() == 2, "the first import")
        wait_until(lambda: Folder.objects.get(mailbox=mailbox, role=FolderRole.INBOX).backfill_below_uid is None, "the import to finish")
        time.sleep(0.5)  # let the worker enter IDLE (the test passes either way; this makes it test IDLE)
        new_uid_holder.append(dovecot.append(mail_user, make_message(99)))
        assert arrived.wait(WAIT_SECONDS), "IDLE did not bring the new message"
    finally:
        messages_stored.disconnect(on_stored)
    assert MessageCopy.objects.filter(mailbox=mailbox, uid=new_uid_holder[0]).exists()
    assert Mailbox.objects.get(pk=mailbox.pk).lease_owner == service.owner
    service.stop()
    wait_until(lambda: Mailbox.objects.get(pk=mailbox.pk).lease_owner == "", "the lease to be released on a clean stop")


def test_an_unreachable_server_marks_the_mailbox_disconnected_after_30_minutes_and_it_catches_up(
    dovecot: Dovecot, mail_user: MailUser, make_mailbox: Callable[..., Mailbox]
) -> None:
    mailbox = make_mailbox(mail_user, imap_port=free_port())  # nothing listens there: "the server is down"
    start = timezone.now()

    def run_worker_until(condition: Callable[[], bool], what: str) -> None:
        worker = MailboxWorker(mailbox.pk, poll_seconds=600)
        worker.start()
        try:
            wait_until(condition, what)
        finally:
            worker.stop()
            worker.join(timeout=30)

    with time_machine.travel(start):
        run_worker_until(lambda: Mailbox.objects.get(pk=mailbox.pk).unreachable_since is not None, "the first failure")
    assert Mailbox.objects.get(pk=mailbox.pk).status == MailboxStatus.ACTIVE  # a short outage is not shown
    with time_machine.travel(start + timedelta(minutes=31)):
        run_worker_until(lambda: Mailbox.objects.get(pk=mailbox.pk).status == MailboxStatus.DISCONNECTED, "the disconnected status")
    assert "refused" in Mailbox.objects.get(pk=mailbox.pk).status_reason
    # The server returns, with mail that arrived meanwhile.
    uids = deliver(dovecot, mail_user, range(3))
    Mailbox.objects.filter(pk=mailbox.pk).update(imap_port=dovecot.imaps_port)
    run_worker_until(lambda: MessageCopy.objects.filter(mailbox=mailbox).count() == 3, "the catch-up")
    mailbox.refresh_from_db()
    assert (mailbox.status, mailbox.status_reason, mailbox.unreachable_since) == (MailboxStatus.ACTIVE, "", None)
    assert sorted(MessageCopy.objects.filter(mailbox=mailbox).values_list("uid", flat=True)) == uids
    # Both visible state changes are in the organization's audit log.
    assert list(
        AuditEvent.objects.filter(target_id=str(mailbox.pk), action__in=["mailbox.disconnected", "mailbox.reconnected"])
        .order_by("id").values_list("action", flat=True)
    ) == ["mailbox.disconnected", "mailbox.reconnected"]


def test_rejected_credentials_stop_the_sync_and_ask_for_reconnection(
    dovecot: Dovecot, mail_user: MailUser, make_mailbox: Callable[..., Mailbox]
) -> None:
    mailbox = make_mailbox(mail_user)
    mailbox.credentials = {"username": mail_user.name, "password": "not the password"}
    mailbox.save()
    worker = MailboxWorker(mailbox.pk, poll_seconds=600)
    worker.start()
    worker.join(timeout=WAIT_SECONDS)
    assert not worker.is_alive()  # it gave up instead of retrying refused credentials
    mailbox.refresh_from_db()
    assert mailbox.status == MailboxStatus.NEEDS_RECONNECT
    assert "rejected" in mailbox.status_reason
    assert AuditEvent.objects.filter(action="mailbox.needs_reconnect", target_id=str(mailbox.pk)).count() == 1


def test_a_lost_connection_is_reestablished(
    dovecot: Dovecot, mail_user: MailUser, make_mailbox: Callable[..., Mailbox], running_service: Callable[..., SyncService]
) -> None:
    mailbox = make_mailbox(mail_user)
    running_service(poll_seconds=600)
    wait_until(lambda: Folder.objects.filter(mailbox=mailbox, role=FolderRole.INBOX, uidvalidity__isnull=False).exists(), "the first sync")
    dovecot.restart()  # drops the IDLE connection
    uid = dovecot.append(mail_user, make_message(7))
    wait_until(lambda: MessageCopy.objects.filter(mailbox=mailbox, uid=uid).exists(), "the mail sent while reconnecting")


@pytest.mark.django_db
def test_mail_that_arrived_just_before_idle_is_not_left_for_the_next_poll(
    dovecot: Dovecot, mail_user: MailUser, make_mailbox: Callable[..., Mailbox]
) -> None:
    # The race a service taking over a mailbox hit: INBOX synced, then mail arrives while the
    # other folders sync, then IDLE starts (and IDLE reports only what happens after it starts).
    mailbox = make_mailbox(mail_user)
    worker = MailboxWorker(mailbox.pk, poll_seconds=60)
    with imap_session(mailbox) as client:
        sync = MailboxSync(mailbox, client)
        inbox = sync.discover_folders()[0]
        sync.sync_folder(inbox)
        deliver(dovecot, mail_user, range(1))
        assert worker._idle_until_change(client, inbox, next_poll=time.monotonic() + 5)
