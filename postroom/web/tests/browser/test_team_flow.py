"""The team inbox end to end (issue #4), two members of one team in two Chromium contexts against
a real ``postroom run``, a real Dovecot and a real aiosmtpd peer.

Ada connects a mailbox and makes it the Support team's mailbox. A customer's message delivered to
Dovecot reaches the team inbox of Ada and of Ben without a reload (IMAP IDLE → sync service →
live stream → htmx). Ada assigns it to Ben; Ben mentions Ada in a comment and Ada's bell counts it
without a reload; Ben replies from the team mailbox (he does not own it: his team does) and the
reply reaches the SMTP peer threaded under the customer's Message-ID; Ada closes the conversation
and it leaves Ben's team inbox; the customer's answer, delivered to Dovecot, reopens it and brings
it back into Ben's team inbox and Ada's open page, again without a reload.

Every wait is on an event: Playwright's ``expect`` (retrying until its timeout) or the SMTP
peer's arrival condition. The session-wide watch fails on any CSP violation or script error.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime
from typing import Any

import pytest
import trustme

from postroom.testing.dovecot import Dovecot, MailUser
from postroom.testing.smtp import SmtpPeer, SmtpTls
from postroom.web.tests.browser import flows
from postroom.web.tests.browser.conftest import Browsing, Person, Server
from postroom.web.tests.browser.test_hostile_mail import connect_mailbox

pytestmark = pytest.mark.browser

# Mail travels Dovecot → IDLE → sync → database → live stream → page; sending goes through the
# task worker. Generous, since two cores are shared; they bound a failure, they time nothing.
ARRIVAL_TIMEOUT = 60_000
SEND_TIMEOUT = 90

SEED = """
import json
from allauth.account.models import EmailAddress
from postroom.accounts.models import User
from postroom.orgs.actions import team_create, team_member_add
from postroom.orgs.models import Membership, Organization

arguments = json.loads({arguments!r})
organization = Organization.objects.get(slug=arguments["slug"])
owner = Membership.objects.get(organization=organization, user__email=arguments["owner"])
team = team_create(actor=owner, name=arguments["team"])
for name, email in arguments["people"]:
    user = User.objects.create_user(email=email, password=arguments["password"], name=name)
    EmailAddress.objects.create(user=user, email=email, primary=True, verified=True)
    member = Membership.objects.create(organization=organization, user=user, role="member")
    team_member_add(actor=owner, team=team, membership=member)
print(team.pk)
"""

MAKE_TEAM_MAILBOX = """
from postroom.mailboxes.actions import mailbox_team_set
from postroom.mailboxes.models import Mailbox
from postroom.orgs.models import Team
mailbox = Mailbox.objects.get(email_address={address!r})
mailbox_team_set(actor=mailbox.owner, mailbox=mailbox, team=Team.objects.get(pk={team_id}))
print("team mailbox")
"""


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


@dataclass
class Team:
    ada: Person
    ben: Person
    team_id: int
    slug: str

    @property
    def inbox_path(self) -> str:
        return f"/o/{self.slug}/conversations/team/{self.team_id}/"


@pytest.fixture
def support(server: Server, owner: Person) -> Team:
    token = secrets.token_hex(3)
    password = f"copper meadow {token} lantern"
    ada = Person(email=f"ada-{token}@acme.test", password=password, name=f"Ada Agent {token}", organization_slug=owner.organization_slug)
    ben = Person(email=f"ben-{token}@acme.test", password=password, name=f"Ben Agent {token}", organization_slug=owner.organization_slug)
    arguments = {
        "slug": owner.organization_slug, "owner": owner.email, "team": f"Support {token}", "password": password,
        "people": [[ada.name, ada.email], [ben.name, ben.email]],
    }  # fmt: skip
    team_id = int(server.run_python(SEED.format(arguments=json.dumps(arguments))).strip().splitlines()[-1])
    return Team(ada=ada, ben=ben, team_id=team_id, slug=owner.organization_slug)


@pytest.fixture
def team_account(dovecot: Dovecot, mail_test_ca: trustme.CA) -> Iterator[tuple[MailUser, SmtpPeer]]:
    """The team's address on Dovecot, and the SMTP server that accepts its outgoing mail."""
    user = dovecot.create_user("support")
    smtp = SmtpPeer(ca=mail_test_ca, tls=SmtpTls.IMPLICIT)
    smtp.add_account(user)
    smtp.start()
    yield user, smtp
    smtp.stop()


def customer_message(*, subject: str, to: str, message_id: str, text: str, references: tuple[str, ...] = ()) -> bytes:
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = "Dana Customer <dana@customer.example>"
    message["To"] = to
    message["Message-ID"] = message_id
    message["Date"] = format_datetime(datetime.now(UTC))
    if references:
        message["In-Reply-To"] = references[-1]
        message["References"] = " ".join(references)
    message.set_content(text)
    return message.as_bytes()


def watch_without_reload(page: Any) -> None:
    """Mark the page, so that a test can tell an update in place from a reload."""
    expect(page.locator("html")).to_have_attribute("data-live-state", "live", timeout=ARRIVAL_TIMEOUT)
    page.evaluate("window.postroomNotReloaded = true")


def assert_not_reloaded(page: Any) -> None:
    assert page.evaluate("window.postroomNotReloaded === true"), f"{page.url} was reloaded instead of updated"


def test_two_members_work_a_team_conversation_from_arrival_to_reopening(
    browsing: Browsing, server: Server, dovecot: Dovecot, support: Team, team_account: tuple[MailUser, SmtpPeer]
) -> None:
    user, smtp = team_account
    token = secrets.token_hex(4)
    subject = f"Order {token} never arrived"
    original_id = f"<order-{token}@customer.example>"
    mailbox_name = f"Support desk {token}"

    # Ada connects the mailbox (she owns the connection) and makes it her team's.
    ada = browsing.new_page()
    flows.sign_in(ada, support.ada)
    connect_mailbox(ada, support.ada, dovecot, user, smtp, name=mailbox_name)
    assert "team mailbox" in server.run_python(MAKE_TEAM_MAILBOX.format(address=user.address, team_id=support.team_id))

    # Both open the team inbox; each context streams its own events.
    ben = browsing.new_page()
    flows.sign_in(ben, support.ben)
    for page in (ada, ben):
        page.goto(support.inbox_path)
        watch_without_reload(page)

    # 1. Mail delivered to Dovecot appears in both team inboxes, without a reload.
    dovecot.append(user, customer_message(subject=subject, to=user.address, message_id=original_id, text="Where is my parcel?\n"))
    for page in (ada, ben):
        expect(page.locator("#conversation-list [data-row]").filter(has_text=subject)).to_be_visible(timeout=ARRIVAL_TIMEOUT)
        assert_not_reloaded(page)

    # 2. Ada opens it and assigns it to Ben.
    ada.locator("#conversation-list [data-row]").filter(has_text=subject).locator("a.row-link").click()
    flows.expect_heading(ada, subject)
    conversation_path = ada.url.split("?", 1)[0].removeprefix(server.base_url)
    picker = ada.locator("details[data-menu='assign']")
    picker.locator("summary").click()
    picker.locator(f"button[data-member='{support.ben.email}']").click()
    expect(ada.locator("#conversation-details")).to_contain_text(support.ben.name)
    expect(ada.locator("#thread-tail")).to_contain_text(f"{support.ada.name} assigned {support.ben.name}")
    watch_without_reload(ada)
    before = int(ada.locator("[data-notification-count]").inner_text())

    # 3. Ben mentions Ada in a comment; Ada's bell counts it, and lists it, without a reload.
    ben.goto(conversation_path)
    box = ben.locator("#comment-body")
    box.click()
    box.press_sequentially("Ada, can you confirm the address? @Ada Agent")  # the autocomplete takes two words
    expect(ben.locator(".mention-list [role=option]").filter(has_text=support.ada.name)).to_be_visible()
    box.press("Enter")
    expect(box).to_have_value(re.compile(r"@\[" + re.escape(support.ada.name) + r"\]\(member:\d+\) $"))
    ben.get_by_role("button", name="Comment", exact=True).click()
    expect(ben.locator(".comment").filter(has_text="confirm the address").locator(".mention")).to_have_text(f"@{support.ada.name}")
    expect(ada.locator("[data-notification-count]")).to_have_text(str(before + 1), timeout=ARRIVAL_TIMEOUT)
    ada.locator("#notification-bell summary").click()
    expect(ada.locator(".bell-item").filter(has_text=f"{support.ben.name} mentioned you")).to_be_visible()
    assert_not_reloaded(ada)
    ada.keyboard.press("Escape")

    # 4. Ben replies from the composer, from the team mailbox (his team's, not his own): the reply
    # reaches the SMTP peer threaded under the customer's message.
    ben.locator("a[data-compose='reply']").click()
    composer = ben.locator("#composer-form")
    expect(composer).to_be_visible()
    expect(composer.locator("select[name=mailbox] option:checked")).to_contain_text(mailbox_name)
    ben.locator("#composer-body").fill(f"Hello Dana, your parcel {token} left today.\n")
    # The composer posts and lands back on the conversation once queued; the page is already at
    # that address, so wait for the navigation itself, not for the URL.
    with ben.expect_navigation(url=re.compile(re.escape(conversation_path) + "$"), timeout=SEND_TIMEOUT * 1000):
        composer.get_by_role("button", name="Send", exact=True).click()
    [received] = smtp.wait_for_messages(1, timeout=SEND_TIMEOUT)
    sent = BytesParser(policy=policy.default).parsebytes(received.content)
    assert sent["In-Reply-To"] == original_id
    assert sent["References"].split()[-1] == original_id
    assert sent["Subject"] == f"Re: {subject}"
    assert sent["From"].addresses[0].addr_spec == user.address
    assert received.recipients == ("dana@customer.example",)
    body = sent.get_body(preferencelist=("plain",))
    assert body is not None
    assert f"your parcel {token} left today" in body.get_content()

    # 5. Ada closes it: it leaves Ben's team inbox (live).
    ben.goto(support.inbox_path)
    row_for_ben = ben.locator("#conversation-list [data-row]").filter(has_text=subject)
    expect(row_for_ben).to_be_visible()
    watch_without_reload(ben)
    ada.goto(conversation_path)
    watch_without_reload(ada)
    ada.locator("button[data-action='close']").click()
    expect(ada.locator("#conversation-header .badge").filter(has_text="Closed")).to_be_visible()
    expect(row_for_ben).to_have_count(0, timeout=ARRIVAL_TIMEOUT)

    # 6. The customer answers: delivered to Dovecot, it reopens the conversation, back in Ben's
    # team inbox and open on Ada's page, neither reloaded.
    dovecot.append(
        user,
        customer_message(
            subject=f"Re: {subject}", to=user.address, message_id=f"<again-{token}@customer.example>", references=(original_id, str(sent["Message-ID"])),
            text="Thanks, but it is still not here.\n",
        ),
    )  # fmt: skip
    expect(row_for_ben).to_be_visible(timeout=ARRIVAL_TIMEOUT)
    expect(ada.locator("button[data-action='close']")).to_be_visible(timeout=ARRIVAL_TIMEOUT)
    expect(ada.locator("#conversation-header .badge").filter(has_text="Closed")).to_have_count(0)
    expect(ada.locator("#thread-entries")).to_contain_text("still not here", timeout=ARRIVAL_TIMEOUT)
    for page in (ada, ben):
        assert_not_reloaded(page)
