#!/usr/bin/env python3
"""Screenshots of Postroom's main pages, light and dark, taken with Chromium from a seeded server.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots] [--only NAME ...]

It creates a throwaway data directory, fills it with a believable organization (people, teams,
invitations, two-factor authentication for some, a team inbox with customer conversations,
assignees, labels and a timeline, an audit trail made by the real actions), starts
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
    return {"alice_secret": secrets["alice"], "alice_codes": alice_codes, "org": acme.slug, "team": teams["Support"].pk, "second_org": northwind.slug,
            **seed_inbox(acme.slug)}


# The demo team inbox: customers writing to the Support team's mailbox, some answered, with
# assignees, labels and a timeline made by the real actions. Times are relative to now.
CONVERSATIONS = [
    # (subject, customer name, customer address, minutes ago, body, replies from us, attachment)
    ("Order #4821 arrived damaged", "Nora Lindqvist", "nora@lindqvist.example", 12,
     "Hi,\n\nthe espresso machine from order #4821 arrived today with a cracked water tank. Photos attached.\nCan you send a replacement part, or should I return the whole machine?\n\nThanks,\nNora", 0, "damage-photo.jpg"),
    ("Invoice for March is missing our VAT number", "Tomás Ferreira", "tomas@ferreira-design.example", 47,
     "Hello,\n\nour accountant noticed that invoice INV-2291 does not show our VAT number (PT509876543).\nCould you reissue it?\n\nBest regards,\nTomás", 1, "INV-2291.pdf"),
    ("Can't sign in after the password reset", "Priya Raman", "priya.raman@northwind.example", 95,
     "Hi team,\n\nI reset my password yesterday and now the app says my account is locked.\nI tried twice from two browsers. Could you have a look? It is a bit urgent, our team uses it every morning.\n\nPriya", 0, None),
    ("Feature request: export reports to CSV", "Jonas Weber", "jonas@weber-logistik.example", 180,
     "Hello,\n\nwe would love to export the monthly delivery report as CSV for our own dashboards.\nIs that on your roadmap?\n\nViele Grüße\nJonas Weber", 1, None),
    ("Refund for a duplicate charge", "Aisha Bello", "aisha.bello@example.org", 260,
     "Hi,\n\nmy card was charged twice for the annual plan on the 3rd (two charges of 240.00 EUR).\nPlease refund one of them.\n\nThank you,\nAisha", 2, "bank-statement.pdf"),
    ("Do you ship to Norway?", "Erik Solberg", "erik.solberg@example.no", 410,
     "Hei,\n\ndo you ship to Norway, and if so, are customs fees included in the price?\n\nErik", 0, None),
    ("API rate limits for the bulk endpoint", "Mei Tanaka", "mei@tanaka.dev", 700,
     "Hi,\n\nour nightly import hits HTTP 429 after about 500 requests to /v2/bulk.\nWhat are the documented limits, and can they be raised for our plan?\n\nMei", 1, None),
    ("Thank you for the quick help!", "Louis Martin", "louis.martin@example.fr", 1500,
     "Bonjour,\n\njust wanted to say thanks — the replacement arrived this morning and works perfectly.\n\nLouis", 0, None),
    ("Change of billing address", "Sofia Rossi", "sofia@rossi-studio.example", 2900,
     "Hello,\n\nwe moved! Please use Via Tortona 27, 20144 Milano for future invoices.\n\nSofia", 0, None),
    ("Question about the enterprise plan", "Daniel Okafor", "daniel.okafor@example.com", 4300,
     "Hi,\n\nwe are 40 people in three offices. Does the enterprise plan include SSO and an audit log export?\n\nDaniel", 1, None),
    ("Wrong size delivered", "Hannah Becker", "hannah.becker@example.de", 6000,
     "Hallo,\n\nI ordered the jacket in M and received an L. How do I exchange it?\n\nHannah", 1, None),
    ("Newsletter unsubscribe not working", "Ravi Kapoor", "ravi@kapoor.example", 8200,
     "Hi,\n\nthe unsubscribe link in your newsletter leads to a 404.\n\nRavi", 0, None),
]
REPLIES = [
    "Hi {first},\n\nthanks for letting us know. I have forwarded this to the right people and will get back to you today.\n\nBest,\n{agent}",
    "Hi {first},\n\nquick update: this is now fixed on our side. Could you check again and tell us if it works for you?\n\nBest,\n{agent}",
]


def _raw_message(*, subject: str, sender: str, to: str, when: Any, body: str, message_id: str, in_reply_to: str | None = None,
                 attachment: str | None = None) -> bytes:  # fmt: skip
    from email.message import EmailMessage
    from email.utils import format_datetime

    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = to
    message["Message-ID"] = message_id
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
        message["References"] = in_reply_to
    message["Date"] = format_datetime(when)
    message.set_content(body)
    if attachment:
        kind = ("image", "jpeg") if attachment.endswith(".jpg") else ("application", "pdf")
        message.add_attachment(b"demo attachment " * 400, maintype=kind[0], subtype=kind[1], filename=attachment)
    return message.as_bytes()


def seed_inbox(org_slug: str) -> dict[str, Any]:
    """Mailboxes, conversations and the team's work on them, through the product's own code."""
    from datetime import timedelta

    from django.utils import timezone

    from postroom.conversations import actions
    from postroom.conversations.ingest import message_ingest
    from postroom.conversations.models import Conversation, Direction
    from postroom.mailboxes.models import Folder, Mailbox
    from postroom.orgs.models import Membership, Team

    members = {key: Membership.objects.get(organization__slug=org_slug, user__email=email) for key, (_name, email) in PEOPLE.items()}
    support = Team.objects.get(organization__slug=org_slug, name="Support")
    sales = Team.objects.get(organization__slug=org_slug, name="Sales")

    def mailbox(owner: Membership, name: str, address: str, team: Team | None = None) -> tuple[Mailbox, Folder, Folder]:
        box = Mailbox(organization_id=owner.organization_id, owner=owner, name=name, email_address=address, team=team,
                      imap_host="imap.acme.example", imap_port=993, smtp_host="smtp.acme.example", smtp_port=465)  # fmt: skip
        box.credentials = {"username": address, "password": "not a real password"}
        box.save()
        inbox = Folder.objects.create(mailbox=box, name="INBOX", role="inbox", uidvalidity=1)
        sent = Folder.objects.create(mailbox=box, name="Sent", role="sent", uidvalidity=1)
        for role, name_ in (("archive", "Archive"), ("trash", "Trash"), ("junk", "Junk")):
            Folder.objects.create(mailbox=box, name=name_, role=role, uidvalidity=1)
        return box, inbox, sent

    support_box, support_inbox, support_sent = mailbox(members["alice"], "Acme Support", "support@acme.example", team=support)
    now = timezone.now()
    conversations = []
    uid = 0
    for index, (subject, name, address, minutes, body, replies, attachment) in enumerate(CONVERSATIONS):
        uid += 1
        when = now - timedelta(minutes=minutes + 30 * replies)
        first_id = f"<c{index}@customer.example>"
        raw = _raw_message(subject=subject, sender=f"{name} <{address}>", to="Acme Support <support@acme.example>", when=when,
                           body=body, message_id=first_id, attachment=attachment)  # fmt: skip
        copy = message_ingest(mailbox=support_box, folder=support_inbox, uidvalidity=1, uid=uid, raw=raw)
        conversation = copy.message.conversation
        previous = first_id
        for reply in range(replies):
            uid += 1
            agent = ("Alice Martin", "Bob Kim")[reply % 2]
            reply_id = f"<r{index}-{reply}@acme.example>"
            text = REPLIES[reply % len(REPLIES)].format(first=name.split()[0], agent=agent.split()[0])
            reply_raw = _raw_message(subject=f"Re: {subject}", sender="Acme Support <support@acme.example>", to=f"{name} <{address}>",
                                     when=when + timedelta(minutes=20 * (reply + 1)), body=text, message_id=reply_id,
                                     in_reply_to=previous)  # fmt: skip
            message_ingest(mailbox=support_box, folder=support_sent, uidvalidity=1, uid=uid, raw=reply_raw, flags=[b"\\Seen"],
                           direction=Direction.OUTBOUND)  # fmt: skip
            previous = reply_id
        conversations.append(Conversation.objects.get(pk=conversation.pk))

    alice, bob, dana, carol = members["alice"], members["bob"], members["dana"], members["carol"]
    urgent = actions.label_create(actor=alice, name="Urgent", personal=False, color="#dc2626")
    billing = actions.label_create(actor=alice, name="Billing", personal=False, color="#2563eb")
    bug = actions.label_create(actor=alice, name="Bug", personal=False, color="#ea580c")
    actions.label_create(actor=alice, name="VIP", personal=False, color="#7c3aed")
    follow_up = actions.label_create(actor=alice, name="Follow up", personal=True, color="#16a34a")
    damaged, vat, login, csv_request, refund, norway, api, thanks, address_change, enterprise, size, newsletter = conversations
    actions.conversation_assign(actor=alice, conversation=damaged, assignee=dana)
    actions.conversation_label(actor=alice, conversation=damaged, label=urgent)
    actions.conversation_assign(actor=bob, conversation=vat, assignee=alice)
    actions.conversation_label(actor=bob, conversation=vat, label=billing)
    actions.conversation_assign(actor=alice, conversation=login, assignee=bob)
    actions.conversation_label(actor=alice, conversation=login, label=urgent)
    actions.conversation_label(actor=alice, conversation=login, label=bug)
    actions.conversation_share(actor=alice, conversation=login, member=carol)
    actions.conversation_label(actor=alice, conversation=csv_request, label=follow_up)
    actions.conversation_assign(actor=alice, conversation=refund, assignee=alice)
    actions.conversation_assign(actor=alice, conversation=refund, assignee=bob)
    actions.conversation_label(actor=alice, conversation=refund, label=billing)
    actions.conversation_share(actor=alice, conversation=enterprise, team=sales)
    actions.conversation_assign(actor=alice, conversation=api, assignee=bob)
    actions.conversation_label(actor=bob, conversation=api, label=bug)
    actions.conversation_snooze(actor=alice, conversation=norway, until=now + timedelta(days=1))
    for done in (thanks, address_change, newsletter):
        actions.conversation_close(actor=alice, conversation=done)
    actions.conversation_assign(actor=alice, conversation=size, assignee=dana)
    for read in (csv_request, api, enterprise, size, refund):
        actions.conversation_mark_read(actor=alice, conversation=read, read=True)
    return {"conversation": str(refund.pk), "inbox_conversation": str(login.pk), "support_team": support.pk}


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
            # The team inbox: Alice's inbox (she connected the Support mailbox) and a conversation.
            inbox_pages = [("inbox", f"/o/{org}/conversations/"), ("conversation", f"/o/{org}/conversations/{demo['conversation']}/"),
                           ("team-inbox", f"/o/{org}/conversations/team/{demo['support_team']}/"), ("labels", f"/o/{org}/conversations/labels/")]
            for name, path in inbox_pages:
                shooter.shot(page, f"{name}-light", path)
            page.goto(base + f"/o/{org}/conversations/{demo['inbox_conversation']}/")
            page.wait_for_load_state("networkidle")
            page.keyboard.press("a")
            page.wait_for_timeout(300)
            shooter.shot(page, "assign-picker-light")
            page.keyboard.press("Escape")
            shooter.shot(page, "teams-empty-light", f"/o/{demo['second_org']}/teams/")
            shooter.shot(page, "not-found-light", "/o/no-such-organization/members/")
            state = alice.storage_state()
            dark = browser.new_context(viewport=viewport, color_scheme="dark", user_agent=DESKTOP_AGENT, storage_state=state)
            dark_page = dark.new_page()
            shooter.watch(dark_page)
            for name, path in pages + inbox_pages:
                if name in {"home", "members", "security", "two-factor", "sessions", "audit-log", "inbox", "conversation"}:
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
