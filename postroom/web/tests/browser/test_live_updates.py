"""Live updates in a real browser against a real ``postroom run`` (issue #4, SECURITY.md R19).

The message is stored by another process (``postroom import-mailbox``, which stores mail through
the same ingest path as the sync service), so the event crosses processes as it does when the
sync service stores mail: committed there, picked up by the web process, streamed to Chromium,
and the page re-fetches its list through htmx without reloading.
"""

from __future__ import annotations

import mailbox as stdlib_mailbox
import secrets
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from postroom.web.tests.browser import flows
from postroom.web.tests.browser.conftest import Browsing, Person, Server

pytestmark = pytest.mark.browser

CREATE_MAILBOX = """
from postroom.mailboxes.models import Mailbox, MailboxStatus
from postroom.orgs.models import Membership
member = Membership.objects.get(user__email={email!r}, organization__slug={slug!r})
box = Mailbox(organization_id=member.organization_id, owner=member, name="Live test", email_address={address!r},
              imap_host="localhost", imap_port=993, smtp_host="localhost", smtp_port=465, status=MailboxStatus.PAUSED)
box.credentials = {{"username": {address!r}, "password": "unused"}}
box.save()
print(box.pk)
"""


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def _mbox_with(path: Path, subject: str, to: str) -> Path:
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = "Dana Customer <dana@customer.example>"
    message["To"] = to
    message["Message-ID"] = f"<{secrets.token_hex(8)}@customer.example>"
    message["Date"] = "Mon, 02 Mar 2026 09:30:00 +0000"
    message.set_content("Hello, my order never arrived.\n")
    box = stdlib_mailbox.mbox(str(path))
    box.add(message)
    box.close()
    return path


def _paused_mailbox(server: Server, owner: Person, prefix: str) -> tuple[str, str]:
    """A mailbox of ``owner``'s that never syncs (mail reaches it through ``import-mailbox``):
    its address and id."""
    address = f"{prefix}-{secrets.token_hex(3)}@acme.test"
    created = server.command(
        "manage", "shell", "-c", CREATE_MAILBOX.format(email=owner.email, slug=owner.organization_slug, address=address)
    )
    return address, created.strip().splitlines()[-1]


def _signed_in(browsing: Browsing, owner: Person) -> Any:
    page = browsing.new_page()
    flows.sign_in(page, owner)
    if owner.totp_secret:
        flows.second_step(page, flows.fresh_totp_code(owner))
    return page


def test_the_conversation_list_shows_new_mail_without_a_reload(browsing: Browsing, server: Server, owner: Person, tmp_path: Path) -> None:
    address, mailbox_id = _paused_mailbox(server, owner, "live")
    page = _signed_in(browsing, owner)
    # An imported file is archived mail (not the inbox): watch "All mail".
    page.goto(f"/o/{owner.organization_slug}/conversations/all/")
    expect(page.locator("html")).to_have_attribute("data-live-state", "live")
    # A second tab of the same browser does not open a stream of its own: the first one's events
    # reach it over a BroadcastChannel.
    other_tab = page.context.new_page()
    browsing.problems.watch(other_tab)
    other_tab.goto(f"/o/{owner.organization_slug}/conversations/all/")
    expect(other_tab.locator("html")).to_have_attribute("data-live-state", "following")
    for tab in (page, other_tab):
        tab.evaluate("window.postroomNotReloaded = true")

    subject = f"Live canary {secrets.token_hex(4)}"
    server.command("import-mailbox", str(_mbox_with(tmp_path / "new.mbox", subject, address)), "--mailbox", mailbox_id)

    for tab in (page, other_tab):
        expect(tab.get_by_text(subject).first).to_be_visible()
        assert tab.evaluate("window.postroomNotReloaded === true"), "the page was reloaded instead of updated"

    # Closing the tab that streams hands the stream to the other one.
    page.close()
    expect(other_tab.locator("html")).to_have_attribute("data-live-state", "live")


def test_a_live_redraw_keeps_the_selection_the_filter_and_ticked_boxes(
    browsing: Browsing, server: Server, owner: Person, tmp_path: Path
) -> None:
    address, mailbox_id = _paused_mailbox(server, owner, "keep")
    word = f"kept{secrets.token_hex(3)}"
    for name in ("alpha", "beta"):
        server.command("import-mailbox", str(_mbox_with(tmp_path / f"{name}.mbox", f"{word} {name}", address)), "--mailbox", mailbox_id)

    page = _signed_in(browsing, owner)
    page.goto(f"/o/{owner.organization_slug}/conversations/all/")
    expect(page.locator("html")).to_have_attribute("data-live-state", "live")
    rows = page.locator("#conversation-list [data-row]").filter(has_text=word)
    expect(rows).to_have_count(2)

    # The member is in the middle of something: the second row selected, the first one ticked for
    # a bulk action, a filter half typed with the cursor still in it.
    ticked_url = rows.nth(0).get_attribute("data-url")
    rows.nth(0).locator("[data-row-check]").check()  # a click in a row also selects it
    page.keyboard.press("j")
    selected = page.locator("#conversation-list [data-row].is-selected")
    expect(selected).not_to_have_attribute("data-url", str(ticked_url))
    selected_url = selected.get_attribute("data-url")
    page.keyboard.press("/")
    page.keyboard.type(word)
    page.evaluate("window.postroomNotReloaded = true")

    # Mail arrives: the list region is redrawn by the live update.
    server.command("import-mailbox", str(_mbox_with(tmp_path / "gamma.mbox", f"{word} gamma", address)), "--mailbox", mailbox_id)
    expect(rows).to_have_count(3)
    assert page.evaluate("window.postroomNotReloaded === true"), "the page was reloaded instead of updated"

    expect(page.locator("#list-filter")).to_have_value(word)
    expect(page.locator("#list-filter")).to_be_focused()
    expect(selected).to_have_count(1)
    assert selected.get_attribute("data-url") == selected_url
    expect(page.locator(f'#conversation-list [data-row][data-url="{ticked_url}"] [data-row-check]')).to_be_checked()
    expect(page.locator("[data-bulk-count]")).to_have_text("1 selected")
