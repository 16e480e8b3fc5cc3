from __future__ import annotations

from urllib.parse import urlencode

from allauth.socialaccount.models import SocialAccount
from django.test import Client

from postroom.accounts.models import User
from postroom.accounts.tests.oidc import steps
from postroom.accounts.tests.oidc.idp_client import LocalIdentityProvider


def signed_in_user(client: Client) -> User | None:
    user_id = client.session.get("_auth_user_id")
    return User.objects.filter(pk=user_id).first() if user_id else None


def test_r12_login_uses_pkce_s256_state_and_nonce(idp: LocalIdentityProvider) -> None:
    idp.add_identity("dana-sub", "dana@corp.test")
    client = Client()
    authorize_url = steps.start(client, "corp")
    params = steps.query(authorize_url)
    assert authorize_url.startswith(f"{idp.issuer}/authorize/")
    assert params["response_type"] == "code"
    assert params["code_challenge_method"] == "S256"
    assert len(params["code_challenge"]) == 43
    assert len(params["state"]) >= 16
    assert len(params["nonce"]) >= 32
    assert params["client_id"] == idp.client_id

    response = steps.finish(client, idp.authorize(authorize_url, "dana-sub"))

    assert response.status_code == 302, response.content[:800]
    user = signed_in_user(client)
    assert user is not None
    assert user.email == "dana@corp.test"
    account = SocialAccount.objects.get(user=user)
    assert (account.provider, account.uid) == ("corp", "dana-sub")
    assert account.extra_data["id_token"]["iss"] == idp.issuer


def test_r12_login_link_cannot_change_protocol_parameters(idp: LocalIdentityProvider) -> None:
    crafted = urlencode({"state": "chosen", "nonce": "chosen", "response_type": "token", "redirect_uri": "https://evil.test/", "code_challenge_method": "plain"})
    client = Client()

    params = steps.query(steps.start(client, "corp", auth_params=crafted))

    assert params["response_type"] == "code"
    assert params["redirect_uri"] == "http://testserver/accounts/oidc/corp/login/callback/"
    assert params["code_challenge_method"] == "S256"
    assert "chosen" not in (params["state"], params["nonce"])


def test_r16_oidc_callback_rotates_the_session_key(idp: LocalIdentityProvider) -> None:
    idp.add_identity("dana-sub", "dana@corp.test")
    client = Client()
    authorize_url = steps.start(client, "corp")
    key_before = client.session.session_key

    steps.finish(client, idp.authorize(authorize_url, "dana-sub"))

    assert key_before
    assert client.session.session_key != key_before
    assert signed_in_user(client) is not None
