"""OAuth2 access tokens for XOAUTH2/OAUTHBEARER mailboxes: renewed before they expire, and a
revoked grant made visible (RFC 6749 section 6, the refresh_token grant).

Attackers and defences:

- A network attacker between Postroom and the token endpoint, who wants the refresh token or
  the client secret (each a long-lived key to the mailbox). The endpoint must be HTTPS and its
  certificate and host name are verified with ``ssl.create_default_context()``; there is no
  switch that turns verification off. Plain HTTP is accepted only for a token endpoint on this
  machine, and only when ``MAILBOX_OAUTH_ALLOW_LOOPBACK`` is on (the test suite's local token
  endpoint); it is off in production settings.
- A member who types a token endpoint pointing inside the network (SSRF, SECURITY.md R30), to
  make Postroom POST to an internal service. The host is resolved once, every address must be
  public (loopback only under the setting above), and the connection goes to the address that
  was checked, so a second DNS answer cannot redirect it. Redirects are not followed and the
  answer is read up to a size limit.
- A token endpoint that answers garbage or an error: nothing it sends is stored unless it is a
  well-formed bearer token; its error text is shortened before it reaches a page.
- Whoever reads the database: tokens and the client secret live only in the sealed
  ``Mailbox.credentials``; they never appear in exception messages, logs or the audit log.

A revoked or expired grant (``invalid_grant``) moves the mailbox to NEEDS_RECONNECT with a
reason the member sees in Settings › Mailboxes, rather than failing silently on every sync.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import socket
import ssl
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.utils import timezone

from postroom.core.net import is_loopback_name
from postroom.mailboxes.connection import _BEARER_TOKEN, Credentials, OAuth2Credentials, OAuth2Mechanism, PasswordCredentials
from postroom.mailboxes.models import AuthKind, Mailbox, MailboxStatus

# Renew this long before the expiry the endpoint announced, so that a token never expires in the
# middle of an IMAP session that was just opened with it.
REFRESH_MARGIN = timedelta(minutes=5)
TOKEN_REQUEST_TIMEOUT_SECONDS = 20.0
_MAX_ANSWER_BYTES = 64 * 1024
_ERROR_TEXT_LIMIT = 200

# Token endpoints of the providers in ``presets.PRESETS`` that offer OAuth2 for IMAP and SMTP.
PRESET_TOKEN_ENDPOINTS = {
    "gmail": "https://oauth2.googleapis.com/token",
    "outlook": "https://login.microsoftonline.com/common/oauth2/v2.0/token",
    "yahoo": "https://api.login.yahoo.com/oauth2/get_token",
}


class OAuthError(Exception):
    """A token could not be obtained; the message is safe to show to the member."""


class OAuthRefreshFailed(OAuthError):  # noqa: N818 (named for the outcome, like connection.py's errors)
    """A temporary failure (network, endpoint down, 5xx): try again later, keep the grant."""


class OAuthGrantRevoked(OAuthError):  # noqa: N818
    """The endpoint refused the refresh token itself: the member must connect the mailbox again."""


class TokenEndpointRefused(OAuthError):  # noqa: N818
    """The configured endpoint is not one Postroom will send a secret to."""


@dataclass(frozen=True)
class TokenAnswer:
    access_token: str
    expires_at: datetime | None
    refresh_token: str | None  # set when the endpoint rotates refresh tokens


def _loopback_allowed() -> bool:
    return bool(getattr(settings, "MAILBOX_OAUTH_ALLOW_LOOPBACK", False))


def _one_line(text: str) -> str:
    cleaned = " ".join("".join(character if character.isprintable() else " " for character in text).split())
    return cleaned[:_ERROR_TEXT_LIMIT]


def token_endpoint_check(url: str) -> None:
    """Refuse an endpoint Postroom would not send a refresh token to (scheme and host only;
    the addresses are checked again at each request, see ``_pinned_address``)."""
    parts = urlsplit(url)
    if parts.scheme not in {"https", "http"} or not parts.hostname or parts.username or parts.password:
        raise TokenEndpointRefused("The token endpoint must be an https:// address.")
    if parts.scheme == "http" and not (_loopback_allowed() and is_loopback_name(parts.hostname)):
        raise TokenEndpointRefused("The token endpoint must be an https:// address.")



def _pinned_address(host: str, port: int) -> str:
    """The one address to connect to: every address the name resolves to must be public, or
    loopback when the setting allows it."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise OAuthRefreshFailed(f"The token endpoint's server name {host} could not be found.") from error
    addresses = sorted({str(info[4][0]) for info in infos})
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if ip.is_global or (ip.is_loopback and _loopback_allowed()):
            continue
        raise TokenEndpointRefused(f"The token endpoint {host} resolves to an address that is not public.")
    if not addresses:
        raise OAuthRefreshFailed(f"The token endpoint's server name {host} could not be found.")
    return addresses[0]


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """Connects to the checked address, while TLS verifies the certificate for the host name."""

    def __init__(self, host: str, port: int, address: str, **kwargs: Any) -> None:
        super().__init__(host, port, context=ssl.create_default_context(), **kwargs)
        self._address = address

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)  # type: ignore[attr-defined]


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, **kwargs: Any) -> None:
        super().__init__(host, port, **kwargs)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


def _post_form(url: str, fields: dict[str, str]) -> tuple[int, dict[str, Any]]:
    token_endpoint_check(url)
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = _pinned_address(host, port)
    connection_class = _PinnedHTTPSConnection if parts.scheme == "https" else _PinnedHTTPConnection
    connection = connection_class(host, port, address, timeout=TOKEN_REQUEST_TIMEOUT_SECONDS)
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    try:
        connection.request(
            "POST", path, body=urlencode(fields).encode("ascii"),
            headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
        )
        response = connection.getresponse()
        body = response.read(_MAX_ANSWER_BYTES + 1)
        status = response.status
    except ssl.SSLCertVerificationError as error:
        raise OAuthRefreshFailed(f"The certificate of the token endpoint {host} is not trusted ({_one_line(str(error.verify_message))}).") from error
    except (OSError, http.client.HTTPException) as error:
        raise OAuthRefreshFailed(f"The token endpoint {host} could not be reached ({_one_line(type(error).__name__)}).") from error
    finally:
        connection.close()
    if len(body) > _MAX_ANSWER_BYTES:
        raise OAuthRefreshFailed("The token endpoint sent an answer that is too large.")
    try:
        answer = json.loads(body)
    except ValueError:
        answer = {}
    return status, answer if isinstance(answer, dict) else {}


def refresh_access_token(*, token_endpoint: str, refresh_token: str, client_id: str, client_secret: str = "") -> TokenAnswer:
    """One refresh_token grant (RFC 6749 6). Client credentials go in the body (section 2.3.1),
    which Google, Microsoft and Yahoo all accept."""
    fields = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id}
    if client_secret:
        fields["client_secret"] = client_secret
    status, answer = _post_form(token_endpoint, fields)
    if status != 200:
        error = str(answer.get("error", ""))
        description = _one_line(str(answer.get("error_description", "")))
        if error == "invalid_grant":
            raise OAuthGrantRevoked(
                "The mail provider no longer accepts this mailbox's sign-in (the access was revoked or has expired). "
                "Connect the mailbox again." + (f" ({description})" if description else "")
            )
        if error in {"invalid_client", "unauthorized_client"}:
            raise OAuthGrantRevoked(f"The mail provider refused the OAuth client ({_one_line(error)}). Check the client ID and secret, then connect again.")
        raise OAuthRefreshFailed(f"The token endpoint answered {status}" + (f" ({_one_line(error)})" if error else "") + ".")
    access_token = answer.get("access_token")
    if not isinstance(access_token, str) or not _BEARER_TOKEN.fullmatch(access_token):
        raise OAuthRefreshFailed("The token endpoint did not send a usable access token.")
    expires_in = answer.get("expires_in")
    expires_at = timezone.now() + timedelta(seconds=int(expires_in)) if isinstance(expires_in, int | float) and expires_in > 0 else None
    rotated = answer.get("refresh_token")
    return TokenAnswer(access_token=access_token, expires_at=expires_at, refresh_token=rotated if isinstance(rotated, str) and rotated else None)


def _needs_refresh(mailbox: Mailbox, credentials: dict[str, Any]) -> bool:
    if not credentials.get("refresh_token") or not credentials.get("token_endpoint"):
        return False  # nothing to refresh with: use the token until the server refuses it
    if not credentials.get("access_token"):
        return True
    expires_at = mailbox.access_token_expires_at
    return expires_at is not None and expires_at - REFRESH_MARGIN <= timezone.now()


def access_token_renew_at(mailbox: Mailbox) -> datetime | None:
    """When a long session (IDLE) signed in with the mailbox's current access token should sign
    in again with a renewed one: ``REFRESH_MARGIN`` before the token expires, or, for a token
    that lives less than that, halfway through what is left of it (so renewals never follow each
    other in a tight loop). Signing in at that moment renews the token, since it then expires
    within the margin. None when there is nothing to renew (a password, or no refresh token or
    known expiry): such a session lasts until the server ends it."""
    credentials = mailbox.credentials or {}
    expires_at = mailbox.access_token_expires_at
    if mailbox.auth_kind == AuthKind.PASSWORD or expires_at is None:
        return None
    if not credentials.get("refresh_token") or not credentials.get("token_endpoint"):
        return None
    now = timezone.now()
    renew_at = expires_at - REFRESH_MARGIN
    if renew_at <= now:
        renew_at = now + max(expires_at - now, timedelta(0)) / 2
    return renew_at


def mailbox_access_token(mailbox: Mailbox) -> str:
    """A current access token for ``mailbox``, renewed first when it expires within the margin.

    Raises ``OAuthGrantRevoked`` after moving the mailbox to NEEDS_RECONNECT, or
    ``OAuthRefreshFailed`` for a temporary failure (the mailbox keeps its state; the caller
    retries later). The HTTP request runs outside any transaction.
    """
    # Imported here: actions imports this module for the connect flow.
    from postroom.mailboxes.actions import mailbox_mark_needs_reconnect, mailbox_store_refreshed_token

    credentials = mailbox.credentials or {}
    if mailbox.auth_kind == AuthKind.PASSWORD:
        raise OAuthError("This mailbox signs in with a password, not OAuth2.")
    if mailbox.status == MailboxStatus.NEEDS_RECONNECT:
        raise OAuthGrantRevoked(mailbox.status_reason or "This mailbox needs to be connected again.")
    if not _needs_refresh(mailbox, credentials):
        return str(credentials.get("access_token", ""))
    try:
        answer = refresh_access_token(
            token_endpoint=credentials["token_endpoint"], refresh_token=credentials["refresh_token"],
            client_id=credentials.get("client_id", ""), client_secret=credentials.get("client_secret", ""),
        )
    except (OAuthGrantRevoked, TokenEndpointRefused) as error:
        mailbox_mark_needs_reconnect(mailbox=mailbox, reason=str(error))
        raise OAuthGrantRevoked(str(error)) from error
    mailbox_store_refreshed_token(mailbox=mailbox, answer=answer)
    return answer.access_token


def mailbox_sign_in_credentials(mailbox: Mailbox) -> Credentials:
    """What ``connection.open_imap``/``open_smtp`` need to sign in to ``mailbox`` now."""
    credentials = mailbox.credentials or {}
    username = str(credentials.get("username", ""))
    if mailbox.auth_kind == AuthKind.PASSWORD:
        return PasswordCredentials(username=username, password=str(credentials.get("password", "")))
    mechanism = OAuth2Mechanism.XOAUTH2 if mailbox.auth_kind == AuthKind.XOAUTH2 else OAuth2Mechanism.OAUTHBEARER
    return OAuth2Credentials(username=username, access_token=mailbox_access_token(mailbox), mechanism=mechanism)
