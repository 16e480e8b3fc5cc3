"""A real SMTP peer for tests: aiosmtpd on loopback, with STARTTLS or implicit TLS from a test CA,
optional AUTH (PLAIN, LOGIN, XOAUTH2, OAUTHBEARER), and a capture of everything the client sent.

``transcript`` holds every byte the client sent, after TLS decryption, so a test can prove what
a client did *not* send (no AUTH command before STARTTLS, no password on the wire).
"""

from __future__ import annotations

import base64
import binascii
import json
import ssl
import threading
import warnings
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from postroom.testing.dovecot import SERVER_NAME, MailUser, TokenIntrospection, free_port

OAUTH_MECHANISMS = ("XOAUTH2", "OAUTHBEARER")


class SmtpTls(StrEnum):
    STARTTLS = "starttls"
    IMPLICIT = "implicit"
    NONE = "none"  # no TLS at all: what a downgrading attacker or a misconfigured server offers


@dataclass(frozen=True)
class ReceivedMessage:
    mail_from: str
    recipients: tuple[str, ...]
    content: bytes
    authenticated_as: str | None


class _CapturingSMTP(SMTP):
    def __init__(self, peer: SmtpPeer, *args: Any, **kwargs: Any) -> None:
        with warnings.catch_warnings():
            # Raised for AUTH without STARTTLS, which these peers do on purpose (see SmtpPeer).
            warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
            super().__init__(*args, **kwargs)
        self._peer = peer

    def data_received(self, data: bytes) -> None:
        # Called with plaintext both before and after STARTTLS (aiosmtpd stacks the TLS
        # protocol under this one), so the transcript shows what the client really sent.
        self._peer._record(data)
        super().data_received(data)


class _Controller(Controller):
    def __init__(self, peer: SmtpPeer, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._peer = peer

    def factory(self) -> SMTP:
        return _CapturingSMTP(self._peer, self.handler, **self.SMTP_kwargs)


def _bearer_token(fields: list[bytes]) -> str:
    for item in fields:
        if item.startswith(b"auth=Bearer "):
            return item.removeprefix(b"auth=Bearer ").decode("ascii", "replace")
    return ""


class _Handler:
    def __init__(self, peer: SmtpPeer) -> None:
        self._peer = peer

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 (the name aiosmtpd looks up)
        content = envelope.original_content or b""
        login = session.auth_data.login if isinstance(session.auth_data, LoginPassword) else session.auth_data
        with self._peer._arrived:
            self._peer.messages.append(
                ReceivedMessage(
                    mail_from=envelope.mail_from or "",
                    recipients=tuple(envelope.rcpt_tos),
                    content=content,
                    authenticated_as=login.decode() if isinstance(login, bytes) else login,
                )
            )
            self._peer._arrived.notify_all()
        return "250 2.0.0 Message accepted"

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:  # noqa: N802 (the name aiosmtpd looks up)
        # "user=<name>\x01auth=Bearer <token>\x01\x01"
        payload = await self._initial_response(server, args)
        fields = payload.split(b"\x01")
        username = fields[0].removeprefix(b"user=").decode("utf-8", "replace")
        return await self._check_token(server, username, _bearer_token(fields[1:]))

    async def auth_OAUTHBEARER(self, server: SMTP, args: list[str]) -> AuthResult:  # noqa: N802 (the name aiosmtpd looks up)
        # "n,a=<name>,\x01host=...\x01port=...\x01auth=Bearer <token>\x01\x01" (RFC 7628)
        payload = await self._initial_response(server, args)
        fields = payload.split(b"\x01")
        gs2_header = fields[0].decode("utf-8", "replace").split(",")
        username = next((part[2:] for part in gs2_header if part.startswith("a=")), "")
        username = username.replace("=2C", ",").replace("=3D", "=")
        return await self._check_token(server, username, _bearer_token(fields[1:]))

    async def _initial_response(self, server: SMTP, args: list[str]) -> bytes:
        if len(args) > 1:
            try:
                return base64.b64decode(args[1], validate=True)
            except binascii.Error:
                return b""
        answer = await server.challenge_auth("")
        return answer if isinstance(answer, bytes) else b""

    async def _check_token(self, server: SMTP, username: str, token: str) -> AuthResult:
        tokens = self._peer.tokens
        answer = tokens.introspect(token) if tokens else {"active": False}
        if answer.get("active") is True and answer.get("username") == username:
            return AuthResult(success=True, auth_data=username)
        # As Gmail does: an error challenge, which the client must answer before the 535.
        error = json.dumps({"status": "401", "schemes": "bearer"}).encode()
        await server.challenge_auth(error)
        return AuthResult(success=False, handled=False)


class SmtpPeer:
    """An SMTP server on 127.0.0.1 (reached as ``localhost``) for one test."""

    def __init__(
        self,
        *,
        ca: trustme.CA,
        tls: SmtpTls = SmtpTls.STARTTLS,
        auth_required: bool = False,
        tokens: TokenIntrospection | None = None,
        excluded_mechanisms: tuple[str, ...] = (),
    ) -> None:
        self.host = SERVER_NAME
        self.port = free_port()
        self.tls = tls
        self.tokens = tokens
        self.messages: list[ReceivedMessage] = []
        self._arrived = threading.Condition()
        self._transcript = bytearray()
        self._transcript_lock = threading.Lock()
        self._accounts: dict[str, str] = {}
        server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(SERVER_NAME).configure_cert(server_context)
        excluded = set(excluded_mechanisms)
        if tokens is None:
            excluded.update(OAUTH_MECHANISMS)
        self._controller = _Controller(
            self,
            _Handler(self),
            hostname="127.0.0.1",
            port=self.port,
            server_hostname=SERVER_NAME,
            ssl_context=server_context if tls is SmtpTls.IMPLICIT else None,
            tls_context=server_context if tls is SmtpTls.STARTTLS else None,
            require_starttls=tls is SmtpTls.STARTTLS,
            auth_required=auth_required,
            # aiosmtpd counts only STARTTLS as TLS. With implicit TLS everything is encrypted
            # anyway; without TLS the peer still offers AUTH, as a downgrading attacker would,
            # so that a test can prove the client does not take the bait.
            auth_require_tls=tls is SmtpTls.STARTTLS,
            auth_exclude_mechanism=sorted(excluded),
            authenticator=self._authenticate,
        )

    def start(self) -> None:
        self._controller.start()
        with self._transcript_lock:
            self._transcript.clear()  # forget the controller's own start-up probe

    def stop(self) -> None:
        self._controller.stop()

    def wait_for_messages(self, count: int, *, timeout: float) -> list[ReceivedMessage]:
        """The messages received, once there are at least ``count`` (woken by each arrival);
        AssertionError after ``timeout`` seconds."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.messages) >= count, timeout=timeout):
                raise AssertionError(f"{len(self.messages)} of {count} messages arrived within {timeout} s")
            return list(self.messages)

    def add_account(self, user: MailUser) -> None:
        self._accounts[user.name] = user.password

    @property
    def transcript(self) -> bytes:
        with self._transcript_lock:
            return bytes(self._transcript)

    def _record(self, data: bytes) -> None:
        with self._transcript_lock:
            self._transcript.extend(data)

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            username = auth_data.login.decode("utf-8", "replace")
            expected = self._accounts.get(username)
            if expected is not None and auth_data.password == expected.encode():
                return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)
