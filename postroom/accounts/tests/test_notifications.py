"""SECURITY.md R7: each credential change (and each recovery-code use) sends exactly one notice
to the expected address (both addresses for an email change), says what to do if it was not
you, and carries no code, token or password. Mail goes through the task queue (run at commit)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import cast

import pytest
from allauth.core import context
from allauth.mfa.models import Authenticator
from allauth.socialaccount.models import SocialAccount, SocialLogin
from django.contrib.messages.storage.fallback import FallbackStorage
from django.contrib.sessions.middleware import SessionMiddleware
from django.core import mail
from django.test import Client, RequestFactory, override_settings
from django.urls import reverse

from postroom.accounts.models import User
from postroom.accounts.tests.authflows import (
    delivered,
    enable_totp,
    login_client,
    reauthenticate,
    request_reset_link,
    reset_password,
    second_factor_login,
    signed_in_client,
)
from postroom.testing.factories import DEFAULT_PASSWORD, UserFactory

NEW_PASSWORD = "a fresh long passphrase for tests"
SECRETS = [
    re.compile(r"\d{6,}"),  # TOTP and recovery codes
    re.compile(r"/key/|/confirm-email/|token=", re.IGNORECASE),  # reset, verification and setup links
    re.compile(r"[A-Za-z0-9_\-]{24,}"),  # any long token
]


@pytest.fixture
def person(db: None) -> User:
    return cast(User, UserFactory(email="notified@example.test", name="Nora Notified"))


def assert_is_a_safe_notice(message: mail.EmailMessage, *, secrets: tuple[str, ...] = ()) -> None:
    body = str(message.body)
    assert "If this was NOT you" in body
    assert "/accounts/password/reset/" in body
    for pattern in SECRETS:
        assert not pattern.search(body), f"{pattern.pattern} found in notice {message.subject!r}"
    for secret in (DEFAULT_PASSWORD, NEW_PASSWORD, *secrets):
        assert secret not in body


def sent_by(action: Callable[[], object]) -> list[mail.EmailMessage]:
    """What ``action`` sends. Not nested: an inner ``delivered`` would make the outer resend."""
    mail.outbox.clear()
    with delivered():
        action()
    return list(mail.outbox)


@pytest.mark.django_db
def test_r07_password_change(person: User) -> None:
    client = signed_in_client(person)
    reauthenticate(client)
    sent = sent_by(lambda: client.post(reverse("account_change_password"), {"oldpassword": DEFAULT_PASSWORD, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}))
    assert [(message.subject, message.to) for message in sent] == [("[Postroom] Password Changed", [person.email])]
    assert_is_a_safe_notice(sent[0])


@pytest.mark.django_db
def test_r07_password_set(person: User) -> None:
    person.set_unusable_password()
    person.save(update_fields=["password"])
    client = Client()
    client.force_login(person, backend="allauth.account.auth_backends.AuthenticationBackend")
    sent = sent_by(lambda: client.post(reverse("account_set_password"), {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD}))
    assert [(message.subject, message.to) for message in sent] == [("[Postroom] Password Set", [person.email])]
    assert_is_a_safe_notice(sent[0])


@pytest.mark.django_db
def test_r07_password_reset(person: User) -> None:
    client = Client()
    link = request_reset_link(client, person.email)
    sent = sent_by(lambda: reset_password(client, link, NEW_PASSWORD))
    assert [(message.subject, message.to) for message in sent] == [("[Postroom] Password Reset", [person.email])]
    assert_is_a_safe_notice(sent[0], secrets=(link,))


@pytest.mark.django_db
def test_r07_email_change_tells_the_old_and_the_new_address(person: User) -> None:
    client = signed_in_client(person)
    reauthenticate(client)
    new_address = "nora.new@example.test"
    sent = sent_by(lambda: client.post(reverse("account_email"), {"email": new_address, "action_add": ""}))
    links = re.findall(r"https?://\S+/accounts/confirm-email/\S+/", sent[0].body)
    assert len(links) == 1
    assert sent[0].to == [new_address]
    sent = sent_by(lambda: client.post(links[0]))
    assert sorted((message.subject, tuple(message.to)) for message in sent) == [
        ("[Postroom] Email Changed", (new_address,)),
        ("[Postroom] Email Changed", (person.email,)),
    ]
    for message in sent:
        assert person.email in message.body
        assert new_address in message.body
        assert_is_a_safe_notice(message, secrets=(links[0],))


@pytest.mark.django_db
def test_r07_totp_enabled_and_disabled(person: User) -> None:
    client = signed_in_client(person)
    mail.outbox.clear()
    enable_totp(client)
    assert [(message.subject, message.to) for message in mail.outbox] == [("[Postroom] Authenticator App Activated", [person.email])]
    assert_is_a_safe_notice(mail.outbox[0])
    reauthenticate(client)
    sent = sent_by(lambda: client.post(reverse("mfa_deactivate_totp")))
    assert [(message.subject, message.to) for message in sent] == [("[Postroom] Authenticator App Deactivated", [person.email])]
    assert_is_a_safe_notice(sent[0])


@pytest.mark.django_db
def test_r07_recovery_codes_regenerated(person: User) -> None:
    client = signed_in_client(person)
    enable_totp(client)
    reauthenticate(client)
    sent = sent_by(lambda: client.post(reverse("mfa_generate_recovery_codes")))
    assert [(message.subject, message.to) for message in sent] == [("[Postroom] New Recovery Codes Generated", [person.email])]
    codes = tuple(Authenticator.objects.get(user=person, type=Authenticator.Type.RECOVERY_CODES).wrap().get_unused_codes())
    assert_is_a_safe_notice(sent[0], secrets=codes)


@pytest.mark.django_db
def test_r07_recovery_code_used(person: User) -> None:
    enable_totp(signed_in_client(person))
    codes = Authenticator.objects.get(user=person, type=Authenticator.Type.RECOVERY_CODES).wrap().get_unused_codes()
    mail.outbox.clear()
    second_factor_login(login_client(remote_addr="192.0.2.9"), person, codes[0])  # delivers its mail itself
    sent = list(mail.outbox)
    assert [(message.subject, message.to) for message in sent] == [("[Postroom] A recovery code was used to sign in", [person.email])]
    assert_is_a_safe_notice(sent[0], secrets=tuple(codes))


@pytest.mark.django_db
def test_r07_passkey_removed(person: User) -> None:
    client = signed_in_client(person)
    passkey = Authenticator.objects.create(user=person, type=Authenticator.Type.WEBAUTHN, data={"name": "Laptop key", "credential": {}})
    reauthenticate(client)
    sent = sent_by(lambda: client.post(reverse("mfa_remove_webauthn", kwargs={"pk": passkey.pk})))
    assert not Authenticator.objects.filter(pk=passkey.pk).exists()
    assert [(message.subject, message.to) for message in sent] == [("[Postroom] Security Key Removed", [person.email])]
    assert_is_a_safe_notice(sent[0])


TEST_PROVIDER = {
    "openid_connect": {
        "OAUTH_PKCE_ENABLED": True,
        "APPS": [{
            "provider_id": "example-idp", "name": "Example IdP", "client_id": "postroom", "secret": "not-used-here",
            "settings": {"server_url": "http://127.0.0.1:9/"},
        }],
    },
}


@pytest.mark.django_db
def test_r07_login_provider_linked(person: User) -> None:
    """allauth's own connect step (the end of the OpenID Connect link flow, without the IdP)."""
    request = RequestFactory().post("/accounts/oidc/example-idp/login/callback/", REMOTE_ADDR="192.0.2.12")
    SessionMiddleware(lambda _request: None).process_request(request)  # type: ignore[arg-type, return-value]
    request._messages = FallbackStorage(request)  # type: ignore[attr-defined]
    request.user = person
    with override_settings(SOCIALACCOUNT_PROVIDERS=TEST_PROVIDER), context.request_context(request):
        login = SocialLogin(account=SocialAccount(provider="example-idp", uid="subject-1", extra_data={}))
        sent = sent_by(lambda: login.connect(request, person))
    assert SocialAccount.objects.filter(user=person, provider="example-idp").exists()
    assert [(message.subject, message.to) for message in sent] == [("[Postroom] Third-Party Account Connected", [person.email])]
    assert "Example IdP" in sent[0].body
    assert_is_a_safe_notice(sent[0])
