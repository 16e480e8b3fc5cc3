"""A throwaway Dovecot 2.3 IMAP server for the test suite.

Each test session starts its own Dovecot from a configuration file written here (the system's
``/etc/dovecot`` is never read), listening on 127.0.0.1 on ports picked at run time, with its
base, state and mail directories in a temporary folder that is removed afterwards. Clients
reach it as ``localhost``: the server certificate, issued by a test CA made with trustme,
names only ``localhost`` so that a connection to ``127.0.0.1`` is a real name mismatch.

Users live in a passwd-file that Dovecot re-reads when it changes, so each test creates its
own users (and therefore its own mailboxes) while the server runs once per session. XOAUTH2
and OAUTHBEARER are checked by Dovecot's oauth2 passdb against a token-introspection endpoint
served from this process (:class:`TokenIntrospection`), where tests issue and revoke tokens.

Dovecot refuses to serve mail owned by uid 0: when the tests run as root, mail is owned by
``nobody`` and Dovecot's own processes run as the Debian package's ``dovecot``/``dovenull``.

A second flavour, ``Dovecot(..., basic=True)``, stands for a plainer server: it does not offer
QRESYNC (CONDSTORE only), and its special-use folders exist only once a client creates them,
"Archive" or "Archives" both being \\Archive (as a provider whose special-use attribute follows a
renamed folder).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import trustme
from imapclient import IMAPClient

DOVECOT_BINARY = "/usr/sbin/dovecot"
DOVEADM_BINARY = "/usr/bin/doveadm"
SERVER_NAME = "localhost"
MAIL_DOMAIN = "postroom.test"
# The folders the sync engine finds by SPECIAL-USE (RFC 6154) rather than by name.
SPECIAL_USE_FOLDERS = {"Sent": "\\Sent", "Archive": "\\Archive", "Trash": "\\Trash", "Junk": "\\Junk", "Drafts": "\\Drafts"}
START_TIMEOUT_SECONDS = 20.0
# What Dovecot 2.3 offers after sign-in, less QRESYNC: the ``basic`` flavour's capabilities.
BASIC_CAPABILITIES = (
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES THREAD=REFS "
    "THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED "
    "I18NLEVEL=1 CONDSTORE ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SPECIAL-USE"
)


def dovecot_available() -> bool:
    return os.access(DOVECOT_BINARY, os.X_OK)


def free_port() -> int:
    """A TCP port that nothing listens on right now (the OS picks it; another process could
    still take it before we bind, which is unlikely enough on loopback)."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` different such ports. Each probe stays bound until all are picked: the OS may
    hand out a port again as soon as its probe closes, and two ``free_port()`` calls in a row
    once gave Dovecot's two listeners the same port (CI: "duplicate listener")."""
    with contextlib.ExitStack() as stack:
        probes = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]


@dataclass(frozen=True)
class MailUser:
    name: str
    password: str = field(repr=False)

    @property
    def address(self) -> str:
        return f"{self.name}@{MAIL_DOMAIN}"


class TokenIntrospection:
    """An OAuth2 token-introspection endpoint (RFC 7662) on loopback for Dovecot's oauth2 passdb.

    Dovecot POSTs ``token=...``; the answer says whether the token is active and whose it is.
    Dovecot then accepts the login only if that username equals the one the client sent. A token
    issued with a lifetime is inactive once it has passed, as a provider's expired token is;
    ``signed_in`` lists the tokens Dovecot asked about, one per sign-in, in order.
    """

    def __init__(self) -> None:
        self._tokens: dict[str, tuple[str, float | None]] = {}  # token -> (username, expiry on the monotonic clock)
        self.signed_in: list[str] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, name="token-introspection", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/introspect"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def issue(self, username: str, *, lifetime_seconds: float | None = None) -> str:
        token = secrets.token_urlsafe(32)
        expiry = time.monotonic() + lifetime_seconds if lifetime_seconds is not None else None
        with self._lock:
            self._tokens[token] = (username, expiry)
        return token

    def revoke(self, token: str) -> None:
        with self._lock:
            self._tokens.pop(token, None)

    def introspect(self, token: str) -> dict[str, object]:
        with self._lock:
            self.signed_in.append(token)
            username, expiry = self._tokens.get(token, (None, None))
        if username is None or (expiry is not None and time.monotonic() >= expiry):
            return {"active": False}
        return {"active": True, "username": username}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        introspection = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode("ascii", "replace"))
                answer = json.dumps(introspection.introspect(form.get("token", [""])[0])).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                """Keep the test output quiet."""

        return Handler


def _run_as_root() -> bool:
    return os.geteuid() == 0


def _mail_owner() -> pwd.struct_passwd:
    """Who owns the mail: ``nobody`` when we are root (Dovecot refuses uid 0), else ourselves."""
    return pwd.getpwnam("nobody") if _run_as_root() else pwd.getpwuid(os.geteuid())


class Dovecot:
    """One Dovecot instance: ``start()``, ``stop()``, ``restart()``, users, delivery."""

    def __init__(self, *, ca: trustme.CA, introspection: TokenIntrospection | None = None, basic: bool = False) -> None:
        self.basic = basic
        self.root = Path(tempfile.mkdtemp(prefix="postroom-dovecot-"))
        # Dovecot's unprivileged processes (and the mail owner) must reach files inside.
        self.root.chmod(0o755)
        self.imap_port, self.imaps_port = free_ports(2)
        self.host = SERVER_NAME
        self.ca = ca
        self.ca_pem = ca.cert_pem.bytes().decode("ascii")
        self.introspection = introspection
        self._process: subprocess.Popen[bytes] | None = None
        self._users = self.root / "users"
        self._write_files()

    # --- files ---------------------------------------------------------------------------------
    def _write_files(self) -> None:
        owner = _mail_owner()
        mail_user, mail_uid, mail_gid = owner.pw_name, owner.pw_uid, owner.pw_gid
        self._mail_uid, self._mail_gid = mail_uid, mail_gid
        tls = self.root / "tls"
        tls.mkdir()
        certificate = self.ca.issue_cert(SERVER_NAME)
        certificate.private_key_pem.write_to_path(str(tls / "server.key"))
        certificate.cert_chain_pems[0].write_to_path(str(tls / "server.pem"))
        for pem in certificate.cert_chain_pems[1:]:
            pem.write_to_path(str(tls / "server.pem"), append=True)
        mail = self.root / "mail"
        mail.mkdir()
        os.chown(mail, mail_uid, mail_gid)
        self._users.mkdir()
        internal_user = "dovecot" if _run_as_root() else mail_user
        login_user = "dovenull" if _run_as_root() else mail_user
        mechanisms = "plain login xoauth2 oauthbearer" if self.introspection else "plain login"
        oauth2_passdb = ""
        if self.introspection:
            (self.root / "oauth2.conf.ext").write_text(
                "introspection_mode = post\n"
                f"introspection_url = {self.introspection.url}\n"
                "force_introspection = yes\n"
                "username_attribute = username\n"
                "active_attribute = active\n"
                "active_value = true\n"
            )
            oauth2_passdb = f"passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {self.root}/oauth2.conf.ext\n}}\n"
        if self.basic:
            special_use = {**SPECIAL_USE_FOLDERS, "Archives": "\\Archive"}
            folders = "".join(f"  mailbox {name} {{\n    special_use = {flag}\n  }}\n" for name, flag in special_use.items())
        else:
            folders = "".join(
                f"  mailbox {name} {{\n    special_use = {flag}\n    auto = subscribe\n  }}\n" for name, flag in SPECIAL_USE_FOLDERS.items()
            )
        capabilities = f"  imap_capability = {BASIC_CAPABILITIES}\n" if self.basic else ""
        self.config_file = self.root / "dovecot.conf"
        self.config_file.write_text(
            f"""# Written by postroom.testing.dovecot for one test session.
base_dir = {self.root}/run
state_dir = {self.root}/state
instance_name = postroom-test-{self.imaps_port}
listen = 127.0.0.1
protocols = imap
log_path = {self.root}/dovecot.log
default_internal_user = {internal_user}
default_login_user = {login_user}
first_valid_uid = {mail_uid}
last_valid_uid = {mail_uid}
first_valid_gid = {mail_gid}
last_valid_gid = {mail_gid}
mail_location = maildir:~/Maildir
ssl = required
ssl_cert = <{tls}/server.pem
ssl_key = <{tls}/server.key
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_failure_delay = 0
auth_mechanisms = {mechanisms}
passdb {{
  driver = passwd-file
  mechanisms = plain login
  args = scheme=PLAIN username_format=%u {self._users}/%u
}}
{oauth2_passdb}userdb {{
  driver = passwd-file
  args = username_format=%u {self._users}/%u
}}
namespace inbox {{
  inbox = yes
  separator = /
{folders}}}
protocol imap {{
  mail_max_userip_connections = 50
{capabilities}}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.imaps_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
  # Failed sign-ins are what many tests do on purpose: no growing delay for the next one.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""
        )

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        # -F keeps the master in the foreground, so it is our child and stops with a signal.
        self._process = subprocess.Popen(  # noqa: S603 (fixed binary, our own config)
            [DOVECOT_BINARY, "-F", "-c", str(self.config_file)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group, so stop() can end every child
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not self._greets():
            if self._process.poll() is not None:
                error = self._process.stderr.read().decode(errors="replace") if self._process.stderr else ""
                raise RuntimeError(f"Dovecot exited with {self._process.returncode}: {error}\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Dovecot did not answer within {START_TIMEOUT_SECONDS} s:\n{self.log()}")
            time.sleep(0.05)

    def _greets(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.imap_port), timeout=1) as connection:
                return connection.recv(4).startswith(b"* OK")
        except OSError:
            return False

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        """Stop the server (its mail stays): clients see their connections drop."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        # Logged-in imap processes outlive the master; a restart must cut them off as a real
        # server restart does.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGKILL)
        if self._process.stderr:
            self._process.stderr.close()
        self._process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop everything and delete the mail; the end of the session."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        try:
            return (self.root / "dovecot.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # --- users and mail ------------------------------------------------------------------------
    def create_user(self, prefix: str = "user", *, password: str | None = None) -> MailUser:
        if not prefix.isascii() or not prefix.replace("-", "").isalnum():
            raise ValueError("a user name prefix is made of ASCII letters, digits and hyphens")
        user = MailUser(name=f"{prefix}-{secrets.token_hex(4)}", password=password or secrets.token_urlsafe(18))
        if any(character in user.password for character in ":\r\n"):
            raise ValueError("a passwd-file password cannot contain ':' or a line break")
        # One passwd-file per user: Dovecot looks at a changed file at most once a second, but
        # reads a file it has not seen before at once.
        # name:password:uid:gid:gecos:home:shell
        (self._users / user.name).write_text(f"{user.name}:{{PLAIN}}{user.password}:{self._mail_uid}:{self._mail_gid}::{self.root}/mail/{user.name}::\n")
        return user

    def client_context(self) -> ssl.SSLContext:
        """A verifying TLS context that trusts this server's test CA (and nothing else)."""
        return ssl.create_default_context(cadata=self.ca_pem)

    @contextlib.contextmanager
    def connect(self, user: MailUser) -> Iterator[IMAPClient]:
        """A logged-in IMAP session as ``user``: the tests' own view of the server."""
        client = IMAPClient(self.host, port=self.imaps_port, ssl=True, ssl_context=self.client_context(), timeout=15)
        try:
            client.login(user.name, user.password)
            yield client
        finally:
            with contextlib.suppress(Exception):
                client.logout()

    def append(
        self,
        user: MailUser,
        message: bytes,
        *,
        folder: str = "INBOX",
        flags: Iterable[str] = (),
        received_at: datetime | None = None,
    ) -> int:
        """Deliver ``message`` into ``folder`` over IMAP (as another mail client would) and
        return its UID."""
        with self.connect(user) as client:
            response = client.append(folder, message, flags=tuple(flags), msg_time=received_at)
        # Dovecot answers "[APPENDUID <uidvalidity> <uid>] Append completed." (UIDPLUS).
        code = response.decode() if isinstance(response, bytes) else str(response)
        return int(code.split("]")[0].split()[-1])

    def doveadm(self, *arguments: str) -> str:
        """Run ``doveadm`` against this instance (e.g. to inspect a mailbox without IMAP)."""
        completed = subprocess.run(  # noqa: S603 (fixed binary, arguments from the tests)
            [DOVEADM_BINARY, "-c", str(self.config_file), *arguments],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if completed.returncode != 0:
            raise RuntimeError(f"doveadm {' '.join(arguments)} failed: {completed.stderr.strip()}")
        return completed.stdout

    def folders(self, user: MailUser) -> list[str]:
        return self.doveadm("mailbox", "list", "-u", user.name).splitlines()
