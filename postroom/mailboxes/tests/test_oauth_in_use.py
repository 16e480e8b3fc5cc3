"""Sync and sending sign in through ``mailbox_sign_in_credentials``: an OAuth2 mailbox whose
access token has expired (and that Dovecot and the SMTP peer no longer accept) is renewed
against the local token endpoint first, then syncs and sends; a revoked grant stops both with
the mailbox marked as needing reconnection. A long IDLE session signs in again with a renewed
token before its token expires."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.utils import timezone

from postroom.conversations.models import MessageCopy
from postroom.mailboxes import actions, oauth
from postroom.mailboxes.models import AuthKind, FolderRole, Mailbox, MailboxStatus
from postroom.mailboxes.tests.conftest import MailAccount, TokenEndpoint, oauth_sign_in
from postroom.outbox import actions as outbox_actions
from postroom.outbox.models import OutgoingKind, OutgoingMessage, OutgoingStatus, SentCopy
from postroom.sync.engine import mailbox_sync_once
from postroom.sync.service import MailboxWorker
from postroom.sync.tests.test_service import wait_until
from postroom.testing.dovecot import TokenIntrospection

pytestmark = pytest.mark.django_db

INBOUND = b"From: Dana <dana@customer.example>\r\nTo: someone@postroom.test\r\nSubject: Token test\r\nMessage-ID: <token-test@customer.example>\r\n\r\nHello.\r\n"


def connect_oauth(cast: Any, account: MailAccount, endpoint: TokenEndpoint, kind: AuthKind) -> Mailbox:
    return actions.mailbox_connect(
        actor=cast.alice_membership, name="OAuth", email_address=account.user.address,
        sign_in=oauth_sign_in(account, endpoint, kind=kind), import_since=None,
    )  # fmt: skip


def expire_access_token(mailbox: Mailbox, tokens: TokenIntrospection) -> str:
    """Revoke the current token at the servers, as a provider does once it expired."""
    token = str((Mailbox.objects.get(pk=mailbox.pk).credentials or {})["access_token"])
    tokens.revoke(token)
    return token


@pytest.mark.parametrize("kind", [AuthKind.XOAUTH2, AuthKind.OAUTHBEARER])
def test_r44_sync_renews_an_expired_access_token_and_imports(  # type: ignore[no-untyped-def]
    cast, mail_account: MailAccount, token_endpoint: TokenEndpoint, oauth_tokens: TokenIntrospection, kind: AuthKind
) -> None:
    mailbox = connect_oauth(cast, mail_account, token_endpoint, kind)
    mail_account.dovecot.append(mail_account.user, INBOUND)
    old_token = expire_access_token(mailbox, oauth_tokens)
    requests_before = len(token_endpoint.requests)

    with time_machine.travel(timezone.now() + timedelta(hours=2)):
        mailbox_sync_once(Mailbox.objects.get(pk=mailbox.pk))

    assert len(token_endpoint.requests) == requests_before + 1
    stored = Mailbox.objects.get(pk=mailbox.pk)
    assert (stored.credentials or {})["access_token"] != old_token
    assert MessageCopy.objects.filter(mailbox=mailbox, folder__role=FolderRole.INBOX, gone_at__isnull=True).count() == 1


def test_r44_sending_renews_an_expired_access_token_and_delivers(  # type: ignore[no-untyped-def]
    cast, mail_account: MailAccount, token_endpoint: TokenEndpoint, oauth_tokens: TokenIntrospection,
    django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    mailbox = connect_oauth(cast, mail_account, token_endpoint, AuthKind.XOAUTH2)
    expire_access_token(mailbox, oauth_tokens)
    requests_before = len(token_endpoint.requests)

    with time_machine.travel(timezone.now() + timedelta(hours=2)), django_capture_on_commit_callbacks(execute=True):
        # The test settings run tasks at once: the send task runs when the row is committed.
        outgoing = outbox_actions.outgoing_create(
            actor=cast.alice_membership, mailbox=Mailbox.objects.get(pk=mailbox.pk), kind=OutgoingKind.NEW,
            to=[("Dana", "dana@customer.example")], subject="Renewed", text="Sent with a renewed token.\n",
        )  # fmt: skip

    outgoing.refresh_from_db()
    assert outgoing.status == OutgoingStatus.SENT
    assert outgoing.sent_copy == SentCopy.STORED  # the IMAP APPEND signed in with the renewed token too
    [received] = mail_account.smtp.messages
    assert received.authenticated_as == mail_account.user.name
    assert len(token_endpoint.requests) == requests_before + 1


def test_r44_a_revoked_grant_fails_the_send_for_good_and_marks_the_mailbox(  # type: ignore[no-untyped-def]
    cast, mail_account: MailAccount, token_endpoint: TokenEndpoint, oauth_tokens: TokenIntrospection,
    django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    mailbox = connect_oauth(cast, mail_account, token_endpoint, AuthKind.XOAUTH2)
    expire_access_token(mailbox, oauth_tokens)
    token_endpoint.revoke_grant(str((mailbox.credentials or {})["refresh_token"]))

    with time_machine.travel(timezone.now() + timedelta(hours=2)), django_capture_on_commit_callbacks(execute=True):
        outgoing = outbox_actions.outgoing_create(
            actor=cast.alice_membership, mailbox=Mailbox.objects.get(pk=mailbox.pk), kind=OutgoingKind.NEW,
            to=[("Dana", "dana@customer.example")], subject="Revoked", text="Never sent.\n",
        )  # fmt: skip

    outgoing = OutgoingMessage.objects.get(pk=outgoing.pk)
    assert outgoing.status == OutgoingStatus.FAILED_PERMANENT
    assert "Connect the mailbox again" in outgoing.last_error
    assert mail_account.smtp.messages == []
    assert Mailbox.objects.get(pk=mailbox.pk).status == MailboxStatus.NEEDS_RECONNECT


@pytest.mark.django_db(transaction=True)
def test_r44_a_long_idle_session_signs_in_again_before_its_token_expires(  # type: ignore[no-untyped-def]
    cast, mail_account: MailAccount, token_endpoint: TokenEndpoint, oauth_tokens: TokenIntrospection, monkeypatch: pytest.MonkeyPatch
) -> None:
    mailbox = connect_oauth(cast, mail_account, token_endpoint, AuthKind.XOAUTH2)
    # Tokens that live 4 s and are refused by Dovecot once expired, renewed 2 s before that.
    monkeypatch.setattr(oauth, "REFRESH_MARGIN", timedelta(seconds=2))
    token_endpoint.expires_in, token_endpoint.tokens_expire = 4, True
    Mailbox.objects.filter(pk=mailbox.pk).update(access_token_expires_at=timezone.now())
    requests_before, sign_ins_before = len(token_endpoint.requests), len(oauth_tokens.signed_in)
    worker = MailboxWorker(mailbox.pk, poll_seconds=600)  # one poll, then IDLE: the session would last ten minutes
    worker.start()
    try:
        wait_until(lambda: len(token_endpoint.requests) >= requests_before + 3, "three renewals during the session")
        uid = mail_account.dovecot.append(mail_account.user, INBOUND)
        wait_until(lambda: MessageCopy.objects.filter(mailbox=mailbox, uid=uid, gone_at__isnull=True).exists(), "push after the renewals")
    finally:
        worker.stop()
        worker.join(timeout=30)
    # Each renewed token signed in (a new session took over), and none was ever refused as
    # expired or lost the connection: the mailbox stayed active and reachable throughout.
    assert len(set(oauth_tokens.signed_in[sign_ins_before:])) >= 3
    mailbox.refresh_from_db()
    assert (mailbox.status, mailbox.unreachable_since) == (MailboxStatus.ACTIVE, None)


def test_r44_a_password_or_a_token_without_refresh_is_never_renewed_mid_session(  # type: ignore[no-untyped-def]
    cast, mail_account: MailAccount, token_endpoint: TokenEndpoint
) -> None:
    password_mailbox = actions.mailbox_connect(
        actor=cast.alice_membership, name="Password", email_address=mail_account.user.address,
        sign_in=mail_account.password_sign_in(), import_since=None,
    )  # fmt: skip
    assert oauth.access_token_renew_at(password_mailbox) is None
    mailbox = connect_oauth(cast, mail_account, token_endpoint, AuthKind.OAUTHBEARER)
    renew_at = oauth.access_token_renew_at(mailbox)
    assert mailbox.access_token_expires_at is not None
    assert renew_at == mailbox.access_token_expires_at - oauth.REFRESH_MARGIN
    # A token shorter-lived than the margin: renewed halfway through what is left of it.
    now = timezone.now()
    with time_machine.travel(now, tick=False):
        mailbox.access_token_expires_at = now + timedelta(seconds=60)
        assert oauth.access_token_renew_at(mailbox) == now + timedelta(seconds=30)
    mailbox.credentials = {**(mailbox.credentials or {}), "refresh_token": ""}
    assert oauth.access_token_renew_at(mailbox) is None
