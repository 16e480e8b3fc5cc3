"""SECURITY.md R5: login, sign-up and password reset answer the same for known and unknown addresses.

Responses are compared after removing what differs on every request anyway (CSRF tokens, CSP
nonces, the request id, the address the form shows back); cookies are compared by name and attributes, not value.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import pytest
from django.test import Client, override_settings
from django.urls import reverse

from postroom.accounts.tests.authflows import delivered
from postroom.accounts.tests.hashers import FastArgon2PasswordHasher
from postroom.testing.factories import UserFactory

EXISTING = "alice@acme.test"
UNKNOWN = "nobody-here@acme.test"
VOLATILE = [
    re.compile(r'name="csrfmiddlewaretoken" value="[^"]+"'),
    re.compile(r'"X-CSRFToken": "[^"]+"'),
    re.compile(r'nonce="[^"]+"'),
    re.compile(r"[0-9a-f]{16}(?=</)"),  # the request id some pages print
]


def normalized(response: Any, typed: str = "") -> tuple[int, str, str, list[tuple[str, str, str]]]:
    body = response.content.decode()
    if typed:
        body = body.replace(typed, "~typed~")  # the form shows back what was typed
    for pattern in VOLATILE:
        body = pattern.sub("~", body)
    cookies = sorted(
        (name, str(morsel["path"]), str(morsel["samesite"])) for name, morsel in response.cookies.items()
    )
    return response.status_code, response.get("Location", ""), body, cookies


def answer(url: str, data: dict[str, str]) -> tuple[int, str, str, list[tuple[str, str, str]]]:
    client = Client(REMOTE_ADDR="192.0.2.50")
    client.get(url)
    with delivered():
        return normalized(client.post(url, data), data.get("login") or data.get("email", ""))


@pytest.mark.django_db
def test_r05_login_failure_is_the_same_for_known_and_unknown_addresses(cast) -> None:  # type: ignore[no-untyped-def]
    url = reverse("account_login")
    known = answer(url, {"login": EXISTING, "password": "not the right password"})
    unknown = answer(url, {"login": UNKNOWN, "password": "not the right password"})
    assert known == unknown
    assert known[0] == 200


@pytest.mark.django_db
def test_r05_password_reset_request_is_the_same_for_known_and_unknown_addresses(cast) -> None:  # type: ignore[no-untyped-def]
    url = reverse("account_reset_password")
    known = answer(url, {"email": EXISTING})
    unknown = answer(url, {"email": UNKNOWN})
    assert known == unknown
    assert known[0] == 302
    done_known = Client().get(known[1])
    assert normalized(done_known) == normalized(Client().get(unknown[1]))


@pytest.mark.django_db
def test_r05_signup_is_the_same_for_taken_and_free_addresses(cast) -> None:  # type: ignore[no-untyped-def]
    url = reverse("account_signup")
    password = "quiet ferns hum over the dam"
    taken = answer(url, {"email": EXISTING, "password1": password, "password2": password})
    free = answer(url, {"email": UNKNOWN, "password1": password, "password2": password})
    assert taken == free
    assert taken[0] == 302


@pytest.mark.django_db
def test_r05_the_throttle_refuses_known_and_unknown_addresses_alike(cast) -> None:  # type: ignore[no-untyped-def]
    url = reverse("account_login")
    answers: dict[str, tuple[int, str, str, list[tuple[str, str, str]]]] = {}
    for login in (EXISTING, UNKNOWN):
        for attempt in range(10):
            Client(REMOTE_ADDR=f"10.1.{attempt}.{len(answers)}").post(url, {"login": login, "password": "wrong guess"})
        answers[login] = answer(url, {"login": login, "password": "wrong guess"})
    assert answers[EXISTING] == answers[UNKNOWN]
    assert "Too many failed login attempts" in answers[EXISTING][2]


class CountingHasher(FastArgon2PasswordHasher):
    """The test hasher, counting how often a password is hashed or verified."""

    uses: ClassVar[int] = 0

    def encode(self, password: str, salt: str) -> str:
        CountingHasher.uses += 1
        return super().encode(password, salt)

    def verify(self, password: str, encoded: str) -> bool:
        CountingHasher.uses += 1
        return super().verify(password, encoded)


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["unknown address", "password account", "account without a password"])
def test_r05_a_failed_login_always_costs_a_password_hash(who: str) -> None:
    if who == "password account":
        UserFactory(email="someone@example.test")
    elif who == "account without a password":
        user = UserFactory(email="someone@example.test")
        user.set_unusable_password()
        user.save(update_fields=["password"])
    with override_settings(PASSWORD_HASHERS=["postroom.accounts.tests.test_enumeration.CountingHasher"]):
        CountingHasher.uses = 0
        Client().post(reverse("account_login"), {"login": "someone@example.test", "password": "not the right password"})
        assert CountingHasher.uses >= 1
