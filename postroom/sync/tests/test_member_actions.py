"""Reading, archiving and trashing in Postroom reach the member's IMAP server (a real Dovecot):
the page posts the change, the local copies change in the transaction, and the task queued
after the commit sets the flag or moves the message; a failure is retried and the local state
stays as the member set it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.urls import reverse
from django_tasks.backends.dummy import DummyBackend

from postroom.audit.models import AuditEvent
from postroom.conftest import Cast
from postroom.conversations import actions
from postroom.conversations.models import Conversation, MessageCopy
from postroom.mailboxes.models import Folder, FolderRole, Mailbox
from postroom.sync.engine import mailbox_sync_once
from postroom.sync.tasks import copy_propagate
from postroom.sync.tests.test_engine import deliver, server_flags
from postroom.testing.dovecot import Dovecot, MailUser, free_port

pytestmark = pytest.mark.django_db


def conversation_of(mailbox: Mailbox, uid: int) -> Conversation:
    return MessageCopy.objects.get(mailbox=mailbox, folder__role=FolderRole.INBOX, uid=uid).message.conversation


def post_change(client_as: Any, cast: Cast, conversation: Conversation, change: str, capture: Any) -> Any:
    url = reverse("conversations:change", args=[cast.org_a.slug, conversation.pk])
    with capture(execute=True):  # the test settings run the queued task at once, after the commit
        return client_as(cast.alice).post(url, {"change": change})


def message_ids_in(dovecot: Dovecot, user: MailUser, folder: str) -> list[str]:
    output = dovecot.doveadm("fetch", "-u", user.name, "hdr.message-id", "mailbox", folder)
    return sorted(line.split(":", 1)[1].strip() for line in output.splitlines() if line.lower().startswith("hdr.message-id:"))


def test_reading_in_postroom_sets_seen_on_the_server_and_unread_clears_it(  # type: ignore[no-untyped-def]
    cast: Cast, client_as, dovecot: Dovecot, mail_user: MailUser, make_mailbox: Callable[..., Mailbox],
    django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    uids = deliver(dovecot, mail_user, range(2))
    mailbox = make_mailbox(mail_user, owner=cast.alice_membership)
    mailbox_sync_once(mailbox)
    conversation = conversation_of(mailbox, uids[0])

    page = client_as(cast.alice).get(reverse("conversations:detail", args=[cast.org_a.slug, conversation.pk]))
    assert b'value="read"' in page.content
    assert b"\\Seen" not in server_flags(dovecot, mail_user)[uids[0]]  # opening the page changes nothing

    response = post_change(client_as, cast, conversation, "read", django_capture_on_commit_callbacks)
    assert response.status_code == 302
    flags = server_flags(dovecot, mail_user)
    assert b"\\Seen" in flags[uids[0]]
    assert b"\\Seen" not in flags[uids[1]]
    assert MessageCopy.objects.get(mailbox=mailbox, uid=uids[0]).seen
    assert AuditEvent.objects.filter(action="conversation.marked_read", target_id=str(conversation.pk)).count() == 1

    post_change(client_as, cast, conversation, "unread", django_capture_on_commit_callbacks)
    assert b"\\Seen" not in server_flags(dovecot, mail_user)[uids[0]]
    assert not MessageCopy.objects.get(mailbox=mailbox, uid=uids[0]).seen


@pytest.mark.parametrize(("change", "folder", "role"), [("archive", "Archive", FolderRole.ARCHIVE), ("trash", "Trash", FolderRole.TRASH)])
def test_archiving_or_trashing_moves_only_that_message_on_the_server(  # type: ignore[no-untyped-def]
    cast: Cast, client_as, dovecot: Dovecot, mail_user: MailUser, make_mailbox: Callable[..., Mailbox],
    django_capture_on_commit_callbacks: Any, change: str, folder: str, role: str,
) -> None:  # fmt: skip
    uids = deliver(dovecot, mail_user, range(3))
    mailbox = make_mailbox(mail_user, owner=cast.alice_membership)
    mailbox_sync_once(mailbox)
    conversation = conversation_of(mailbox, uids[1])

    post_change(client_as, cast, conversation, change, django_capture_on_commit_callbacks)

    assert set(server_flags(dovecot, mail_user)) == {uids[0], uids[2]}
    assert message_ids_in(dovecot, mail_user, folder) == ["<message-1@example.test>"]
    assert MessageCopy.objects.get(mailbox=mailbox, folder__role=FolderRole.INBOX, uid=uids[1]).gone_at is not None
    mailbox_sync_once(mailbox)
    moved = MessageCopy.objects.get(folder=Folder.objects.get(mailbox=mailbox, role=role), gone_at__isnull=True)
    assert moved.message.conversation_id == conversation.pk


def test_a_teammate_cannot_change_someone_elses_conversation(  # type: ignore[no-untyped-def]
    cast: Cast, client_as, dovecot: Dovecot, mail_user: MailUser, make_mailbox: Callable[..., Mailbox],
    django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    uids = deliver(dovecot, mail_user, range(1))
    mailbox = make_mailbox(mail_user, owner=cast.alice_membership)
    mailbox_sync_once(mailbox)
    conversation = conversation_of(mailbox, uids[0])
    url = reverse("conversations:change", args=[cast.org_a.slug, conversation.pk])
    with django_capture_on_commit_callbacks(execute=True):
        assert client_as(cast.bob).post(url, {"change": "trash"}).status_code == 404
        assert client_as(cast.alice).get(url).status_code == 405  # never on GET
    assert set(server_flags(dovecot, mail_user)) == set(uids)
    assert MessageCopy.objects.get(mailbox=mailbox, uid=uids[0]).gone_at is None


def test_an_unreachable_server_is_retried_with_backoff_and_the_local_state_is_kept(  # type: ignore[no-untyped-def]
    cast: Cast, dovecot: Dovecot, mail_user: MailUser, make_mailbox: Callable[..., Mailbox],
    queue: DummyBackend, django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    uids = deliver(dovecot, mail_user, range(1))
    mailbox = make_mailbox(mail_user, owner=cast.alice_membership)
    mailbox_sync_once(mailbox)
    conversation = conversation_of(mailbox, uids[0])
    Mailbox.objects.filter(pk=mailbox.pk).update(imap_port=free_port())  # the server goes away

    with django_capture_on_commit_callbacks(execute=True):
        actions.conversation_mark_read(actor=cast.alice_membership, conversation=conversation, read=True)
    [queued] = queue.results
    assert queued.task.func == copy_propagate.func
    queue.results.clear()
    queued.task.call(*queued.args, **queued.kwargs)

    [retry] = queue.results
    assert retry.args[2] == 2  # the second attempt
    assert retry.task.run_after is not None
    assert MessageCopy.objects.get(mailbox=mailbox, uid=uids[0]).seen  # the member's change stands

    Mailbox.objects.filter(pk=mailbox.pk).update(imap_port=dovecot.imaps_port)  # back again
    retry.task.call(*retry.args, **retry.kwargs)
    assert b"\\Seen" in server_flags(dovecot, mail_user)[uids[0]]


def test_a_sync_before_the_change_reaches_the_server_keeps_the_members_choice(  # type: ignore[no-untyped-def]
    cast: Cast, dovecot: Dovecot, mail_user: MailUser, make_mailbox: Callable[..., Mailbox],
    django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    uids = deliver(dovecot, mail_user, range(1))
    mailbox = make_mailbox(mail_user, owner=cast.alice_membership)
    mailbox_sync_once(mailbox)
    conversation = conversation_of(mailbox, uids[0])
    # The member reads it; the task that tells the server has not run yet (callbacks not executed).
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        actions.conversation_mark_read(actor=cast.alice_membership, conversation=conversation, read=True)
    with dovecot.connect(mail_user) as other_client:  # another client flags it meanwhile
        other_client.select_folder("INBOX")
        other_client.add_flags([uids[0]], [b"\\Flagged"])
    mailbox_sync_once(mailbox)  # the server still says unread: that must not undo the member's choice
    copy = MessageCopy.objects.get(mailbox=mailbox, uid=uids[0])
    assert copy.flagged  # the other client's change arrived
    assert copy.seen
    assert copy.seen_pending is True
    for callback in callbacks:
        callback()
    assert b"\\Seen" in server_flags(dovecot, mail_user)[uids[0]]
    copy.refresh_from_db()
    assert copy.seen
    assert copy.seen_pending is None


def test_an_older_read_change_arriving_late_does_not_undo_a_newer_one(  # type: ignore[no-untyped-def]
    cast: Cast, dovecot: Dovecot, mail_user: MailUser, make_mailbox: Callable[..., Mailbox],
    django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    uids = deliver(dovecot, mail_user, range(1))
    mailbox = make_mailbox(mail_user, owner=cast.alice_membership)
    mailbox_sync_once(mailbox)
    conversation = conversation_of(mailbox, uids[0])
    with django_capture_on_commit_callbacks(execute=False) as read_tasks:
        actions.conversation_mark_read(actor=cast.alice_membership, conversation=conversation, read=True)
    with django_capture_on_commit_callbacks(execute=False) as unread_tasks:
        actions.conversation_mark_read(actor=cast.alice_membership, conversation=conversation, read=False)
    for callback in [*unread_tasks, *read_tasks]:  # the retried older task runs last
        callback()
    assert b"\\Seen" not in server_flags(dovecot, mail_user)[uids[0]]
    copy = MessageCopy.objects.get(mailbox=mailbox, uid=uids[0])
    assert not copy.seen
    assert copy.seen_pending is None
