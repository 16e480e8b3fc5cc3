"""New INBOX mail is found by IDLE push, not by the periodic poll, whatever the moment it arrives.

Against the real test Dovecot. Every test polls once an hour at most and leaves IDLE only when
told to, so a change notice that went missing is not hidden by the poll: the message is then
simply never stored, or is counted as found by the recheck. No test asserts a duration.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest
from imapclient import IMAPClient

from postroom.conversations.models import MessageCopy
from postroom.mailboxes.models import Folder, Mailbox
from postroom.sync import service
from postroom.sync.engine import MailboxSync, imap_session, messages_stored
from postroom.sync.service import MailboxWorker
from postroom.sync.tests.test_engine import make_message
from postroom.sync.tests.test_service import WAIT_SECONDS, wait_until
from postroom.testing.dovecot import Dovecot, MailUser

pytestmark = pytest.mark.django_db(transaction=True)
HOUR = 3600.0


@pytest.fixture
def no_recheck(monkeypatch: pytest.MonkeyPatch) -> None:
    """IDLE is not left every few seconds to look for mail (the defence in depth), so only push
    and the catch-up before IDLE can find new mail."""
    monkeypatch.setattr(service, "IDLE_RECHECK_SECONDS", HOUR)


@pytest.fixture
def synced_inbox(dovecot: Dovecot, mail_user: MailUser, make_mailbox: Callable[..., Mailbox]) -> Iterator[tuple[IMAPClient, Folder]]:
    """A session on a mailbox whose INBOX (with one message) is synced and selected."""
    dovecot.append(mail_user, make_message(1))
    mailbox = make_mailbox(mail_user)
    with imap_session(mailbox) as client:
        sync = MailboxSync(mailbox, client)
        inbox = sync.discover_folders()[0]
        sync.sync_folder(inbox)
        yield client, inbox


def _deliver_when_idle_starts(client: IMAPClient, deliver: Callable[[], object]) -> None:
    """Deliver a message just before ``client`` sends IDLE: the server then reports it at once,
    right behind its "+ idling" continuation."""
    real_idle = client.idle

    def idle() -> Any:
        deliver()
        return real_idle()

    client.idle = idle  # type: ignore[method-assign]


def test_a_notice_sent_with_the_idle_continuation_is_not_left_in_the_buffer(
    dovecot: Dovecot, mail_user: MailUser, synced_inbox: tuple[IMAPClient, Folder], no_recheck: None
) -> None:
    # Dovecot writes "+ idling" and "* 2 EXISTS" together; imaplib reads both into its buffer
    # while IMAPClient's idle() takes the first line, and idle_check() then waits for the
    # socket, which has nothing more to say: the notice waited for the next poll.
    client, inbox = synced_inbox
    _deliver_when_idle_starts(client, lambda: dovecot.append(mail_user, make_message(2)))
    worker = MailboxWorker(inbox.mailbox_id, poll_seconds=HOUR)
    assert worker._idle_until_change(client, inbox, next_poll=time.monotonic() + 10) == "push"


def test_a_notice_answered_to_the_search_before_idle_is_not_lost(
    dovecot: Dovecot, mail_user: MailUser, synced_inbox: tuple[IMAPClient, Folder], no_recheck: None
) -> None:
    # Mail arriving while the server answers the UID SEARCH for mail that came before IDLE is
    # announced by an EXISTS inside that answer (imaplib files it away), and IDLE does not
    # announce it again. Here the message arrives just after the search and the next command's
    # answer (a NOOP) carries its EXISTS: the same state, made deterministic.
    client, inbox = synced_inbox
    real_search = client.search

    def search(*args: Any, **kwargs: Any) -> Any:
        found = real_search(*args, **kwargs)
        dovecot.append(mail_user, make_message(2))
        client._imap._simple_command("NOOP")
        return found

    client.search = search  # type: ignore[method-assign]
    worker = MailboxWorker(inbox.mailbox_id, poll_seconds=HOUR)
    assert worker._idle_until_change(client, inbox, next_poll=time.monotonic() + 10) == "push"


def test_a_missed_notice_is_found_by_the_recheck_not_the_poll(
    dovecot: Dovecot, mail_user: MailUser, synced_inbox: tuple[IMAPClient, Folder], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A server that never sends the notice (simulated by dropping every response IDLE brings):
    # leaving IDLE every IDLE_RECHECK_SECONDS to search for new UIDs finds the message.
    monkeypatch.setattr(service, "IDLE_RECHECK_SECONDS", 0.5)
    client, inbox = synced_inbox
    real_idle_check, real_idle_done = client.idle_check, client.idle_done
    client.idle_check = lambda timeout=None: (real_idle_check(timeout), [])[1]  # type: ignore[method-assign]
    client.idle_done = lambda: (real_idle_done()[0], [])  # type: ignore[method-assign]
    _deliver_when_idle_starts(client, lambda: dovecot.append(mail_user, make_message(2)))
    worker = MailboxWorker(inbox.mailbox_id, poll_seconds=HOUR)
    assert worker._idle_until_change(client, inbox, next_poll=time.monotonic() + HOUR) is None
    assert worker._idle_until_change(client, inbox, next_poll=time.monotonic() + HOUR, select=False) == "recheck"


def test_mail_appended_at_random_moments_around_idle_is_all_pushed(
    dovecot: Dovecot, mail_user: MailUser, make_mailbox: Callable[..., Mailbox], no_recheck: None
) -> None:
    # The worker's whole loop: each message is appended a random 0-80 ms after the previous one
    # was stored, i.e. while the worker finishes that sync, selects INBOX, searches and enters
    # IDLE. Each must be stored (the poll is an hour away) and found by push or the catch-up.
    mailbox = make_mailbox(mail_user)
    stored = threading.Condition()
    stored_uids: set[int] = set()

    def on_stored(sender: object, *, mailbox_id: object, uids: list[int], **kwargs: object) -> None:
        if mailbox_id == mailbox.pk:
            with stored:
                stored_uids.update(uids)
                stored.notify_all()

    messages_stored.connect(on_stored, weak=False)
    worker = MailboxWorker(mailbox.pk, poll_seconds=HOUR)
    worker.start()
    rng = random.Random(3)
    count = 30
    try:
        # The whole first round, not only INBOX's state: mail appended while the round still
        # syncs the other folders would be found by that round (a "poll"), not by push.
        wait_until(lambda: Mailbox.objects.filter(pk=mailbox.pk, last_synced_at__isnull=False).exists(), "the first sync round")
        with dovecot.connect(mail_user) as appender:
            for number in range(count):
                response = appender.append("INBOX", make_message(100 + number))
                uid = int((response.decode() if isinstance(response, bytes) else str(response)).split("]")[0].split()[-1])
                with stored:
                    assert stored.wait_for(partial(set.__contains__, stored_uids, uid), timeout=WAIT_SECONDS), (
                        f"message {number} (UID {uid}) was not stored: its notice was missed ({dict(worker.inbox_found)})"
                    )
                time.sleep(rng.uniform(0, 0.08))
    finally:
        worker.stop()
        worker.join(timeout=WAIT_SECONDS)
        messages_stored.disconnect(on_stored)
    assert MessageCopy.objects.filter(mailbox=mailbox).count() == count
    assert set(worker.inbox_found) <= {"push", "catch-up"}, dict(worker.inbox_found)
    assert sum(worker.inbox_found.values()) == count
