"""Session lifetime (R17), key rotation and logout (R16), ending sessions (R18)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from allauth.account.models import EmailAddress, EmailConfirmationHMAC
from allauth.mfa.models import Authenticator
from allauth.usersessions.models import UserSession
from django.conf import settings
from django.contrib.sessions.models import Session
from django.core.cache import cache
from django.test import Client

from postroom.accounts.middleware import LOGIN_AT
from postroom.accounts.models import User
from postroom.accounts.tests.session_helpers import (
    PROTECTED_URL,
    confirm_password,
    counting_writes,
    enable_totp,
    is_signed_in,
    password_step,
    replay,
    sent_to_login,
    session_key,
    signed_in_client,
    totp_code,
)
from postroom.audit.models import AuditEvent
from postroom.testing.factories import DEFAULT_PASSWORD

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NEW_PASSWORD = "a brand new sentence for logging in"


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    # allauth keeps used TOTP codes and rate-limit counters in the cache.
    cache.clear()


# --- R17: timeouts -------------------------------------------------------------------------


def test_r17_idle_session_ends_after_14_days_even_for_a_replayed_cookie(cast) -> None:
    with time_machine.travel(START, tick=False) as clock:
        client = signed_in_client(cast.alice)
        key = session_key(client)
        clock.shift(timedelta(days=14) - timedelta(minutes=1))
        assert replay(key).status_code == 200  # still inside the window: the replay works

    with time_machine.travel(START, tick=False) as clock:
        client = signed_in_client(cast.bob)
        key = session_key(client)
        clock.shift(timedelta(days=14, seconds=1))
        assert sent_to_login(replay(key))
        assert sent_to_login(client.get(PROTECTED_URL))
        assert not Session.objects.filter(session_key=key, expire_date__gt=datetime.now(UTC)).exists()


def test_r17_activity_keeps_a_session_until_30_days_after_login(cast) -> None:
    with time_machine.travel(START, tick=False) as clock:
        client = signed_in_client(cast.alice)
        key = session_key(client)
        for _ in range(2):  # day 13 and day 26: each visit restarts the 14 idle days
            clock.shift(timedelta(days=13))
            assert is_signed_in(client)
        clock.shift(timedelta(days=4, seconds=1))  # 30 days and a second after login, 4 days idle
        response = client.get(PROTECTED_URL)
        assert sent_to_login(response)
        assert response["Clear-Site-Data"] == '"cache", "cookies", "storage"'
        assert not Session.objects.filter(session_key=key).exists()
        assert sent_to_login(replay(key))


def test_r17_a_session_without_a_login_time_counts_as_expired(cast) -> None:
    client = signed_in_client(cast.alice)
    session = client.session
    del session[LOGIN_AT]
    session.save()
    assert sent_to_login(client.get(PROTECTED_URL))


def test_r17_remembered_login_gets_the_14_day_sliding_expiry(cast) -> None:
    with time_machine.travel(START, tick=False) as clock:
        client = signed_in_client(cast.alice)
        row = Session.objects.get(session_key=session_key(client))
        assert row.expire_date == START + timedelta(days=14)
        assert client.cookies[settings.SESSION_COOKIE_NAME]["max-age"] == 14 * 24 * 3600
        clock.shift(timedelta(days=3))
        client.get(PROTECTED_URL)
        row.refresh_from_db()
        assert row.expire_date == START + timedelta(days=17)


def test_r17_activity_is_written_at_most_once_a_minute(cast) -> None:
    with time_machine.travel(START, tick=False) as clock:
        client = signed_in_client(cast.alice, user_agent="Laptop")
        key = session_key(client)
        tracked = UserSession.objects.get(session_key=key)

        with counting_writes() as writes:
            for _ in range(5):  # five pages in the first 50 seconds
                clock.shift(timedelta(seconds=10))
                assert client.get(PROTECTED_URL).status_code == 200
        assert writes() == []

        clock.shift(timedelta(seconds=11))  # 61 s after login
        with counting_writes() as writes:
            assert client.get(PROTECTED_URL).status_code == 200
        written = writes()
        assert any("django_session" in sql for sql in written)
        assert any("usersessions_usersession" in sql for sql in written)
        assert Session.objects.get(session_key=key).expire_date == START + timedelta(seconds=61) + timedelta(days=14)
        tracked.refresh_from_db()
        assert tracked.last_seen_at == START + timedelta(seconds=61)

        with counting_writes() as writes:
            for _ in range(5):
                clock.shift(timedelta(seconds=10))
                assert client.get(PROTECTED_URL).status_code == 200
        assert writes() == []


# --- R16: rotation and logout --------------------------------------------------------------


def test_r16_every_authentication_step_issues_a_new_session_key(cast) -> None:
    secret = enable_totp(cast.alice)
    client = Client()
    session = client.session  # a session that exists before signing in (fixation attempt)
    session["planted"] = True
    session.save()
    keys = [session_key(client)]

    response = password_step(client, cast.alice)
    assert response["Location"] == "/accounts/2fa/authenticate/"
    keys.append(session_key(client))

    response = client.post("/accounts/2fa/authenticate/", {"code": totp_code(secret)})
    assert response.status_code == 302
    assert response.wsgi_request.user == cast.alice
    keys.append(session_key(client))

    confirm_password(client)
    keys.append(session_key(client))

    assert len(set(keys)) == len(keys)
    assert is_signed_in(client)
    for old_key in keys[:-1]:
        assert sent_to_login(replay(old_key))
    # The session list follows the session to its newest key.
    assert UserSession.objects.filter(user=cast.alice).get().session_key == keys[-1]


def test_r16_logout_deletes_the_session_and_clears_site_data(cast) -> None:
    client = signed_in_client(cast.alice)
    key = session_key(client)
    response = client.post("/accounts/logout/")
    assert response.status_code == 302
    assert response["Clear-Site-Data"] == '"cache", "cookies", "storage"'
    assert not Session.objects.filter(session_key=key).exists()
    assert sent_to_login(replay(key))


def test_r16_asking_to_log_out_by_get_changes_nothing(cast) -> None:
    client = signed_in_client(cast.alice)
    response = client.get("/accounts/logout/")
    assert response.status_code == 200
    assert "Clear-Site-Data" not in response
    assert is_signed_in(client)


# --- R18: ending sessions ------------------------------------------------------------------


def test_r18_password_change_ends_other_sessions_and_keeps_this_one(cast) -> None:
    this, other = signed_in_client(cast.alice), signed_in_client(cast.alice)
    untracked = Client()
    untracked.force_login(cast.alice, backend="allauth.account.auth_backends.AuthenticationBackend")
    other_key = session_key(other)
    confirm_password(this)
    response = this.post("/accounts/password/change/", {"oldpassword": DEFAULT_PASSWORD, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert response.status_code == 302
    assert is_signed_in(this)
    assert sent_to_login(other.get(PROTECTED_URL))
    assert sent_to_login(untracked.get(PROTECTED_URL))
    assert not Session.objects.filter(session_key=other_key).exists()


# allauth announces second-factor changes after the transaction commits: these tests commit.
AFTER_COMMIT = pytest.mark.django_db(transaction=True)


@AFTER_COMMIT
def test_r18_turning_on_an_authenticator_app_ends_other_sessions(cast) -> None:
    this, other = signed_in_client(cast.alice), signed_in_client(cast.alice)
    confirm_password(this)
    page = this.get("/accounts/2fa/totp/activate/")
    secret = page.context["form"].secret
    response = this.post("/accounts/2fa/totp/activate/", {"code": totp_code(secret)})
    assert response.status_code == 302
    assert Authenticator.objects.filter(user=cast.alice, type=Authenticator.Type.TOTP).exists()
    assert is_signed_in(this)
    assert sent_to_login(other.get(PROTECTED_URL))


def _signed_in_with_totp(user: User, secret: str, clock: time_machine.Traveller) -> Client:
    client = Client()
    password_step(client, user)
    response = client.post("/accounts/2fa/authenticate/", {"code": totp_code(secret)})
    assert response.wsgi_request.user == user
    clock.shift(timedelta(seconds=31))  # the next client needs the next code: each is single-use
    return client


@AFTER_COMMIT
@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/accounts/2fa/totp/deactivate/", {}),
        ("/accounts/2fa/recovery-codes/generate/", {}),
    ],
    ids=["totp-off", "recovery-codes-renewed"],
)
def test_r18_second_factor_changes_end_other_sessions(cast, path: str, data: dict[str, str]) -> None:
    secret = enable_totp(cast.alice)
    with time_machine.travel(START, tick=False) as clock:
        this, other = _signed_in_with_totp(cast.alice, secret, clock), _signed_in_with_totp(cast.alice, secret, clock)
        confirm_password(this)
        assert this.post(path, data).status_code == 302
        assert is_signed_in(this)
        assert sent_to_login(other.get(PROTECTED_URL))


@AFTER_COMMIT
def test_r18_removing_a_passkey_ends_other_sessions(cast) -> None:
    passkey = Authenticator.objects.create(user=cast.alice, type=Authenticator.Type.WEBAUTHN, data={"name": "Phone", "credential": {}, "passwordless": True})
    this, other = Client(), Client()  # a passkey makes the login form ask for it: sign in directly
    for client in (this, other):
        client.force_login(cast.alice, backend="allauth.account.auth_backends.AuthenticationBackend")
    confirm_password(this)
    assert this.post(f"/accounts/2fa/webauthn/keys/{passkey.pk}/remove/").status_code == 302
    assert not Authenticator.objects.filter(pk=passkey.pk).exists()
    assert is_signed_in(this)
    assert sent_to_login(other.get(PROTECTED_URL))


def test_r18_email_change_ends_other_sessions(cast) -> None:
    this, other = signed_in_client(cast.alice), signed_in_client(cast.alice)
    confirm_password(this)
    assert this.post("/accounts/email/", {"action_add": "", "email": "alice.new@acme.test"}).status_code == 302
    added = EmailAddress.objects.get(email="alice.new@acme.test")
    key = EmailConfirmationHMAC(added).key
    assert this.post(f"/accounts/confirm-email/{key}/").status_code == 302
    assert EmailAddress.objects.get(user=cast.alice).email == "alice.new@acme.test"
    assert is_signed_in(this)
    assert sent_to_login(other.get(PROTECTED_URL))


def test_r18_deactivating_a_member_ends_their_sessions_at_once(cast) -> None:
    first, second = signed_in_client(cast.alice), signed_in_client(cast.alice)
    bobs = signed_in_client(cast.bob)
    keys = [session_key(first), session_key(second)]
    cast.alice.is_active = False
    cast.alice.save(update_fields=["is_active"])
    assert not Session.objects.filter(session_key__in=keys).exists()
    assert not UserSession.objects.filter(user=cast.alice).exists()
    assert sent_to_login(first.get(PROTECTED_URL))
    assert sent_to_login(replay(keys[1]))
    assert is_signed_in(bobs)


def test_r18_member_sees_their_sessions_and_ends_one(cast) -> None:
    laptop = signed_in_client(cast.alice, user_agent="Firefox on a laptop")
    phone = signed_in_client(cast.alice, user_agent="Safari on a phone")
    signed_in_client(cast.bob, user_agent="Bob's own browser")
    page = laptop.get("/accounts/sessions/")  # looking needs no confirmation
    assert page.status_code == 200
    body = page.content.decode()
    assert "Firefox on a laptop" in body
    assert "Safari on a phone" in body
    assert "127.0.0.1" in body
    assert "Bob&#x27;s own browser" not in body
    assert "Bob's own browser" not in body
    phone_session = UserSession.objects.get(session_key=session_key(phone))

    assert laptop.post(f"/settings/sessions/{phone_session.pk}/end/")["Location"].startswith("/accounts/reauthenticate/")
    assert is_signed_in(phone)

    confirm_password(laptop)
    response = laptop.post(f"/settings/sessions/{phone_session.pk}/end/")
    assert response["Location"] == "/accounts/sessions/"
    assert sent_to_login(phone.get(PROTECTED_URL))
    assert is_signed_in(laptop)
    assert AuditEvent.objects.filter(action="auth.session_ended", actor=cast.alice).exists()


def test_r18_a_member_cannot_end_someone_elses_session(cast) -> None:
    alice = signed_in_client(cast.alice)
    bob = signed_in_client(cast.bob)
    confirm_password(bob)
    alices_session = UserSession.objects.get(session_key=session_key(alice))
    assert bob.post(f"/settings/sessions/{alices_session.pk}/end/").status_code == 404
    assert is_signed_in(alice)


def test_r18_ending_the_current_session_signs_out(cast) -> None:
    client = signed_in_client(cast.alice)
    key = session_key(client)
    confirm_password(client)
    current = UserSession.objects.get(session_key=session_key(client))
    response = client.post(f"/settings/sessions/{current.pk}/end/")
    assert sent_to_login(response)
    assert response["Clear-Site-Data"] == '"cache", "cookies", "storage"'
    assert sent_to_login(replay(key))


def test_r18_ending_all_other_sessions_needs_confirmation(cast) -> None:
    this, other = signed_in_client(cast.alice), signed_in_client(cast.alice)
    assert this.post("/accounts/sessions/")["Location"].startswith("/accounts/reauthenticate/")
    assert is_signed_in(other)
    confirm_password(this)
    assert this.post("/accounts/sessions/").status_code == 302
    assert sent_to_login(other.get(PROTECTED_URL))
    assert is_signed_in(this)
