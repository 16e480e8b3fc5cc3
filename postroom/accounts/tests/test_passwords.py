"""SECURITY.md R1 (length and form), R2 (blocklist, context words), R3 (storage), R11 (reset)."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.conf import settings
from django.contrib.auth.hashers import identify_hasher, make_password
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.test import Client, override_settings
from django.urls import reverse
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from postroom import settings as production_settings
from postroom.accounts.actions import setup_token_issue
from postroom.accounts.models import User
from postroom.accounts.passwords import common_passwords
from postroom.accounts.tests.authflows import (
    enable_totp,
    fresh,
    is_signed_in,
    post_login,
    reauthenticate,
    request_reset_link,
    reset_password,
    signed_in_client,
)
from postroom.orgs.models import Organization
from postroom.testing.factories import DEFAULT_PASSWORD, MembershipFactory, OrganizationFactory, UserFactory

REPOSITORY = Path(__file__).resolve().parents[3]

ACCEPTED = {
    "15 characters": "quiet ferns hum",
    "15 digits": "820461937502846",
    "15 emoji": "🦊🌵🎻🚲🧊🪁🦉🍄🛶🧲🪴🐙🥨🧭🎈",
    "64 characters": hashlib.sha256(b"sixty-four").hexdigest(),
    "1024 characters": "".join(hashlib.sha512(str(index).encode()).hexdigest() for index in range(8)),
}
REJECTED = {
    "14 characters": "quiet ferns hu",
    "1025 characters": "x" + "".join(hashlib.sha512(str(index).encode()).hexdigest() for index in range(8)),
    "keyboard walk": "qwertyuiopasdfgh",
    "padded common password": "password12345678",
    "product name": "Postroom2025!!!!!!",
}


# Each path sets ``password`` through allauth's (or the setup page's) real view and returns the
# error messages shown, or None when the password was stored.
def _errors(response) -> list[str]:  # type: ignore[no-untyped-def]
    form = response.context["form"] if response.context and "form" in response.context else None
    assert form is not None, f"expected the form again, got {response.status_code}"
    return [message for messages in form.errors.values() for message in messages]


def via_signup(password: str) -> list[str] | None:
    UserFactory(email="first-owner@example.test")  # sign-up opens once setup is done
    response = Client().post(reverse("account_signup"), {"email": "newcomer@example.test", "password1": password, "password2": password})
    if response.status_code == 302:
        assert User.objects.get(email="newcomer@example.test").check_password(password)
        return None
    return _errors(response)


def via_change(password: str) -> list[str] | None:
    user = UserFactory(email="changer@example.test", name="Dana Change")
    client = Client()
    client.force_login(user, backend="allauth.account.auth_backends.AuthenticationBackend")
    reauthenticate(client)
    response = client.post(reverse("account_change_password"), {"oldpassword": DEFAULT_PASSWORD, "password1": password, "password2": password})
    if fresh(user).check_password(password):
        return None
    return _errors(response)


def via_set(password: str) -> list[str] | None:
    user = UserFactory(email="setter@example.test", name="Sam Set")
    user.set_unusable_password()
    user.save(update_fields=["password"])
    client = Client()
    client.force_login(user, backend="allauth.account.auth_backends.AuthenticationBackend")
    response = client.post(reverse("account_set_password"), {"password1": password, "password2": password})
    if fresh(user).check_password(password):
        return None
    return _errors(response)


def via_reset(password: str) -> list[str] | None:
    user = UserFactory(email="resetter@example.test", name="Robin Reset")
    client = Client()
    response = reset_password(client, request_reset_link(client, user.email), password)
    if fresh(user).check_password(password):
        return None
    return _errors(response)


def via_setup(password: str) -> list[str] | None:
    token = setup_token_issue()
    assert token
    response = Client().post(
        reverse("web:setup"),
        {"token": token, "organization_name": "Harbor Lights", "name": "Frida First", "email": "first@example.test", "password": password},
    )
    if response.status_code == 302:
        assert User.objects.get(email="first@example.test").check_password(password)
        return None
    assert not User.objects.exists()
    return _errors(response)


PATHS: dict[str, Callable[[str], list[str] | None]] = {
    "signup": via_signup, "change": via_change, "set": via_set, "reset": via_reset, "setup": via_setup,
}


@pytest.mark.django_db
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("label", ACCEPTED)
def test_r01_every_password_path_accepts_long_passwords_of_any_kind(path: str, label: str) -> None:
    assert PATHS[path](ACCEPTED[label]) is None


@pytest.mark.django_db
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("label", REJECTED)
def test_r02_every_password_path_runs_the_same_validators_and_says_why(path: str, label: str) -> None:
    errors = PATHS[path](REJECTED[label])
    assert errors, f"{label} was accepted through {path}"
    assert any(word in " ".join(errors) for word in ("characters", "common", "Postroom", "too close")), errors


def test_r01_no_composition_rules_and_unicode_counts_code_points() -> None:
    validators: list[dict[str, Any]] = list(production_settings.AUTH_PASSWORD_VALIDATORS)
    names = [validator["NAME"] for validator in validators]
    assert "django.contrib.auth.password_validation.NumericPasswordValidator" not in names
    assert "django.contrib.auth.password_validation.UserAttributeSimilarityValidator" not in names
    lengths = [validator.get("OPTIONS", {}).get("min_length") for validator in validators]
    assert 15 in lengths
    validate_password("é" * 5 + "文字化け対策" + "ßøå∂")  # 15 code points, 30+ bytes
    with pytest.raises(ValidationError):
        validate_password("é" * 5 + "文字化け対策" + "ßøå")  # 14 code points


@pytest.mark.django_db
def test_r01_the_whole_password_is_verified_not_the_first_72_bytes() -> None:
    prefix = "ü" * 36  # 72 bytes in UTF-8
    user = UserFactory(password=prefix + " first ending")
    assert user.check_password(prefix + " first ending")
    assert not user.check_password(prefix + " other ending")
    assert not user.check_password(prefix)
    assert not user.check_password((prefix + " first ending").upper())


@pytest.mark.django_db
@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(password=st.text(min_size=1, max_size=300))
def test_r01_set_and_check_password_round_trip(password: str) -> None:
    user = User(email="roundtrip@example.test")
    user.set_password(password)
    assert user.check_password(password)
    assert not user.check_password(password + "x")


@pytest.mark.django_db
def test_r02_context_words_are_rejected_with_a_reason(cast) -> None:  # type: ignore[no-untyped-def]
    acme = OrganizationFactory(name="Acme", slug="acme-co")
    MembershipFactory(organization=acme, user=cast.bob)
    for password in ("Acme2025!!!!!!!!!!!", "Acme Support2025!!!!!!", "bob@acme.test2025!!", "Bob Member 1234567", "postroompostroom1"):
        with pytest.raises(ValidationError) as raised:
            validate_password(password, user=cast.bob)
        assert raised.value.messages, password
        assert any("name" in message or "common" in message for message in raised.value.messages)
    validate_password("quiet ferns hum over the dam", user=cast.bob)


@pytest.mark.django_db
def test_r02_organization_name_before_the_account_exists() -> None:
    candidate = User(email="frida@example.test", name="Frida First")
    candidate._organization_names_for_password_check = ["Harbor Lights"]  # type: ignore[attr-defined]
    with pytest.raises(ValidationError):
        validate_password("HarborLights2025!!!!!!", user=candidate)
    assert not Organization.objects.exists()


def test_r02_bundled_list_is_long_enough_and_generated_by_the_script() -> None:
    entries = [
        line for line in (REPOSITORY / "postroom/accounts/common-passwords-long.txt").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    ]
    assert len(entries) >= 3000
    assert all(len(entry) >= 15 for entry in entries)
    assert set(entries) <= common_passwords()
    check = subprocess.run(
        [sys.executable, str(REPOSITORY / "scripts/make_common_passwords.py"), "--check"], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stderr


@pytest.mark.parametrize("password", ["qazwsxedcrfvtgbyhn", "iloveyouforever", "sunshineprincess", "1q2w3e4r5t6y7u8i", "letmeinletmeinletmein"])
def test_r02_listed_passwords_are_rejected(password: str) -> None:
    with pytest.raises(ValidationError) as raised:
        validate_password(password)
    assert "common" in " ".join(raised.value.messages)


@pytest.mark.django_db
def test_r02_validation_needs_no_network(monkeypatch: pytest.MonkeyPatch, cast) -> None:  # type: ignore[no-untyped-def]
    common_passwords.cache_clear()

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("password validation tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    with pytest.raises(ValidationError):
        validate_password("qwertyuiopasdfghjkl", user=cast.alice)
    validate_password("quiet ferns hum over the dam", user=cast.alice)


def test_r03_production_hashers_are_argon2id_first_and_nothing_weak() -> None:
    hashers = production_settings.PASSWORD_HASHERS
    assert hashers[0] == "django.contrib.auth.hashers.Argon2PasswordHasher"
    weak = ("MD5", "SHA1", "Crypt", "Unsalted", "BCryptPasswordHasher", "ScryptPasswordHasher")
    assert not [hasher for hasher in hashers if any(name in hasher.rsplit(".", 1)[-1] for name in weak)]
    with override_settings(PASSWORD_HASHERS=hashers):
        assert make_password("quiet ferns hum over the dam").startswith("argon2$argon2id$")
        assert identify_hasher(make_password("x" * 15)).algorithm == "argon2"


@pytest.mark.django_db
def test_r03_a_legacy_pbkdf2_hash_is_upgraded_at_login() -> None:
    with override_settings(PASSWORD_HASHERS=production_settings.PASSWORD_HASHERS):
        user = UserFactory(email="legacy@example.test")
        user.password = make_password(DEFAULT_PASSWORD, hasher="pbkdf2_sha256")
        user.save(update_fields=["password"])
        assert fresh(user).password.startswith("pbkdf2_sha256$")
        response = post_login(Client(), user.email)
        assert response.status_code == 302
        assert fresh(user).password.startswith("argon2$argon2id$")


# --- R11: password reset -------------------------------------------------------------------------

RESET_TO = "a reset passphrase that is long"


@pytest.mark.django_db
def test_r11_reset_links_expire_after_an_hour() -> None:
    assert settings.PASSWORD_RESET_TIMEOUT == 3600
    user = UserFactory(email="late@example.test")
    with time_machine.travel(datetime(2026, 3, 2, 9, 0, tzinfo=UTC), tick=False) as traveller:
        client = Client()
        link = request_reset_link(client, user.email)
        traveller.shift(timedelta(minutes=61))
        reset_password(client, link, RESET_TO)
    assert not fresh(user).check_password(RESET_TO)
    assert fresh(user).check_password(DEFAULT_PASSWORD)


@pytest.mark.django_db
def test_r11_a_reset_link_works_once_and_older_links_die_with_it() -> None:
    user = UserFactory(email="twice@example.test")
    client = Client()
    older = request_reset_link(client, user.email)
    newer = request_reset_link(client, user.email)
    reset_password(Client(), newer, RESET_TO)
    assert fresh(user).check_password(RESET_TO)
    for link in (newer, older):
        reset_password(Client(), link, "another passphrase that is long")
        assert fresh(user).check_password(RESET_TO)


@pytest.mark.django_db
def test_r11_a_reset_does_not_bypass_the_second_factor() -> None:
    user = UserFactory(email="guarded@example.test")
    enable_totp(signed_in_client(user))
    client = Client()
    reset_password(client, request_reset_link(client, user.email), RESET_TO)
    assert not is_signed_in(client)
    login = Client()
    response = post_login(login, user.email, RESET_TO)
    assert response["Location"] == reverse("mfa_authenticate")
    assert not is_signed_in(login)


@pytest.mark.django_db
def test_r11_a_reset_ends_every_other_session() -> None:
    user = UserFactory(email="everywhere@example.test")
    other_device = signed_in_client(user)
    assert other_device.get(reverse("account_email")).status_code == 200
    client = Client()
    reset_password(client, request_reset_link(client, user.email), RESET_TO)
    response = other_device.get(reverse("account_email"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))
