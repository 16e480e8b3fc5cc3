"""Responses in Chromium: the editor writes a formatted body under our CSP; the picker is driven
by the keyboard in the composer, asks for the custom input, inserts the filled-in text, and the
response's attachment arrives at the SMTP peer with the message the real server sends."""

from __future__ import annotations

from collections.abc import Iterator
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
import trustme

from postroom.testing.dovecot import Dovecot, MailUser
from postroom.testing.smtp import SmtpPeer, SmtpTls
from postroom.web.tests.browser import flows
from postroom.web.tests.browser.conftest import Browsing, PageProblems, Person
from postroom.web.tests.browser.test_hostile_mail import connect_mailbox

pytestmark = pytest.mark.browser

SEND_TIMEOUT = 60


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


@pytest.fixture(scope="module")
def sending_account(dovecot: Dovecot, mail_test_ca: trustme.CA) -> Iterator[tuple[MailUser, SmtpPeer]]:
    user = dovecot.create_user("responses")
    smtp = SmtpPeer(ca=mail_test_ca, tls=SmtpTls.IMPLICIT)
    smtp.add_account(user)
    smtp.start()
    yield user, smtp
    smtp.stop()


def test_a_response_is_written_picked_with_the_keyboard_filled_in_and_sent_with_its_attachment(
    browsing: Browsing, owner: Person, page_problems: PageProblems, dovecot: Dovecot,
    sending_account: tuple[MailUser, SmtpPeer], tmp_path: Path,
) -> None:  # fmt: skip
    seen_before = len(page_problems.entries)
    user, smtp = sending_account
    slug = owner.organization_slug
    page = browsing.new_page()
    flows.sign_in(page, owner)

    # Write the response in the editor: bold through the keyboard, a custom input, a file.
    page.goto(f"/o/{slug}/responses/new/")
    page.fill("[name=name]", "Order shipped")
    page.fill("[name=subject]", "Your order {{ input:Order number }}")
    editor = page.locator(".rich-editor-area")
    editor.click()
    page.keyboard.type("Hello ")
    page.keyboard.press("Control+b")
    page.keyboard.type("{{ recipient_first_name }}")
    page.keyboard.press("Control+b")
    page.keyboard.type(", order {{ input:Order number }} is on its way.")
    attachment = tmp_path / "Tracking.pdf"
    attachment.write_bytes(b"%PDF-1.4 tracking 4711\n" * 20)
    page.set_input_files("#id_attachments", str(attachment))
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".attachment-list")).to_contain_text("Tracking.pdf")
    assert "<b>{{ recipient_first_name }}</b>" in page.locator("#id_body").input_value()

    # Compose a message and insert it with the keyboard only.
    # Other browser tests of the session may have connected mailboxes of their own: send from this one.
    connect_mailbox(page, owner, dovecot, user, smtp, name="Responses mail")
    page.goto(f"/o/{slug}/outbox/new/")
    page.select_option("[name=mailbox]", label="Responses mail")
    page.fill("[name=to]", "Dana Customer <dana@customer.example>")
    page.get_by_role("button", name="Insert a response").focus()
    page.keyboard.press("Enter")
    search = page.get_by_role("combobox", name="Search your responses")
    expect(search).to_be_focused()
    page.keyboard.type("shipped")
    expect(page.locator("[role=option][aria-selected=true]")).to_contain_text("Order shipped")
    page.keyboard.press("Enter")
    expect(page.get_by_label("Order number")).to_be_focused()
    page.keyboard.type("4711")
    page.keyboard.press("Enter")
    expect(page.locator("#composer-body")).to_have_value("Hello Dana, order 4711 is on its way.")
    expect(page.locator("#id_subject")).to_have_value("Your order 4711")
    expect(page.locator("[data-picker-attachments]")).to_contain_text("Tracking.pdf")
    # Escape closes an open picker and gives the focus back to its button.
    page.get_by_role("button", name="Insert a response").click()
    page.keyboard.press("Escape")
    expect(page.get_by_role("button", name="Insert a response")).to_be_focused()

    page.get_by_role("button", name="Send").click()
    # The composer confirms in a toast (htmx) or a page message; what matters is what arrives.
    [received] = smtp.wait_for_messages(1, timeout=SEND_TIMEOUT)
    message = BytesParser(policy=policy.default).parsebytes(received.content)
    assert message["Subject"] == "Your order 4711"
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    assert body.get_content().strip() == "Hello Dana, order 4711 is on its way."
    [sent_file] = list(message.iter_attachments())
    assert sent_file.get_filename() == "Tracking.pdf"
    assert sent_file.get_content() == attachment.read_bytes()
    assert page_problems.entries[seen_before:] == []
