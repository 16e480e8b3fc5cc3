"""The local OpenID provider, started once per test session, and Postroom configured to use it."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pytest_django.fixtures import Settings as SettingsWrapper

from postroom.accounts.models import User
from postroom.accounts.oidc_config import oidc_providers_from_env
from postroom.accounts.tests.oidc.idp_client import LocalIdentityProvider
from postroom.core.env import Env
from postroom.testing.factories import UserFactory

PROVIDER_IDS = ("corp", "partner")
OPERATOR_EMAIL = "operator@setup.test"


@pytest.fixture(scope="session")
def local_idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalIdentityProvider]:
    state_dir: Path = tmp_path_factory.mktemp("local-idp")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (state_dir / "signing-key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    control_token = secrets.token_urlsafe(32)
    client_id, client_secret = "postroom-under-test", secrets.token_urlsafe(32)
    environment = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    environment.update(
        LOCAL_IDP_STATE_DIR=str(state_dir),
        LOCAL_IDP_CONTROL_TOKEN=control_token,
        LOCAL_IDP_CLIENT_ID=client_id,
        LOCAL_IDP_CLIENT_SECRET=client_secret,
        LOCAL_IDP_REDIRECT_URIS=" ".join(f"http://testserver/accounts/oidc/{provider_id}/login/callback/" for provider_id in PROVIDER_IDS),
    )
    with (state_dir / "server.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "postroom.accounts.tests.oidc.local_idp.serve"],
            env=environment, stdout=subprocess.PIPE, stderr=log,
        )
        try:
            assert process.stdout is not None
            first_line = process.stdout.readline().decode()
            if not first_line.startswith("LISTENING "):
                process.wait(timeout=10)
                raise RuntimeError(f"the local OpenID provider did not start: {(state_dir / 'server.log').read_text()}")
            yield LocalIdentityProvider(process, int(first_line.split()[1]), control_token, client_id, client_secret)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def provider_env(idp: LocalIdentityProvider) -> dict[str, str]:
    """Two providers: "corp" (believes the IdP's email_verified) and "partner" (a second issuer)."""
    return {
        "POSTROOM_OIDC_PROVIDERS": ",".join(PROVIDER_IDS),
        "POSTROOM_OIDC_CORP_ISSUER": idp.issuer,
        "POSTROOM_OIDC_CORP_CLIENT_ID": idp.client_id,
        "POSTROOM_OIDC_CORP_CLIENT_SECRET": idp.client_secret,
        "POSTROOM_OIDC_CORP_NAME": "Corp SSO",
        "POSTROOM_OIDC_CORP_TRUST_EMAIL_VERIFIED": "true",
        "POSTROOM_OIDC_PARTNER_ISSUER": idp.other_issuer,
        "POSTROOM_OIDC_PARTNER_CLIENT_ID": idp.client_id,
        "POSTROOM_OIDC_PARTNER_CLIENT_SECRET": idp.client_secret,
        "POSTROOM_OIDC_PARTNER_NAME": "Partner SSO",
    }


@pytest.fixture
def idp(local_idp: LocalIdentityProvider, settings: SettingsWrapper, db: None) -> LocalIdentityProvider:
    """The local provider, with Postroom's settings pointing at it for this test.

    Sign-up is closed until first-run setup has created an account, so one exists here.
    """
    if not User.objects.exists():
        UserFactory(email=OPERATOR_EMAIL)
    settings.SOCIALACCOUNT_PROVIDERS = {"openid_connect": {"OAUTH_PKCE_ENABLED": True, "APPS": oidc_providers_from_env(Env(provider_env(local_idp)))}}
    local_idp.browsers.clear()
    return local_idp
