"""A mailbox of Alice's connected to the session's Dovecot and a per-test aiosmtpd peer, a
conversation to reply to, and a task queue that a test drains by hand (to control the clock)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone
from django_tasks.backends.dummy import DummyBackend

from postroom.conftest import Cast
from postroom.conversations.ingest import message_ingest
from postroom.conversations.models import Conversation
from postroom.conversations.tests.conftest import alice_mailbox, build_raw, team_inbox  # noqa: F401 (fixtures for test_drafts)
from postroom.mailboxes.models import AuthKind, Folder, FolderRole, Mailbox, TlsModeChoice
from postroom.testing.dovecot import Dovecot, MailUser
from postroom.testing.smtp import SmtpPeer

CUSTOMER_MESSAGE_ID = "<order-1234@customer.example>"
THREAD_ROOT_ID = "<root-1@customer.example>"


@pytest.fixture
def run_due(queue: DummyBackend, django_capture_on_commit_callbacks: Any) -> Callable[[], int]:
    """Run every queued task that is due now (and what they queue that is due), as a worker would."""

    def run() -> int:
        ran = 0
        while True:
            now = timezone.now()
            due = [result for result in queue.results if result.task.run_after is None or result.task.run_after <= now]
            if not due:
                return ran
            for result in due:
                queue.results.remove(result)
                with django_capture_on_commit_callbacks(execute=True):
                    result.task.call(*result.args, **result.kwargs)
                ran += 1

    return run


def connect_mailbox(cast: Cast, dovecot: Dovecot, user: MailUser, smtp: SmtpPeer) -> Mailbox:
    smtp.add_account(user)
    mailbox = Mailbox(
        organization=cast.org_a, owner=cast.alice_membership, name="Alice Owner", email_address=user.address,
        imap_host=dovecot.host, imap_port=dovecot.imaps_port, imap_tls=TlsModeChoice.IMPLICIT,
        smtp_host=smtp.host, smtp_port=smtp.port, smtp_tls=TlsModeChoice.STARTTLS,
        private_ca_pem=dovecot.ca_pem, auth_kind=AuthKind.PASSWORD,
    )  # fmt: skip
    mailbox.credentials = {"username": user.name, "password": user.password}
    mailbox.save()
    return mailbox


@pytest.fixture
def mailbox(cast: Cast, dovecot: Dovecot, mail_user: MailUser, smtp_peer_requiring_auth: SmtpPeer) -> Mailbox:
    return connect_mailbox(cast, dovecot, mail_user, smtp_peer_requiring_auth)


@pytest.fixture
def conversation(mailbox: Mailbox) -> Conversation:
    """A customer's message (part of a longer thread) in Alice's INBOX, copied to her teammate."""
    raw = build_raw(
        subject="Bestellung für Müller",
        sender="Dana Customer <dana@customer.example>",
        to=f"Alice <{mailbox.email_address}>, Bob <bob@acme.test>",
        cc="Erin <erin@customer.example>",
        message_id=CUSTOMER_MESSAGE_ID,
        in_reply_to=THREAD_ROOT_ID,
        references=THREAD_ROOT_ID,
        text="Wo bleibt meine Bestellung?\n",
    )
    inbox = Folder.objects.create(mailbox=mailbox, name="INBOX", role=FolderRole.INBOX, uidvalidity=1)
    copy = message_ingest(mailbox=mailbox, folder=inbox, uidvalidity=1, uid=1, raw=raw)
    return copy.message.conversation
