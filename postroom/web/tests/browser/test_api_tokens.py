"""Personal API tokens in Chromium: created after confirming the password, shown once, used
against the real server's API, announced by email, revoked (R6, R7)."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from typing import Any

import pytest

from postroom.web.tests.browser import flows
from postroom.web.tests.browser.conftest import Browsing, Mailbox, Server, new_person

pytestmark = pytest.mark.browser


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def call_api(server: Server, token: str, path: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(f"{server.base_url}/api/v1{path}", headers={"Authorization": f"Bearer {token}"})  # noqa: S310 (loopback)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback)
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_r06_create_use_and_revoke_an_api_token(browsing: Browsing, mailbox: Mailbox, server: Server) -> None:
    person = new_person("tia")
    page = browsing.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # "Revoke …?" asks first
    flows.sign_up(page, mailbox, person)
    page.goto("/settings/security/")
    page.locator(".list-item", has_text="API tokens").get_by_role("link", name="Manage").click()
    flows.expect_heading(page, "API tokens")

    def create() -> None:
        page.fill("input[name=name]", "Nightly export")
        page.select_option("select[name=scope]", "read")
        page.get_by_role("button", name="Create token").click()

    before = mailbox.count()
    create()
    # Creating a token needs the password confirmed (R6); the form is filled in again after.
    assert flows.confirm_password_if_asked(page, person), "a token was created without confirming the password"
    flows.expect_heading(page, "API tokens")
    expect(page.locator("[data-testid=new-api-token]")).to_have_count(0)
    create()
    shown = page.locator("#new-token")
    expect(shown).to_be_visible()
    token = shown.input_value()
    assert re.fullmatch(r"pr_[a-z0-9]{8}[A-Za-z0-9]{40}", token)

    status, body = call_api(server, token, "/me")
    assert (status, body["email"]) == (200, person.email)
    status, body = call_api(server, token, "/orgs/no-such-org/members")
    assert status == 404

    notice = mailbox.wait_for(to=person.email, subject="API token", after=before)
    assert token[:11] in notice.text
    assert token[11:] not in notice.text

    page.goto("/settings/api-tokens/")
    row = page.locator(f"[data-token='{token[:11]}']")
    expect(row).to_contain_text("Nightly export")
    expect(row).to_contain_text("last used")
    assert token[11:] not in page.content(), "the token was shown a second time"
    row.get_by_role("button", name="Revoke").click()
    if flows.confirm_password_if_asked(page, person):
        page.locator(f"[data-token='{token[:11]}']").get_by_role("button", name="Revoke").click()
    expect(page.locator(".messages")).to_contain_text("was revoked")
    expect(page.locator(f"[data-token='{token[:11]}']")).to_contain_text("Revoked")

    status, body = call_api(server, token, "/me")
    assert (status, body["detail"]) == (401, "This API token was revoked.")
