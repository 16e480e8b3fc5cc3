"""Sign-up, two-factor authentication, password reset, sessions and email change, in Chromium."""

from __future__ import annotations

import re
from typing import Any

import pytest

from postroom.web.tests.browser import flows
from postroom.web.tests.browser.conftest import Browsing, Mailbox, PageProblems, Person, Server, new_person

pytestmark = pytest.mark.browser

PHONE_AGENT = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


@pytest.fixture(scope="module")
def member_with_totp(browser: Any, server: Server, mailbox: Mailbox, page_problems: PageProblems, owner: Person) -> Person:
    """Invited by the owner, signed up from the invitation, joined, then turned on TOTP."""
    browsing = Browsing(browser, server, page_problems)
    person = new_person("mia")
    owner_page = browsing.new_page()
    flows.sign_in(owner_page, owner)
    before = mailbox.count()
    flows.invite(owner_page, organization_slug=owner.organization_slug, email=person.email)

    page = browsing.new_page()
    invitation = mailbox.wait_for(to=person.email, subject="invited you", after=before)
    link = next(link for link in invitation.links() if "/invitations/" in link)
    page.goto(link)
    flows.expect_heading(page, "Join Acme Support")
    page.get_by_role("link", name="Create account").click()
    flows.sign_up(page, mailbox, person, start=page.url)
    flows.expect_heading(page, "Join Acme Support")
    page.get_by_role("button", name="Accept invitation").click()
    expect(page.locator(".alert-success")).to_contain_text("Welcome to Acme Support")

    flows.enable_totp(page, person)
    browsing.close()
    return person


def test_sign_up_and_confirm_the_email_address_from_the_smtp_message(browsing: Browsing, mailbox: Mailbox) -> None:
    person = new_person("sam")
    page = browsing.new_page()
    flows.sign_up(page, mailbox, person)
    flows.expect_heading(page, "You are not in an organization yet")
    expect(page.locator(".user-chip")).to_contain_text(person.email)


def test_sign_in_with_the_authenticator_app_after_signing_out(browsing: Browsing, member_with_totp: Person) -> None:
    page = browsing.new_page()
    flows.sign_in(page, member_with_totp)
    flows.second_step(page, flows.fresh_totp_code(member_with_totp))
    flows.expect_heading(page, f"Welcome, {member_with_totp.email.split('@')[0]}")
    flows.sign_out(page)
    page.goto("/settings/security/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))


def test_r10_a_recovery_code_signs_in_once(browsing: Browsing, member_with_totp: Person) -> None:
    code = member_with_totp.recovery_codes.pop()
    page = browsing.new_page()
    flows.sign_in(page, member_with_totp)
    flows.second_step(page, code)
    expect(page.locator(".user-chip")).to_contain_text(member_with_totp.email)
    flows.sign_out(page)

    flows.sign_in(page, member_with_totp)
    flows.second_step(page, code)
    flows.expect_heading(page, "Two-factor authentication")
    expect(page.locator(".errorlist")).to_be_visible()


def test_admin_member_list_shows_the_two_factor_badge(browsing: Browsing, owner: Person, member_with_totp: Person) -> None:
    page = browsing.new_page()
    flows.sign_in(page, owner)
    page.goto(f"/o/{owner.organization_slug}/members/")
    expect(page.locator(f"tr[data-member='{member_with_totp.email}'] .badge-ok")).to_have_text("2FA")
    # The owner has no second factor: the list says so, in the same column.
    expect(page.locator(f"tr[data-member='{owner.email}']")).to_contain_text("No 2FA")


def test_r11_password_reset_through_the_emailed_link_ends_other_sessions_and_keeps_two_factor(browsing: Browsing, mailbox: Mailbox) -> None:
    person = new_person("rey")
    page = browsing.new_page()
    flows.sign_up(page, mailbox, person)
    flows.enable_totp(page, person)
    other_device = browsing.new_page(user_agent=PHONE_AGENT)
    flows.sign_in(other_device, person)
    flows.second_step(other_device, person.recovery_codes.pop())
    expect(other_device.locator("h1")).to_contain_text("Welcome")
    flows.sign_out(page)

    before = mailbox.count()
    page.get_by_role("link", name="Forgot password?").click()
    flows.expect_heading(page, "Reset your password")
    page.fill("input[name=email]", person.email)
    flows.submit(page)
    flows.expect_heading(page, "Check your email")
    message = mailbox.wait_for(to=person.email, subject="password", after=before)
    link = next(link for link in message.links() if "/accounts/password/reset/key/" in link)
    page.goto(link)
    flows.expect_heading(page, "Choose a new password")
    old_password, person.password = person.password, person.password + " renewed"
    page.fill("input[name=password1]", person.password)
    page.fill("input[name=password2]", person.password)
    flows.submit(page)
    flows.expect_heading(page, "Your password is changed")

    other_device.goto("/settings/security/")
    expect(other_device).to_have_url(re.compile(r"/accounts/login/"))

    flows.sign_in(page, Person(email=person.email, password=old_password))
    expect(page.locator(".errorlist")).to_be_visible()
    flows.sign_in(page, person)
    flows.second_step(page, flows.fresh_totp_code(person))
    expect(page.locator(".user-chip")).to_contain_text(person.email)


def test_r18_end_another_session_from_the_sessions_page(browsing: Browsing, mailbox: Mailbox) -> None:
    person = new_person("ned")
    laptop = browsing.new_page()
    flows.sign_up(laptop, mailbox, person)
    phone = browsing.new_page(user_agent=PHONE_AGENT)
    flows.sign_in(phone, person)
    expect(phone.locator(".user-chip")).to_contain_text(person.email)

    laptop.goto("/accounts/sessions/")
    flows.expect_heading(laptop, "Sessions")
    other = laptop.locator("[data-session=other]")
    expect(other).to_have_count(1)
    expect(other).to_contain_text("Safari on iPhone")
    expect(other).to_contain_text("127.0.0.1")
    expect(other).to_contain_text("last active")
    expect(laptop.locator("[data-session=current]")).to_contain_text("This device")
    other.get_by_role("button", name="End session").click()
    # Ending a session needs the password confirmed first (R6); the confirmation leads back to
    # the list, where the member presses the button again (a refused POST is never replayed).
    assert flows.confirm_password_if_asked(laptop, person), "a session was ended without confirming the password"
    flows.expect_heading(laptop, "Sessions")
    expect(other).to_have_count(1)
    other.get_by_role("button", name="End session").click()
    expect(laptop.locator("[data-session=other]")).to_have_count(0)

    phone.goto("/settings/security/")
    expect(phone).to_have_url(re.compile(r"/accounts/login/"))
    laptop.goto("/settings/security/")
    expect(laptop.locator(".user-chip")).to_contain_text(person.email)


def test_r06_changing_the_email_asks_to_confirm_the_password_first(browsing: Browsing, mailbox: Mailbox) -> None:
    person = new_person("eve")
    page = browsing.new_page()
    flows.sign_up(page, mailbox, person)
    new_email = person.email.replace("@", ".new@")
    before = mailbox.count()
    page.goto("/settings/security/")
    page.locator(".list-item", has_text="Email address").get_by_role("link", name="Change").click()

    asked = flows.confirm_password_if_asked(page, person)
    if not asked:
        flows.expect_heading(page, "Email address")
        page.fill("input[name=email]", new_email)
        page.get_by_role("button", name="Change email address").click()
        assert "/reauthenticate/" in page.url, "the email change went through without confirming the password"
        assert not any(new_email in message.recipients for message in mailbox.messages[before:]), "a confirmation went out before the password was confirmed"
        asked = flows.confirm_password_if_asked(page, person)
    assert asked

    if not page.locator("[data-testid=pending-email]").count():
        page.goto("/accounts/email/")
        page.fill("input[name=email]", new_email)
        page.get_by_role("button", name="Change email address").click()
    expect(page.locator("[data-testid=pending-email]")).to_contain_text(new_email)
    message = mailbox.wait_for(to=new_email, subject="confirm", after=before)
    link = next(link for link in message.links() if "/accounts/confirm-email/" in link)
    page.goto(link)
    flows.submit(page)
    page.goto("/accounts/email/")
    expect(page.locator(".list-item", has_text=new_email)).to_contain_text("Verified")
