"""Comments, mentions and the bell in a real Chromium under the production CSP: Olivia mentions
Bob through the autocomplete; Bob sees the bell count, opens the notification and lands on the
comment. The session-wide watch fails on any CSP violation or script error (SECURITY.md R51)."""

from __future__ import annotations

import re
import secrets
from typing import Any

import pytest

from postroom.web.tests.browser import flows
from postroom.web.tests.browser.conftest import Browsing, Person

pytestmark = pytest.mark.browser

SEED = """
from allauth.account.models import EmailAddress
from postroom.accounts.models import User
from postroom.conversations import actions
from postroom.conversations.ingest import message_ingest
from postroom.conversations.tests.conftest import build_raw, inbox_of
from postroom.mailboxes.tests.factories import make_mailbox
from postroom.orgs.models import Membership
owner = Membership.objects.get(user__email={owner!r})
bob = User.objects.create(email={email!r}, name="Bob Teammate")
bob.set_password({password!r})
bob.save()
EmailAddress.objects.create(user=bob, email=bob.email, primary=True, verified=True)
Membership.objects.create(organization=owner.organization, user=bob, role="member")
mailbox = make_mailbox(owner, address={inbox!r})
raw = build_raw(subject="Where is order 77?", message_id={message_id!r}, to={inbox!r})
conversation = message_ingest(mailbox=mailbox, folder=inbox_of(mailbox), uidvalidity=1, uid=1, raw=raw).message.conversation
actions.conversation_share(actor=owner, conversation=conversation, organization=True)
print(conversation.pk)
"""


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def test_a_mention_chosen_in_the_autocomplete_reaches_the_bell(browsing: Browsing, owner: Person) -> None:
    token = secrets.token_hex(3)
    bob = Person(email=f"bob-{token}@example.test", password=f"quiet meadow {token} lantern", name="Bob Teammate")
    conversation_id = browsing.server.run_python(
        SEED.format(
            owner=owner.email, email=bob.email, password=bob.password, inbox=f"inbox-{token}@acme.test",
            message_id=f"<order-77-{token}@customer.example>",
        )
    ).strip().splitlines()[-1]  # fmt: skip
    conversation_path = f"/o/{owner.organization_slug}/conversations/{conversation_id}/"

    olivia_page = browsing.new_page()
    flows.sign_in(olivia_page, owner)
    olivia_page.goto(conversation_path)
    box = olivia_page.locator("#comment-body")
    box.click()
    box.press_sequentially("Could you check this, @Bob T")
    option = olivia_page.locator(".mention-list [role=option]").filter(has_text="Bob Teammate")
    expect(option).to_be_visible()
    box.press("Enter")
    expect(box).to_have_value(re.compile(r"^Could you check this, @\[Bob Teammate\]\(member:\d+\) $"))
    box.press_sequentially("**today**?")
    olivia_page.get_by_role("button", name="Comment", exact=True).click()
    posted = olivia_page.locator(".comment").filter(has_text="Could you check this")
    expect(posted.locator(".mention")).to_have_text("@Bob Teammate")
    expect(posted.locator("strong").filter(has_text="today")).to_be_visible()

    bob_page = browsing.new_page()
    flows.sign_in(bob_page, bob)
    bob_page.goto(f"/o/{owner.organization_slug}/members/")
    expect(bob_page.locator("[data-notification-count]")).to_have_text("1")
    bob_page.locator("#notification-bell summary").click()
    bob_page.locator(".bell-item").filter(has_text="Olivia Owner mentioned you").click()
    bob_page.wait_for_url(re.compile(re.escape(conversation_path) + r"#comment-"))
    expect(bob_page.locator(".comment:target .mention")).to_have_text("@Bob Teammate")
    expect(bob_page.locator("[data-notification-count]")).to_have_text("0")
