"""SECURITY.md R8 (TOTP) and R10 (recovery codes), through allauth's real pages."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import cast

import pyotp
import pytest
import time_machine
from allauth.mfa.models import Authenticator
from django.core import mail
from django.core.cache import cache
from django.db import connection
from django.urls import reverse

from postroom.accounts.models import User
from postroom.accounts.tests.authflows import (
    TOTP_SECRET_SESSION_KEY,
    enable_totp,
    is_signed_in,
    login_client,
    reauthenticate,
    second_factor_login,
    signed_in_client,
)
from postroom.testing.factories import UserFactory

# A moment one second into a 30-second TOTP step, so codes do not roll over mid-test.
START = datetime(2026, 3, 2, 9, 0, 1, tzinfo=UTC)


@pytest.fixture
def frozen() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


@pytest.fixture
def person(db: None) -> User:
    return cast(User, UserFactory(email="totp-person@example.test", name="Theo Totp"))


def database_text() -> str:
    """Every row of every table as text: what a stolen database dump would show."""
    chunks: list[str] = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608 (table names from introspection)
            chunks.extend(repr(row) for row in cursor.fetchall())
    return "\n".join(chunks)


@pytest.mark.django_db
def test_r08_setup_page_renders_the_qr_on_our_server_and_is_not_cached(person: User) -> None:
    client = signed_in_client(person)
    reauthenticate(client)
    response = client.get(reverse("mfa_activate_totp"))
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    secret = client.session[TOTP_SECRET_SESSION_KEY]
    assert len(base64.b32decode(secret)) >= 20  # 160 bits
    assert "<svg" in response.context["totp_svg"]
    body = response.content.decode()
    assert "data:image/svg+xml" in body or "<svg" in body
    for source in re.findall(r'\bsrc="([^"]+)"', body):
        assert source.startswith(("/", "data:")), f"an outside service is asked for {source}"
    assert response.context["totp_url"].startswith("otpauth://totp/")


@pytest.mark.django_db
def test_r08_totp_is_activated_only_by_a_valid_code(person: User, frozen: time_machine.Traveller) -> None:
    client = signed_in_client(person)
    reauthenticate(client)
    client.get(reverse("mfa_activate_totp"))
    totp = pyotp.TOTP(client.session[TOTP_SECRET_SESSION_KEY])
    wrong = "000000" if totp.now() != "000000" else "111111"
    client.post(reverse("mfa_activate_totp"), {"code": wrong})
    assert not Authenticator.objects.filter(user=person).exists()
    client.post(reverse("mfa_activate_totp"), {"code": totp.now()})
    assert Authenticator.objects.filter(user=person, type=Authenticator.Type.TOTP).exists()


@pytest.mark.django_db
def test_r08_the_seed_is_stored_encrypted(person: User) -> None:
    totp = enable_totp(signed_in_client(person))
    stored = Authenticator.objects.get(user=person, type=Authenticator.Type.TOTP).data["secret"]
    assert stored != totp.secret
    dump = database_text()
    assert totp.secret not in dump
    assert totp.secret.lower() not in dump.lower()
    assert base64.b32decode(totp.secret).hex() not in dump


@pytest.mark.django_db
def test_r08_a_code_is_accepted_once_even_by_another_process(person: User, frozen: time_machine.Traveller) -> None:
    totp = enable_totp(signed_in_client(person))
    frozen.shift(timedelta(seconds=30))  # a new step; the activation code's step is spent
    code = totp.now()
    first = login_client(remote_addr="192.0.2.1")
    second_factor_login(first, person, code)
    assert is_signed_in(first)
    cache.clear()  # allauth's own memory of used codes is per process: another worker has none
    replay = login_client(remote_addr="192.0.2.2")
    response = second_factor_login(replay, person, code)
    assert not is_signed_in(replay)
    assert "Incorrect code" in response.content.decode()
    frozen.shift(timedelta(seconds=30))
    later = login_client(remote_addr="192.0.2.3")
    second_factor_login(later, person, totp.now())
    assert is_signed_in(later)


@pytest.mark.django_db
def test_r08_the_activation_code_cannot_sign_in_again(person: User, frozen: time_machine.Traveller) -> None:
    totp = enable_totp(signed_in_client(person))
    client = login_client(remote_addr="192.0.2.4")
    second_factor_login(client, person, totp.now())
    assert not is_signed_in(client)


@pytest.mark.django_db
@pytest.mark.parametrize("age", [30, 90])
def test_r08_codes_from_earlier_steps_fail(person: User, frozen: time_machine.Traveller, age: int) -> None:
    totp = enable_totp(signed_in_client(person))
    frozen.shift(timedelta(minutes=5))
    client = login_client(remote_addr="192.0.2.5")
    old_code = totp.at(datetime.now(tz=UTC) - timedelta(seconds=age))
    if old_code == totp.now():
        pytest.skip("the old and current codes collide by chance")
    second_factor_login(client, person, old_code)
    assert not is_signed_in(client)


def _show_recovery_codes(client) -> list[str]:  # type: ignore[no-untyped-def]
    response = client.get(reverse("mfa_view_recovery_codes"))
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    return list(response.context["unused_codes"])


@pytest.mark.django_db
def test_r10_ten_long_codes_shown_once_and_never_stored_in_plaintext(person: User) -> None:
    client = signed_in_client(person)
    enable_totp(client)
    codes = _show_recovery_codes(client)
    assert len(codes) == 10
    assert len(set(codes)) == 10
    assert all(re.fullmatch(r"\d{20}", code) for code in codes)  # 20 digits from 80 bits: ~66 bits each
    assert all(code not in client.get(reverse("mfa_view_recovery_codes")).content.decode() for code in codes)
    assert _show_recovery_codes(client) == ["****"] * 10
    dump = database_text()
    assert not [code for code in codes if code in dump]
    stored = json.dumps(Authenticator.objects.get(user=person, type=Authenticator.Type.RECOVERY_CODES).data)
    assert not [code for code in codes if code in stored]


@pytest.mark.django_db
def test_r10_a_recovery_code_works_once_and_its_use_is_announced(person: User) -> None:
    setup = signed_in_client(person)
    enable_totp(setup)
    codes = _show_recovery_codes(setup)
    mail.outbox.clear()
    first = login_client(remote_addr="192.0.2.6")
    second_factor_login(first, person, codes[0])
    assert is_signed_in(first)
    notices = [message for message in mail.outbox if "recovery code was used" in message.subject.lower()]
    assert len(notices) == 1
    assert notices[0].to == [person.email]
    assert "9 unused codes remain" in notices[0].body
    assert not [code for code in codes if code in notices[0].body]
    again = login_client(remote_addr="192.0.2.7")
    second_factor_login(again, person, codes[0])
    assert not is_signed_in(again)
    other = login_client(remote_addr="192.0.2.8")
    second_factor_login(other, person, codes[1])
    assert is_signed_in(other)
