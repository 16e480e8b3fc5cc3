"""The main pages render without CSP violations or script errors, and the shell works on a phone."""

from __future__ import annotations

from typing import Any

import pytest

from postroom.web.tests.browser import flows
from postroom.web.tests.browser.conftest import Browsing, PageProblems, Person

pytestmark = pytest.mark.browser


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def status_of(page: Any, path: str) -> int:
    response = page.goto(path)
    assert response is not None, path
    return int(response.status)


def test_r51_main_pages_load_without_csp_violations(browsing: Browsing, owner: Person, page_problems: PageProblems) -> None:
    seen_before = len(page_problems.entries)
    anonymous = browsing.new_page()
    for path in ("/accounts/login/", "/accounts/signup/", "/accounts/password/reset/", "/privacy/"):
        response = anonymous.goto(path)
        assert response is not None, path
        assert response.status == 200, path
        assert "nonce-" in response.headers.get("content-security-policy", ""), path

    page = browsing.new_page()
    flows.sign_in(page, owner)
    # Some settings pages open only after confirming the password (R6): confirm once, up front.
    page.goto("/accounts/reauthenticate/?next=/")
    assert flows.confirm_password_if_asked(page, owner)
    slug = owner.organization_slug
    page.goto(f"/o/{slug}/teams/")
    page.fill("input[name=name]", "Support")
    page.get_by_role("button", name="Create team").click()
    flows.expect_heading(page, "Support")
    team_path = page.url.removeprefix(browsing.server.base_url)
    paths = [
        "/", f"/o/{slug}/members/", f"/o/{slug}/teams/", team_path, f"/o/{slug}/invitations/", f"/o/{slug}/audit/",
        f"/o/{slug}/settings/", "/settings/security/", "/accounts/email/", "/accounts/password/change/", "/accounts/2fa/",
        "/accounts/2fa/webauthn/", "/accounts/sessions/", "/accounts/3rdparty/", "/privacy/",
    ]
    for path in paths:
        assert status_of(page, path) == 200, path
        expect(page.locator("nav.sidebar")).to_be_visible()
    assert status_of(page, "/o/no-such-organization/members/") == 404
    flows.expect_heading(page, "Not found")
    assert page_problems.entries[seen_before:] == []


def test_the_menu_opens_on_a_phone_without_script(browsing: Browsing, owner: Person) -> None:
    page = browsing.new_page()
    flows.sign_in(page, owner)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/")
    members = page.locator("nav.sidebar a[href$='/members/']").first
    expect(members).to_be_hidden()
    page.locator("label.menu-button").click()
    expect(members).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, "the page scrolls sideways on a phone"
