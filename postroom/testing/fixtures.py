"""Pytest fixtures for real mail peers: a session-wide Dovecot, per-test mail users, aiosmtpd
peers, and an OAuth2 token-introspection endpoint shared by both.

Registered for the whole suite from ``postroom/conftest.py``. The Dovecot server is started
once per test session (per xdist worker) and stopped at the end even when tests fail; tests
stay independent by each creating their own users, hence their own mailboxes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trustme

from postroom.testing.dovecot import Dovecot, MailUser, TokenIntrospection, dovecot_available
from postroom.testing.smtp import SmtpPeer, SmtpTls
from postroom.testing.web_peers import ConnectionCounter, RemoteSite


@pytest.fixture(scope="session")
def mail_test_ca() -> trustme.CA:
    """The test CA that issues the certificates of every mail peer in the session."""
    return trustme.CA()


@pytest.fixture(scope="session")
def oauth_tokens() -> Iterator[TokenIntrospection]:
    """Issue (``issue(username)``) and revoke OAuth2 access tokens honoured by Dovecot and SMTP peers."""
    introspection = TokenIntrospection()
    introspection.start()
    yield introspection
    introspection.stop()


@pytest.fixture(scope="session")
def dovecot(mail_test_ca: trustme.CA, oauth_tokens: TokenIntrospection) -> Iterator[Dovecot]:
    if not dovecot_available():
        pytest.skip("Dovecot is not installed (apt-get install dovecot-imapd; scripts/test does it)")
    server = Dovecot(ca=mail_test_ca, introspection=oauth_tokens)
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def basic_dovecot(mail_test_ca: trustme.CA, oauth_tokens: TokenIntrospection) -> Iterator[Dovecot]:
    """A second, plainer Dovecot: no QRESYNC, and special-use folders only once created."""
    if not dovecot_available():
        pytest.skip("Dovecot is not installed (apt-get install dovecot-imapd; scripts/test does it)")
    server = Dovecot(ca=mail_test_ca, introspection=oauth_tokens, basic=True)
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def mail_user(dovecot: Dovecot) -> Iterator[MailUser]:
    """A fresh IMAP account on the session's Dovecot, with the special-use folders; the server
    is started again if an earlier test stopped it."""
    if not dovecot.running:
        dovecot.start()
    yield dovecot.create_user()
    if not dovecot.running:
        dovecot.start()


@pytest.fixture
def make_smtp_peer(mail_test_ca: trustme.CA, oauth_tokens: TokenIntrospection) -> Iterator[Callable[..., SmtpPeer]]:
    """``make_smtp_peer(tls=..., auth_required=..., ca=..., excluded_mechanisms=...)`` starts an
    SMTP peer that is stopped after the test."""
    peers: list[SmtpPeer] = []

    def make(**options: Any) -> SmtpPeer:
        options.setdefault("ca", mail_test_ca)
        options.setdefault("tokens", oauth_tokens)
        peer = SmtpPeer(**options)
        peer.start()
        peers.append(peer)
        return peer

    yield make
    for peer in peers:
        peer.stop()


@pytest.fixture
def smtp_peer(make_smtp_peer: Callable[..., SmtpPeer]) -> SmtpPeer:
    """STARTTLS with the test CA; AUTH offered after STARTTLS but not required."""
    return make_smtp_peer(tls=SmtpTls.STARTTLS)


@pytest.fixture
def smtp_peer_requiring_auth(make_smtp_peer: Callable[..., SmtpPeer]) -> SmtpPeer:
    """STARTTLS with the test CA; mail is accepted only after AUTH."""
    return make_smtp_peer(tls=SmtpTls.STARTTLS, auth_required=True)


# --- HTTP peers for server-side fetching (postroom.testing.web_peers) ----------------------------
@pytest.fixture
def connection_counter() -> Iterator[ConnectionCounter]:
    """Counts TCP connections to one loopback port (IPv4 and IPv6): what nothing may reach."""
    counter = ConnectionCounter()
    yield counter
    counter.stop()


@pytest.fixture
def remote_site() -> Iterator[RemoteSite]:
    """A sender's web server on 127.0.0.1 with per-path answers and a log of requests."""
    site = RemoteSite()
    yield site
    site.stop()


@pytest.fixture
def fetchable_remote_site(remote_site: RemoteSite, settings: Any) -> RemoteSite:
    """``remote_site``, reachable by ``postroom.core.fetch`` through the test-only loopback port
    allowlist (which the production settings cannot enable)."""
    settings.POSTROOM_FETCH_LOOPBACK_TEST_PORTS = frozenset({remote_site.port})
    return remote_site
