"""Sync and sending sign in through ``mailbox_sign_in_credentials``: an OAuth2 mailbox whose
access token has expired (and that Dovecot and the SMTP peer no longer accept) is renewed
against the local token endpoint first, then syncs and sends; a revoked grant stops both with
the mailbox marked as needing reconnection."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.utils import timezone

from postroom.conversations.models import MessageCopy
from postroom.mailboxes import actions
from postroom.mailboxes.models import AuthKind, FolderRole, Mailbox, MailboxStatus
from postroom.mailboxes.tests.conftest import MailAccount, TokenEndpoint, oauth_sign_in
from postroom.outbox import actions as outbox_actions
from postroom.outbox.models import OutgoingKind, OutgoingMessage, OutgoingStatus, SentCopy
from postroom.sync.engine import mailbox_sync_once
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
