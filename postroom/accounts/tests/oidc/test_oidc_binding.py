"""R13: accounts are bound to (issuer, subject), never to an email address."""

from __future__ import annotations

from typing import Any

from allauth.account.models import EmailAddress
from allauth.socialaccount.models import SocialAccount
from django.core import mail
from django.test import Client
from django.urls import reverse
from pytest_django.fixtures import Settings as SettingsWrapper

from postroom.accounts.models import User
from postroom.accounts.oidc_config import oidc_providers_from_env
from postroom.accounts.tests.oidc import steps
from postroom.accounts.tests.oidc.conftest import provider_env
from postroom.accounts.tests.oidc.idp_client import LocalIdentityProvider
from postroom.conftest import Cast
from postroom.core.env import Env


def session_user(client: Client) -> User | None:
    user_id = client.session.get("_auth_user_id")
    return User.objects.filter(pk=user_id).first() if user_id else None


def test_r13_idp_email_of_a_password_account_never_signs_in_as_it(
    idp: LocalIdentityProvider, cast: Cast, django_capture_on_commit_callbacks: Any
) -> None:
    # The provider vouches for the email, and corp is configured to believe email_verified.
    idp.add_identity("attacker-sub", cast.alice.email, email_verified=True)
    users_before = User.objects.count()
    client = Client()

    with django_capture_on_commit_callbacks(execute=True):
        response = steps.sign_in(client, idp, "corp", "attacker-sub")

    # Refused, disguised as "check your email" so that the page does not reveal that Alice
    # has an account; Alice is told by email instead.
    assert response.status_code == 302
    assert response["Location"] == reverse("account_email_verification_sent")
    assert session_user(client) is None
    assert not SocialAccount.objects.exists()
    assert User.objects.count() == users_before
    assert [message.to for message in mail.outbox] == [[cast.alice.email]]


def test_r13_same_subject_from_another_issuer_is_another_identity(idp: LocalIdentityProvider) -> None:
    idp.add_identity("dana-sub", "dana@corp.test")
    at_corp = Client()
    steps.sign_in(at_corp, idp, "corp", "dana-sub")
    dana = session_user(at_corp)
    assert dana is not None

    # The second issuer knows a "dana-sub" too (here: with another address).
    idp.add_identity("dana-sub", "dana@partner.test")
    at_partner = Client()
    response = steps.sign_in(at_partner, idp, "partner", "dana-sub")

    assert response.status_code == 302
    assert session_user(at_partner) != dana
    assert SocialAccount.objects.get(user=dana).provider == "corp"
    partner_account = SocialAccount.objects.get(provider="partner", uid="dana-sub")
    assert partner_account.user != dana
    assert partner_account.extra_data["id_token"]["iss"] == idp.other_issuer


def test_r13_identity_linked_under_one_issuer_is_refused_from_another(
    idp: LocalIdentityProvider, settings: SettingsWrapper
) -> None:
    """An operator repointing a provider id at another issuer does not hand its subjects' accounts over."""
    idp.add_identity("dana-sub", "dana@corp.test")
    steps.sign_in(Client(), idp, "corp", "dana-sub")
    repointed = provider_env(idp) | {"POSTROOM_OIDC_CORP_ISSUER": idp.other_issuer}
    settings.SOCIALACCOUNT_PROVIDERS = {"openid_connect": {"APPS": oidc_providers_from_env(Env(repointed))}}
    client = Client()

    response = steps.sign_in(client, idp, "corp", "dana-sub")

    assert response.status_code == 401
    assert session_user(client) is None


def test_r13_provider_email_is_confirmed_by_postroom_unless_trusted(
    idp: LocalIdentityProvider, django_capture_on_commit_callbacks: Any
) -> None:
    idp.add_identity("frank-sub", "frank@partner.test", email_verified=True)
    client = Client()

    with django_capture_on_commit_callbacks(execute=True):
        response = steps.sign_in(client, idp, "partner", "frank-sub")

    # partner is not trusted for email_verified: Postroom sends its own confirmation first.
    assert response["Location"] == reverse("account_email_verification_sent")
    assert session_user(client) is None
    assert EmailAddress.objects.get(email="frank@partner.test").verified is False
    assert [message.to for message in mail.outbox] == [["frank@partner.test"]]


def test_r13_oidc_signup_has_no_usable_password_until_the_member_sets_one(idp: LocalIdentityProvider, settings: SettingsWrapper) -> None:
    # Only the length rule: the password rules themselves are tested with the password forms.
    settings.AUTH_PASSWORD_VALIDATORS = settings.AUTH_PASSWORD_VALIDATORS[:1]
    idp.add_identity("gina-sub", "gina@corp.test")
    client = Client()
    steps.sign_in(client, idp, "corp", "gina-sub")
    gina = session_user(client)
    assert gina is not None
    assert not gina.has_usable_password()

    new_password = "a long passphrase for gina 2026"
    response = client.post(reverse("account_set_password"), {"password1": new_password, "password2": new_password})

    assert response.status_code == 302, response.content[:500]
    gina.refresh_from_db()
    assert gina.check_password(new_password)
    password_client = Client()
    response = password_client.post(reverse("account_login"), {"login": "gina@corp.test", "password": new_password})
    assert session_user(password_client) == gina
