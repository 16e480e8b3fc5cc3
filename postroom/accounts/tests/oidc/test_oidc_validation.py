"""R12: what Postroom refuses from a provider, and from a browser that did not start the sign-in."""

from __future__ import annotations

import socket
from urllib.parse import urlencode, urlsplit

import pytest
from allauth.socialaccount.models import SocialAccount
from django.test import Client
from django.urls import reverse
from pytest_django.fixtures import Settings as SettingsWrapper

from postroom.accounts.models import User
from postroom.accounts.oidc_config import oidc_providers_from_env
from postroom.accounts.tests.oidc import steps
from postroom.accounts.tests.oidc.conftest import OPERATOR_EMAIL, provider_env
from postroom.accounts.tests.oidc.idp_client import LocalIdentityProvider
from postroom.core.env import Env


def assert_refused(client: Client, response: object) -> None:
    assert getattr(response, "status_code", None) == 401, getattr(response, "content", b"")[:500]
    assert "_auth_user_id" not in client.session
    assert not SocialAccount.objects.exists()
    assert not User.objects.exclude(email=OPERATOR_EMAIL).exists()


@pytest.mark.parametrize(
    "tampering",
    [
        "foreign_key",
        "alg_none",
        "hmac_with_public_key",
        "swapped_subject",
        "wrong_issuer",
        "wrong_audience",
        "expired",
        "wrong_nonce",
    ],
)
def test_r12_tampered_id_token_is_rejected(idp: LocalIdentityProvider, tampering: str) -> None:
    idp.add_identity("erin-sub", "erin@corp.test")
    client = Client()
    authorize_url = steps.start(client, "corp")
    idp.tamper_next_token(tampering)

    response = steps.finish(client, idp.authorize(authorize_url, "erin-sub"))

    assert_refused(client, response)


def test_r12_untampered_token_from_the_same_setup_is_accepted(idp: LocalIdentityProvider) -> None:
    """The control for the test above: without tampering the very same steps sign in."""
    idp.add_identity("erin-sub", "erin@corp.test")
    client = Client()

    response = steps.sign_in(client, idp, "corp", "erin-sub")

    assert response.status_code == 302
    assert "_auth_user_id" in client.session


def test_r12_callback_in_another_browser_is_rejected(idp: LocalIdentityProvider) -> None:
    """Login CSRF: an attacker's code and state, delivered to a victim's browser, sign nobody in."""
    idp.add_identity("mallory-sub", "mallory@corp.test")
    attacker, victim = Client(), Client()
    callback_url = idp.authorize(steps.start(attacker, "corp"), "mallory-sub")
    steps.start(victim, "corp")  # the victim has a sign-in of their own pending

    response = steps.finish(victim, callback_url)

    assert_refused(victim, response)


def test_r12_state_mismatch_is_rejected(idp: LocalIdentityProvider) -> None:
    idp.add_identity("erin-sub", "erin@corp.test")
    client = Client()
    callback_url = idp.authorize(steps.start(client, "corp"), "erin-sub")
    params = steps.query(callback_url)
    params["state"] = params["state"][:-2] + ("AA" if not params["state"].endswith("AA") else "BB")

    response = client.get(urlsplit(callback_url).path, params)

    assert_refused(client, response)


def test_r12_replayed_code_is_rejected(idp: LocalIdentityProvider) -> None:
    idp.add_identity("erin-sub", "erin@corp.test")
    first = Client()
    callback_url = idp.authorize(steps.start(first, "corp"), "erin-sub")
    assert steps.finish(first, callback_url).status_code == 302
    first.logout()
    User.objects.all().delete()

    # The same callback again, and the same code under a new, valid state of another browser.
    replay_in_same_browser = steps.finish(first, callback_url)
    second = Client()
    fresh_state = steps.query(steps.start(second, "corp"))["state"]
    code = steps.query(callback_url)["code"]
    replay_with_fresh_state = second.get(f"{urlsplit(callback_url).path}?{urlencode({'code': code, 'state': fresh_state})}")

    assert_refused(first, replay_in_same_browser)
    assert_refused(second, replay_with_fresh_state)


def test_r12_discovery_naming_another_issuer_is_rejected(idp: LocalIdentityProvider) -> None:
    """OIDC Discovery 4.3: a document for another issuer (mix-up, mis-pointed URL) is not used."""
    idp.tamper_next_token("discovery_issuer")
    client = Client()

    response = client.post(reverse("openid_connect_login", kwargs={"provider_id": "corp"}))

    assert response.status_code == 401
    assert not response.has_header("Location")


def test_r12_unreachable_provider_fails_closed(idp: LocalIdentityProvider, settings: SettingsWrapper) -> None:
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    unreachable = provider_env(idp) | {"POSTROOM_OIDC_CORP_ISSUER": f"http://127.0.0.1:{closed_port}/o"}
    settings.SOCIALACCOUNT_PROVIDERS = {"openid_connect": {"APPS": oidc_providers_from_env(Env(unreachable))}}

    response = Client().post(reverse("openid_connect_login", kwargs={"provider_id": "corp"}))

    assert response.status_code == 401
