"""Issue #5's browser test, against a real ``postroom run``, Dovecot, an aiosmtpd peer and Chromium.

A rule made in the rules page labels and assigns incoming mail from one sender; the mail is
delivered to Dovecot and imported by the sync service; the assignee opens it and answers with a
team response whose variables (the recipient's first name, a custom input) are filled in and
whose attachment travels with the reply; the reply arrives at the SMTP peer; the recipient is
then a contact in the assignee's default book and the composer suggests them.

Every wait is on an event: Playwright's expectations on the page (which live updates change),
and a condition the SMTP peer notifies when a message arrives. No sleeps.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.smtp import SMTP, Envelope, Session

from postroom.testing.dovecot import Dovecot, MailUser
from postroom.testing.smtp import SmtpPeer, SmtpTls, _Handler
from postroom.web.tests.browser import flows
from postroom.web.tests.browser.conftest import Browsing, PageProblems, Person, Server
from postroom.web.tests.browser.test_hostile_mail import connect_mailbox

pytestmark = pytest.mark.browser

IMPORT_TIMEOUT_MS = 90_000
SEND_TIMEOUT = 60

SETUP = """
from postroom.conversations.models import Label
from postroom.orgs.models import Membership, Team, TeamMembership
member = Membership.objects.get(user__email={email!r}, organization__slug={slug!r})
team = Team.objects.create(organization_id=member.organization_id, name={team!r})
TeamMembership.objects.create(team=team, membership=member)
label = Label.objects.create(organization_id=member.organization_id, name={label!r})
print("IDS", member.pk, label.pk)
"""

CONTACT_CHECK = """
from postroom.contacts.selectors import book_default_of, contacts_by_address
from postroom.orgs.models import Membership
member = Membership.objects.get(user__email={email!r}, organization__slug={slug!r})
default = book_default_of(actor=member)
print("IN_DEFAULT", sorted(str(contact.book_id == default.pk) for contact in contacts_by_address(actor=member, address={address!r})))
"""


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


class _Notifying(_Handler):
    """The shared peer's handler, which also wakes whoever waits for a message."""

    def __init__(self, peer: SmtpPeer, arrived: threading.Condition) -> None:
        super().__init__(peer)
        self.arrived = arrived

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        with self.arrived:
            self.arrived.notify_all()
        return answer


class Peer:
    def __init__(self, smtp: SmtpPeer) -> None:
        self.smtp = smtp
        self.arrived = threading.Condition()
        smtp._controller.handler = _Notifying(smtp, self.arrived)

    def wait_for(self, count: int) -> None:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.smtp.messages) >= count, timeout=SEND_TIMEOUT), "nothing arrived at the SMTP peer"


@pytest.fixture(scope="module")
def account(dovecot: Dovecot, mail_test_ca: trustme.CA) -> Iterator[tuple[MailUser, Peer]]:
    user = dovecot.create_user("rulesflow")
    smtp = SmtpPeer(ca=mail_test_ca, tls=SmtpTls.IMPLICIT)
    smtp.add_account(user)
    peer = Peer(smtp)
    smtp.start()
    yield user, peer
    smtp.stop()


def printed(output: str, marker: str) -> str:
    """What the shell code printed after ``marker`` (the shell's own log lines are ignored)."""
    [line] = [line for line in output.splitlines() if line.startswith(f"{marker} ")]
    return line.removeprefix(f"{marker} ").strip()


def customer_mail(*, sender: str, to: str, subject: str) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = f"<{secrets.token_hex(8)}@customer.example>"
    message.set_content("Hello, my ticket is still open. Can you help?\n")
    return message.as_bytes()


def test_a_rule_routes_mail_the_assignee_answers_with_a_team_response_and_the_recipient_becomes_a_contact(
    browsing: Browsing, owner: Person, server: Server, page_problems: PageProblems, dovecot: Dovecot,
    account: tuple[MailUser, Peer], tmp_path: Path,
) -> None:  # fmt: skip
    seen_before = len(page_problems.entries)
    user, peer = account
    slug = owner.organization_slug
    token = secrets.token_hex(3)
    customer = f"dana-{token}@customer.example"
    subject = f"Ticket still open {token}"
    label_name = f"VIP {token}"
    membership_id, label_id = printed(server.run_python(
        SETUP.format(email=owner.email, slug=slug, team=f"Front desk {token}", label=label_name)
    ), "IDS").split()
    page = browsing.new_page()
    flows.sign_in(page, owner)
    mailbox_name = f"Rules flow {token}"
    connect_mailbox(page, owner, dovecot, user, peer.smtp, name=mailbox_name)

    # A team response with a recipient variable, a custom input and an attachment.
    page.goto(f"/o/{slug}/responses/new/")
    page.fill("[name=name]", f"Ticket answer {token}")
    page.select_option("[name=scope]", "team")
    page.select_option("[name=team]", label=f"Front desk {token}")
    page.locator(".rich-editor-area").click()
    page.keyboard.type("Hello {{ recipient_first_name }}, ticket {{ input:Ticket }} is being handled.")
    attachment = tmp_path / "Ticket guide.pdf"
    attachment.write_bytes(b"%PDF-1.4 ticket guide\n" * 30)
    page.set_input_files("#id_attachments", str(attachment))
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".attachment-list")).to_contain_text("Ticket guide.pdf")

    # The rule, made in the rules page: mail from the customer is labelled and assigned.
    page.goto(f"/o/{slug}/rules/new/")
    page.fill("[name=name]", f"Customer {token}")
    page.select_option("[name=condition-0-field]", "from")
    page.select_option("[name=condition-0-op]", "contains")
    page.fill("[name=condition-0-value]", customer)
    page.select_option("[name=action-0-kind]", "label")
    page.select_option("[name=action-0-target]", f"label:{label_id}")
    page.select_option("[name=action-1-kind]", "assign")
    page.select_option("[name=action-1-target]", f"member:{membership_id}")
    page.get_by_role("button", name="Create").click()
    expect(page.locator("main")).to_contain_text(f"Customer {token}")

    # The customer writes; the sync service imports the mail and the rule runs on it.
    page.goto(f"/o/{slug}/conversations/")
    dovecot.append(user, customer_mail(sender=f"Dana Customer <{customer}>", to=user.address, subject=subject))
    row = page.locator("a.row-link", has_text=subject)
    expect(row).to_be_visible(timeout=IMPORT_TIMEOUT_MS)  # the list follows live updates
    row.click()
    expect(page.locator("main")).to_contain_text(label_name)
    expect(page.locator("main")).to_contain_text("assigned")

    # The assignee answers with the team response, fills in its input (the composer comes in
    # through htmx, whose swaps run no scripts: the page's own scripts set it up).
    page.locator(".reply-bar a.btn", has_text="Reply").first.click()
    page.select_option("[name=mailbox]", label=mailbox_name)
    expect(page.locator("[name=to]")).to_have_value(re.compile(rf"Dana Customer\W* <{re.escape(customer)}>"))
    page.get_by_role("button", name="Insert a response").click()
    page.keyboard.type(f"Ticket answer {token}")
    expect(page.locator("[role=option][aria-selected=true]")).to_contain_text(f"Ticket answer {token}")
    page.keyboard.press("Enter")
    expect(page.get_by_label("Ticket")).to_be_focused()
    page.keyboard.type("T-4711")
    page.keyboard.press("Enter")
    # Inserted at the cursor, above the quote of the customer's message.
    expect(page.locator("#composer-body")).to_have_value(re.compile(r"^Hello Dana, ticket T-4711 is being handled\.\n+.*wrote:", re.DOTALL))
    expect(page.locator("[data-picker-attachments]")).to_contain_text("Ticket guide.pdf")
    # Sending lands back on the conversation: wait for that navigation, or a later goto races it.
    with page.expect_navigation(timeout=IMPORT_TIMEOUT_MS):
        page.get_by_role("button", name="Send", exact=True).click()

    peer.wait_for(1)
    [received] = peer.smtp.messages
    assert received.recipients == (customer,)
    message = BytesParser(policy=policy.default).parsebytes(received.content)
    assert message["Subject"] == f"Re: {subject}"
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    assert body.get_content().strip().startswith("Hello Dana, ticket T-4711 is being handled.")
    [sent_file] = list(message.iter_attachments())
    assert sent_file.get_filename() == "Ticket guide.pdf"
    assert sent_file.get_content() == attachment.read_bytes()

    # The Sent copy comes back into the conversation (live): the recipient is now a contact of
    # the assignee's default book, and the composer suggests them.
    page.goto(f"/o/{slug}/conversations/")
    row = page.locator("a.row-link", has_text=subject)
    row.click()
    expect(page.locator(".message-html, .message-plain")).to_have_count(2, timeout=IMPORT_TIMEOUT_MS)
    assert printed(server.run_python(CONTACT_CHECK.format(email=owner.email, slug=slug, address=customer)), "IN_DEFAULT") == "['True']"
    page.goto(f"/o/{slug}/outbox/new/")
    to = page.locator("[name=to]")
    to.click()
    page.keyboard.type(f"dana-{token}")
    suggestion = page.locator(".recipient-list [role=option][aria-selected=true]")
    expect(suggestion).to_contain_text("Dana Customer")
    expect(suggestion).to_contain_text(customer)
    expect(to).to_have_attribute("aria-expanded", "true")
    page.keyboard.press("Enter")
    expect(to).to_have_value(f"Dana Customer <{customer}>, ")
    expect(page.locator(".recipient-list")).to_have_count(0)
    assert page_problems.entries[seen_before:] == []
