"""SECURITY.md R53 (authentication part): every sign-in event and credential change is audited,
with who, when (UTC), what, for which account, from where and with what result, per
organization of the person, never with a password."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from allauth.mfa.models import Authenticator
from django.core import mail
from django.test import Client
from django.urls import reverse

from postroom.accounts.models import User
from postroom.accounts.tests.authflows import (
    delivered,
    enable_totp,
    login_client,
    post_login,
    reauthenticate,
    request_reset_link,
    reset_password,
    second_factor_login,
    signed_in_client,
)
from postroom.audit.actions import audit_verify_chain
from postroom.audit.models import AuditEvent
from postroom.audit.selectors import audit_events
from postroom.testing.factories import DEFAULT_PASSWORD, MembershipFactory

WRONG = "this is not the password"
NEW_PASSWORD = "a fresh long passphrase for audit"


@pytest.fixture
def frozen() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(datetime(2026, 3, 2, 9, 0, 1, tzinfo=UTC), tick=False) as traveller:
        yield traveller


def rows_since(mark: int) -> list[tuple[str, str, str | None, str | None, str | None]]:
    """(action, result, organization slug, actor email, client address) of the rows after ``mark``."""
    return [
        (
            event.action, event.result,
            event.organization.slug if event.organization_id else None,  # type: ignore[union-attr]
            event.actor.email if event.actor_id else None,  # type: ignore[union-attr]
            event.ip_address,
        )
        for event in AuditEvent.objects.filter(pk__gt=mark).select_related("organization", "actor").order_by("id")
    ]


def mark() -> int:
    return AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


@pytest.mark.django_db
def test_r53_a_scripted_sign_in_story_leaves_exactly_these_rows(cast, frozen: time_machine.Traveller) -> None:  # type: ignore[no-untyped-def]
    bob, home = cast.bob, "192.0.2.20"
    start = mark()
    post_login(login_client(remote_addr=home), bob.email, WRONG)
    client = signed_in_client(bob, remote_addr=home)
    totp = enable_totp(client)
    client.post(reverse("account_logout"))
    frozen.shift(timedelta(seconds=30))
    second_factor_login(login_client(remote_addr=home), bob, "000000" if totp.now() != "000000" else "111111")
    client = login_client(remote_addr=home)
    second_factor_login(client, bob, totp.now())
    code = Authenticator.objects.get(user=bob, type=Authenticator.Type.RECOVERY_CODES).wrap().get_unused_codes()[0]
    second_factor_login(login_client(remote_addr=home), bob, code)
    reauthenticate(client)
    client.post(reverse("mfa_deactivate_totp"))
    client.post(reverse("account_change_password"), {"oldpassword": DEFAULT_PASSWORD, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    acme = ("acme", bob.email, home)
    assert rows_since(start) == [
        ("auth.login", "failure", "acme", None, home),
        ("auth.login", "success", *acme),
        ("auth.reauthenticate", "success", *acme),
        ("auth.2fa_added", "success", *acme),  # the authenticator app
        ("auth.2fa_added", "success", *acme),  # its recovery codes
        ("auth.logout", "success", *acme),
        ("auth.second_factor", "failure", "acme", None, home),
        ("auth.second_factor", "success", *acme),
        ("auth.login", "success", *acme),
        ("auth.recovery_code_used", "success", *acme),
        ("auth.login", "success", *acme),
        ("auth.reauthenticate", "success", *acme),
        ("auth.2fa_removed", "success", *acme),
        ("auth.2fa_removed", "success", *acme),
        ("auth.password_changed", "success", *acme),
    ]
    types = [event.details.get("type") for event in AuditEvent.objects.filter(pk__gt=start, action__startswith="auth.2fa").order_by("id")]
    assert types == ["totp", "recovery_codes", "totp", "recovery_codes"]
    assert all(event.target_label == bob.email for event in AuditEvent.objects.filter(pk__gt=start))
    assert audit_verify_chain().intact


@pytest.mark.django_db
def test_r53_failed_logins_never_record_the_password_nor_an_unknown_address(cast) -> None:  # type: ignore[no-untyped-def]
    start = mark()
    post_login(login_client(remote_addr="192.0.2.30"), cast.alice.email, WRONG)
    post_login(login_client(remote_addr="192.0.2.31"), "Not.Registered@Example.test", WRONG)
    known, unknown = AuditEvent.objects.filter(pk__gt=start).order_by("id")
    assert (known.action, known.result, known.organization_id, known.actor_id) == ("auth.login", "failure", cast.org_a.pk, None)
    assert (known.target_id, known.target_label) == (str(cast.alice.pk), cast.alice.email)
    assert (unknown.action, unknown.result, unknown.organization_id, unknown.target_label) == ("auth.login", "failure", None, "")
    assert unknown.details["known_account"] is False
    assert len(unknown.details["login_hash"]) == 32
    for event in (known, unknown):
        recorded = event.canonical().decode()
        assert WRONG not in recorded
        assert "not.registered" not in recorded.lower()
        assert event.created_at.utcoffset() == timedelta(0)


@pytest.mark.django_db
def test_r53_rows_go_to_every_organization_of_the_person_and_show_on_its_audit_page(cast) -> None:  # type: ignore[no-untyped-def]
    MembershipFactory(organization=cast.org_a, user=cast.charlie)
    start = mark()
    post_login(login_client(remote_addr="192.0.2.40"), cast.charlie.email, WRONG)
    assert sorted(slug or "" for _action, _result, slug, _actor, _ip in rows_since(start)) == ["acme", "beta"]
    assert audit_events(actor=cast.alice_membership, action="auth.login").filter(target_label=cast.charlie.email).exists()
    page = Client()
    page.force_login(cast.alice, backend="allauth.account.auth_backends.AuthenticationBackend")
    assert cast.charlie.email in page.get(reverse("audit:log", kwargs={"slug": "acme"})).content.decode()


@pytest.mark.django_db
def test_r53_throttled_attempts_are_recorded_as_denied(cast) -> None:  # type: ignore[no-untyped-def]
    for attempt in range(10):
        post_login(login_client(remote_addr=f"10.3.0.{attempt}"), cast.bob.email, WRONG)
    start = mark()
    post_login(login_client(remote_addr="10.3.1.1"), cast.bob.email, DEFAULT_PASSWORD)
    (event,) = AuditEvent.objects.filter(pk__gt=start)
    assert (event.action, event.result, event.details["reason"], event.target_label) == ("auth.login", "denied", "throttled", cast.bob.email)


@pytest.mark.django_db
def test_r53_password_reset_email_change_and_reauthentication_failure(cast) -> None:  # type: ignore[no-untyped-def]
    bob: User = cast.bob
    start = mark()
    client = Client(REMOTE_ADDR="192.0.2.50")
    reset_password(client, request_reset_link(client, bob.email), NEW_PASSWORD)
    signed_in = signed_in_client(bob, remote_addr="192.0.2.51", password=NEW_PASSWORD)
    signed_in.post(reverse("account_reauthenticate"), {"password": WRONG})
    signed_in.post(reverse("account_reauthenticate"), {"password": NEW_PASSWORD})
    mail.outbox.clear()
    with delivered():
        signed_in.post(reverse("account_email"), {"email": "bob.new@acme.test", "action_add": ""})
    (link,) = re.findall(r"https?://\S+/accounts/confirm-email/\S+/", mail.outbox[0].body)
    signed_in.post(link)
    actions = [(action, result) for action, result, _slug, _actor, _ip in rows_since(start)]
    assert actions == [
        ("auth.password_reset", "success"),
        ("auth.login", "success"),
        ("auth.reauthenticate", "failure"),
        ("auth.reauthenticate", "success"),
        ("auth.email_added", "success"),
        ("auth.email_changed", "success"),
    ]
    changed = AuditEvent.objects.get(pk__gt=start, action="auth.email_changed")
    assert changed.details == {"from": "bob@acme.test", "to": "bob.new@acme.test"}
    details = json.dumps([event.details for event in AuditEvent.objects.filter(pk__gt=start)])
    assert NEW_PASSWORD not in details
    assert WRONG not in details
