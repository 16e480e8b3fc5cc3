"""A long-running sync session follows the server without reconnecting: folders created or
removed meanwhile, and messages expunged while it waits in IDLE (reported as VANISHED once
QRESYNC is on)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from imapclient import IMAPClient

from postroom.conversations.models import MessageCopy
from postroom.mailboxes.models import Folder, FolderRole, Mailbox
from postroom.sync import service
from postroom.sync.engine import imap_open_for
from postroom.sync.service import MailboxWorker
from postroom.sync.tests.test_engine import deliver
from postroom.sync.tests.test_service import wait_until
from postroom.testing.dovecot import Dovecot, MailUser

pytestmark = pytest.mark.django_db(transaction=True)


def run_worker(mailbox: Mailbox, *, poll_seconds: float) -> MailboxWorker:
    worker = MailboxWorker(mailbox.pk, poll_seconds=poll_seconds)
    worker.start()
    return worker


def test_a_folder_created_during_a_session_appears_and_its_mail_is_imported(
    basic_dovecot: Dovecot, make_mailbox: Callable[..., Mailbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    user = basic_dovecot.create_user()
    deliver(basic_dovecot, user, range(1))
    mailbox = make_mailbox(user, server=basic_dovecot)
    sign_ins: list[Mailbox] = []

    def counted_sign_in(mailbox: Mailbox, **options: Any) -> IMAPClient:
        sign_ins.append(mailbox)
        return imap_open_for(mailbox, **options)

    monkeypatch.setattr(service, "imap_open_for", counted_sign_in)
    worker = run_worker(mailbox, poll_seconds=0.5)
    try:
        wait_until(lambda: MessageCopy.objects.filter(mailbox=mailbox).count() == 1, "the first import")
        assert not Folder.objects.filter(mailbox=mailbox, role=FolderRole.ARCHIVE).exists()
        # Another client creates a special-use folder and files mail in it.
        with basic_dovecot.connect(user) as other_client:
            other_client.create_folder("Archive")
        archived = deliver(basic_dovecot, user, range(1, 3), folder="Archive")
        wait_until(
            lambda: (
                sorted(
                    MessageCopy.objects.filter(mailbox=mailbox, folder__role=FolderRole.ARCHIVE, gone_at__isnull=True).values_list(
                        "uid", flat=True
                    )
                )
                == archived
            ),
            "the new folder's mail",
        )
        # ... and later deletes it: its copies are no longer shown.
        with basic_dovecot.connect(user) as other_client:
            other_client.delete_folder("Archive")
        wait_until(
            lambda: not MessageCopy.objects.filter(mailbox=mailbox, folder__name="Archive", gone_at__isnull=True).exists(), "the removal"
        )
    finally:
        worker.stop()
        worker.join(timeout=30)
    assert Folder.objects.get(mailbox=mailbox, name="Archive").role == FolderRole.OTHER
    assert len(sign_ins) == 1  # one session did it all, without reconnecting


def test_a_message_expunged_while_idle_is_marked_gone_without_waiting_for_a_poll(
    dovecot: Dovecot, mail_user: MailUser, make_mailbox: Callable[..., Mailbox]
) -> None:
    uids = deliver(dovecot, mail_user, range(2))
    mailbox = make_mailbox(mail_user)
    worker = run_worker(mailbox, poll_seconds=600)  # only IDLE can bring the change in time
    try:
        wait_until(lambda: MessageCopy.objects.filter(mailbox=mailbox, folder__role=FolderRole.INBOX).count() == 2, "the first import")
        wait_until(lambda: Folder.objects.get(mailbox=mailbox, role=FolderRole.INBOX).backfill_below_uid is None, "the import to finish")
        time.sleep(0.5)  # let the worker enter IDLE (the test passes either way; this makes it test IDLE)
        with dovecot.connect(mail_user) as other_client:
            other_client.select_folder("INBOX")
            other_client.delete_messages([uids[0]])
            other_client.expunge()
        wait_until(lambda: MessageCopy.objects.get(mailbox=mailbox, uid=uids[0]).gone_at is not None, "the expunge to be noticed")
    finally:
        worker.stop()
        worker.join(timeout=30)
    assert MessageCopy.objects.get(mailbox=mailbox, uid=uids[1]).gone_at is None
