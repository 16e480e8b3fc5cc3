"""Small helpers that drive allauth's real views the way a browser does (for the auth tests)."""

from __future__ import annotations

import re

import pyotp
from allauth.mfa.totp.internal.auth import SECRET_SESSION_KEY as TOTP_SECRET_SESSION_KEY
from django.core import mail
from django.test import Client, TestCase
from django.urls import reverse

from postroom.accounts.models import User
from postroom.testing.factories import DEFAULT_PASSWORD

RESET_LINK = re.compile(r"https?://[^\s]+/accounts/password/reset/key/[^\s]+/")


def delivered():  # type: ignore[no-untyped-def]
    """Run after-commit callbacks (queued mail) inside a test's transaction, as a commit would."""
    return TestCase.captureOnCommitCallbacks(execute=True)


def login_client(*, remote_addr: str = "127.0.0.1", forwarded_for: str | None = None) -> Client:
    extra = {"REMOTE_ADDR": remote_addr}
    if forwarded_for:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded_for
    return Client(**extra)  # type: ignore[arg-type]


def post_login(client: Client, email: str, password: str = DEFAULT_PASSWORD):  # type: ignore[no-untyped-def]
    return client.post(reverse("account_login"), {"login": email, "password": password})


def is_signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def reauthenticate(client: Client, password: str = DEFAULT_PASSWORD) -> None:
    response = client.post(reverse("account_reauthenticate"), {"password": password})
    assert response.status_code == 302, response.content


def request_reset_link(client: Client, email: str) -> str:
    mail.outbox.clear()
    with delivered():
        response = client.post(reverse("account_reset_password"), {"email": email})
    assert response.status_code == 302
    links = [match.group(0) for message in mail.outbox for match in RESET_LINK.finditer(message.body)]
    assert len(links) == 1, [message.subject for message in mail.outbox]
    return links[0]


def reset_password(client: Client, link: str, new_password: str):  # type: ignore[no-untyped-def]
    """Follow the emailed link (allauth moves the key into the session) and set the password."""
    response = client.get(link)
    form_url = response["Location"] if response.status_code == 302 else link
    return client.post(form_url, {"password1": new_password, "password2": new_password})


def fresh(user: User) -> User:
    return User.objects.get(pk=user.pk)


def signed_in_client(user: User, *, remote_addr: str = "127.0.0.1", password: str = DEFAULT_PASSWORD) -> Client:
    """Signed in through the login form (not force_login), so allauth's login signals fire."""
    client = login_client(remote_addr=remote_addr)
    response = post_login(client, user.email, password)
    assert response.status_code == 302, response.content
    assert is_signed_in(client)
    return client


def enable_totp(client: Client) -> pyotp.TOTP:
    """Turn TOTP on through allauth's activation page, the way a person with an app does."""
    reauthenticate(client)
    page = client.get(reverse("mfa_activate_totp"))
    assert page.status_code == 200
    totp = pyotp.TOTP(client.session[TOTP_SECRET_SESSION_KEY])
    with delivered():
        response = client.post(reverse("mfa_activate_totp"), {"code": totp.now()})
    assert response.status_code == 302, response.content
    return totp


def second_factor_login(client: Client, user: User, code: str):  # type: ignore[no-untyped-def]
    response = post_login(client, user.email)
    assert response.status_code == 302
    assert response["Location"] == reverse("mfa_authenticate")
    with delivered():
        return client.post(reverse("mfa_authenticate"), {"code": code})
