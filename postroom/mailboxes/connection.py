"""Opening authenticated IMAP and SMTP connections to a member's mail servers (SECURITY.md R49, R33).

Attackers and defences:

- A network attacker between Postroom and the mail server (a hostile network, a spoofed DNS
  answer) who wants the mailbox password or token, or wants to read and alter the mail. Every
  connection is TLS with the certificate chain and the host name verified by
  ``ssl.create_default_context()``; a private CA can be added per server, but there is no
  switch that turns verification off. Python's ``imaplib``/``smtplib`` verify nothing unless
  given such a context, so each TLS call here passes one (a test scans the code for calls
  without it).
- The same attacker downgrading STARTTLS: removing STARTTLS from the capability list, or
  answering ``PREAUTH`` so the session is already "logged in" before any TLS. Either way the
  connection is closed with ``StartTlsUnavailable`` before any credential is sent. There is no
  plaintext fallback.
- A member (or whoever can change stored settings) asking for plaintext to a remote host.
  Unencrypted connections exist only as the explicit ``TlsMode.INSECURE_PLAINTEXT``, for a test
  server on this machine: the host must resolve only to loopback addresses, and we connect to
  the address we checked, so a DNS answer cannot change between the check and the connection.
- Command injection through credentials (R33): usernames, passwords and tokens with CR, LF or
  NUL are refused; every credential travels base64-encoded inside SASL (PLAIN, LOGIN, XOAUTH2,
  OAUTHBEARER), never as a raw IMAP ``LOGIN`` argument, which ``imaplib`` does not quote.
- Message content reaching the logs (R54): IMAPClient turns on ``imaplib``'s protocol trace
  (``debug = 5``) and sends it to a DEBUG logger, which would write every fetched message and
  every SASL exchange to the log at that level (and format each of them, whatever the level:
  about 0.4 ms of CPU per fetched 30 KB message). ``open_imap`` turns the trace off before signing in.
- A hostile or broken server: its error text is shortened and stripped of control characters
  before it becomes part of a message shown to the member, and secrets never appear in
  exception messages or ``repr``.

Every failure becomes one specific ``MailConnectionError`` subclass whose message tells the
member what went wrong and what to check.
"""

from __future__ import annotations

import base64
import contextlib
import imaplib
import ipaddress
import re
import smtplib
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar

from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from postroom.mailboxes.protocol_values import UnsafeProtocolValue, single_line

DEFAULT_TIMEOUT_SECONDS = 20.0
# RFC 6750 b64token: what an OAuth2 bearer token may contain.
_BEARER_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
# OpenSSL verify codes for a certificate that is valid but names another host or IP address.
_HOSTNAME_MISMATCH_CODES = {62, 64}
_SERVER_TEXT_LIMIT = 200
# Capabilities the sync engine adapts to; the connection test reports which are offered.
SYNC_CAPABILITIES = ("IDLE", "CONDSTORE", "QRESYNC", "SPECIAL-USE", "MOVE", "UIDPLUS")


class TlsMode(StrEnum):
    IMPLICIT = "implicit"  # TLS from the first byte (IMAPS 993, SMTPS 465)
    STARTTLS = "starttls"  # plaintext greeting, then STARTTLS, which must succeed
    INSECURE_PLAINTEXT = "insecure_plaintext"  # nothing encrypted: loopback test servers only


class Protocol(StrEnum):
    IMAP = "IMAP"
    SMTP = "SMTP"


@dataclass(frozen=True)
class ServerSettings:
    host: str
    port: int
    tls: TlsMode
    # PEM certificates of a private CA that signs this server's certificate. When set, only
    # these CAs are trusted for this server.
    private_ca_pem: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.host or len(self.host) > 253 or any(character.isspace() or not character.isprintable() for character in self.host):
            raise ValueError("The server name must be a host name or an IP address.")
        if not 1 <= self.port <= 65535:
            raise ValueError("The port must be a number between 1 and 65535.")
        if self.private_ca_pem:
            try:
                tls_context(self)
            except (ssl.SSLError, ValueError) as error:
                raise ValueError("The private CA certificate is not a valid PEM certificate.") from error


@dataclass(frozen=True)
class MailServers:
    imap: ServerSettings
    smtp: ServerSettings


@dataclass(frozen=True)
class PasswordCredentials:
    username: str
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        single_line(self.username, what="username")
        single_line(self.password, what="password")


class OAuth2Mechanism(StrEnum):
    XOAUTH2 = "XOAUTH2"  # Google's and Microsoft's original SASL mechanism
    OAUTHBEARER = "OAUTHBEARER"  # the standard one, RFC 7628


@dataclass(frozen=True)
class OAuth2Credentials:
    username: str
    access_token: str = field(repr=False)
    mechanism: OAuth2Mechanism = OAuth2Mechanism.XOAUTH2

    def __post_init__(self) -> None:
        single_line(self.username, what="username")
        if "\x01" in self.username:
            raise UnsafeProtocolValue("The username contains a control character.")
        if not _BEARER_TOKEN.fullmatch(self.access_token):
            raise UnsafeProtocolValue("The access token is not a valid OAuth2 bearer token.")

    def sasl_initial_response(self, server: ServerSettings) -> bytes:
        if self.mechanism is OAuth2Mechanism.XOAUTH2:
            return f"user={self.username}\x01auth=Bearer {self.access_token}\x01\x01".encode()
        # RFC 7628 section 3.1: GS2 header, then key/value pairs separated by 0x01.
        authorization_identity = self.username.replace("=", "=3D").replace(",", "=2C")
        return (
            f"n,a={authorization_identity},\x01host={server.host}\x01port={server.port}\x01auth=Bearer {self.access_token}\x01\x01".encode()
        )

    @property
    def answer_to_error_challenge(self) -> bytes:
        """What the client sends after a failed token, so the server can finish with its error
        status: an empty response for XOAUTH2, a single 0x01 for OAUTHBEARER (RFC 7628 3.2.3)."""
        return b"" if self.mechanism is OAuth2Mechanism.XOAUTH2 else b"\x01"


Credentials = PasswordCredentials | OAuth2Credentials


# --- errors ------------------------------------------------------------------------------------
# The classes are named for the outcome the member sees. An "Error" suffix (ruff N818) would add
# nothing and make two of them shadow builtins (ConnectionRefusedError, TimeoutError).
def _printable(server_text: str | bytes) -> str:
    """Server-supplied text made safe to show: control characters dropped, whitespace folded,
    length capped."""
    if isinstance(server_text, bytes):
        server_text = server_text.decode("utf-8", "replace")
    cleaned = " ".join("".join(character if character.isprintable() else " " for character in server_text).split())
    return cleaned if len(cleaned) <= _SERVER_TEXT_LIMIT else cleaned[: _SERVER_TEXT_LIMIT - 1] + "…"


class MailConnectionError(Exception):
    """A failure to connect or sign in, with a message that can be shown to the member.

    ``code`` is stable for programs (forms, API, the mailbox status); ``detail`` is the
    (cleaned) technical reason, already part of the message.
    """

    code: ClassVar[str] = "connection_failed"
    template: ClassVar[str] = "Could not connect to the {protocol} server {host}:{port} ({detail})."

    def __init__(self, protocol: Protocol, server: ServerSettings, detail: str = "") -> None:
        self.protocol = protocol
        self.host = server.host
        self.port = server.port
        self.detail = _printable(detail)
        super().__init__(self.template.format(protocol=protocol.value, host=server.host, port=server.port, detail=self.detail))

    @property
    def message(self) -> str:
        return str(self)


class ConnectionFailed(MailConnectionError):  # noqa: N818
    """The network failed in a way none of the specific classes describe (no route to host…)."""


class UnknownHost(MailConnectionError):  # noqa: N818
    code = "unknown_host"
    template = "The {protocol} server name {host} could not be found. Check the spelling of the server name."


class ConnectionRefused(MailConnectionError):  # noqa: N818
    code = "connection_refused"
    template = "The {protocol} server {host} refused the connection on port {port}. Check the port number and that the server is running."


class Timeout(MailConnectionError):  # noqa: N818
    code = "timeout"
    template = "The {protocol} server {host}:{port} did not answer in time. Check the server name and port, or try again later."


class TlsUntrusted(MailConnectionError):  # noqa: N818
    code = "tls_untrusted"
    template = (
        "The certificate of the {protocol} server {host} is not trusted ({detail}). If the server uses a private "
        "certificate authority, add that authority's certificate."
    )


class TlsNameMismatch(MailConnectionError):  # noqa: N818
    code = "tls_name_mismatch"
    template = (
        "The certificate of the {protocol} server was issued for another name than {host} ({detail}). "
        "Use the server name the certificate was issued for."
    )


class TlsFailure(MailConnectionError):  # noqa: N818
    code = "tls_failure"
    template = (
        "The secure connection to the {protocol} server {host}:{port} failed ({detail}). Check that the port "
        "matches the security setting (implicit TLS or STARTTLS)."
    )


class StartTlsUnavailable(MailConnectionError):  # noqa: N818
    code = "starttls_unavailable"
    template = (
        "The {protocol} server {host}:{port} did not let the connection be encrypted with STARTTLS ({detail}), "
        "so nothing was sent. Use the server's implicit TLS port instead (usually 993 for IMAP, 465 for SMTP)."
    )


class InsecurePlaintextRefused(MailConnectionError):  # noqa: N818
    code = "insecure_plaintext_refused"
    template = "Unencrypted connections are allowed only to a server on this machine, and {host} is not one ({detail})."


class AuthenticationFailed(MailConnectionError):  # noqa: N818
    code = "authentication_failed"
    template = "The {protocol} server {host} rejected the username or the password/token ({detail})."


class ProtocolError(MailConnectionError):
    code = "protocol_error"
    template = "The {protocol} server {host}:{port} answered in an unexpected way ({detail}). Check that this port serves {protocol}."


def _network_cause(error: BaseException) -> OSError | None:
    """The socket or TLS error behind a protocol-level one: imaplib turns a broken connection
    during a command into ``IMAP4.abort``, smtplib into ``SMTPServerDisconnected``, IMAPClient
    wraps those again, each raised while handling the original."""
    cause = error.__cause__ or error.__context__
    for _ in range(10):  # exception chains are short; never follow a cycle
        if cause is None:
            return None
        if isinstance(cause, OSError) and not isinstance(cause, smtplib.SMTPException):
            return cause
        cause = cause.__cause__ or cause.__context__
    return None


def _classify(protocol: Protocol, server: ServerSettings, error: Exception) -> MailConnectionError | None:
    """The member-facing error for what the socket, TLS, imaplib or smtplib layers raised, or
    None for anything else (a bug, which must surface as itself)."""
    if isinstance(error, MailConnectionError):
        return error
    if isinstance(error, socket.gaierror):
        return UnknownHost(protocol, server, str(error.strerror))
    if isinstance(error, ssl.SSLCertVerificationError):
        reason = error.verify_message or str(error.reason)
        if error.verify_code in _HOSTNAME_MISMATCH_CODES:
            return TlsNameMismatch(protocol, server, reason)
        return TlsUntrusted(protocol, server, reason)
    if isinstance(error, ssl.SSLError):
        return TlsFailure(protocol, server, str(error.reason or error))
    if isinstance(error, TimeoutError):
        return Timeout(protocol, server)
    if isinstance(error, ConnectionRefusedError):
        return ConnectionRefused(protocol, server)
    if isinstance(error, imaplib.IMAP4.error | smtplib.SMTPException):
        cause = _network_cause(error)
        if cause is not None:
            return _classify(protocol, server, cause)
        return ProtocolError(protocol, server, str(error))
    if isinstance(error, OSError):
        return ConnectionFailed(protocol, server, error.strerror or str(error))
    return None


@contextlib.contextmanager
def _classified(protocol: Protocol, server: ServerSettings) -> Iterator[None]:
    try:
        yield
    except Exception as error:
        classified = _classify(protocol, server, error)
        if classified is None or classified is error:
            raise
        raise classified from error


# --- TLS and addresses -------------------------------------------------------------------------
def tls_context(server: ServerSettings) -> ssl.SSLContext:
    """A context that verifies the chain and the host name: the system's CAs, or only the
    configured private CA."""
    if server.private_ca_pem:
        return ssl.create_default_context(cadata=server.private_ca_pem)
    return ssl.create_default_context()


def _loopback_address(protocol: Protocol, server: ServerSettings) -> str:
    """The address to use for an unencrypted connection, if ``server.host`` is only loopback."""
    addresses = {str(info[4][0]) for info in socket.getaddrinfo(server.host, server.port, type=socket.SOCK_STREAM)}
    # An IPv6 address may carry a zone ("fe80::1%eth0"), which ip_address() does not parse.
    remote = sorted(address for address in addresses if not ipaddress.ip_address(address.split("%")[0]).is_loopback)
    if remote or not addresses:
        raise InsecurePlaintextRefused(protocol, server, f"it resolves to {', '.join(remote)}")
    return sorted(addresses)[0]


class _SaslResponder:
    """Answers the first (empty) challenge with the initial response and any later one, which
    can only be an error report, with ``after_error`` so the server sends its final NO/535."""

    def __init__(self, initial_response: bytes, after_error: bytes = b"") -> None:
        self._initial_response: bytes | None = initial_response
        self._after_error = after_error

    def __call__(self, challenge: bytes) -> bytes:
        response, self._initial_response = self._initial_response, None
        return self._after_error if response is None else response


def _plain_initial_response(credentials: PasswordCredentials) -> bytes:
    # RFC 4616: [authzid] NUL authcid NUL passwd, in UTF-8.
    return b"\0" + credentials.username.encode() + b"\0" + credentials.password.encode()


# --- IMAP --------------------------------------------------------------------------------------
def open_imap(server: ServerSettings, credentials: Credentials, *, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> IMAPClient:
    """A logged-in IMAP session, or a ``MailConnectionError``. The caller logs out."""
    with _classified(Protocol.IMAP, server):
        client = _connect_imap(server, timeout)
        client._imap.debug = 0  # no protocol trace (R54; see the module docstring)
        try:
            _authenticate_imap(client, server, credentials)
        except BaseException:
            with contextlib.suppress(Exception):
                client.shutdown()
            raise
    return client


def _connect_imap(server: ServerSettings, timeout: float) -> IMAPClient:
    if server.tls is TlsMode.INSECURE_PLAINTEXT:
        return IMAPClient(_loopback_address(Protocol.IMAP, server), port=server.port, ssl=False, timeout=timeout)
    context = tls_context(server)
    if server.tls is TlsMode.IMPLICIT:
        return IMAPClient(server.host, port=server.port, ssl=True, ssl_context=context, timeout=timeout)
    client = IMAPClient(server.host, port=server.port, ssl=False, timeout=timeout)
    try:
        if (client.welcome or b"").upper().startswith(b"* PREAUTH"):
            # Already "authenticated" in plaintext: STARTTLS is no longer allowed (RFC 3501),
            # and going on would run the whole session unencrypted.
            raise StartTlsUnavailable(Protocol.IMAP, server, "the server skipped the login step with PREAUTH")
        if not client.has_capability("STARTTLS"):
            raise StartTlsUnavailable(Protocol.IMAP, server, "STARTTLS is not offered")
        try:
            client.starttls(ssl_context=context)
        except imaplib.IMAP4.abort:
            raise  # the connection broke: classified like any other network failure
        except imaplib.IMAP4.error as error:
            raise StartTlsUnavailable(Protocol.IMAP, server, f"STARTTLS was refused: {error}") from error
    except BaseException:
        with contextlib.suppress(Exception):
            client.shutdown()
        raise
    return client


def _authenticate_imap(client: IMAPClient, server: ServerSettings, credentials: Credentials) -> None:
    if isinstance(credentials, PasswordCredentials):
        # AUTH=PLAIN is mandatory for IMAP4rev1 servers (RFC 3501 6.2.2) and, unlike LOGIN,
        # carries any UTF-8 password and needs no quoting.
        mechanism, responder = "PLAIN", _SaslResponder(_plain_initial_response(credentials))
    else:
        mechanism = credentials.mechanism.value
        responder = _SaslResponder(credentials.sasl_initial_response(server), credentials.answer_to_error_challenge)
    if not client.has_capability(f"AUTH={mechanism}"):
        raise ProtocolError(Protocol.IMAP, server, f"the server does not offer {mechanism} sign-in")
    try:
        client.sasl_login(mechanism, responder)
    except LoginError as error:
        if _network_cause(error) is not None:
            raise  # the connection broke: not a verdict on the credentials
        raise AuthenticationFailed(Protocol.IMAP, server, str(error)) from error


# --- SMTP --------------------------------------------------------------------------------------
def open_smtp(server: ServerSettings, credentials: Credentials, *, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> smtplib.SMTP:
    """An authenticated SMTP session after EHLO, or a ``MailConnectionError``. The caller quits."""
    with _classified(Protocol.SMTP, server):
        smtp = _connect_smtp(server, timeout)
        try:
            _authenticate_smtp(smtp, server, credentials)
        except BaseException:
            smtp.close()
            raise
    return smtp


def _ehlo(smtp: smtplib.SMTP, server: ServerSettings) -> None:
    code, reply = smtp.ehlo()
    if code != 250:
        raise ProtocolError(Protocol.SMTP, server, f"EHLO was answered {code} {_printable(reply)}")


def _connect_smtp(server: ServerSettings, timeout: float) -> smtplib.SMTP:
    smtp: smtplib.SMTP
    if server.tls is TlsMode.INSECURE_PLAINTEXT:
        smtp = smtplib.SMTP(_loopback_address(Protocol.SMTP, server), server.port, timeout=timeout)
    elif server.tls is TlsMode.IMPLICIT:
        smtp = smtplib.SMTP_SSL(server.host, server.port, timeout=timeout, context=tls_context(server))
    else:
        smtp = smtplib.SMTP(server.host, server.port, timeout=timeout)
    try:
        _ehlo(smtp, server)
        if server.tls is TlsMode.STARTTLS:
            if not smtp.has_extn("starttls"):
                raise StartTlsUnavailable(Protocol.SMTP, server, "STARTTLS is not offered")
            try:
                smtp.starttls(context=tls_context(server))
            except smtplib.SMTPResponseException as error:
                raise StartTlsUnavailable(
                    Protocol.SMTP, server, f"STARTTLS was answered {error.smtp_code} {_printable(error.smtp_error)}"
                ) from error
            _ehlo(smtp, server)  # the capabilities seen before TLS cannot be trusted
    except BaseException:
        smtp.close()
        raise
    return smtp


def _authenticate_smtp(smtp: smtplib.SMTP, server: ServerSettings, credentials: Credentials) -> None:
    # Not smtplib's login(): it encodes credentials as ASCII and fails on other passwords. Each
    # SASL step here is base64 of UTF-8, so the command line itself is always plain ASCII.
    offered = smtp.esmtp_features.get("auth", "").upper().split()
    if isinstance(credentials, OAuth2Credentials):
        mechanism = credentials.mechanism.value
        if mechanism not in offered:
            raise ProtocolError(Protocol.SMTP, server, f"the server does not offer {mechanism} sign-in")
        code, reply = smtp.docmd("AUTH", f"{mechanism} {_base64(credentials.sasl_initial_response(server))}")
        if code == 334:  # an error report as a challenge; answer it to get the final status
            code, reply = smtp.docmd(_base64(credentials.answer_to_error_challenge))
    elif "PLAIN" in offered:
        code, reply = smtp.docmd("AUTH", f"PLAIN {_base64(_plain_initial_response(credentials))}")
    elif "LOGIN" in offered:  # Microsoft 365 offers only LOGIN (and XOAUTH2)
        code, reply = smtp.docmd("AUTH", f"LOGIN {_base64(credentials.username.encode())}")
        if code == 334:
            code, reply = smtp.docmd(_base64(credentials.password.encode()))
    else:
        raise ProtocolError(Protocol.SMTP, server, "the server offers no password sign-in (PLAIN or LOGIN)")
    if code != 235:
        raise AuthenticationFailed(Protocol.SMTP, server, f"{code} {_printable(reply)}")


def _base64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


# --- the connection check -----------------------------------------------------------------------
@dataclass(frozen=True)
class ServerCheck:
    error: MailConnectionError | None = None
    capabilities: frozenset[str] = frozenset()

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class ConnectionReport:
    imap: ServerCheck
    smtp: ServerCheck

    @property
    def ok(self) -> bool:
        return self.imap.ok and self.smtp.ok


def check_connection(servers: MailServers, credentials: Credentials, *, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> ConnectionReport:
    """Sign in to both servers and report, for each, the specific error or the sync-relevant
    IMAP capabilities. Nothing on the servers is changed."""
    try:
        client = open_imap(servers.imap, credentials, timeout=timeout)
    except MailConnectionError as error:
        imap = ServerCheck(error=error)
    else:
        offered = {capability.decode("ascii", "replace").upper() for capability in client.capabilities()}
        imap = ServerCheck(capabilities=frozenset(offered.intersection(SYNC_CAPABILITIES)))
        with contextlib.suppress(Exception):  # signed in already: a failed goodbye changes nothing
            client.logout()
    try:
        smtp = open_smtp(servers.smtp, credentials, timeout=timeout)
    except MailConnectionError as error:
        smtp_check = ServerCheck(error=error)
    else:
        smtp_check = ServerCheck()
        with contextlib.suppress(Exception):
            smtp.quit()
    return ConnectionReport(imap=imap, smtp=smtp_check)
