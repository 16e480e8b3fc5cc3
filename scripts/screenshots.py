#!/usr/bin/env python3
"""Screenshots of Postroom's main pages, light and dark, taken with Chromium from a seeded server.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots] [--only NAME ...]

It creates a throwaway data directory, fills it with a believable organization (people, teams,
invitations, two-factor authentication for some, an audit trail made by the real actions), starts
``postroom run`` on a free port and walks the pages with Playwright. Nothing touches ./data.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
PASSWORD = "plum orchard lantern cobblestone"  # noqa: S105 (a throwaway demo server)
PHONE_AGENT = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
DESKTOP_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36"

PEOPLE = {
    "alice": ("Alice Martin", "alice@acme.example"),
    "carol": ("Carol Diaz", "carol@acme.example"),
    "bob": ("Bob Kim", "bob@acme.example"),
    "dana": ("Dana Levy", "dana@acme.example"),
    "erin": ("Erin Walsh", "erin@acme.example"),
    "frank": ("Frank Osei", "frank@acme.example"),
    "grace": ("Grace Chen", "grace@acme.example"),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def seed() -> dict[str, Any]:
    """The demo organization, built with the same actions the product uses."""
    from allauth.account.models import EmailAddress
    from allauth.mfa.models import Authenticator
    from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
    from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

    from postroom.accounts.models import User
    from postroom.orgs import actions
    from postroom.orgs.models import Membership

    users = {}
    for key, (name, email) in PEOPLE.items():
        user = User.objects.create_user(email=email, password=PASSWORD, name=name)
        EmailAddress.objects.create(user=user, email=email, primary=True, verified=True)
        users[key] = user
    acme = actions.organization_create(owner=users["alice"], name="Acme Support")
    owner = Membership.objects.get(organization=acme, user=users["alice"])
    for key, role in (("carol", "admin"), ("bob", "member"), ("dana", "member"), ("erin", "member"), ("frank", "member"), ("grace", "admin")):
        _invitation, token = actions.invitation_create(actor=owner, email=users[key].email, role=role)
        actions.invitation_accept(user=users[key], token=token)
    teams = {name: actions.team_create(actor=owner, name=name) for name in ("Support", "Sales", "Billing")}
    for team, keys in (("Support", ("alice", "bob", "dana", "erin")), ("Sales", ("carol", "frank")), ("Billing", ("grace",))):
        for key in keys:
            actions.team_member_add(actor=owner, team=teams[team], membership=Membership.objects.get(organization=acme, user=users[key]))
    actions.invitation_create(actor=owner, email="hana@acme.example", role="member")
    actions.invitation_create(actor=owner, email="ivan@acme.example", role="admin")
    revoked, _ = actions.invitation_create(actor=owner, email="old.contractor@example.net", role="member")
    actions.invitation_revoke(actor=owner, invitation=revoked)

    northwind = actions.organization_create(owner=users["carol"], name="Northwind Traders")
    northwind_owner = Membership.objects.get(organization=northwind, user=users["carol"])
    _invitation, token = actions.invitation_create(actor=northwind_owner, email=users["alice"].email, role="admin")
    actions.invitation_accept(user=users["alice"], token=token)

    secrets = {}
    for key in ("alice", "carol", "dana", "grace"):
        secrets[key] = generate_totp_secret()
        TOTP.activate(users[key], secrets[key])
        RecoveryCodes.activate(users[key])
    alice_codes = RecoveryCodes(Authenticator.objects.get(user=users["alice"], type=Authenticator.Type.RECOVERY_CODES)).get_unused_codes()
    return {"alice_secret": secrets["alice"], "alice_codes": alice_codes, "org": acme.slug, "team": teams["Support"].pk, "second_org": northwind.slug}


class Shooter:
    def __init__(self, base: str, out: Path, only: set[str]) -> None:
        self.base = base
        self.out = out
        self.only = only
        self.console_errors: list[str] = []

    def watch(self, page: Any) -> None:
        page.on("console", lambda message: "Content Security Policy" in message.text and self.console_errors.append(f"{page.url}: {message.text}"))
        page.on("pageerror", lambda error: self.console_errors.append(f"{page.url}: {error}"))

    def shot(self, page: Any, name: str, path: str | None = None) -> None:
        if path is not None:
            page.goto(self.base + path)
        page.wait_for_load_state("networkidle")
        if self.only and name not in self.only:
            return
        target = self.out / f"{name}.png"
        page.screenshot(path=str(target), full_page=True)
        print(f"  {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target}")


def totp_now(secret: str, after: set[str]) -> str:
    """A code that has not been used yet: each code is accepted only once (SECURITY.md R8)."""
    import pyotp

    totp = pyotp.TOTP(secret)
    while (code := totp.now()) in after:
        time.sleep(1)
    after.add(code)
    return code


def sign_in(page: Any, base: str, email: str, password: str = PASSWORD) -> None:
    page.goto(base + "/accounts/login/")
    page.fill("input[name=login]", email)
    page.fill("input[name=password]", password)
    page.click("form.form button[type=submit]")
    page.wait_for_load_state("networkidle")


def run(out: Path, only: set[str]) -> None:
    from playwright.sync_api import sync_playwright

    data_dir = Path(tempfile.mkdtemp(prefix="postroom-shots-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {key: value for key, value in os.environ.items() if key not in {"DATABASE_URL", "REDIS_URL", "POSTROOM_SMTP_URL"}}
    env.update({"POSTROOM_DATA_DIR": str(data_dir), "POSTROOM_PUBLIC_URL": base, "DJANGO_SETTINGS_MODULE": "postroom.settings", "POSTROOM_LOG_LEVEL": "WARNING"})
    os.environ.update(env)
    for name in ("DATABASE_URL", "REDIS_URL", "POSTROOM_SMTP_URL"):
        os.environ.pop(name, None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    demo = seed()
    log = (data_dir / "server.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "postroom", "run", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=data_dir)  # noqa: S603
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(base + "/health", timeout=2)  # noqa: S310 (our own loopback server)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not start; see " + str(data_dir / "server.log")) from None
                time.sleep(0.3)
        used_codes: set[str] = set()
        shooter = Shooter(base, out, only)
        org, team = demo["org"], demo["team"]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            viewport = {"width": 1280, "height": 820}

            # Signed out, light and dark.
            for scheme in ("light", "dark"):
                context = browser.new_context(viewport=viewport, color_scheme=scheme, user_agent=DESKTOP_AGENT)
                page = context.new_page()
                shooter.watch(page)
                shooter.shot(page, f"login-{scheme}", "/accounts/login/")
                if scheme == "light":
                    shooter.shot(page, "signup-light", "/accounts/signup/")
                    shooter.shot(page, "password-reset-light", "/accounts/password/reset/")
                    page.fill("input[name=email]", "someone@acme.example")
                    page.click("form.form button[type=submit]")
                    shooter.shot(page, "password-reset-sent-light")
                    page.goto(base + "/accounts/signup/")
                    page.fill("input[name=email]", "newcomer@acme.example")
                    page.fill("input[name=password1]", PASSWORD + " again")
                    page.fill("input[name=password2]", PASSWORD + " again")
                    page.click("form.form button[type=submit]")
                    shooter.shot(page, "verification-sent-light")
                context.close()

            # Alice: password, then the second step.
            alice = browser.new_context(viewport=viewport, color_scheme="light", user_agent=DESKTOP_AGENT)
            page = alice.new_page()
            shooter.watch(page)
            sign_in(page, base, PEOPLE["alice"][1])
            shooter.shot(page, "two-factor-step-light")
            page.fill("input[name=code]", totp_now(demo["alice_secret"], used_codes))
            page.click("form.form button[type=submit]")
            page.wait_for_url(base + "/")
            # A second session from a phone, so that the sessions page has something to show.
            phone = browser.new_context(viewport={"width": 390, "height": 844}, color_scheme="light", user_agent=PHONE_AGENT, is_mobile=True, device_scale_factor=2)
            phone_page = phone.new_page()
            shooter.watch(phone_page)
            sign_in(phone_page, base, PEOPLE["alice"][1])
            phone_page.fill("input[name=code]", demo["alice_codes"][0])
            phone_page.click("form.form button[type=submit]")
            phone_page.wait_for_url(base + "/")
            shooter.shot(phone_page, "members-mobile-light", f"/o/{org}/members/")
            phone.close()

            # Some settings pages open only after confirming the password: confirm once, up front.
            page.goto(base + "/accounts/reauthenticate/?next=/")
            page.fill("input[name=password]", PASSWORD)
            page.click("form.form button[type=submit]")
            page.wait_for_load_state("networkidle")
            pages = [
                ("home", "/"), ("members", f"/o/{org}/members/"), ("teams", f"/o/{org}/teams/"), ("team", f"/o/{org}/teams/{team}/"),
                ("invitations", f"/o/{org}/invitations/"), ("audit-log", f"/o/{org}/audit/"), ("org-settings", f"/o/{org}/settings/"),
                ("security", "/settings/security/"), ("email", "/accounts/email/"), ("password", "/accounts/password/change/"),
                ("two-factor", "/accounts/2fa/"), ("passkeys", "/accounts/2fa/webauthn/"), ("sessions", "/accounts/sessions/"),
                ("linked-logins", "/accounts/3rdparty/"),
            ]
            for name, path in pages:
                shooter.shot(page, f"{name}-light", path)
            shooter.shot(page, "teams-empty-light", f"/o/{demo['second_org']}/teams/")
            shooter.shot(page, "not-found-light", "/o/no-such-organization/members/")
            state = alice.storage_state()
            dark = browser.new_context(viewport=viewport, color_scheme="dark", user_agent=DESKTOP_AGENT, storage_state=state)
            dark_page = dark.new_page()
            shooter.watch(dark_page)
            for name, path in pages:
                if name in {"home", "members", "security", "two-factor", "sessions", "audit-log"}:
                    shooter.shot(dark_page, f"{name}-dark", path)
            dark.close()
            alice.close()

            # Bob turns on two-factor authentication: confirm the password, scan, see the codes once.
            bob = browser.new_context(viewport=viewport, color_scheme="light", user_agent=DESKTOP_AGENT)
            page = bob.new_page()
            shooter.watch(page)
            sign_in(page, base, PEOPLE["bob"][1])
            page.goto(base + "/accounts/2fa/totp/activate/")
            if "/reauthenticate/" in page.url:
                shooter.shot(page, "reauthenticate-light")
                page.fill("input[name=password]", PASSWORD)
                page.click("form.form button[type=submit]")
            shooter.shot(page, "totp-activate-light")
            import pyotp

            secret = page.inner_text("[data-testid=totp-secret]").replace(" ", "")
            page.fill("input[name=code]", pyotp.TOTP(secret).now())
            page.click("form.form button[type=submit]")
            shooter.shot(page, "recovery-codes-light")
            bob.close()
            browser.close()
        if shooter.console_errors:
            print("\nCSP violations and script errors:")
            for line in shooter.console_errors:
                print("  " + line)
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--only", nargs="*", default=[], help="file names (without .png) to write; the walk is always complete")
    arguments = parser.parse_args()
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing: apt-get install chromium", file=sys.stderr)
        return 1
    arguments.out.mkdir(parents=True, exist_ok=True)
    run(arguments.out.resolve(), set(arguments.only))
    return 0


if __name__ == "__main__":
    sys.exit(main())
