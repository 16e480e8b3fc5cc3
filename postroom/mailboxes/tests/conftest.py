"""Fixtures of the mailbox UI tests: a Dovecot user with a matching SMTP account, the settings
Postroom is given for them, and a small OAuth2 token endpoint on loopback."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest
import trustme

from postroom.mailboxes.actions import MailboxSignIn, OAuthGrant
from postroom.mailboxes.connection import MailServers, ServerSettings, TlsMode
from postroom.mailboxes.models import AuthKind
from postroom.testing.dovecot import Dovecot, MailUser, TokenIntrospection
from postroom.testing.smtp import SmtpPeer, SmtpTls


@dataclass
class MailAccount:
    """One person's mail account on the test servers, and what to type into Postroom for it."""

    user: MailUser
    dovecot: Dovecot
    smtp: SmtpPeer
    ca_pem: str

    def servers(self, **imap_changes: Any) -> MailServers:
        imap: dict[str, Any] = {"host": self.dovecot.host, "port": self.dovecot.imaps_port, "tls": TlsMode.IMPLICIT, "private_ca_pem": self.ca_pem}
        imap.update(imap_changes)
        return MailServers(
            imap=ServerSettings(**imap),
            smtp=ServerSettings(host=self.smtp.host, port=self.smtp.port, tls=TlsMode.IMPLICIT, private_ca_pem=self.ca_pem),
        )

    def password_sign_in(self, password: str | None = None, **imap_changes: Any) -> MailboxSignIn:
        return MailboxSignIn(
            servers=self.servers(**imap_changes), auth_kind=AuthKind.PASSWORD, username=self.user.name,
            password=self.user.password if password is None else password,
        )

    def form_data(self, **changes: Any) -> dict[str, Any]:
        """The connect form as a member fills it in."""
        data = {
            "email_address": self.user.address, "name": "Support inbox", "import_range": "3m",
            "imap_host": self.dovecot.host, "imap_port": self.dovecot.imaps_port, "imap_tls": "implicit",
            "smtp_host": self.smtp.host, "smtp_port": self.smtp.port, "smtp_tls": "implicit",
            "private_ca_pem": self.ca_pem, "auth_kind": "password", "username": self.user.name, "password": self.user.password,
            "intent": "connect",
        }
        data.update(changes)
        return data


@pytest.fixture
def mail_account(dovecot: Dovecot, mail_user: MailUser, make_smtp_peer: Callable[..., SmtpPeer], mail_test_ca: trustme.CA) -> MailAccount:
    smtp = make_smtp_peer(tls=SmtpTls.IMPLICIT, auth_required=True)
    smtp.add_account(mail_user)
    return MailAccount(user=mail_user, dovecot=dovecot, smtp=smtp, ca_pem=mail_test_ca.cert_pem.bytes().decode())


@dataclass
class TokenEndpoint:
    """An OAuth2 token endpoint (RFC 6749 refresh_token grant) on loopback. Access tokens it
    issues are registered with the introspection endpoint that Dovecot and the SMTP peer ask, so
    they really sign in; ``revoke_grant`` makes the next refresh answer ``invalid_grant``. With
    ``tokens_expire``, the servers refuse an access token once its ``expires_in`` has passed."""

    introspection: TokenIntrospection
    url: str = ""
    client_id: str = "postroom-test"
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    expires_in: int = 3600
    tokens_expire: bool = False
    grants: dict[str, str] = field(default_factory=dict)  # refresh token -> username
    requests: list[dict[str, str]] = field(default_factory=list)

    def grant(self, username: str) -> str:
        refresh_token = secrets.token_urlsafe(24)
        self.grants[refresh_token] = username
        return refresh_token

    def revoke_grant(self, refresh_token: str) -> None:
        self.grants.pop(refresh_token, None)

    def answer(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        self.requests.append(form)
        if form.get("grant_type") != "refresh_token":
            return 400, {"error": "unsupported_grant_type"}
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return 401, {"error": "invalid_client"}
        username = self.grants.get(form.get("refresh_token", ""))
        if username is None:
            return 400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
        lifetime = self.expires_in if self.tokens_expire else None
        access_token = self.introspection.issue(username, lifetime_seconds=lifetime)
        return 200, {"access_token": access_token, "token_type": "Bearer", "expires_in": self.expires_in}


@pytest.fixture
def token_endpoint(oauth_tokens: TokenIntrospection, settings: Any) -> Iterator[TokenEndpoint]:
    settings.MAILBOX_OAUTH_ALLOW_LOOPBACK = True
    endpoint = TokenEndpoint(introspection=oauth_tokens)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = {key: values[0] for key, values in parse_qs(self.rfile.read(length).decode()).items()}
            status, answer = endpoint.answer(form)
            body = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    endpoint.url = f"http://127.0.0.1:{server.server_address[1]}/token"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield endpoint
    server.shutdown()
    server.server_close()
    thread.join()


def oauth_sign_in(account: MailAccount, endpoint: TokenEndpoint, *, kind: AuthKind = AuthKind.XOAUTH2, refresh_token: str | None = None) -> MailboxSignIn:
    return MailboxSignIn(
        servers=account.servers(), auth_kind=kind, username=account.user.name,
        oauth=OAuthGrant(token_endpoint=endpoint.url, refresh_token=refresh_token or endpoint.grant(account.user.name),
                         client_id=endpoint.client_id, client_secret=endpoint.client_secret),
    )
