"""What a person does in the browser, step by step, written once for every browser test.

Each helper drives the real pages and asserts what the person would see, so a broken step fails
where it breaks rather than three pages later.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from postroom.web.tests.browser.conftest import Mailbox, Person


def expect_heading(page: Any, text: str) -> None:
    from playwright.sync_api import expect

    expect(page.locator("h1, h2").filter(has_text=text).first).to_be_visible()


def submit(page: Any) -> None:
    """Press the main button of the page's main form."""
    page.locator("main form.form button[type=submit]").first.click()
    page.wait_for_load_state()


def complete_setup(page: Any, *, setup_link: str, organization: str, person: Person) -> None:
    page.goto(setup_link)
    expect_heading(page, "Set up Postroom")
    page.fill("input[name=organization_name]", organization)
    page.fill("input[name=name]", person.name)
    page.fill("input[name=email]", person.email)
    page.fill("input[name=password]", person.password)
    submit(page)
    expect_heading(page, f"Welcome, {person.name}")


def sign_up(page: Any, mailbox: Mailbox, person: Person, *, start: str = "/accounts/signup/") -> None:
    """Sign up, then confirm the address with the link from the message the SMTP peer received."""
    before = mailbox.count()
    page.goto(start)
    expect_heading(page, "Create your account")
    page.fill("input[name=email]", person.email)
    page.fill("input[name=password1]", person.password)
    page.fill("input[name=password2]", person.password)
    submit(page)
    expect_heading(page, "Check your email")
    message = mailbox.wait_for(to=person.email, subject="confirm", after=before)
    links = [link for link in message.links() if "/accounts/confirm-email/" in link]
    assert links, f"no confirmation link in:\n{message.text}"
    page.goto(links[0])
    expect_heading(page, "Confirm your email address")
    submit(page)
    # Confirming signs the person in (same browser session) and goes on to where they were
    # heading: home, or the invitation they signed up from.
    page.wait_for_url(lambda url: "/confirm-email/" not in url)
    from playwright.sync_api import expect

    expect(page.locator(".messages")).to_contain_text(f"signed in as {person.email}")


def sign_in(page: Any, person: Person) -> None:
    """Email and password; stops at the second step when the account has one."""
    page.goto("/accounts/login/")
    page.fill("input[name=login]", person.email)
    page.fill("input[name=password]", person.password)
    submit(page)


def sign_out(page: Any) -> None:
    page.goto("/")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/accounts/login/"))


def confirm_password_if_asked(page: Any, person: Person) -> bool:
    """Answer the "Confirm it's you" page if it is shown; True when it was."""
    if "/reauthenticate/" not in page.url:
        return False
    expect_heading(page, "Confirm it’s you")
    page.fill("input[name=password]", person.password)
    submit(page)
    return True


def fresh_totp_code(person: Person) -> str:
    """The current code of the person's app, never one already used (each is accepted once).

    Near the end of a 30-second step it waits for the next one, so the code is still current when
    the server checks it (Postroom accepts the current step only).
    """
    import pyotp

    totp = pyotp.TOTP(person.totp_secret)
    while True:
        remaining = totp.interval - time.time() % totp.interval
        code = totp.now()
        if remaining > 3 and code not in person.used_codes:
            person.used_codes.add(code)
            return code
        time.sleep(min(remaining, 1.0) + 0.05)


def enable_totp(page: Any, person: Person) -> None:
    """Turn on the authenticator app from the settings, reading the key shown for manual entry."""
    page.goto("/accounts/2fa/")
    expect_heading(page, "Two-factor authentication")
    page.locator("#totp").get_by_role("link", name="Set up").click()
    confirm_password_if_asked(page, person)
    expect_heading(page, "Set up an authenticator app")
    assert page.locator("img.qr").is_visible(), "the QR code is not shown"
    person.totp_secret = page.inner_text("[data-testid=totp-secret]").replace(" ", "")
    assert len(person.totp_secret) >= 32, "the TOTP key must hold at least 160 bits"
    page.fill("input[name=code]", fresh_totp_code(person))
    submit(page)
    expect_heading(page, "Recovery codes")
    person.recovery_codes = [code.strip() for code in page.locator("[data-testid=recovery-codes] li").all_inner_texts()]
    assert len(person.recovery_codes) == 10, person.recovery_codes


def second_step(page: Any, code: str) -> None:
    expect_heading(page, "Two-factor authentication")
    page.fill("input[name=code]", code)
    submit(page)


def invite(page: Any, *, organization_slug: str, email: str, role: str = "member") -> None:
    page.goto(f"/o/{organization_slug}/invitations/")
    page.fill("input[name=email]", email)
    page.select_option("select[name=role]", role)
    page.get_by_role("button", name="Send invitation").click()
    from playwright.sync_api import expect

    expect(page.locator(f"tr[data-invitation='{email}']")).to_contain_text("Pending")
