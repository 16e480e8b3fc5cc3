"""OAuth2 mailboxes against a local token endpoint (RFC 6749 refresh_token grant, on loopback)
and the real Dovecot, which checks XOAUTH2/OAUTHBEARER tokens by introspection: an expiring
token is renewed and the IMAP login works; a revoked grant puts the mailbox in
"needs reconnecting" with a visible reason."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from postroom.audit.models import AuditEvent
from postroom.mailboxes import actions
from postroom.mailboxes.connection import OAuth2Credentials, OAuth2Mechanism, open_imap, open_smtp
from postroom.mailboxes.models import AuthKind, Mailbox, MailboxStatus
from postroom.mailboxes.oauth import (
    OAuthGrantRevoked,
    OAuthRefreshFailed,
    TokenEndpointRefused,
    mailbox_access_token,
    mailbox_sign_in_credentials,
    refresh_access_token,
    token_endpoint_check,
)
from postroom.mailboxes.selectors import mailbox_servers
from postroom.mailboxes.tests.conftest import MailAccount, TokenEndpoint, oauth_sign_in
from postroom.testing.dovecot import TokenIntrospection, free_port

pytestmark = pytest.mark.django_db


def connect_oauth(cast, account: MailAccount, endpoint: TokenEndpoint, kind: AuthKind = AuthKind.XOAUTH2) -> Mailbox:  # type: ignore[no-untyped-def]
    return actions.mailbox_connect(
        actor=cast.alice_membership, name="OAuth", email_address=account.user.address,
        sign_in=oauth_sign_in(account, endpoint, kind=kind), import_since=None,
    )


def imap_signs_in(mailbox: Mailbox) -> bool:
    credentials = mailbox_sign_in_credentials(mailbox)
    client = open_imap(mailbox_servers(mailbox).imap, credentials, timeout=5)
    with contextlib.suppress(Exception):
        client.logout()
    return True


@pytest.mark.parametrize("kind", [AuthKind.XOAUTH2, AuthKind.OAUTHBEARER])
def test_r44_an_expiring_access_token_is_renewed_and_the_imap_login_works(  # type: ignore[no-untyped-def]
    cast, mail_account: MailAccount, token_endpoint: TokenEndpoint, oauth_tokens: TokenIntrospection, kind: AuthKind
) -> None:
    mailbox = connect_oauth(cast, mail_account, token_endpoint, kind)  # no access token given: one is fetched first
    first_token = (mailbox.credentials or {})["access_token"]
    stored = Mailbox.objects.get(pk=mailbox.pk)
    assert stored.access_token_expires_at is not None
    assert (stored.credentials or {})["refresh_token"] in token_endpoint.grants
    assert len(token_endpoint.requests) == 1

    assert mailbox_access_token(stored) == first_token  # valid for an hour: not renewed
    assert len(token_endpoint.requests) == 1

    with time_machine.travel(timezone.now() + timedelta(minutes=56)):  # within the 5-minute margin
        oauth_tokens.revoke(first_token)  # as the provider does once it expired
        assert imap_signs_in(Mailbox.objects.get(pk=mailbox.pk))
    renewed = Mailbox.objects.get(pk=mailbox.pk)
    assert len(token_endpoint.requests) == 2
    assert (renewed.credentials or {})["access_token"] != first_token
    assert renewed.status == MailboxStatus.ACTIVE
    assert token_endpoint.requests[-1]["grant_type"] == "refresh_token"


def test_r44_a_revoked_grant_puts_the_mailbox_in_needs_reconnecting_with_the_reason(  # type: ignore[no-untyped-def]
    cast, mail_account: MailAccount, token_endpoint: TokenEndpoint, oauth_tokens: TokenIntrospection
) -> None:
    mailbox = connect_oauth(cast, mail_account, token_endpoint)
    credentials = mailbox.credentials or {}
    token_endpoint.revoke_grant(credentials["refresh_token"])
    oauth_tokens.revoke(credentials["access_token"])

    with time_machine.travel(timezone.now() + timedelta(hours=2)), pytest.raises(OAuthGrantRevoked):
        mailbox_sign_in_credentials(Mailbox.objects.get(pk=mailbox.pk))

    stored = Mailbox.objects.get(pk=mailbox.pk)
    assert stored.status == MailboxStatus.NEEDS_RECONNECT
    assert "Connect the mailbox again" in stored.status_reason
    assert AuditEvent.objects.filter(action="mailbox.needs_reconnect", target_id=str(mailbox.pk)).count() == 1
    # Once marked, nothing more is asked of the endpoint until the member reconnects.
    requests_before = len(token_endpoint.requests)
    with pytest.raises(OAuthGrantRevoked):
        mailbox_access_token(stored)
    assert len(token_endpoint.requests) == requests_before

    outcome = actions.mailbox_test(actor=cast.alice_membership, mailbox=stored)
    assert not outcome.ok


def test_reconnecting_with_a_new_grant_clears_needs_reconnecting(cast, mail_account: MailAccount, token_endpoint: TokenEndpoint) -> None:  # type: ignore[no-untyped-def]
    mailbox = connect_oauth(cast, mail_account, token_endpoint)
    Mailbox.objects.filter(pk=mailbox.pk).update(status=MailboxStatus.NEEDS_RECONNECT, status_reason="revoked")
    actions.mailbox_update_credentials(actor=cast.alice_membership, mailbox=mailbox, sign_in=oauth_sign_in(mail_account, token_endpoint))
    assert Mailbox.objects.get(pk=mailbox.pk).status == MailboxStatus.ACTIVE


def test_a_given_access_token_is_tested_against_dovecot_and_smtp(  # type: ignore[no-untyped-def]
    cast, mail_account: MailAccount, oauth_tokens: TokenIntrospection
) -> None:
    token = oauth_tokens.issue(mail_account.user.name)
    servers = mail_account.servers()
    credentials = OAuth2Credentials(username=mail_account.user.name, access_token=token, mechanism=OAuth2Mechanism.OAUTHBEARER)
    open_imap(servers.imap, credentials, timeout=5).logout()
    open_smtp(servers.smtp, credentials, timeout=5).quit()
    mailbox = actions.mailbox_connect(
        actor=cast.alice_membership, name="Token only", email_address=mail_account.user.address, import_since=None,
        sign_in=actions.MailboxSignIn(servers=servers, auth_kind=AuthKind.OAUTHBEARER, username=mail_account.user.name, access_token=token),
    )
    assert (mailbox.credentials or {}) == {"username": mail_account.user.name, "access_token": token}
    assert mailbox_access_token(mailbox) == token  # nothing to renew with: used as it is


def test_a_temporary_failure_of_the_endpoint_keeps_the_mailbox_active(cast, mail_account: MailAccount, token_endpoint: TokenEndpoint) -> None:  # type: ignore[no-untyped-def]
    mailbox = connect_oauth(cast, mail_account, token_endpoint)
    credentials = dict(mailbox.credentials or {})
    credentials["token_endpoint"] = f"http://127.0.0.1:{free_port()}/token"  # nothing listens there
    mailbox.credentials = credentials
    mailbox.save()
    with time_machine.travel(timezone.now() + timedelta(hours=2)), pytest.raises(OAuthRefreshFailed):
        mailbox_access_token(Mailbox.objects.get(pk=mailbox.pk))
    assert Mailbox.objects.get(pk=mailbox.pk).status == MailboxStatus.ACTIVE


def test_r49_token_endpoints_must_be_https_and_public(settings) -> None:  # type: ignore[no-untyped-def]
    settings.MAILBOX_OAUTH_ALLOW_LOOPBACK = False
    for url in ("http://oauth.example/token", "http://127.0.0.1:9/token", "ftp://oauth.example/token", "https://user:pw@oauth.example/token"):
        with pytest.raises(TokenEndpointRefused):
            token_endpoint_check(url)
    token_endpoint_check("https://oauth2.googleapis.com/token")
    # Private and loopback addresses are refused before any connection is made (R30).
    for url in ("https://10.1.2.3/token", "https://127.0.0.1/token", "https://[::1]/token", "https://169.254.169.254/latest"):
        with pytest.raises(TokenEndpointRefused):
            refresh_access_token(token_endpoint=url, refresh_token="r", client_id="c")


def test_a_wrong_client_secret_is_shown_as_needing_reconnection(token_endpoint: TokenEndpoint) -> None:
    with pytest.raises(OAuthGrantRevoked, match="client ID and secret"):
        refresh_access_token(token_endpoint=token_endpoint.url, refresh_token=token_endpoint.grant("x"), client_id=token_endpoint.client_id, client_secret="wrong")
