"""The sync engine against a real Dovecot: first import, flags, moves, renumbering, restarts."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from imapclient import IMAPClient

from postroom.conversations.bodies import message_bodies_fill
from postroom.conversations.models import Message, MessageCopy
from postroom.mailboxes.models import Folder, FolderRole, Mailbox
from postroom.mime import isolation
from postroom.mime.isolation import IsolatedParser, ProcessLimits
from postroom.sync import engine
from postroom.sync.engine import MailboxSync, copy_move, copy_set_seen, imap_session, mailbox_sync_once
from postroom.testing.dovecot import Dovecot, MailUser


def make_message(number: int, *, size: int = 0, sent: datetime | None = None) -> bytes:
    sent = sent or datetime(2025, 3, 1, tzinfo=UTC) + timedelta(minutes=number)
    padding = ("x" * 76 + "\r\n") * (size // 78)
    return (
        f"From: Sender {number} <sender{number}@example.test>\r\n"
        "To: someone@postroom.test\r\n"
        f"Subject: Message number {number}\r\n"
        f"Message-ID: <message-{number}@example.test>\r\n"
        f"Date: {sent.strftime('%a, %d %b %Y %H:%M:%S +0000')}\r\n"
        "\r\n"
        f"Body of message {number}.\r\n{padding}"
    ).encode()


def deliver(dovecot: Dovecot, user: MailUser, numbers: range, *, folder: str = "INBOX", **options: object) -> list[int]:
    return [dovecot.append(user, make_message(number), folder=folder, **options) for number in numbers]  # type: ignore[arg-type]


def live_copies(folder: Folder) -> list[MessageCopy]:
    return list(MessageCopy.objects.filter(folder=folder, gone_at__isnull=True).order_by("uid"))


@contextlib.contextmanager
def engine_for(mailbox: Mailbox, batch_size: int = engine.BATCH_SIZE) -> Iterator[MailboxSync]:
    with imap_session(mailbox) as client:
        sync = MailboxSync(mailbox, client, batch_size=batch_size)
        try:
            yield sync
        finally:
            sync.close()


def server_flags(dovecot: Dovecot, user: MailUser, folder: str = "INBOX") -> dict[int, tuple[bytes, ...]]:
    with dovecot.connect(user) as client:
        client.select_folder(folder, readonly=True)
        uids = client.search(["ALL"])
        return {uid: data[b"FLAGS"] for uid, data in client.fetch(uids, ["FLAGS"]).items()} if uids else {}


def test_folders_are_found_by_special_use(mail_user: MailUser, make_mailbox: Callable[..., Mailbox]) -> None:
    mailbox = make_mailbox(mail_user)
    with engine_for(mailbox) as sync:
        folders = sync.discover_folders()
    assert [(folder.role, folder.name) for folder in folders] == [
        (FolderRole.INBOX, "INBOX"),
        (FolderRole.SENT, "Sent"),
        (FolderRole.ARCHIVE, "Archive"),
        (FolderRole.TRASH, "Trash"),
        (FolderRole.JUNK, "Junk"),
    ]


def test_new_mail_comes_in_smaller_batches_than_the_first_import(
    dovecot: Dovecot, mail_user: MailUser, make_mailbox: Callable[..., Mailbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "NEW_MAIL_BATCH_SIZE", 2)
    deliver(dovecot, mail_user, range(6))
    mailbox = make_mailbox(mail_user)
    batches: list[list[int]] = []

    def on_stored(**details: object) -> None:
        batches.append(list(details["uids"]))  # type: ignore[call-overload]

    engine.messages_stored.connect(on_stored, weak=False)
    try:
        with engine_for(mailbox, batch_size=6) as sync:
            inbox = sync.discover_folders()[0]
            sync.sync_folder(inbox, backfill_batches=1)
            assert [len(batch) for batch in batches] == [6]  # the import: one batch of batch_size
            new = deliver(dovecot, mail_user, range(6, 11))
            batches.clear()
            sync.sync_folder(inbox, backfill_batches=0)
    finally:
        engine.messages_stored.disconnect(on_stored)
    assert batches == [new[0:2], new[2:4], new[4:5]]


@pytest.fixture
def six_waiting(
    dovecot: Dovecot, mail_user: MailUser, make_mailbox: Callable[..., Mailbox], monkeypatch: pytest.MonkeyPatch
) -> tuple[list[int], Mailbox]:
    """Six messages to import, of which the newest two have their body pass queued at once."""
    monkeypatch.setattr(engine, "IMPORT_BODIES_AT_ONCE", 2)
    uids = deliver(dovecot, mail_user, range(6))
    return uids, make_mailbox(mail_user)


def body_pending_uids(folder: Folder) -> list[int]:
    return sorted(copy.uid for copy in live_copies(folder) if copy.message.body_pending)


def test_first_import_queues_the_body_pass_of_its_newest_mail_at_once_and_the_rest_when_done(
    dovecot: Dovecot,
    mail_user: MailUser,
    six_waiting: tuple[list[int], Mailbox],
    django_capture_on_commit_callbacks: Callable[..., contextlib.AbstractContextManager[object]],
) -> None:
    uids, mailbox = six_waiting

    def sync_folder(sync: MailboxSync, folder: Folder, batches: int) -> None:
        # What is queued after the commit runs (the test task backend runs a task at once).
        with django_capture_on_commit_callbacks(execute=True):
            sync.sync_folder(folder, backfill_batches=batches)

    with engine_for(mailbox, batch_size=2) as sync:
        inbox = sync.discover_folders()[0]
        sync_folder(sync, inbox, 0)
        sync_folder(sync, inbox, 1)
        assert body_pending_uids(inbox) == []  # the newest: queued at once
        sync_folder(sync, inbox, 1)
        assert body_pending_uids(inbox) == uids[2:4]  # waits for the end of the import
        new = deliver(dovecot, mail_user, range(6, 7))
        sync_folder(sync, inbox, 0)
        assert body_pending_uids(inbox) == uids[2:4]  # new mail's body pass is queued at once
        sync_folder(sync, inbox, 5)
    assert body_pending_uids(inbox) == []
    assert Message.objects.get(copies__uid=new[0], copies__folder=inbox).text_body is not None


def test_an_import_resumed_after_a_restart_queues_the_body_pass_its_predecessor_deferred(
    six_waiting: tuple[list[int], Mailbox],
    django_capture_on_commit_callbacks: Callable[..., contextlib.AbstractContextManager[object]],
) -> None:
    uids, mailbox = six_waiting
    with django_capture_on_commit_callbacks(execute=True), engine_for(mailbox, batch_size=2) as sync:
        inbox = sync.discover_folders()[0]
        sync.sync_folder(inbox, backfill_batches=2)  # the second batch's bodies wait for the end
    assert body_pending_uids(inbox) == uids[2:4]
    with django_capture_on_commit_callbacks(execute=True), engine_for(mailbox, batch_size=2) as sync:
        inbox = sync.discover_folders()[0]  # a new process: its plan starts below the top
        outcome = sync.sync_folder(inbox, backfill_batches=5)
    assert not outcome.backfill_left
    assert body_pending_uids(inbox) == []


def test_first_import_runs_newest_first_in_batches_with_progress(
    dovecot: Dovecot, mail_user: MailUser, make_mailbox: Callable[..., Mailbox]
) -> None:
    uids = deliver(dovecot, mail_user, range(10))
    mailbox = make_mailbox(mail_user)
    with engine_for(mailbox, batch_size=4) as sync:
        inbox = sync.discover_folders()[0]
        sync.sync_folder(inbox, backfill_batches=0)
        assert (inbox.messages_total, inbox.messages_done, inbox.backfill_below_uid) == (10, 0, max(uids) + 1)
        assert live_copies(inbox) == []
        sync.sync_folder(inbox, backfill_batches=1)
        assert [copy.uid for copy in live_copies(inbox)] == uids[-4:]  # the newest come first
        assert (inbox.messages_total, inbox.messages_done) == (10, 4)
        # Mail arriving during the import is fetched before the rest of the backlog.
        (new_uid,) = deliver(dovecot, mail_user, range(10, 11))
        sync.sync_folder(inbox, backfill_batches=1)
        assert [copy.uid for copy in live_copies(inbox)] == [*uids[-8:], new_uid]
        outcome = sync.sync_folder(inbox, backfill_batches=5)
    assert not outcome.backfill_left
    inbox.refresh_from_db()
    assert (inbox.messages_total, inbox.messages_done, inbox.backfill_below_uid, inbox.highest_uid) == (10, 10, None, new_uid)
    assert [copy.uid for copy in live_copies(inbox)] == [*uids, new_uid]
    assert Message.objects.filter(organization=mailbox.organization).count() == 11
    # Fetching used BODY.PEEK[] on a read-only folder: nothing was marked read on the server.
    assert all(b"\\Seen" not in flags for flags in server_flags(dovecot, mail_user).values())


def test_the_import_is_fetched_ahead_over_a_second_session_and_stores_each_message_once(
    dovecot: Dovecot, mail_user: MailUser, make_mailbox: Callable[..., Mailbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    uids = deliver(dovecot, mail_user, range(10))
    mailbox = make_mailbox(mail_user)
    with engine_for(mailbox, batch_size=3) as sync:
        fetched_here: list[int] = []
        fetch = engine.fetch_messages

        def recorded_fetch(client: IMAPClient, messages: list[int], **kwargs: Any) -> dict[int, dict[bytes, Any]]:
            if client is sync.client:
                fetched_here.extend(messages)
            return fetch(client, messages, **kwargs)

        monkeypatch.setattr(engine, "fetch_messages", recorded_fetch)
        inbox = sync.discover_folders()[0]
        sync.sync_folder(inbox, backfill_batches=0)
        sync.sync_folder(inbox, backfill_batches=1)
        assert [copy.uid for copy in live_copies(inbox)] == uids[-3:]
        assert (inbox.messages_done, inbox.backfill_below_uid) == (3, uids[-3])
        # Mail arriving meanwhile comes first; the batches fetched ahead are still stored in turn.
        (new_uid,) = deliver(dovecot, mail_user, range(10, 11))
        sync.sync_folder(inbox, backfill_batches=1)
        assert [copy.uid for copy in live_copies(inbox)] == [*uids[-6:], new_uid]
        outcome = sync.sync_folder(inbox, backfill_batches=10)
    assert not outcome.backfill_left
    inbox.refresh_from_db()
    assert (inbox.messages_total, inbox.messages_done, inbox.backfill_below_uid) == (10, 10, None)
    assert [copy.uid for copy in live_copies(inbox)] == [*uids, new_uid]
    assert Message.objects.filter(organization=mailbox.organization).count() == 11
    # The sync session fetched only the first batch and the new message: the rest came from the second session.
    assert sorted(fetched_here) == sorted([*uids[-3:], new_uid])
    assert all(b"\\Seen" not in flags for flags in server_flags(dovecot, mail_user).values())


def test_batches_fetched_ahead_are_dropped_when_the_folder_is_renumbered(
    dovecot: Dovecot, mail_user: MailUser, make_mailbox: Callable[..., Mailbox]
) -> None:
    deliver(dovecot, mail_user, range(8), folder="Archive")
    mailbox = make_mailbox(mail_user)
    with engine_for(mailbox, batch_size=2) as sync:
        archive = next(folder for folder in sync.discover_folders() if folder.role == FolderRole.ARCHIVE)
        sync.sync_folder(archive, backfill_batches=0)
        sync.sync_folder(archive, backfill_batches=1)  # the second session fetches the next batches
        old_uidvalidity = archive.uidvalidity
        with dovecot.connect(mail_user) as other_client:  # recreate the folder: a new UIDVALIDITY
            other_client.delete_folder("Archive")
            other_client.create_folder("Archive")
        renumbered = deliver(dovecot, mail_user, range(8), folder="Archive")
        sync.sync_folder(archive, backfill_batches=0)
        sync.sync_folder(archive, backfill_batches=10)
    archive.refresh_from_db()
    assert archive.uidvalidity != old_uidvalidity
    assert [copy.uid for copy in live_copies(archive)] == renumbered
    assert {copy.uidvalidity for copy in live_copies(archive)} == {archive.uidvalidity}
    assert Message.objects.filter(organization=mailbox.organization).count() == 8


def test_import_since_limits_how_far_back(dovecot: Dovecot, mail_user: MailUser, make_mailbox: Callable[..., Mailbox]) -> None:
    deliver(dovecot, mail_user, range(3), received_at=datetime(2020, 1, 1, tzinfo=UTC))
    recent = deliver(dovecot, mail_user, range(3, 5), received_at=datetime(2025, 6, 1, tzinfo=UTC))
    mailbox = make_mailbox(mail_user, import_since=date(2024, 1, 1))
    mailbox_sync_once(mailbox)
    inbox = Folder.objects.get(mailbox=mailbox, role=FolderRole.INBOX)
    assert [copy.uid for copy in live_copies(inbox)] == recent
    assert (inbox.messages_total, inbox.messages_done) == (2, 2)


def test_every_folder_is_imported_and_the_same_message_in_two_folders_is_one_message(
    dovecot: Dovecot, mail_user: MailUser, make_mailbox: Callable[..., Mailbox]
) -> None:
    deliver(dovecot, mail_user, range(3))
    deliver(dovecot, mail_user, range(2, 4), folder="Sent")
    mailbox = make_mailbox(mail_user)
    outcomes = mailbox_sync_once(mailbox)
    assert outcomes[FolderRole.INBOX].stored == 3
    assert outcomes[FolderRole.SENT].stored == 2
    assert Message.objects.filter(organization=mailbox.organization).count() == 4
    assert MessageCopy.objects.filter(mailbox=mailbox).count() == 5


def test_syncing_again_stores_nothing_twice(dovecot: Dovecot, mail_user: MailUser, make_mailbox: Callable[..., Mailbox]) -> None:
    deliver(dovecot, mail_user, range(5))
    mailbox = make_mailbox(mail_user)
    mailbox_sync_once(mailbox)
    # A crash after the batch was stored but before the state advanced: the batch is fetched again.
    Folder.objects.filter(mailbox=mailbox, role=FolderRole.INBOX).update(highest_uid=2)
    mailbox_sync_once(mailbox)
    assert MessageCopy.objects.filter(mailbox=mailbox).count() == 5
    assert Message.objects.filter(organization=mailbox.organization).count() == 5


def test_flags_changed_by_another_client_reach_postroom(
    dovecot: Dovecot, mail_user: MailUser, make_mailbox: Callable[..., Mailbox]
) -> None:
    uids = deliver(dovecot, mail_user, range(3))
    mailbox = make_mailbox(mail_user)
    mailbox_sync_once(mailbox)
    with dovecot.connect(mail_user) as other_client:
        other_client.select_folder("INBOX")
        other_client.add_flags([uids[0]], [b"\\Seen", b"\\Flagged"])
        other_client.add_flags([uids[2]], [b"\\Answered"])
    mailbox_sync_once(mailbox)
    copies = {copy.uid: (copy.seen, copy.flagged, copy.answered) for copy in MessageCopy.objects.filter(mailbox=mailbox)}
    assert copies == {uids[0]: (True, True, False), uids[1]: (False, False, False), uids[2]: (False, False, True)}


def test_flags_are_swept_without_condstore(dovecot: Dovecot, mail_user: MailUser, make_mailbox: Callable[..., Mailbox]) -> None:
    uids = deliver(dovecot, mail_user, range(2))
    mailbox = make_mailbox(mail_user)
    with engine_for(mailbox) as sync:
        sync.condstore = False  # as on a server without CONDSTORE: every known UID's flags are read
        inbox = sync.discover_folders()[0]
        sync.sync_folder(inbox)
        with dovecot.connect(mail_user) as other_client:
            other_client.select_folder("INBOX")
            other_client.add_flags([uids[1]], [b"\\Seen"])
        sync.sync_folder(inbox)
    assert [copy.seen for copy in live_copies(inbox)] == [False, True]


def test_reading_in_postroom_marks_the_server_copy(dovecot: Dovecot, mail_user: MailUser, make_mailbox: Callable[..., Mailbox]) -> None:
    uids = deliver(dovecot, mail_user, range(2))
    mailbox = make_mailbox(mail_user)
    mailbox_sync_once(mailbox)
    copy = MessageCopy.objects.get(mailbox=mailbox, uid=uids[0])
    copy_set_seen(copy, True)
    flags = server_flags(dovecot, mail_user)
    assert b"\\Seen" in flags[uids[0]]
    assert b"\\Seen" not in flags[uids[1]]
    copy_set_seen(copy, False)
    assert b"\\Seen" not in server_flags(dovecot, mail_user)[uids[0]]
    copy.refresh_from_db()
    assert copy.seen is False


def test_a_move_by_another_client_is_followed(dovecot: Dovecot, mail_user: MailUser, make_mailbox: Callable[..., Mailbox]) -> None:
    uids = deliver(dovecot, mail_user, range(3))
    mailbox = make_mailbox(mail_user)
    mailbox_sync_once(mailbox)
    moved = MessageCopy.objects.get(mailbox=mailbox, uid=uids[1])
    with dovecot.connect(mail_user) as other_client:
        other_client.select_folder("INBOX")
        other_client.move([uids[1]], "Archive")
        other_client.delete_messages([uids[2]])
        other_client.expunge()
    mailbox_sync_once(mailbox)
    moved.refresh_from_db()
    assert moved.gone_at is not None
    assert MessageCopy.objects.get(mailbox=mailbox, uid=uids[2]).gone_at is not None
    archived = live_copies(Folder.objects.get(mailbox=mailbox, role=FolderRole.ARCHIVE))
    assert [copy.message_id for copy in archived] == [moved.message_id]
    assert Message.objects.filter(organization=mailbox.organization).count() == 3


@pytest.mark.parametrize("with_move_extension", [True, False])
def test_archiving_in_postroom_moves_only_that_message(
    dovecot: Dovecot, mail_user: MailUser, make_mailbox: Callable[..., Mailbox], monkeypatch: pytest.MonkeyPatch, with_move_extension: bool
) -> None:
    uids = deliver(dovecot, mail_user, range(3))
    # Another client marked a message for deletion without expunging it: it must survive our move.
    with dovecot.connect(mail_user) as other_client:
        other_client.select_folder("INBOX")
        other_client.add_flags([uids[0]], [b"\\Deleted"])
    mailbox = make_mailbox(mail_user)
    mailbox_sync_once(mailbox)
    if not with_move_extension:
        offered = IMAPClient.has_capability
        monkeypatch.setattr(IMAPClient, "has_capability", lambda client, name: name.upper() != "MOVE" and offered(client, name))
    copy = MessageCopy.objects.get(mailbox=mailbox, uid=uids[1])
    copy_move(copy, FolderRole.ARCHIVE)
    assert set(server_flags(dovecot, mail_user)) == {uids[0], uids[2]}
    assert len(server_flags(dovecot, mail_user, "Archive")) == 1
    mailbox_sync_once(mailbox)
    archived = live_copies(Folder.objects.get(mailbox=mailbox, role=FolderRole.ARCHIVE))
    assert [archived_copy.message_id for archived_copy in archived] == [copy.message_id]


def test_a_renumbered_folder_is_imported_again_without_duplicates(
    dovecot: Dovecot, mail_user: MailUser, make_mailbox: Callable[..., Mailbox]
) -> None:
    deliver(dovecot, mail_user, range(4), folder="Archive")
    mailbox = make_mailbox(mail_user)
    mailbox_sync_once(mailbox)
    archive = Folder.objects.get(mailbox=mailbox, role=FolderRole.ARCHIVE)
    old_uidvalidity = archive.uidvalidity
    assert old_uidvalidity is not None
    old_copies = live_copies(archive)
    with dovecot.connect(mail_user) as other_client:  # recreate the folder: a new UIDVALIDITY
        other_client.delete_folder("Archive")
        other_client.create_folder("Archive")
    deliver(dovecot, mail_user, range(4), folder="Archive")
    mailbox_sync_once(mailbox)
    archive.refresh_from_db()
    assert archive.uidvalidity != old_uidvalidity
    new_copies = live_copies(archive)
    assert {copy.uidvalidity for copy in new_copies} == {archive.uidvalidity}
    assert sorted(copy.message_id for copy in new_copies) == sorted(copy.message_id for copy in old_copies)
    assert MessageCopy.objects.filter(folder=archive, uidvalidity=old_uidvalidity, gone_at__isnull=False).count() == 4
    assert Message.objects.filter(organization=mailbox.organization).count() == 4


def test_r31_an_oversized_message_is_quarantined_without_downloading_it(
    dovecot: Dovecot, mail_user: MailUser, make_mailbox: Callable[..., Mailbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "MAX_MESSAGE_BYTES", 20_000)
    small = dovecot.append(mail_user, make_message(1))
    large = dovecot.append(mail_user, make_message(2, size=50_000))
    mailbox = make_mailbox(mail_user)
    mailbox_sync_once(mailbox)
    stored = {copy.uid: copy.message for copy in MessageCopy.objects.filter(mailbox=mailbox).select_related("message")}
    assert stored[small].quarantine_reason == ""
    assert stored[large].quarantine_reason == "too_large"
    assert stored[large].size < 20_000  # only the header was fetched
    assert stored[large].subject == "Message number 2"
    mailbox_sync_once(mailbox)  # and it does not block the folder
    assert MessageCopy.objects.filter(mailbox=mailbox).count() == 2


def test_r31_an_oversized_message_in_a_batch_fetched_ahead_is_not_downloaded_either(
    dovecot: Dovecot, mail_user: MailUser, make_mailbox: Callable[..., Mailbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "MAX_MESSAGE_BYTES", 20_000)
    large = dovecot.append(mail_user, make_message(1, size=50_000))  # the oldest: in the last batch
    small = [dovecot.append(mail_user, make_message(number)) for number in range(2, 8)]
    mailbox = make_mailbox(mail_user)
    mailbox_sync_once(mailbox, batch_size=2)
    stored = {copy.uid: copy.message for copy in MessageCopy.objects.filter(mailbox=mailbox).select_related("message")}
    assert sorted(stored) == sorted([large, *small])
    assert stored[large].quarantine_reason == "too_large"
    assert stored[large].size < 20_000
    assert all(stored[uid].quarantine_reason == "" for uid in small)


def test_a_server_restart_mid_import_loses_and_duplicates_nothing(
    dovecot: Dovecot, mail_user: MailUser, make_mailbox: Callable[..., Mailbox]
) -> None:
    uids = deliver(dovecot, mail_user, range(12))
    mailbox = make_mailbox(mail_user)
    with engine_for(mailbox, batch_size=5) as sync:
        inbox = sync.discover_folders()[0]
        sync.sync_folder(inbox, backfill_batches=1)
        dovecot.restart()
        with pytest.raises(Exception):  # noqa: B017, PT011 (whatever the dropped connection raises)
            sync.sync_folder(inbox, backfill_batches=1)
    mailbox_sync_once(mailbox, batch_size=5)
    assert [copy.uid for copy in live_copies(Folder.objects.get(pk=inbox.pk))] == uids
    assert Message.objects.filter(organization=mailbox.organization).count() == 12


@pytest.mark.timeout(120)
def test_r31_a_message_past_the_parser_limits_never_blocks_the_mailbox(
    dovecot: Dovecot, mail_user: MailUser, make_mailbox: Callable[..., Mailbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    strict = IsolatedParser(limits=ProcessLimits(wall_seconds=0.3, cpu_seconds=60))
    monkeypatch.setitem(isolation._parsers, "bodies", strict)
    try:
        before = dovecot.append(mail_user, make_message(1))
        huge = dovecot.append(mail_user, make_message(2).replace(b"Body of message 2.", b"ab\r\n" * 4_000_000))
        after = dovecot.append(mail_user, make_message(3))
        mailbox = make_mailbox(mail_user)
        mailbox_sync_once(mailbox)
        stored = {copy.uid: copy.message_id for copy in MessageCopy.objects.filter(mailbox=mailbox)}
        assert set(stored) == {before, huge, after}
        # What the task worker does after the commit (the test's transaction never commits).
        message_bodies_fill(message_ids=list(stored.values()))
        messages = {uid: Message.objects.get(pk=pk) for uid, pk in stored.items()}
        assert messages[huge].quarantine_reason == "parser_timeout"
        assert messages[huge].subject == "Message number 2"
        assert messages[before].text_body == "Body of message 1.\n"
        assert messages[after].text_body == "Body of message 3.\n"
        newer = dovecot.append(mail_user, make_message(4))
        mailbox_sync_once(mailbox)
        assert MessageCopy.objects.filter(mailbox=mailbox, uid=newer).exists()
    finally:
        strict.close()
