"""A passkey registered and used in Chromium, with its virtual authenticator (DevTools protocol)."""

from __future__ import annotations

from typing import Any

import pytest

from postroom.web.tests.browser import flows
from postroom.web.tests.browser.conftest import Browsing, Mailbox, new_person

pytestmark = pytest.mark.browser


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def add_virtual_authenticator(page: Any) -> None:
    """A platform authenticator that holds discoverable credentials and verifies the user."""
    devtools = page.context.new_cdp_session(page)
    devtools.send("WebAuthn.enable")
    devtools.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True, "hasUserVerification": True,
        "isUserVerified": True, "automaticPresenceSimulation": True,
    }})


def test_register_a_passkey_then_sign_in_with_it_alone_or_as_the_second_step(browsing: Browsing, mailbox: Mailbox) -> None:
    person = new_person("pia")
    page = browsing.new_page()
    add_virtual_authenticator(page)
    flows.sign_up(page, mailbox, person)

    page.goto("/accounts/2fa/webauthn/")
    flows.expect_heading(page, "Passkeys and security keys")
    page.get_by_role("link", name="Add a passkey").first.click()
    flows.confirm_password_if_asked(page, person)
    flows.expect_heading(page, "Add a passkey")
    page.fill("input[name=name]", "Test laptop")
    page.check("input[name=passwordless]")
    page.get_by_role("button", name="Add passkey").click()
    page.wait_for_url(lambda url: "/webauthn/add/" not in url)
    page.goto("/accounts/2fa/webauthn/")
    expect(page.locator(".list-item", has_text="Test laptop")).to_contain_text("Passkey")

    flows.sign_out(page)
    page.get_by_role("button", name="Sign in with a passkey").click()
    page.wait_for_url(lambda url: "/accounts/login/" not in url)
    expect(page.locator(".user-chip")).to_contain_text(person.email)

    # With a passkey registered, a password alone is no longer enough: the passkey is the second step.
    flows.sign_out(page)
    flows.sign_in(page, person)
    flows.expect_heading(page, "Two-factor authentication")
    page.get_by_role("button", name="Use a passkey or security key").click()
    page.wait_for_url(lambda url: "/2fa/authenticate/" not in url)
    expect(page.locator(".user-chip")).to_contain_text(person.email)
