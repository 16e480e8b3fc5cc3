"""open_imap / open_smtp / test_connection against a real Dovecot and real aiosmtpd peers on
loopback: every error class is produced by a real failure, not a mock."""

from __future__ import annotations

import ast
import base64
import logging
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme

from postroom.mailboxes import connection
from postroom.mailboxes.connection import (
    AuthenticationFailed,
    ConnectionFailed,
    ConnectionRefused,
    InsecurePlaintextRefused,
    MailServers,
    OAuth2Credentials,
    OAuth2Mechanism,
    PasswordCredentials,
    ProtocolError,
    ServerSettings,
    StartTlsUnavailable,
    Timeout,
    TlsFailure,
    TlsMode,
    TlsNameMismatch,
    TlsUntrusted,
    UnknownHost,
    open_imap,
    open_smtp,
)
from postroom.mailboxes.protocol_values import UnsafeProtocolValue
from postroom.testing.dovecot import Dovecot, MailUser, TokenIntrospection, free_port
from postroom.testing.smtp import SmtpPeer, SmtpTls

QUICK = 2.0  # seconds: generous for loopback, short for the tests that wait for a timeout


# --- servers as Postroom would be configured for them -------------------------------------------
def imaps(dovecot: Dovecot, **changes: object) -> ServerSettings:
    options: dict = {"host": dovecot.host, "port": dovecot.imaps_port, "tls": TlsMode.IMPLICIT, "private_ca_pem": dovecot.ca_pem}
    options.update(changes)
    return ServerSettings(**options)


def imap_starttls(dovecot: Dovecot, **changes: object) -> ServerSettings:
    return imaps(dovecot, port=dovecot.imap_port, tls=TlsMode.STARTTLS, **changes)


def smtp_settings(peer: SmtpPeer, ca: trustme.CA, **changes: object) -> ServerSettings:
    tls = {SmtpTls.STARTTLS: TlsMode.STARTTLS, SmtpTls.IMPLICIT: TlsMode.IMPLICIT, SmtpTls.NONE: TlsMode.STARTTLS}[peer.tls]
    options: dict = {"host": peer.host, "port": peer.port, "tls": tls, "private_ca_pem": ca.cert_pem.bytes().decode()}
    options.update(changes)
    return ServerSettings(**options)


def password_of(user: MailUser) -> PasswordCredentials:
    return PasswordCredentials(username=user.name, password=user.password)


def inbox_count(client) -> int:
    return int(client.select_folder("INBOX", readonly=True)[b"EXISTS"])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel completes the handshake) and never
    says a word: what a firewall black hole or a hung server looks like."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.listen(16)
        yield listener.getsockname()[1]


@pytest.fixture
def resetting_port() -> Iterator[int]:
    """A port whose listener accepts each connection and resets it at once (TCP RST)."""
    listener = socket.create_server(("127.0.0.1", 0))

    def reset_everything() -> None:
        while True:
            try:
                accepted, _ = listener.accept()
            except OSError:
                return  # the listener was closed: the test is over
            accepted.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            accepted.close()

    thread = threading.Thread(target=reset_everything, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    listener.shutdown(socket.SHUT_RDWR)
    listener.close()
    thread.join(timeout=5)


class ScriptedImapServer:
    """A man in the middle that answers as an IMAP server would after stripping STARTTLS (or
    after replacing the greeting with PREAUTH), and records what the client sends it."""

    def __init__(self, greeting: bytes, capabilities: bytes) -> None:
        self.greeting = greeting
        self.capabilities = capabilities
        self.received = bytearray()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        connection_, _ = self._listener.accept()
        with connection_:
            connection_.sendall(self.greeting)
            pending = b""
            while chunk := connection_.recv(4096):
                self.received.extend(chunk)
                pending += chunk
                while b"\r\n" in pending:
                    line, pending = pending.split(b"\r\n", 1)
                    tag, _, command = line.partition(b" ")
                    if command.upper() == b"CAPABILITY":
                        connection_.sendall(b"* CAPABILITY " + self.capabilities + b"\r\n" + tag + b" OK done\r\n")
                    else:
                        connection_.sendall(tag + b" NO not here\r\n")

    def close(self) -> None:
        self._listener.close()
        self._thread.join(timeout=5)


@pytest.fixture
def scripted_imap_server() -> Iterator[Callable[[bytes, bytes], ScriptedImapServer]]:
    servers: list[ScriptedImapServer] = []

    def make(greeting: bytes, capabilities: bytes) -> ScriptedImapServer:
        server = ScriptedImapServer(greeting, capabilities)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


# --- IMAP: success -----------------------------------------------------------------------------
def test_r49_imap_implicit_tls_signs_in_with_a_verified_certificate(dovecot: Dovecot, mail_user: MailUser) -> None:
    dovecot.append(mail_user, b"Subject: hello\r\n\r\nbody\r\n")
    client = open_imap(imaps(dovecot), password_of(mail_user), timeout=QUICK)
    try:
        assert isinstance(client.socket(), ssl.SSLSocket)
        assert client.socket().getpeercert()["subjectAltName"] == (("DNS", "localhost"),)
        assert inbox_count(client) == 1
    finally:
        client.logout()


def test_r54_a_fetched_message_and_the_password_stay_out_of_debug_logs(
    dovecot: Dovecot, mail_user: MailUser, caplog: pytest.LogCaptureFixture
) -> None:
    dovecot.append(mail_user, b"Subject: canary-subject-7f3a\r\n\r\ncanary-body-7f3a\r\n")
    caplog.set_level(logging.DEBUG)
    client = open_imap(imaps(dovecot), password_of(mail_user), timeout=QUICK)
    try:
        client.select_folder("INBOX", readonly=True)
        fetched = client.fetch([1], ["BODY.PEEK[]"])
    finally:
        client.logout()
    assert b"canary-body-7f3a" in fetched[1][b"BODY[]"]
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "canary" not in logged
    assert mail_user.password not in logged
    assert base64.b64encode(f"\0{mail_user.name}\0{mail_user.password}".encode()).decode() not in logged


def test_r54_imapclient_logs_no_message_at_debug(dovecot: Dovecot, mail_user: MailUser, caplog: pytest.LogCaptureFixture) -> None:
    # IMAPClient writes each command it builds itself to its logger at DEBUG, literals included
    # (their first 256 characters): here a message's header, as in MULTIAPPEND.
    caplog.set_level(logging.DEBUG)
    client = open_imap(imaps(dovecot), password_of(mail_user), timeout=QUICK)
    try:
        client.multiappend("INBOX", [b"Subject: canary-sent-5c1e\r\nTo: canary-to-5c1e@example.test\r\n\r\nHello\r\n"])
        assert inbox_count(client) == 1
    finally:
        client.logout()
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "canary" not in logged


def test_r49_imap_starttls_signs_in_only_after_encrypting(dovecot: Dovecot, mail_user: MailUser) -> None:
    client = open_imap(imap_starttls(dovecot), password_of(mail_user), timeout=QUICK)
    try:
        assert isinstance(client.socket(), ssl.SSLSocket)
        assert inbox_count(client) == 0
    finally:
        client.logout()


def test_imap_password_with_non_ascii_characters_signs_in(dovecot: Dovecot) -> None:
    user = dovecot.create_user(password="Grüße-aus-Köln-🙂-«password»")
    client = open_imap(imaps(dovecot), password_of(user), timeout=QUICK)
    client.logout()


@pytest.mark.parametrize("mechanism", list(OAuth2Mechanism))
def test_imap_oauth2_signs_in_with_a_valid_token(
    dovecot: Dovecot, mail_user: MailUser, oauth_tokens: TokenIntrospection, mechanism: OAuth2Mechanism
) -> None:
    credentials = OAuth2Credentials(username=mail_user.name, access_token=oauth_tokens.issue(mail_user.name), mechanism=mechanism)
    client = open_imap(imaps(dovecot), credentials, timeout=QUICK)
    try:
        assert inbox_count(client) == 0
    finally:
        client.logout()


# --- IMAP: each failure, for real ------------------------------------------------------------
def test_imap_wrong_password_is_authentication_failed(dovecot: Dovecot, mail_user: MailUser) -> None:
    with pytest.raises(AuthenticationFailed) as failure:
        open_imap(imaps(dovecot), PasswordCredentials(username=mail_user.name, password="not the password"), timeout=QUICK)
    assert failure.value.code == "authentication_failed"
    assert "rejected the username or the password" in str(failure.value)
    assert "not the password" not in str(failure.value)


@pytest.mark.parametrize("mechanism", list(OAuth2Mechanism))
def test_imap_revoked_token_is_authentication_failed(
    dovecot: Dovecot, mail_user: MailUser, oauth_tokens: TokenIntrospection, mechanism: OAuth2Mechanism
) -> None:
    token = oauth_tokens.issue(mail_user.name)
    oauth_tokens.revoke(token)
    with pytest.raises(AuthenticationFailed):
        open_imap(imaps(dovecot), OAuth2Credentials(username=mail_user.name, access_token=token, mechanism=mechanism), timeout=QUICK)


def test_imap_token_of_another_user_is_authentication_failed(
    dovecot: Dovecot, mail_user: MailUser, oauth_tokens: TokenIntrospection
) -> None:
    someone_else = dovecot.create_user()
    token = oauth_tokens.issue(someone_else.name)
    with pytest.raises(AuthenticationFailed):
        open_imap(imaps(dovecot), OAuth2Credentials(username=mail_user.name, access_token=token), timeout=QUICK)


def test_unknown_host(mail_user: MailUser) -> None:
    server = ServerSettings(host="imap.postroom-no-such-host.invalid", port=993, tls=TlsMode.IMPLICIT)
    with pytest.raises(UnknownHost) as failure:
        open_imap(server, password_of(mail_user), timeout=QUICK)
    assert failure.value.code == "unknown_host"
    assert "imap.postroom-no-such-host.invalid could not be found" in str(failure.value)
    with pytest.raises(UnknownHost):
        open_smtp(ServerSettings(host="smtp.postroom-no-such-host.invalid", port=465, tls=TlsMode.IMPLICIT), password_of(mail_user))


def test_connection_refused_on_a_closed_port(mail_user: MailUser) -> None:
    closed = ServerSettings(host="localhost", port=free_port(), tls=TlsMode.IMPLICIT)
    with pytest.raises(ConnectionRefused) as failure:
        open_imap(closed, password_of(mail_user), timeout=QUICK)
    assert f"refused the connection on port {closed.port}" in str(failure.value)
    with pytest.raises(ConnectionRefused):
        open_smtp(closed, password_of(mail_user), timeout=QUICK)


def test_r49_imap_certificate_from_an_untrusted_ca_is_refused(dovecot: Dovecot, mail_user: MailUser) -> None:
    other_ca = trustme.CA().cert_pem.bytes().decode()
    for server in (
        imaps(dovecot, private_ca_pem=other_ca),
        imap_starttls(dovecot, private_ca_pem=other_ca),
        imaps(dovecot, private_ca_pem=None),
    ):
        with pytest.raises(TlsUntrusted) as failure:
            open_imap(server, password_of(mail_user), timeout=QUICK)
        assert "is not trusted" in str(failure.value)
        assert failure.value.code == "tls_untrusted"
    # Dovecot saw TLS handshakes fail and no sign-in for this user.
    assert f"user=<{mail_user.name}>" not in dovecot.log()


def test_r49_imap_certificate_for_another_name_is_refused(dovecot: Dovecot, mail_user: MailUser) -> None:
    # The certificate names "localhost" only; 127.0.0.1 is the same machine but not that name.
    for server in (imaps(dovecot, host="127.0.0.1"), imap_starttls(dovecot, host="127.0.0.1")):
        with pytest.raises(TlsNameMismatch) as failure:
            open_imap(server, password_of(mail_user), timeout=QUICK)
        assert "issued for another name than 127.0.0.1" in str(failure.value)


def test_implicit_tls_to_a_starttls_port_is_a_tls_failure(dovecot: Dovecot, mail_user: MailUser) -> None:
    with pytest.raises(TlsFailure) as failure:
        open_imap(imaps(dovecot, port=dovecot.imap_port), password_of(mail_user), timeout=QUICK)
    assert "implicit TLS or STARTTLS" in str(failure.value)


def test_a_server_that_never_answers_is_a_timeout(silent_port: int, mail_user: MailUser) -> None:
    for tls in (TlsMode.IMPLICIT, TlsMode.STARTTLS):
        server = ServerSettings(host="localhost", port=silent_port, tls=tls)
        with pytest.raises(Timeout) as failure:
            open_imap(server, password_of(mail_user), timeout=0.5)
        assert "did not answer in time" in str(failure.value)
        with pytest.raises(Timeout):
            open_smtp(server, password_of(mail_user), timeout=0.5)


def test_a_connection_reset_is_a_connection_failure(resetting_port: int, mail_user: MailUser) -> None:
    for tls in (TlsMode.IMPLICIT, TlsMode.STARTTLS):
        server = ServerSettings(host="localhost", port=resetting_port, tls=tls)
        with pytest.raises(ConnectionFailed) as failure:
            open_imap(server, password_of(mail_user), timeout=QUICK)
        assert "reset" in str(failure.value)
        with pytest.raises(ConnectionFailed):
            open_smtp(server, password_of(mail_user), timeout=QUICK)


def test_imap_client_talking_to_an_smtp_server_is_a_protocol_error(
    smtp_peer: SmtpPeer, mail_test_ca: trustme.CA, mail_user: MailUser
) -> None:
    with pytest.raises(ProtocolError) as failure:
        open_imap(smtp_settings(smtp_peer, mail_test_ca), password_of(mail_user), timeout=QUICK)
    assert "Check that this port serves IMAP" in str(failure.value)


def test_r49_imap_without_starttls_aborts_before_any_credential(
    scripted_imap_server: Callable[[bytes, bytes], ScriptedImapServer], mail_user: MailUser
) -> None:
    stripped = scripted_imap_server(b"* OK IMAP server ready\r\n", b"IMAP4rev1 AUTH=PLAIN")
    server = ServerSettings(host="localhost", port=stripped.port, tls=TlsMode.STARTTLS)
    with pytest.raises(StartTlsUnavailable) as failure:
        open_imap(server, password_of(mail_user), timeout=QUICK)
    assert "nothing was sent" in str(failure.value)
    stripped.close()
    assert b"AUTHENTICATE" not in stripped.received.upper()
    assert b"LOGIN" not in stripped.received.upper()
    assert mail_user.password.encode() not in stripped.received
    assert base64.b64encode(b"\0" + mail_user.name.encode() + b"\0" + mail_user.password.encode()) not in stripped.received


def test_r49_imap_preauth_greeting_cannot_skip_starttls(
    scripted_imap_server: Callable[[bytes, bytes], ScriptedImapServer], mail_user: MailUser
) -> None:
    preauth = scripted_imap_server(b"* PREAUTH [CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN] logged in\r\n", b"IMAP4rev1 STARTTLS AUTH=PLAIN")
    with pytest.raises(StartTlsUnavailable) as failure:
        open_imap(ServerSettings(host="localhost", port=preauth.port, tls=TlsMode.STARTTLS), password_of(mail_user), timeout=QUICK)
    assert "PREAUTH" in str(failure.value)
    preauth.close()
    assert mail_user.password.encode() not in preauth.received


def test_imap_insecure_plaintext_works_on_loopback(dovecot: Dovecot, mail_user: MailUser) -> None:
    client = open_imap(imaps(dovecot, port=dovecot.imap_port, tls=TlsMode.INSECURE_PLAINTEXT), password_of(mail_user), timeout=QUICK)
    try:
        assert not isinstance(client.socket(), ssl.SSLSocket)
        assert inbox_count(client) == 0
    finally:
        client.logout()


def test_r49_insecure_plaintext_is_refused_for_a_remote_host(mail_user: MailUser) -> None:
    # 192.0.2.1 (TEST-NET-1) is not loopback: refused before any connection attempt, which
    # would otherwise end in a timeout or a network error instead.
    remote = ServerSettings(host="192.0.2.1", port=143, tls=TlsMode.INSECURE_PLAINTEXT)
    with pytest.raises(InsecurePlaintextRefused) as failure:
        open_imap(remote, password_of(mail_user), timeout=QUICK)
    assert "only to a server on this machine" in str(failure.value)
    with pytest.raises(InsecurePlaintextRefused):
        open_smtp(remote, password_of(mail_user), timeout=QUICK)


# --- SMTP ----------------------------------------------------------------------------------------
def test_r49_smtp_starttls_with_password(smtp_peer_requiring_auth: SmtpPeer, mail_test_ca: trustme.CA, mail_user: MailUser) -> None:
    smtp_peer_requiring_auth.add_account(mail_user)
    smtp = open_smtp(smtp_settings(smtp_peer_requiring_auth, mail_test_ca), password_of(mail_user), timeout=QUICK)
    try:
        assert isinstance(smtp.sock, ssl.SSLSocket)
        smtp.sendmail(mail_user.address, ["someone@example.test"], b"Subject: hi\r\n\r\nhello\r\n")
    finally:
        smtp.quit()
    [received] = smtp_peer_requiring_auth.messages
    assert received.authenticated_as == mail_user.name
    assert received.recipients == ("someone@example.test",)
    # The credentials went over the wire only after STARTTLS.
    transcript = smtp_peer_requiring_auth.transcript
    assert transcript.index(b"STARTTLS") < transcript.index(b"AUTH PLAIN")


def test_smtp_implicit_tls_with_password(make_smtp_peer: Callable[..., SmtpPeer], mail_test_ca: trustme.CA, mail_user: MailUser) -> None:
    peer = make_smtp_peer(tls=SmtpTls.IMPLICIT, auth_required=True)
    peer.add_account(mail_user)
    smtp = open_smtp(smtp_settings(peer, mail_test_ca), password_of(mail_user), timeout=QUICK)
    smtp.quit()
    assert b"STARTTLS" not in peer.transcript
    assert b"AUTH PLAIN" in peer.transcript


def test_smtp_login_mechanism_when_plain_is_not_offered(
    make_smtp_peer: Callable[..., SmtpPeer], mail_test_ca: trustme.CA, dovecot: Dovecot
) -> None:
    # Microsoft 365 offers LOGIN and XOAUTH2 only; the password may be any UTF-8 text.
    user = dovecot.create_user(password="Grüße-🙂-password")
    peer = make_smtp_peer(tls=SmtpTls.STARTTLS, auth_required=True, excluded_mechanisms=("PLAIN",))
    peer.add_account(user)
    open_smtp(smtp_settings(peer, mail_test_ca), password_of(user), timeout=QUICK).quit()
    assert b"AUTH LOGIN" in peer.transcript


@pytest.mark.parametrize("mechanism", list(OAuth2Mechanism))
def test_smtp_oauth2(
    smtp_peer_requiring_auth: SmtpPeer,
    mail_test_ca: trustme.CA,
    mail_user: MailUser,
    oauth_tokens: TokenIntrospection,
    mechanism: OAuth2Mechanism,
) -> None:
    token = oauth_tokens.issue(mail_user.name)
    credentials = OAuth2Credentials(username=mail_user.name, access_token=token, mechanism=mechanism)
    open_smtp(smtp_settings(smtp_peer_requiring_auth, mail_test_ca), credentials, timeout=QUICK).quit()
    oauth_tokens.revoke(token)
    with pytest.raises(AuthenticationFailed) as failure:
        open_smtp(smtp_settings(smtp_peer_requiring_auth, mail_test_ca), credentials, timeout=QUICK)
    assert "535" in str(failure.value)


def test_smtp_wrong_password_is_authentication_failed(smtp_peer: SmtpPeer, mail_test_ca: trustme.CA, mail_user: MailUser) -> None:
    smtp_peer.add_account(mail_user)
    with pytest.raises(AuthenticationFailed) as failure:
        open_smtp(smtp_settings(smtp_peer, mail_test_ca), PasswordCredentials(username=mail_user.name, password="wrong"), timeout=QUICK)
    assert "535" in str(failure.value)


def test_r49_smtp_untrusted_certificate_and_name_mismatch(
    make_smtp_peer: Callable[..., SmtpPeer], mail_test_ca: trustme.CA, mail_user: MailUser
) -> None:
    for tls in (SmtpTls.STARTTLS, SmtpTls.IMPLICIT):
        untrusted = make_smtp_peer(tls=tls, ca=trustme.CA())
        with pytest.raises(TlsUntrusted):
            open_smtp(smtp_settings(untrusted, mail_test_ca), password_of(mail_user), timeout=QUICK)
        assert b"AUTH" not in untrusted.transcript
        trusted = make_smtp_peer(tls=tls)
        with pytest.raises(TlsNameMismatch):
            open_smtp(smtp_settings(trusted, mail_test_ca, host="127.0.0.1"), password_of(mail_user), timeout=QUICK)
        assert b"AUTH" not in trusted.transcript


def test_r49_smtp_without_starttls_aborts_before_auth(
    make_smtp_peer: Callable[..., SmtpPeer], mail_test_ca: trustme.CA, mail_user: MailUser
) -> None:
    # The peer offers AUTH in plaintext, as a downgrading attacker would.
    plaintext = make_smtp_peer(tls=SmtpTls.NONE)
    plaintext.add_account(mail_user)
    with pytest.raises(StartTlsUnavailable) as failure:
        open_smtp(smtp_settings(plaintext, mail_test_ca), password_of(mail_user), timeout=QUICK)
    assert failure.value.code == "starttls_unavailable"
    transcript = plaintext.transcript
    assert b"EHLO" in transcript.upper()
    assert b"AUTH" not in transcript.upper()
    assert mail_user.password.encode() not in transcript
    assert base64.b64encode(b"\0" + mail_user.name.encode() + b"\0" + mail_user.password.encode()) not in transcript


def test_smtp_insecure_plaintext_works_on_loopback(
    make_smtp_peer: Callable[..., SmtpPeer], mail_test_ca: trustme.CA, mail_user: MailUser
) -> None:
    plaintext = make_smtp_peer(tls=SmtpTls.NONE, auth_required=True)
    plaintext.add_account(mail_user)
    smtp = open_smtp(smtp_settings(plaintext, mail_test_ca, tls=TlsMode.INSECURE_PLAINTEXT), password_of(mail_user), timeout=QUICK)
    smtp.quit()
    assert b"AUTH PLAIN" in plaintext.transcript


def test_smtp_client_talking_to_an_imap_server_is_a_protocol_error(dovecot: Dovecot, mail_user: MailUser) -> None:
    with pytest.raises(ProtocolError):
        open_smtp(imap_starttls(dovecot), password_of(mail_user), timeout=QUICK)


# --- the connection test shown when a member saves a mailbox -------------------------------------
def test_connection_reports_both_servers_and_the_sync_capabilities(
    dovecot: Dovecot, smtp_peer_requiring_auth: SmtpPeer, mail_test_ca: trustme.CA, mail_user: MailUser
) -> None:
    smtp_peer_requiring_auth.add_account(mail_user)
    servers = MailServers(imap=imaps(dovecot), smtp=smtp_settings(smtp_peer_requiring_auth, mail_test_ca))
    report = connection.check_connection(servers, password_of(mail_user), timeout=QUICK)
    assert report.ok
    assert {"IDLE", "CONDSTORE", "QRESYNC", "SPECIAL-USE"} <= report.imap.capabilities


def test_connection_reports_each_failure_separately(
    dovecot: Dovecot, smtp_peer_requiring_auth: SmtpPeer, mail_test_ca: trustme.CA, mail_user: MailUser
) -> None:
    smtp_peer_requiring_auth.add_account(mail_user)
    servers = MailServers(imap=imaps(dovecot, host="127.0.0.1"), smtp=smtp_settings(smtp_peer_requiring_auth, mail_test_ca))
    report = connection.check_connection(servers, password_of(mail_user), timeout=QUICK)
    assert not report.ok
    assert isinstance(report.imap.error, TlsNameMismatch)
    assert report.smtp.ok


# --- settings and credentials --------------------------------------------------------------------
def test_r33_credentials_with_line_breaks_are_refused() -> None:
    with pytest.raises(UnsafeProtocolValue):
        PasswordCredentials(username='bob" \r\nA1 DELETE INBOX', password="secret")
    with pytest.raises(UnsafeProtocolValue):
        PasswordCredentials(username="bob", password="secret\r\nA2 DELETE INBOX")
    with pytest.raises(UnsafeProtocolValue):
        OAuth2Credentials(username="bob\x01auth=Bearer stolen", access_token="abc")
    with pytest.raises(UnsafeProtocolValue):
        OAuth2Credentials(username="bob", access_token="abc\x01host=evil")


def test_secrets_stay_out_of_reprs() -> None:
    assert "hunter2" not in repr(PasswordCredentials(username="bob", password="hunter2"))
    assert "token-value" not in repr(OAuth2Credentials(username="bob", access_token="token-value"))


def test_server_settings_are_validated(mail_test_ca: trustme.CA) -> None:
    with pytest.raises(ValueError, match="port"):
        ServerSettings(host="imap.example.com", port=0, tls=TlsMode.IMPLICIT)
    with pytest.raises(ValueError, match="server name"):
        ServerSettings(host="imap.example.com\r\nx", port=993, tls=TlsMode.IMPLICIT)
    with pytest.raises(ValueError, match="PEM"):
        ServerSettings(host="imap.example.com", port=993, tls=TlsMode.IMPLICIT, private_ca_pem="not a certificate")
    ServerSettings(host="imap.example.com", port=993, tls=TlsMode.IMPLICIT, private_ca_pem=mail_test_ca.cert_pem.bytes().decode())


# --- R49: no TLS call in Postroom goes without a verifying context --------------------------------
TLS_CALLS = {"IMAP4_SSL": "ssl_context", "SMTP_SSL": "context", "starttls": None, "wrap_socket": "server_hostname"}


def _unverified_tls_calls(source: str) -> list[int]:
    findings = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        keywords = {keyword.arg for keyword in node.keywords}
        if name in TLS_CALLS:
            required = TLS_CALLS[name] or ("ssl_context" if "ssl_context" in keywords else "context")
            if required not in keywords:
                findings.append(node.lineno)
        if name == "IMAPClient":
            encrypted = not any(k.arg == "ssl" and isinstance(k.value, ast.Constant) and k.value.value is False for k in node.keywords)
            if encrypted and "ssl_context" not in keywords:
                findings.append(node.lineno)
    return findings


def test_r49_every_tls_call_passes_a_verifying_context() -> None:
    assert _unverified_tls_calls("IMAPClient('h')\nsmtp.starttls()\nsmtplib.SMTP_SSL('h')\n") == [1, 2, 3]
    package = Path(connection.__file__).resolve().parents[1]
    offenders = {
        str(path.relative_to(package)): lines
        for path in package.rglob("*.py")
        if "tests" not in path.parts and (lines := _unverified_tls_calls(path.read_text()))
    }
    assert offenders == {}
