"""R54: the logs of real sign-up, verification, login, reset and invitation flows hold no secret.

Everything is logged at DEBUG while django-allauth's real views run; then every record is checked
raw (passwords must never be logged at all) and as our formatter writes it (links and tokens must
not reach a log sink, even where Django logs a request path that carries one).
"""

from __future__ import annotations

import logging
import re

import pytest
from django.core import mail
from django.test import Client

from postroom.conftest import Cast
from postroom.core.logs import SafeFormatter
from postroom.orgs.actions import invitation_create

SIGNUP_PASSWORD = "violet-harbour-quantum-lantern-41"
WRONG_PASSWORD = "obviously-not-the-password-9931"
NEW_PASSWORD = "saffron-glacier-meridian-otter-77"
_LINK = re.compile(r"https?://\S+")


def last_link() -> str:
    (link,) = _LINK.findall(mail.outbox[-1].body)
    return link


def secret_part(link: str) -> str:
    """The token or key in a one-time link."""
    path = link.split("://", 1)[1].split("/", 1)[1].rstrip("/")
    return path.rsplit("/", 1)[-1]


@pytest.mark.django_db(transaction=True)
def test_r54_account_flows_log_no_password_token_or_link(caplog: pytest.LogCaptureFixture, cast: Cast, settings) -> None:  # type: ignore[no-untyped-def]
    # Without the blocklist validator: on Django 5.2 it cannot load its list yet (a
    # cached_property read from the class), and what it checks is not what this test is about.
    settings.AUTH_PASSWORD_VALIDATORS = [v for v in settings.AUTH_PASSWORD_VALIDATORS if not v["NAME"].endswith(".CommonPasswordValidator")]
    caplog.set_level(logging.DEBUG)
    client = Client()
    secrets: list[str] = [SIGNUP_PASSWORD, WRONG_PASSWORD, NEW_PASSWORD]

    # Sign up and verify the address.
    response = client.post("/accounts/signup/", {"email": "erin@example.test", "password1": SIGNUP_PASSWORD, "password2": SIGNUP_PASSWORD})
    assert response.status_code == 302
    confirm_link = last_link()
    secrets += [confirm_link, secret_part(confirm_link)]
    confirm_path = confirm_link.split("testserver", 1)[1]
    assert client.get(confirm_path).status_code == 200
    assert client.post(confirm_path).status_code == 302
    assert client.post("/accounts/logout/").status_code == 302

    # Log in, once wrong and once right.
    assert client.post("/accounts/login/", {"login": "erin@example.test", "password": WRONG_PASSWORD}).status_code == 200
    assert client.post("/accounts/login/", {"login": "erin@example.test", "password": SIGNUP_PASSWORD}).status_code == 302
    assert client.post("/accounts/logout/").status_code == 302

    # Reset the password from the emailed link.
    assert client.post("/accounts/password/reset/", {"email": "erin@example.test"}).status_code == 302
    reset_link = last_link()
    secrets += [reset_link, secret_part(reset_link)]
    reset_form = client.get(reset_link.split("testserver", 1)[1])
    assert reset_form.status_code == 302
    done = client.post(reset_form["Location"], {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert done.status_code == 302
    assert client.post("/accounts/login/", {"login": "erin@example.test", "password": NEW_PASSWORD}).status_code == 302

    # An invitation, its landing page, and a forged POST to it (Django logs that path).
    _invitation, token = invitation_create(actor=cast.alice_membership, email="frank@example.test", role="member")
    secrets.append(token)
    anonymous = Client(enforce_csrf_checks=True)
    assert anonymous.get(f"/invitations/{token}/").status_code == 200
    assert anonymous.post(f"/invitations/{token}/").status_code == 403

    assert caplog.records, "the flows logged nothing at all: the capture is not working"
    assert any(token in record.getMessage() for record in caplog.records), "expected Django's CSRF log line with the path"
    formatter = SafeFormatter("%(levelname)s %(name)s %(message)s")
    for record in caplog.records:
        raw = record.getMessage()
        for password in (SIGNUP_PASSWORD, WRONG_PASSWORD, NEW_PASSWORD):
            assert password not in raw, record.name
        written = formatter.format(record)
        for secret in secrets:
            assert secret not in written, (record.name, written)
