"""Changes made on the server by other clients, found the cheap way where the server allows it:
QRESYNC (expunges as VANISHED, flag changes as FETCH, both in the SELECT answer) on the session's
Dovecot, CONDSTORE (UID SEARCH ALL for expunges, CHANGEDSINCE for flags) on a plainer Dovecot
that does not offer QRESYNC; and folders created, renamed and removed on the server."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest
from imapclient import IMAPClient

from postroom.conversations.models import Message, MessageCopy
from postroom.mailboxes.models import Folder, FolderRole, Mailbox
from postroom.sync import engine
from postroom.sync.engine import SYNCED_ROLES, UidRanges, mailbox_sync_once
from postroom.sync.tests.test_engine import deliver, engine_for, live_copies
from postroom.testing.dovecot import Dovecot, MailUser


@contextlib.contextmanager
def commands_sent(client: IMAPClient) -> Iterator[list[bytes]]:
    """Every line the client sends to the server meanwhile, as sent."""
    sent: list[bytes] = []
    original = client._imap.send

    def send(data: bytes) -> None:
        sent.append(bytes(data))
        original(data)

    client._imap.send = send
    try:
        yield sent
    finally:
        client._imap.send = original


def server_highest_modseq(server: Dovecot, user: MailUser, folder: str = "INBOX") -> int:
    with server.connect(user) as client:
        return int(client.folder_status(folder, [b"HIGHESTMODSEQ"])[b"HIGHESTMODSEQ"])


def copy_states(folder: Folder) -> dict[int, tuple[bool, bool, bool, bool]]:
    """UID -> (live, seen, flagged, answered) of every copy stored for the folder."""
    return {copy.uid: (copy.gone_at is None, copy.seen, copy.flagged, copy.answered) for copy in MessageCopy.objects.filter(folder=folder)}


@pytest.fixture(params=["qresync", "condstore"])
def server(request: pytest.FixtureRequest) -> Dovecot:
    """The session's Dovecot (QRESYNC), or the plainer one (CONDSTORE only)."""
    chosen: Dovecot = request.getfixturevalue("dovecot" if request.param == "qresync" else "basic_dovecot")
    if not chosen.running:
        chosen.start()
    return chosen


def test_changes_by_another_client_are_found_with_or_without_qresync(
    server: Dovecot, make_mailbox: Callable[..., Mailbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "RANGES_PER_QUERY", 1)  # the two expunged UIDs are looked up in two queries
    user = server.create_user()
    uids = deliver(server, user, range(5))
    mailbox = make_mailbox(user, server=server)
    with engine_for(mailbox) as sync:
        inbox = sync.discover_folders()[0]
        sync.sync_folder(inbox)
        with server.connect(user) as other_client:
            other_client.select_folder("INBOX")
            other_client.add_flags([uids[0]], [b"\\Seen", b"\\Flagged"])
            other_client.add_flags([uids[2]], [b"\\Answered"])
            other_client.delete_messages([uids[1], uids[3]])
            other_client.expunge()
        (new_uid,) = deliver(server, user, range(5, 6), flags=["\\Seen"])
        with commands_sent(sync.client) as sent:
            outcome = sync.sync_folder(inbox)
    assert outcome.stored == 1
    assert copy_states(inbox) == {
        uids[0]: (True, True, True, False),
        uids[1]: (False, False, False, False),
        uids[2]: (True, False, False, True),
        uids[3]: (False, False, False, False),
        uids[4]: (True, False, False, False),
        new_uid: (True, True, False, False),
    }
    inbox.refresh_from_db()
    assert inbox.highest_modseq == server_highest_modseq(server, user)
    commands = b"".join(sent)
    if not server.basic:
        assert b"EXAMINE" in commands
        assert b"(QRESYNC (" in commands
        assert b"SEARCH ALL" not in commands  # expunges came as VANISHED, flags in the SELECT answer
    else:
        assert b"QRESYNC" not in commands
        assert b"UID SEARCH ALL" in commands
        assert b"(CHANGEDSINCE " in commands


def test_an_unchanged_folder_costs_no_flag_fetch(server: Dovecot, make_mailbox: Callable[..., Mailbox]) -> None:
    user = server.create_user()
    deliver(server, user, range(3))
    mailbox = make_mailbox(user, server=server)
    with engine_for(mailbox) as sync:
        inbox = sync.discover_folders()[0]
        sync.sync_folder(inbox)
        with commands_sent(sync.client) as sent:
            sync.sync_folder(inbox)
    assert not any(b"FETCH" in line for line in sent)
    assert len(live_copies(inbox)) == 3


def test_mod_sequences_going_backwards_fall_back_to_checking_every_message(
    dovecot: Dovecot, mail_user: MailUser, make_mailbox: Callable[..., Mailbox]
) -> None:
    # A server whose index was rebuilt restarts its mod-sequences below the value we stored:
    # asking it what changed since that value would report nothing.
    uids = deliver(dovecot, mail_user, range(3))
    mailbox = make_mailbox(mail_user)
    with engine_for(mailbox) as sync:
        inbox = sync.discover_folders()[0]
        sync.sync_folder(inbox)
        with dovecot.connect(mail_user) as other_client:
            other_client.select_folder("INBOX")
            other_client.add_flags([uids[1]], [b"\\Flagged"])
            other_client.delete_messages([uids[2]])
            other_client.expunge()
        stored_too_high = server_highest_modseq(dovecot, mail_user) + 1000
        Folder.objects.filter(pk=inbox.pk).update(highest_modseq=stored_too_high)
        inbox.highest_modseq = stored_too_high
        sync.sync_folder(inbox)
    assert copy_states(inbox) == {
        uids[0]: (True, False, False, False),
        uids[1]: (True, False, True, False),
        uids[2]: (False, False, False, False),
    }
    inbox.refresh_from_db()
    assert inbox.highest_modseq == server_highest_modseq(dovecot, mail_user)


def test_a_move_by_another_client_is_followed_with_qresync(
    dovecot: Dovecot, mail_user: MailUser, make_mailbox: Callable[..., Mailbox]
) -> None:
    uids = deliver(dovecot, mail_user, range(3))
    mailbox = make_mailbox(mail_user)
    mailbox_sync_once(mailbox)
    moved = MessageCopy.objects.get(mailbox=mailbox, uid=uids[1])
    with dovecot.connect(mail_user) as other_client:
        other_client.select_folder("INBOX")
        other_client.move([uids[1]], "Archive")
    mailbox_sync_once(mailbox)
    moved.refresh_from_db()
    assert moved.gone_at is not None
    archived = live_copies(Folder.objects.get(mailbox=mailbox, role=FolderRole.ARCHIVE))
    assert [copy.message_id for copy in archived] == [moved.message_id]


def test_uid_ranges_from_the_server_are_tested_without_expanding_them() -> None:
    ranges = UidRanges("9:7,1,3:4,4000000000:1")
    assert [uid for uid in range(1, 12) if uid in ranges] == list(range(1, 12))
    sparse = UidRanges("2,5:6,10")
    assert [uid for uid in range(1, 12) if uid in sparse] == [2, 5, 6, 10]
    assert "5" not in sparse


# --- folders created, renamed and removed on the server --------------------------------------------
def folder_roles(mailbox: Mailbox) -> dict[str, str]:
    return dict(Folder.objects.filter(mailbox=mailbox).values_list("name", "role"))


def test_a_folder_created_on_the_server_is_found_and_imported_on_the_next_listing(
    basic_dovecot: Dovecot, make_mailbox: Callable[..., Mailbox]
) -> None:
    user = basic_dovecot.create_user()
    mailbox = make_mailbox(user, server=basic_dovecot)
    with engine_for(mailbox) as sync:
        assert [folder.role for folder in sync.discover_folders()] == [FolderRole.INBOX]
        with basic_dovecot.connect(user) as other_client:
            other_client.create_folder("Archive")
        uids = deliver(basic_dovecot, user, range(2), folder="Archive")
        folders = sync.discover_folders()  # the same session, listing again
        assert [folder.role for folder in folders] == [FolderRole.INBOX, FolderRole.ARCHIVE]
        sync.sync_folder(folders[1])
    assert [copy.uid for copy in live_copies(folders[1])] == uids


def test_a_folder_renamed_with_its_role_keeps_its_state_and_copies(basic_dovecot: Dovecot, make_mailbox: Callable[..., Mailbox]) -> None:
    user = basic_dovecot.create_user()
    with basic_dovecot.connect(user) as other_client:
        other_client.create_folder("Archive")
    deliver(basic_dovecot, user, range(3), folder="Archive")
    mailbox = make_mailbox(user, server=basic_dovecot)
    mailbox_sync_once(mailbox)
    archive = Folder.objects.get(mailbox=mailbox, role=FolderRole.ARCHIVE)
    copies_before = {copy.pk for copy in live_copies(archive)}
    with basic_dovecot.connect(user) as other_client:
        other_client.rename_folder("Archive", "Archives")  # still \Archive under its new name
    mailbox_sync_once(mailbox)
    renamed = Folder.objects.get(mailbox=mailbox, role=FolderRole.ARCHIVE)
    assert (renamed.pk, renamed.name) == (archive.pk, "Archives")
    assert {copy.pk for copy in live_copies(renamed)} == copies_before
    assert MessageCopy.objects.filter(mailbox=mailbox).count() == 3


def test_a_folder_removed_from_the_list_is_dropped_and_revived_when_it_returns(
    basic_dovecot: Dovecot, make_mailbox: Callable[..., Mailbox]
) -> None:
    user = basic_dovecot.create_user()
    with basic_dovecot.connect(user) as other_client:
        other_client.create_folder("Archive")
    deliver(basic_dovecot, user, range(3), folder="Archive")
    mailbox = make_mailbox(user, server=basic_dovecot)
    mailbox_sync_once(mailbox)
    archive = Folder.objects.get(mailbox=mailbox, role=FolderRole.ARCHIVE)
    copies_before = {copy.pk for copy in live_copies(archive)}
    with basic_dovecot.connect(user) as other_client:
        other_client.rename_folder("Archive", "Kept elsewhere")  # no longer special-use: not synced
    mailbox_sync_once(mailbox)
    assert folder_roles(mailbox) == {"INBOX": FolderRole.INBOX, "Archive": FolderRole.OTHER}
    assert live_copies(archive) == []
    with basic_dovecot.connect(user) as other_client:
        other_client.rename_folder("Kept elsewhere", "Archive")  # back, with the same UIDVALIDITY
        other_client.select_folder("Archive")
        other_client.delete_messages([min(other_client.search(["ALL"]))])
        other_client.expunge()
    mailbox_sync_once(mailbox)
    assert folder_roles(mailbox)["Archive"] == FolderRole.ARCHIVE
    revived = live_copies(archive)
    assert len(revived) == 2
    assert {copy.pk for copy in revived} < copies_before
    assert MessageCopy.objects.filter(mailbox=mailbox).count() == 3
    assert Message.objects.filter(organization=mailbox.organization).count() == 3


def test_a_listing_without_inbox_drops_nothing(dovecot: Dovecot, mail_user: MailUser, make_mailbox: Callable[..., Mailbox]) -> None:
    mailbox = make_mailbox(mail_user)
    with engine_for(mailbox) as sync:
        before = [folder.pk for folder in sync.discover_folders()]
        listed = sync.client.list_folders
        sync.client.list_folders = lambda: [entry for entry in listed() if entry[2] != "INBOX"]  # a broken answer
        assert [folder.pk for folder in sync.discover_folders()] == before
    assert set(folder_roles(mailbox).values()) == set(SYNCED_ROLES)
