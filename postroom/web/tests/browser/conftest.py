"""A real Postroom, a real SMTP peer and a real Chromium for the browser tests.

One ``postroom run`` process per test session (web server and task worker; a throwaway data
directory, and SQLite there, or a fresh PostgreSQL database on the PostgreSQL run) sends its system mail over SMTP to an aiosmtpd peer on loopback, so
verification and reset links travel the way they do in production. Each test gets fresh browser
contexts. Every page any test opens is watched for Content-Security-Policy violations and script
errors, and the server log for CSP reports; the session fails if there is any (SECURITY.md R51).

The first organization and its owner are created through the real setup page, with the one-time
link the server prints to its console.
"""

from __future__ import annotations

import email
import email.policy
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from postroom.core.tests.processes import product_database

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
START_TIMEOUT = 90
MAIL_TIMEOUT = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- SMTP peer -------------------------------------------------------------------------------------
@dataclass
class Message:
    recipients: list[str]
    subject: str
    text: str

    def links(self) -> list[str]:
        return re.findall(r"https?://[^\s<>\"']+", self.text)


class Mailbox:
    """Collects what the server sends; tests wait for the message they expect."""

    def __init__(self) -> None:
        self.port = 0
        self.messages: list[Message] = []
        self._arrived = threading.Condition()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = parsed.get_body(preferencelist=("plain", "html"))
        text = body.get_content() if body is not None else ""
        with self._arrived:
            self.messages.append(Message(recipients=[str(r).lower() for r in envelope.rcpt_tos], subject=str(parsed["subject"]), text=text))
            self._arrived.notify_all()
        return "250 Message accepted for delivery"

    def wait_for(self, *, to: str, subject: str = "", after: int = 0) -> Message:
        """The first message to ``to`` whose subject contains ``subject``, among those after index ``after``."""
        deadline = time.monotonic() + MAIL_TIMEOUT
        with self._arrived:
            while True:
                for message in self.messages[after:]:
                    if to.lower() in message.recipients and subject.lower() in message.subject.lower():
                        return message
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [(m.recipients, m.subject) for m in self.messages]
                    raise AssertionError(f"no message to {to} about {subject!r} within {MAIL_TIMEOUT} s; received: {seen}")
                self._arrived.wait(remaining)

    def count(self) -> int:
        return len(self.messages)


@pytest.fixture(scope="session")
def mailbox() -> Iterator[Mailbox]:
    from aiosmtpd.controller import Controller

    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    box.port = controller.port
    yield box
    controller.stop()


# --- The Postroom server ---------------------------------------------------------------------------
@dataclass
class Server:
    base_url: str
    log_path: Path
    environment: dict[str, str] = field(default_factory=dict)
    data_dir: Path | None = None

    def command(self, *arguments: str, stdin: str | None = None) -> str:
        """Run ``postroom <arguments>`` against this server's data (another process, as an
        operator would); its output, or AssertionError with it when it fails."""
        done = subprocess.run(
            [sys.executable, "-m", "postroom", *arguments],
            env=self.environment, cwd=self.log_path.parent, input=stdin, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"postroom {' '.join(arguments)} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def run_python(self, code: str) -> str:
        """Run ``code`` in ``postroom manage shell`` against the server's own database and keys
        (to put data in place the way sync would, without a mail server); its printed output."""
        completed = subprocess.run(
            [sys.executable, "-m", "postroom", "manage", "shell", "-c", code],
            env=self.environment, cwd=self.data_dir, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert completed.returncode == 0, completed.stderr[-3000:]
        return completed.stdout

    def setup_link(self) -> str:
        found = re.search(r"(http://\S+/setup/\?token=\S+)", self.log())
        assert found, "the server did not print a setup link"
        return found.group(1)


@pytest.fixture(scope="session")
def server(mailbox: Mailbox) -> Iterator[Server]:
    with product_database() as database_url:
        yield from _run_server(mailbox, database_url)


def _run_server(mailbox: Mailbox, database_url: str | None) -> Iterator[Server]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium); the browser tests need Debian's Chromium")
    data_dir = Path(tempfile.mkdtemp(prefix="postroom-browser-"))
    port = free_port()
    # "localhost", not 127.0.0.1: WebAuthn refuses an IP address as the relying party id.
    base_url = f"http://localhost:{port}"
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("POSTROOM_", "DJANGO_")) and key not in {"DATABASE_URL", "REDIS_URL"}}
    if database_url:
        environment["DATABASE_URL"] = database_url
    environment.update({
        "DJANGO_SETTINGS_MODULE": "postroom.settings",
        "POSTROOM_DATA_DIR": str(data_dir),
        "POSTROOM_PUBLIC_URL": base_url,
        "POSTROOM_SMTP_URL": f"smtp+insecure://127.0.0.1:{mailbox.port}",
        "POSTROOM_LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    })
    log_path = data_dir / "console.log"
    log_file = log_path.open("wb")
    process = subprocess.Popen([sys.executable, "-m", "postroom", "run", "--port", str(port)], env=environment, stdout=log_file, stderr=subprocess.STDOUT, cwd=data_dir)
    running = Server(base_url=base_url, log_path=log_path, environment=environment, data_dir=data_dir)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise AssertionError(f"postroom run exited with {process.returncode}:\n{running.log()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{base_url}/health", timeout=2):  # noqa: S310 (loopback)
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"postroom run did not answer within {START_TIMEOUT} s:\n{running.log()[-3000:]}") from None
                time.sleep(0.25)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log_file.close()
        violations = [line for line in running.log().splitlines() if "CSP violation" in line]
        shutil.rmtree(data_dir, ignore_errors=True)
    assert not violations, "the server received CSP violation reports:\n" + "\n".join(violations)


# --- Chromium --------------------------------------------------------------------------------------
@dataclass
class PageProblems:
    """CSP violations and uncaught script errors seen in any page of the session."""

    entries: list[str] = field(default_factory=list)

    def watch(self, page: Any) -> None:
        def on_console(message: Any) -> None:
            if message.type == "error" and "Content Security Policy" in message.text:
                self.entries.append(f"CSP on {page.url}: {message.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda error: self.entries.append(f"script error on {page.url}: {error}"))


@pytest.fixture(scope="session")
def page_problems() -> Iterator[PageProblems]:
    problems = PageProblems()
    yield problems
    assert not problems.entries, "pages reported problems:\n" + "\n".join(problems.entries)


@pytest.fixture(scope="session")
def browser(server: Server) -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright for Python is not installed (requirements/dev.txt)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Browsing:
    """Opens fresh, isolated browser contexts (one per person and device) for one test."""

    def __init__(self, browser: Any, server: Server, problems: PageProblems) -> None:
        self.browser = browser
        self.server = server
        self.problems = problems
        self.contexts: list[Any] = []

    def new_page(self, *, user_agent: str | None = None) -> Any:
        options: dict[str, Any] = {"base_url": self.server.base_url, "viewport": {"width": 1280, "height": 900}}
        if user_agent:
            options["user_agent"] = user_agent
        context = self.browser.new_context(**options)
        context.set_default_timeout(15_000)
        self.contexts.append(context)
        page = context.new_page()
        self.problems.watch(page)
        return page

    def close(self) -> None:
        for context in self.contexts:
            context.close()


@pytest.fixture
def browsing(browser: Any, server: Server, page_problems: PageProblems, owner: Person) -> Iterator[Browsing]:
    # Depends on the owner so that setup always comes first: once anyone has an account, the
    # setup page is gone.
    session = Browsing(browser, server, page_problems)
    yield session
    session.close()


# --- People ----------------------------------------------------------------------------------------
@dataclass
class Person:
    email: str
    password: str
    name: str = ""
    totp_secret: str = ""
    recovery_codes: list[str] = field(default_factory=list)
    used_codes: set[str] = field(default_factory=set)
    organization_slug: str = ""


def new_person(prefix: str) -> Person:
    token = secrets.token_hex(3)
    # Long, and nothing like the address or a common password: the validators must accept it.
    return Person(email=f"{prefix}-{token}@example.test", password=f"violet harbour {token} gravel kite", name=prefix.title())


@pytest.fixture(scope="session")
def owner(server: Server, browser: Any, page_problems: PageProblems) -> Person:
    """The first owner, created through the one-time setup link the console printed."""
    from postroom.web.tests.browser import flows

    person = Person(email="olivia@acme.test", password="amber lighthouse tundra whistle", name="Olivia Owner")
    context = browser.new_context(base_url=server.base_url)
    page = context.new_page()
    page_problems.watch(page)
    flows.complete_setup(page, setup_link=server.setup_link(), organization="Acme Support", person=person)
    members_link = page.locator("nav.sidebar a[href$='/members/']").first.get_attribute("href") or ""
    person.organization_slug = members_link.split("/")[2]
    context.close()
    return person
