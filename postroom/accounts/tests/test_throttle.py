"""SECURITY.md R4: online guessing of passwords, TOTP and recovery codes is throttled.

Every loop uses a fresh client (new session, new cookies) from a new address, and a spoofed
X-Forwarded-For that changes every time; the clock moves with time-machine instead of sleeping.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import cast

import pyotp
import pytest
import time_machine
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.core.management import call_command
from django.db import connection
from django.test import Client, RequestFactory, override_settings
from django.urls import reverse

from postroom.accounts.models import User
from postroom.accounts.tests.authflows import is_signed_in, login_client, post_login, request_reset_link, reset_password
from postroom.accounts.throttle import ACCOUNT_POLICY, AttemptRefusedError, attempt_reserve
from postroom.audit.models import AuditEvent
from postroom.testing.factories import UserFactory

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
WAIT_OUT_ANY_DELAY = timedelta(minutes=16)
WRONG_CREDENTIALS = "are not correct"
REFUSED = "Too many failed login attempts"


def addresses() -> Iterator[tuple[str, str]]:
    """(the real peer address, a spoofed X-Forwarded-For), different every time."""
    number = 0
    while True:
        number += 1
        yield f"10.{number // 200}.{number % 200}.7", f"203.0.113.{number % 250}, 198.51.100.{number % 250}"


@pytest.fixture
def traveller() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


@pytest.fixture
def person(db: None) -> User:
    return cast(User, UserFactory(email="target@example.test", name="Tara Target"))


@pytest.fixture
def person_with_totp(person: User) -> tuple[User, pyotp.TOTP]:
    secret = generate_totp_secret()
    TOTP.activate(person, secret)
    RecoveryCodes.activate(person)
    return person, pyotp.TOTP(secret)


def fail_once(kind: str, user: User, address: tuple[str, str], totp: pyotp.TOTP | None = None) -> None:
    """One wrong attempt of ``kind``, which must be checked (not refused) and fail."""
    client = login_client(remote_addr=address[0], forwarded_for=address[1])
    if kind == "password":
        response = post_login(client, user.email, "not the password at all")
        assert WRONG_CREDENTIALS in response.content.decode()
        return
    response = post_login(client, user.email)
    assert response.status_code == 302, "password step refused"
    assert response["Location"] == reverse("mfa_authenticate")
    wrong_code = "000000" if kind == "totp" else "12345678901234567890"
    if totp is not None and wrong_code == totp.now():
        wrong_code = "999999"
    response = client.post(reverse("mfa_authenticate"), {"code": wrong_code})
    assert "Incorrect code" in response.content.decode()
    assert not is_signed_in(client)


def sign_in_fully(client: Client, user: User, totp: pyotp.TOTP | None = None) -> bool:
    response = post_login(client, user.email)
    if totp is not None and response.status_code == 302 and response["Location"] == reverse("mfa_authenticate"):
        client.post(reverse("mfa_authenticate"), {"code": totp.now()})
    return is_signed_in(client)


@pytest.mark.django_db
def test_r04_hundred_wrong_passwords_stop_the_account_even_for_the_right_one(person: User, traveller: time_machine.Traveller) -> None:
    source = addresses()
    for _attempt in range(100):
        traveller.shift(WAIT_OUT_ANY_DELAY)
        fail_once("password", person, next(source))
    traveller.shift(timedelta(hours=6))
    address = next(source)
    client = login_client(remote_addr=address[0], forwarded_for=address[1])
    response = post_login(client, person.email)
    assert REFUSED in response.content.decode()
    assert not is_signed_in(client)


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["totp", "recovery_code", "mixed"])
def test_r04_second_factor_failures_count_with_password_failures(
    person_with_totp: tuple[User, pyotp.TOTP], traveller: time_machine.Traveller, kind: str
) -> None:
    person, totp = person_with_totp
    source = addresses()
    kinds = ["password", "totp", "recovery_code"] if kind == "mixed" else [kind]
    for attempt in range(100):
        traveller.shift(WAIT_OUT_ANY_DELAY)
        fail_once(kinds[attempt % len(kinds)], person, next(source), totp)
    traveller.shift(timedelta(hours=6))
    address = next(source)
    client = login_client(remote_addr=address[0], forwarded_for=address[1])
    assert not sign_in_fully(client, person, totp)
    assert REFUSED in post_login(login_client(remote_addr="10.99.99.99"), person.email).content.decode()


@pytest.mark.django_db
def test_r04_delays_grow_after_ten_failures(person: User, traveller: time_machine.Traveller) -> None:
    source = addresses()
    for _attempt in range(10):
        fail_once("password", person, next(source))  # no waiting: the first ten are free
    assert REFUSED in post_login(login_client(remote_addr=next(source)[0]), person.email, "guess").content.decode()
    traveller.shift(timedelta(seconds=1))
    fail_once("password", person, next(source))  # the 11th failure: next wait is 2 s
    traveller.shift(timedelta(seconds=1))
    assert REFUSED in post_login(login_client(remote_addr=next(source)[0]), person.email).content.decode()
    traveller.shift(timedelta(seconds=1))
    fail_once("password", person, next(source))  # 12th: next wait is 4 s
    traveller.shift(timedelta(seconds=3))
    assert REFUSED in post_login(login_client(remote_addr=next(source)[0]), person.email).content.decode()
    traveller.shift(timedelta(seconds=1))
    assert sign_in_fully(login_client(remote_addr=next(source)[0]), person)


@pytest.mark.django_db
def test_r04_a_success_resets_the_account_counter(person_with_totp: tuple[User, pyotp.TOTP], traveller: time_machine.Traveller) -> None:
    person, totp = person_with_totp
    source = addresses()
    for attempt in range(30):
        traveller.shift(WAIT_OUT_ANY_DELAY)
        fail_once("password" if attempt % 2 else "totp", person, next(source), totp)
    traveller.shift(WAIT_OUT_ANY_DELAY)
    assert sign_in_fully(login_client(remote_addr=next(source)[0]), person, totp)
    for _attempt in range(10):
        fail_once("password", person, next(source))  # free again, no waiting
    assert REFUSED in post_login(login_client(remote_addr=next(source)[0]), person.email).content.decode()


@pytest.mark.django_db
def test_r04_a_right_password_does_not_refill_the_second_factor_budget(
    person_with_totp: tuple[User, pyotp.TOTP], traveller: time_machine.Traveller
) -> None:
    person, totp = person_with_totp
    source = addresses()
    for _attempt in range(10):
        fail_once("totp", person, next(source), totp)  # each passes the password step first
    assert REFUSED in post_login(login_client(remote_addr=next(source)[0]), person.email).content.decode()


@pytest.mark.django_db
def test_r04_the_client_network_is_limited_and_x_forwarded_for_is_ignored(person: User, traveller: time_machine.Traveller) -> None:
    attacker = "198.51.100.23"
    for number in range(50):
        traveller.shift(timedelta(seconds=2.5))  # below allauth's own 30 logins a minute per address
        client = login_client(remote_addr=attacker, forwarded_for=f"192.0.2.{number}")
        response = post_login(client, f"someone{number}@example.test", "not the password at all")
        assert WRONG_CREDENTIALS in response.content.decode()
    spoofing = login_client(remote_addr=attacker, forwarded_for="192.0.2.200")
    assert REFUSED in post_login(spoofing, person.email).content.decode()
    assert sign_in_fully(login_client(remote_addr="198.51.100.24"), person)


@pytest.mark.django_db
@override_settings(TRUSTED_PROXY_COUNT=1)
def test_r04_behind_a_trusted_proxy_the_forwarded_address_is_the_key(person: User, traveller: time_machine.Traveller) -> None:
    proxy = "127.0.0.1"
    for number in range(50):
        traveller.shift(timedelta(seconds=2.5))
        client = login_client(remote_addr=proxy, forwarded_for=f"192.0.2.{number}, 198.51.100.23")
        post_login(client, f"someone{number}@example.test", "not the password at all")
    assert REFUSED in post_login(login_client(remote_addr=proxy, forwarded_for="198.51.100.23"), person.email).content.decode()
    assert sign_in_fully(login_client(remote_addr=proxy, forwarded_for="198.51.100.24"), person)


@pytest.mark.django_db
def test_r04_lockout_policy_the_owner_still_signs_in_from_a_known_network(person: User, traveller: time_machine.Traveller) -> None:
    home = "192.0.2.10"
    assert sign_in_fully(login_client(remote_addr=home), person)
    source = addresses()
    for _attempt in range(100):
        traveller.shift(WAIT_OUT_ANY_DELAY)
        fail_once("password", person, next(source))
    assert REFUSED in post_login(login_client(remote_addr=next(source)[0]), person.email).content.decode()
    assert sign_in_fully(login_client(remote_addr=home), person)
    fail_once("password", person, next(source))  # the success reset the account's counter


@pytest.mark.django_db
def test_r04_a_password_reset_by_email_lifts_the_hard_stop(person: User, traveller: time_machine.Traveller) -> None:
    source = addresses()
    for _attempt in range(100):
        traveller.shift(WAIT_OUT_ANY_DELAY)
        fail_once("password", person, next(source))
    client = login_client(remote_addr=next(source)[0])
    new_password = "a brand new long passphrase"
    reset_password(client, request_reset_link(client, person.email), new_password)
    stranger = login_client(remote_addr=next(source)[0])
    post_login(stranger, person.email, new_password)
    assert is_signed_in(stranger)


@pytest.mark.django_db
def test_r04_an_operator_can_lift_the_hard_stop(person: User, traveller: time_machine.Traveller) -> None:
    source = addresses()
    for _attempt in range(100):
        traveller.shift(WAIT_OUT_ANY_DELAY)
        fail_once("password", person, next(source))
    assert REFUSED in post_login(login_client(remote_addr=next(source)[0]), person.email).content.decode()
    call_command("unlock_account", person.email.upper(), stdout=io.StringIO())
    assert sign_in_fully(login_client(remote_addr=next(source)[0]), person)
    assert AuditEvent.objects.filter(action="auth.throttle_cleared", target_id=str(person.pk), details__reason="operator").exists()


@pytest.mark.django_db(transaction=True)
def test_r04_parallel_attempts_cannot_share_the_last_free_slot(traveller: time_machine.Traveller) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs truly concurrent connections (PostgreSQL)")
    person = cast(User, UserFactory(email="parallel@example.test"))
    factory = RequestFactory()
    for number in range(ACCOUNT_POLICY.free_failures - 1):
        attempt_reserve(factory.post("/", REMOTE_ADDR=f"10.5.0.{number}"), user=person)
    start_together = threading.Barrier(8)
    outcomes: list[str] = []

    def attempt(number: int) -> None:
        start_together.wait()
        try:
            attempt_reserve(factory.post("/", REMOTE_ADDR=f"10.6.0.{number}"), user=person)
            outcomes.append("checked")
        except AttemptRefusedError:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["checked"] + ["refused"] * 7
