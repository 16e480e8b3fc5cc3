"""SECURITY.md R27-R30 in Chromium: hostile mail delivered through Dovecot runs no script and
fetches nothing from the sender's hosts, before or after "Show images".

The hostile corpora of ``postroom/mime/tests/corpus`` (and plain-text payloads) are appended to
a real Dovecot mailbox, one message per payload, threaded into conversations of ten; the owner
connects that mailbox in the browser and the server's own sync service imports it. Every remote
reference points at a loopback listener that counts TCP connections (the browser's and the
server's: the image proxy must refuse loopback too), and every request the browser makes is
logged through ``context.route``: anything not for Postroom is logged and aborted.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any
from urllib.parse import urlsplit

import pytest
import trustme

from postroom.mime.tests.hostile import PLAIN_TEXT_PAYLOADS, corpus, with_canary
from postroom.testing.dovecot import Dovecot, MailUser
from postroom.testing.smtp import SmtpPeer, SmtpTls
from postroom.testing.web_peers import ConnectionCounter
from postroom.web.tests.browser import flows
from postroom.web.tests.browser.conftest import Browsing, Person

pytestmark = pytest.mark.browser

PER_CONVERSATION = 10
IMPORT_TIMEOUT = 120
_CONVERSATION_LINK = re.compile(r"/o/[\w-]+/conversations/[0-9a-f-]{36}/(\?.*)?$")


@dataclass
class Corpus:
    """What was delivered: conversation subjects with their number of messages."""

    conversations: dict[str, int] = field(default_factory=dict)
    remote_subjects: set[str] = field(default_factory=set)

    @property
    def messages(self) -> int:
        return sum(self.conversations.values())


@dataclass
class RequestLog:
    """Every request a browser context made, split into Postroom's and everybody else's."""

    origin: str
    ours: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)

    def watch(self, context: Any) -> None:
        def handle(route: Any) -> None:
            url = route.request.url
            parts = urlsplit(url)
            if f"{parts.scheme}://{parts.netloc}" == self.origin:
                self.ours.append(url)
                route.continue_()
            else:
                self.foreign.append(url)
                route.abort()

        context.route("**/*", handle)


def _message(subject: str, sender: str, body: str, *, html: bool, previous: str | None, sent_at: datetime) -> tuple[bytes, str]:
    message = EmailMessage()
    message_id = make_msgid(domain="sender.example")
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = "olivia@acme.test"
    message["Message-ID"] = message_id
    message["Date"] = format_datetime(sent_at)
    if previous:
        message["In-Reply-To"] = previous
        message["References"] = previous
    if html:
        message.set_content("This message has an HTML part.")
        message.add_alternative(body, subtype="html")
    else:
        message.set_content(body)
    return message.as_bytes(), message_id


def deliver_corpus(dovecot: Dovecot, user: MailUser, canary_host: str) -> Corpus:
    delivered = Corpus()
    groups: list[tuple[str, bool, list[str]]] = [
        ("xss", True, [with_canary(entry, canary_host) for entry in corpus("xss.txt")]),
        ("remote", True, [with_canary(entry, canary_host) for entry in corpus("remote.txt")]),
        ("plain", False, [with_canary(entry, canary_host) for entry in PLAIN_TEXT_PAYLOADS]),
    ]
    sent_at = datetime.now(UTC) - timedelta(days=2)
    with dovecot.connect(user) as client:
        for kind, html, payloads in groups:
            for start in range(0, len(payloads), PER_CONVERSATION):
                subject = f"Hostile {kind} {start // PER_CONVERSATION + 1}"
                # A hostile display name and subject travel with the first message of each.
                sender = '"<img src=x onerror=alert(1)>Dana" <dana@sender.example>'
                previous = None
                for payload in payloads[start : start + PER_CONVERSATION]:
                    sent_at += timedelta(minutes=1)
                    raw, previous = _message(subject, sender, payload, html=html, previous=previous, sent_at=sent_at)
                    client.append("INBOX", raw)
                delivered.conversations[subject] = len(payloads[start : start + PER_CONVERSATION])
                if kind == "remote":
                    delivered.remote_subjects.add(subject)
    return delivered


@pytest.fixture(scope="module")
def canary() -> Iterator[ConnectionCounter]:
    counter = ConnectionCounter()
    yield counter
    counter.stop()


@pytest.fixture(scope="module")
def hostile_mailbox(dovecot: Dovecot, mail_test_ca: trustme.CA, canary: ConnectionCounter) -> Iterator[tuple[MailUser, SmtpPeer, Corpus]]:
    user = dovecot.create_user("hostile")
    smtp = SmtpPeer(ca=mail_test_ca, tls=SmtpTls.IMPLICIT)
    smtp.add_account(user)
    smtp.start()
    delivered = deliver_corpus(dovecot, user, f"127.0.0.1:{canary.port}")
    yield user, smtp, delivered
    smtp.stop()


def connect_mailbox(page: Any, person: Person, dovecot: Dovecot, user: MailUser, smtp: SmtpPeer, *, name: str = "Hostile mail") -> None:
    page.goto(f"/o/{person.organization_slug}/mailboxes/connect/")
    fields = {
        "email_address": user.address, "name": name, "imap_host": dovecot.host, "imap_port": str(dovecot.imaps_port),
        "smtp_host": smtp.host, "smtp_port": str(smtp.port), "private_ca_pem": dovecot.ca_pem, "username": user.name,
        "password": user.password,
    }  # fmt: skip
    page.locator("summary", has_text="Private certificate authority").click()
    for name, value in fields.items():
        page.fill(f"[name={name}]", value)
    page.select_option("[name=imap_tls]", "implicit")
    page.select_option("[name=smtp_tls]", "implicit")
    page.select_option("[name=import_range]", "all")
    # Saving signs in to both servers first: give it more than a page load's time.
    with page.expect_navigation(timeout=60_000):
        page.get_by_role("button", name="Test and connect").click()
    assert "/mailboxes/connect/" not in page.url, page.locator(".alert-error, .field-error, .errorlist").all_inner_texts()


def conversation_links(page: Any, person: Person) -> dict[str, str]:
    page.goto(f"/o/{person.organization_slug}/conversations/")
    links: dict[str, str] = {}
    for link in page.locator("a.row-link").all():  # the inbox list's rows (conversations/markup.py)
        href = link.get_attribute("href") or ""
        if _CONVERSATION_LINK.search(href):
            links[link.locator(".row-subject").inner_text().strip()] = href
    return links


def shown_messages(page: Any) -> int:
    return int(page.locator(".message-html, .message-plain").count())


def wait_for_import(page: Any, person: Person, delivered: Corpus) -> dict[str, str]:
    """Conversation links by subject, once the sync service imported every message."""
    deadline = time.monotonic() + IMPORT_TIMEOUT
    while True:
        links = {subject: href for subject, href in conversation_links(page, person).items() if subject in delivered.conversations}
        if len(links) == len(delivered.conversations):
            complete = True
            for subject, href in links.items():
                page.goto(href)
                if shown_messages(page) < delivered.conversations[subject]:
                    complete = False
                    break
            if complete:
                return links
        if time.monotonic() > deadline:
            raise AssertionError(
                f"the import did not finish within {IMPORT_TIMEOUT} s: {len(links)} of {len(delivered.conversations)} conversations"
            )
        time.sleep(1)


def assert_nothing_ran(page: Any, dialogs: list[str], where: str) -> None:
    assert dialogs == [], f"{where}: dialogs {dialogs}"
    for frame in page.frames:
        assert frame.evaluate("() => typeof window.__xss") == "undefined", f"{where}: script ran in {frame.url}"
    for sandbox in page.locator("iframe.message-frame").evaluate_all("frames => frames.map(frame => frame.getAttribute('sandbox'))"):
        tokens = set((sandbox or "").split())
        assert sandbox is not None, where
        assert not tokens & {"allow-scripts", "allow-same-origin", "allow-top-navigation", "allow-forms"}, f"{where}: sandbox {sandbox}"


def test_r28_r29_hostile_mail_runs_no_script_and_fetches_only_from_postroom(
    browsing: Browsing, owner: Person, dovecot: Dovecot, hostile_mailbox: tuple[MailUser, SmtpPeer, Corpus], canary: ConnectionCounter
) -> None:
    user, smtp, delivered = hostile_mailbox
    page = browsing.new_page()
    requests = RequestLog(origin=browsing.server.base_url)
    requests.watch(page.context)
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    flows.sign_in(page, owner)
    connect_mailbox(page, owner, dovecot, user, smtp)
    links = wait_for_import(page, owner, delivered)

    # The list shows hostile subjects and names as text.
    page.goto(f"/o/{owner.organization_slug}/conversations/")
    assert_nothing_ran(page, dialogs, "the conversation list")

    # Every message, as its conversation shows it: nothing runs, nothing leaves.
    for subject, href in sorted(links.items()):
        page.goto(href)
        page.wait_for_load_state("load")
        assert shown_messages(page) == delivered.conversations[subject], subject
        assert_nothing_ran(page, dialogs, subject)
    assert requests.foreign == [], "requests to other hosts before consent:\n" + "\n".join(requests.foreign)
    assert not [url for url in requests.ours if "/images/proxy/" in url], "proxied images before consent"
    assert canary.count == 0

    # "Show images": the browser asks Postroom's proxy and nobody else. The proxy itself refuses
    # the loopback canary (production settings), so the canary still counts nothing at all.
    before = len(requests.ours)
    for subject in sorted(delivered.remote_subjects):
        page.goto(links[subject])
        show = page.locator(".images-notice a.show-images")
        if not show.count():
            continue  # nothing in this conversation could ever load (links, SVG, media...)
        show.first.click()
        page.wait_for_load_state("load")
        assert page.locator(".images-notice[data-images=shown]").count() >= 1, subject
        assert_nothing_ran(page, dialogs, f"{subject} with images")
        # Then every message of the conversation at once (the link shows one message's images).
        message_ids = [
            (frame.get_attribute("src") or "").split("/messages/")[1].split("/")[0] for frame in page.locator("iframe.message-frame").all()
        ]
        page.goto(links[subject] + "?" + "&".join(f"show_images={message_id}" for message_id in message_ids))
        page.wait_for_load_state("load")
        assert_nothing_ran(page, dialogs, f"{subject} with all images")
    proxied = [url for url in requests.ours[before:] if "/images/proxy/" in url]
    assert len(proxied) >= 20, "showing images requested (almost) nothing from the proxy"
    assert requests.foreign == [], "requests to other hosts after consent:\n" + "\n".join(requests.foreign)
    image_requests = [url for url in requests.ours[before:] if "/images/" in url or "/inline/" in url]
    assert all("/images/proxy/" in url or "/inline/" in url for url in image_requests)
    assert canary.count == 0

    # "Always show images from this sender": a real form post, then the frame asks the proxy.
    page.goto(links[sorted(delivered.remote_subjects)[0]])
    page.get_by_role("button", name="Always show images from this sender").first.click()
    page.wait_for_load_state("load")
    assert page.locator(".images-notice[data-images=shown]").count() >= 1
    assert "always shown" in page.locator(".images-notice").first.inner_text()
    assert requests.foreign == []
    assert canary.count == 0
