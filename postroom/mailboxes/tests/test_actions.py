"""Mailbox actions against a real Dovecot and a real aiosmtpd peer: connect (tested before
anything is stored, credentials sealed), each failure on the field to fix, credential changes,
removal, and the import range."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.utils import timezone

from postroom.audit.models import AuditEvent
from postroom.conversations.models import Conversation, Message, MessageCopy
from postroom.mailboxes import actions
from postroom.mailboxes.actions import MailboxConnectionFailed
from postroom.mailboxes.connection import ServerSettings, TlsMode
from postroom.mailboxes.models import Folder, FolderRole, Mailbox, MailboxStatus
from postroom.mailboxes.tests.conftest import MailAccount
from postroom.mailboxes.tests.factories import make_mailbox
from postroom.testing.dovecot import free_port
from postroom.testing.smtp import SmtpTls

pytestmark = pytest.mark.django_db


def stored_column(mailbox: Mailbox) -> bytes:
    """The column's bytes as the database holds them, read with plain SQL (no descriptor)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT credentials_sealed FROM mailboxes_mailbox WHERE id = %s", [mailbox.pk.hex if connection.vendor == "sqlite" else mailbox.pk])
        return bytes(cursor.fetchone()[0])


def connect(cast: Any, account: MailAccount, **overrides: Any) -> Mailbox:
    sign_in = overrides.pop("sign_in", None) or account.password_sign_in()
    return actions.mailbox_connect(actor=cast.alice_membership, name="Support", email_address=account.user.address,
                                   sign_in=sign_in, import_since=date(2026, 1, 1), **overrides)


def test_r44_connect_tests_both_servers_then_stores_the_credentials_sealed(cast, mail_account: MailAccount) -> None:  # type: ignore[no-untyped-def]
    mailbox = connect(cast, mail_account)

    stored = Mailbox.objects.get(pk=mailbox.pk)
    assert stored.owner_id == cast.alice_membership.pk
    assert stored.organization_id == cast.org_a.pk
    assert stored.credentials == {"username": mail_account.user.name, "password": mail_account.user.password}
    assert (stored.imap_port, stored.smtp_port) == (mail_account.dovecot.imaps_port, mail_account.smtp.port)
    column = stored_column(stored)
    assert mail_account.user.password.encode() not in column
    assert mail_account.user.name.encode() not in column
    event = AuditEvent.objects.get(action="mailbox.connected")
    assert event.actor_id == cast.alice.pk
    assert mail_account.user.password not in str(event.details)
    assert stored.import_started_at is not None


@pytest.fixture
def silent_port() -> Iterator[int]:
    """Accepts TCP connections and never answers: a hung server."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.listen(8)
        yield listener.getsockname()[1]


@pytest.mark.parametrize(
    ("case", "field", "words"),
    [
        ("unknown_host", "imap_host", "could not be found"),
        ("refused", "imap_port", "refused the connection"),
        ("untrusted", "private_ca_pem", "is not trusted"),
        ("name_mismatch", "imap_host", "issued for another name"),
        ("authentication", "password", "rejected the username or the password"),
        ("timeout", "imap_port", "did not answer in time"),
        ("starttls_unavailable", "smtp_tls", "STARTTLS"),
        ("plaintext_remote", "imap_tls", "Unencrypted connections are allowed only"),
    ],
)
def test_r49_each_connection_failure_is_named_on_its_field_and_nothing_is_stored(  # type: ignore[no-untyped-def]
    cast, mail_account: MailAccount, make_smtp_peer, silent_port: int, settings, case: str, field: str, words: str
) -> None:
    settings.MAILBOX_TEST_TIMEOUT_SECONDS = 1.5
    sign_in = {
        "unknown_host": lambda: mail_account.password_sign_in(host="no-such-host.invalid"),
        "refused": lambda: mail_account.password_sign_in(port=free_port()),
        "untrusted": lambda: mail_account.password_sign_in(private_ca_pem=None),
        "name_mismatch": lambda: mail_account.password_sign_in(host="127.0.0.1"),
        "authentication": lambda: mail_account.password_sign_in(password="not the password"),
        "timeout": lambda: mail_account.password_sign_in(host="127.0.0.1", port=silent_port, tls=TlsMode.STARTTLS),
        "plaintext_remote": lambda: mail_account.password_sign_in(host="192.0.2.7", tls=TlsMode.INSECURE_PLAINTEXT),
        "starttls_unavailable": lambda: None,
    }[case]()
    if case == "starttls_unavailable":  # an SMTP server (or a downgrading attacker) that offers no STARTTLS
        plain_peer = make_smtp_peer(tls=SmtpTls.NONE)
        sign_in = mail_account.password_sign_in()
        smtp = ServerSettings(host=plain_peer.host, port=plain_peer.port, tls=TlsMode.STARTTLS)
        sign_in = dataclasses.replace(sign_in, servers=dataclasses.replace(sign_in.servers, smtp=smtp))

    with pytest.raises(MailboxConnectionFailed) as failure:
        connect(cast, mail_account, sign_in=sign_in)

    errors = failure.value.message_dict
    assert field in errors, errors
    assert any(words in message for message in errors[field]), errors
    assert mail_account.user.password not in str(errors)
    assert not Mailbox.objects.exists()
    assert not AuditEvent.objects.filter(action="mailbox.connected").exists()


def test_r06_update_credentials_retests_and_keeps_the_old_ones_on_failure(cast, mail_account: MailAccount) -> None:  # type: ignore[no-untyped-def]
    mailbox = connect(cast, mail_account)
    Mailbox.objects.filter(pk=mailbox.pk).update(status=MailboxStatus.NEEDS_RECONNECT, status_reason="The password was changed.")

    with pytest.raises(MailboxConnectionFailed):
        actions.mailbox_update_credentials(actor=cast.alice_membership, mailbox=mailbox, sign_in=mail_account.password_sign_in(password="wrong"))
    unchanged = Mailbox.objects.get(pk=mailbox.pk)
    assert (unchanged.credentials or {}).get("password") == mail_account.user.password
    assert unchanged.status == MailboxStatus.NEEDS_RECONNECT

    actions.mailbox_update_credentials(actor=cast.alice_membership, mailbox=mailbox, sign_in=mail_account.password_sign_in())
    reconnected = Mailbox.objects.get(pk=mailbox.pk)
    assert (reconnected.status, reconnected.status_reason) == (MailboxStatus.ACTIVE, "")
    assert AuditEvent.objects.filter(action="mailbox.credentials_changed", actor_id=cast.alice.pk).count() == 1


def test_r22_only_the_owner_changes_or_tests_a_mailbox(cast, mail_account: MailAccount) -> None:  # type: ignore[no-untyped-def]
    mailbox = connect(cast, mail_account)
    for actor in (cast.carol_membership, cast.bob_membership, cast.charlie_membership):
        with pytest.raises(PermissionDenied):
            actions.mailbox_update_credentials(actor=actor, mailbox=mailbox, sign_in=mail_account.password_sign_in())
        with pytest.raises(PermissionDenied):
            actions.mailbox_test(actor=actor, mailbox=mailbox)
    assert actions.mailbox_test(actor=cast.alice_membership, mailbox=mailbox).ok


def test_testing_a_stored_mailbox_reports_a_changed_password(cast, mail_account: MailAccount) -> None:  # type: ignore[no-untyped-def]
    mailbox = connect(cast, mail_account)
    credentials = dict(mailbox.credentials or {})
    credentials["password"] = "changed on the server since"
    mailbox.credentials = credentials
    mailbox.save()

    outcome = actions.mailbox_test(actor=cast.alice_membership, mailbox=mailbox)

    assert not outcome.ok
    assert any("rejected the username or the password" in problem for problem in outcome.problems)
    assert AuditEvent.objects.get(action="mailbox.tested").result == "failure"


def _message(org_id: int, conversation: Conversation, index: str) -> Message:
    return Message.objects.create(organization_id=org_id, conversation=conversation, content_index=index, raw_blob=index)


def _copy(mailbox: Mailbox, folder: Folder, message: Message, uid: int) -> MessageCopy:
    return MessageCopy.objects.create(mailbox=mailbox, folder=folder, uidvalidity=7, uid=uid, message=message)


def test_remove_deletes_the_mailbox_and_the_mail_no_other_mailbox_holds(cast) -> None:  # type: ignore[no-untyped-def]
    alices = make_mailbox(cast.alice_membership, address="alice@acme.test")
    bobs = make_mailbox(cast.bob_membership, address="bob@acme.test")
    alice_inbox = Folder.objects.create(mailbox=alices, name="INBOX", role=FolderRole.INBOX)
    bob_inbox = Folder.objects.create(mailbox=bobs, name="INBOX", role=FolderRole.INBOX)
    now = timezone.now()
    private = Conversation.objects.create(organization=cast.org_a, last_message_at=now, message_count=1)
    shared = Conversation.objects.create(organization=cast.org_a, last_message_at=now, message_count=2)
    only_alice = _message(cast.org_a.pk, private, "a")
    both = _message(cast.org_a.pk, shared, "b")
    alice_reply = _message(cast.org_a.pk, shared, "c")
    _copy(alices, alice_inbox, only_alice, 1)
    _copy(alices, alice_inbox, both, 2)
    _copy(alices, alice_inbox, alice_reply, 3)
    _copy(bobs, bob_inbox, both, 1)

    actions.mailbox_remove(actor=cast.alice_membership, mailbox=alices)

    assert not Mailbox.objects.filter(pk=alices.pk).exists()
    assert not Folder.objects.filter(mailbox_id=alices.pk).exists()
    assert set(Message.objects.values_list("pk", flat=True)) == {both.pk}
    assert not Conversation.objects.filter(pk=private.pk).exists()
    assert Conversation.objects.get(pk=shared.pk).message_count == 1
    event = AuditEvent.objects.get(action="mailbox.removed")
    assert event.details["messages_deleted"] == 2
    assert event.actor_id == cast.alice.pk


def test_r22_an_admin_may_remove_a_members_mailbox_a_member_or_outsider_may_not(cast) -> None:  # type: ignore[no-untyped-def]
    bobs = make_mailbox(cast.bob_membership)
    alices = make_mailbox(cast.alice_membership)
    with pytest.raises(PermissionDenied):
        actions.mailbox_remove(actor=cast.bob_membership, mailbox=alices)
    with pytest.raises(PermissionDenied):
        actions.mailbox_remove(actor=cast.charlie_membership, mailbox=bobs)
    actions.mailbox_remove(actor=cast.carol_membership, mailbox=bobs)
    assert list(Mailbox.objects.all()) == [alices]


def test_reimport_from_a_date_resets_every_folder_for_admins_only(cast) -> None:  # type: ignore[no-untyped-def]
    mailbox = make_mailbox(cast.bob_membership, import_since=date(2026, 6, 1))
    Folder.objects.create(mailbox=mailbox, name="INBOX", uidvalidity=7, highest_uid=900, highest_modseq=4000,
                          backfill_below_uid=None, messages_total=900, messages_done=900)
    with pytest.raises(PermissionDenied):
        actions.mailbox_reimport_from(actor=cast.bob_membership, mailbox=mailbox, since=date(2025, 1, 1))

    actions.mailbox_reimport_from(actor=cast.carol_membership, mailbox=mailbox, since=date(2025, 1, 1))

    folder = Folder.objects.get(mailbox=mailbox)
    assert (folder.uidvalidity, folder.highest_uid, folder.highest_modseq, folder.messages_done, folder.messages_total) == (None, 0, None, 0, 0)
    assert Mailbox.objects.get(pk=mailbox.pk).import_since == date(2025, 1, 1)
    assert AuditEvent.objects.get(action="mailbox.reimport_requested").details == {"since": "2025-01-01"}


def test_import_range_further_back_restarts_the_import_a_shorter_one_keeps_what_is_stored(cast) -> None:  # type: ignore[no-untyped-def]
    mailbox = make_mailbox(cast.alice_membership, import_since=date(2026, 6, 1))
    folder = Folder.objects.create(mailbox=mailbox, name="INBOX", uidvalidity=7, highest_uid=50, messages_total=50, messages_done=50)

    actions.mailbox_set_import_since(actor=cast.alice_membership, mailbox=mailbox, since=date(2026, 9, 1))
    folder.refresh_from_db()
    assert folder.highest_uid == 50

    actions.mailbox_set_import_since(actor=cast.alice_membership, mailbox=mailbox, since=None)
    folder.refresh_from_db()
    assert (folder.uidvalidity, folder.highest_uid) == (None, 0)
    assert Mailbox.objects.get(pk=mailbox.pk).import_since is None
    with pytest.raises(PermissionDenied):
        actions.mailbox_set_import_since(actor=cast.carol_membership, mailbox=mailbox, since=date(2026, 10, 1))

