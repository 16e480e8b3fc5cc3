"""OpenID Connect providers from the environment: presets, and errors that name the variable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from postroom.accounts.oidc_config import oidc_providers_from_env
from postroom.core.env import ConfigError, Env

CREDENTIALS = {"POSTROOM_OIDC_SSO_CLIENT_ID": "postroom", "POSTROOM_OIDC_SSO_CLIENT_SECRET": "s3cret"}


def only_provider(**variables: str) -> dict[str, Any]:
    (app,) = oidc_providers_from_env(Env({"POSTROOM_OIDC_PROVIDERS": "sso", **CREDENTIALS, **variables}))
    return app


def config_error(**variables: str) -> ConfigError:
    with pytest.raises(ConfigError) as raised:
        oidc_providers_from_env(Env({"POSTROOM_OIDC_PROVIDERS": "sso", **CREDENTIALS, **variables}))
    return raised.value


def test_r12_no_providers_configured_means_none() -> None:
    assert oidc_providers_from_env(Env({})) == []


def test_r12_generic_provider_from_issuer() -> None:
    app = only_provider(POSTROOM_OIDC_SSO_ISSUER="https://login.example.com/realms/staff", POSTROOM_OIDC_SSO_NAME="Staff login")

    assert app["provider_id"] == "sso"
    assert app["name"] == "Staff login"
    assert (app["client_id"], app["secret"]) == ("postroom", "s3cret")
    assert app["settings"]["server_url"] == "https://login.example.com/realms/staff"
    assert app["settings"]["oauth_pkce_enabled"] is True
    assert app["settings"]["trust_email_verified"] is False


@pytest.mark.parametrize(
    ("preset", "issuer", "trusted"),
    [("google", "https://accounts.google.com", True), ("apple", "https://appleid.apple.com", True)],
)
def test_r12_preset_fills_the_issuer(preset: str, issuer: str, trusted: bool) -> None:
    app = only_provider(POSTROOM_OIDC_SSO_PRESET=preset)

    assert app["settings"]["server_url"] == issuer
    assert app["settings"]["trust_email_verified"] is trusted
    assert app["name"] == preset.title()


def test_r12_apple_preset_does_not_ask_for_userinfo() -> None:
    app = only_provider(POSTROOM_OIDC_SSO_PRESET="apple")

    assert app["settings"]["fetch_userinfo"] is False
    assert app["settings"]["scope"] == ["openid"]


def test_r12_microsoft_preset_is_bound_to_one_tenant() -> None:
    tenant = "9188040d-6c67-4c5b-b112-36a304b66dad"

    app = only_provider(POSTROOM_OIDC_SSO_PRESET="microsoft", POSTROOM_OIDC_SSO_TENANT=tenant)

    assert app["settings"]["server_url"] == f"https://login.microsoftonline.com/{tenant}/v2.0"
    assert app["settings"]["trust_email_verified"] is False
    assert config_error(POSTROOM_OIDC_SSO_PRESET="microsoft").variable == "POSTROOM_OIDC_SSO_TENANT"
    assert config_error(POSTROOM_OIDC_SSO_PRESET="microsoft", POSTROOM_OIDC_SSO_TENANT="common").variable == "POSTROOM_OIDC_SSO_TENANT"


def test_r12_trust_in_email_verified_can_be_withdrawn() -> None:
    app = only_provider(POSTROOM_OIDC_SSO_PRESET="google", POSTROOM_OIDC_SSO_TRUST_EMAIL_VERIFIED="false")

    assert app["settings"]["trust_email_verified"] is False


def test_r12_client_secret_from_a_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-a-file\n")
    variables = {"POSTROOM_OIDC_PROVIDERS": "sso", "POSTROOM_OIDC_SSO_PRESET": "google", "POSTROOM_OIDC_SSO_CLIENT_ID": "postroom",
                 "POSTROOM_OIDC_SSO_CLIENT_SECRET_FILE": str(secret_file)}

    (app,) = oidc_providers_from_env(Env(variables))

    assert app["secret"] == "from-a-file"


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"POSTROOM_OIDC_SSO_PRESET": "okta"}, "POSTROOM_OIDC_SSO_PRESET"),
        ({}, "POSTROOM_OIDC_SSO_ISSUER"),
        ({"POSTROOM_OIDC_SSO_ISSUER": "login.example.com"}, "POSTROOM_OIDC_SSO_ISSUER"),
        ({"POSTROOM_OIDC_SSO_ISSUER": "http://login.example.com"}, "POSTROOM_OIDC_SSO_ISSUER"),
        ({"POSTROOM_OIDC_SSO_ISSUER": "https://login.example.com/?tenant=x"}, "POSTROOM_OIDC_SSO_ISSUER"),
        ({"POSTROOM_OIDC_SSO_ISSUER": "https://login.example.com/.well-known/openid-configuration"}, "POSTROOM_OIDC_SSO_ISSUER"),
        ({"POSTROOM_OIDC_SSO_PRESET": "google", "POSTROOM_OIDC_SSO_ISSUER": "https://accounts.google.com"}, "POSTROOM_OIDC_SSO_ISSUER"),
        ({"POSTROOM_OIDC_SSO_PRESET": "google", "POSTROOM_OIDC_SSO_CLIENT_ID": ""}, "POSTROOM_OIDC_SSO_CLIENT_ID"),
        ({"POSTROOM_OIDC_SSO_PRESET": "google", "POSTROOM_OIDC_SSO_CLIENT_SECRET": ""}, "POSTROOM_OIDC_SSO_CLIENT_SECRET"),
        ({"POSTROOM_OIDC_SSO_PRESET": "google", "POSTROOM_OIDC_SSO_TRUST_EMAIL_VERIFIED": "maybe"}, "POSTROOM_OIDC_SSO_TRUST_EMAIL_VERIFIED"),
    ],
)
def test_r12_bad_provider_config_names_the_variable(variables: dict[str, str], named: str) -> None:
    assert config_error(**variables).variable == named


def test_r12_plain_http_issuer_only_on_loopback() -> None:
    assert only_provider(POSTROOM_OIDC_SSO_ISSUER="http://127.0.0.1:8080/o")["settings"]["server_url"] == "http://127.0.0.1:8080/o"


def test_r12_bad_provider_id_names_the_list() -> None:
    with pytest.raises(ConfigError) as raised:
        oidc_providers_from_env(Env({"POSTROOM_OIDC_PROVIDERS": "Corp SSO"}))

    assert raised.value.variable == "POSTROOM_OIDC_PROVIDERS"
