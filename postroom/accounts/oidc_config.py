"""OpenID Connect providers from the environment, with presets for the big identity providers.

``POSTROOM_OIDC_PROVIDERS`` lists provider ids (e.g. ``google,corp``). For each id ``X``:

- ``POSTROOM_OIDC_X_ISSUER``: the issuer URL, exactly as the provider's discovery document
  states it; or ``POSTROOM_OIDC_X_PRESET=google|microsoft|apple`` (Microsoft also needs
  ``POSTROOM_OIDC_X_TENANT``, the directory's tenant id);
- ``POSTROOM_OIDC_X_CLIENT_ID`` and ``POSTROOM_OIDC_X_CLIENT_SECRET`` (or ``…_FILE``);
- optional ``POSTROOM_OIDC_X_NAME`` shown on the login button;
- optional ``POSTROOM_OIDC_X_TRUST_EMAIL_VERIFIED``: whether the provider's ``email_verified``
  claim is believed. Only the Google and Apple presets default to yes; otherwise Postroom
  confirms the address itself by email.

Why the rules: an account is bound to (issuer, subject), so the issuer must be one fixed URL.
Microsoft's multi-tenant ``common`` endpoint has no fixed issuer (every tenant signs as
itself, and any tenant's admin can set any email claim), hence the tenant is required. The
issuer must be ``https://`` because discovery, keys and tokens are fetched from it; plain
``http://`` is accepted only on loopback, for local test providers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from postroom.core.env import ConfigError, Env
from postroom.core.net import is_loopback_name


@dataclass(frozen=True)
class Preset:
    name: str
    issuer: str
    trust_email_verified: bool
    # Extra allauth app settings, where the provider differs from the generic defaults.
    app_settings: dict[str, Any] = field(default_factory=dict)


PRESETS = {
    "google": Preset("Google", "https://accounts.google.com", trust_email_verified=True),
    "microsoft": Preset("Microsoft", "https://login.microsoftonline.com/{tenant}/v2.0", trust_email_verified=False),
    # Apple has no userinfo endpoint, and releases the email only to form_post callbacks,
    # which a SameSite=Lax session cannot complete: Postroom asks the member for their email.
    "apple": Preset("Apple", "https://appleid.apple.com", trust_email_verified=True, app_settings={"fetch_userinfo": False, "scope": ["openid"]}),
}
MULTI_TENANT_NAMES = {"common", "organizations", "consumers"}



def _issuer(env: Env, prefix: str, preset_name: str) -> str:
    issuer_variable = prefix + "ISSUER"
    if not preset_name:
        issuer = env.url(issuer_variable)
        if not issuer:
            raise ConfigError(issuer_variable, "it is required for this provider", f"set {issuer_variable} or {prefix}PRESET")
        parts = urlsplit(issuer)
        if parts.scheme != "https" and not is_loopback_name(parts.hostname or ""):
            raise ConfigError(issuer_variable, f"{issuer!r} is not an https:// URL", "use the provider's https:// issuer URL")
        if parts.query or parts.fragment or "/.well-known/" in parts.path:
            raise ConfigError(issuer_variable, f"{issuer!r} is not an issuer URL", "use the \"issuer\" value from the provider's discovery document")
        return issuer
    if env.raw(issuer_variable) is not None:
        raise ConfigError(issuer_variable, f"it conflicts with {prefix}PRESET", "set either the preset or the issuer, not both")
    preset = PRESETS[preset_name]
    if "{tenant}" not in preset.issuer:
        return preset.issuer
    tenant_variable = prefix + "TENANT"
    tenant = env.string(tenant_variable)
    if not tenant:
        raise ConfigError(tenant_variable, f"the {preset_name} preset needs the directory's tenant id", f"set {tenant_variable}")
    if tenant.lower() in MULTI_TENANT_NAMES or not re.fullmatch(r"[A-Za-z0-9.-]{1,100}", tenant):
        raise ConfigError(tenant_variable, f"{tenant!r} is not a single tenant", "use the tenant id (a GUID) of your directory")
    return preset.issuer.format(tenant=tenant)


def oidc_providers_from_env(env: Env) -> list[dict[str, Any]]:
    """The ``APPS`` list for allauth's ``openid_connect`` provider."""
    apps = []
    for provider_id in env.strings("POSTROOM_OIDC_PROVIDERS"):
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,30}", provider_id):
            raise ConfigError("POSTROOM_OIDC_PROVIDERS", f"{provider_id!r} is not a valid id", "use lowercase letters, digits and dashes")
        prefix = f"POSTROOM_OIDC_{provider_id.upper().replace('-', '_')}_"
        preset_name = env.string(prefix + "PRESET")
        if preset_name and preset_name not in PRESETS:
            raise ConfigError(prefix + "PRESET", f"{preset_name!r} is not a known preset", f"use one of: {', '.join(PRESETS)}")
        preset = PRESETS.get(preset_name)
        issuer = _issuer(env, prefix, preset_name)
        client_id = env.string(prefix + "CLIENT_ID")
        secret = env.secret(prefix + "CLIENT_SECRET")
        for name, value in ((prefix + "CLIENT_ID", client_id), (prefix + "CLIENT_SECRET", secret)):
            if not value:
                raise ConfigError(name, "it is required for this provider", f"set {name}")
        trust_email_verified = env.boolean(prefix + "TRUST_EMAIL_VERIFIED", preset.trust_email_verified if preset else False)
        apps.append(
            {
                "provider_id": provider_id,
                "name": env.string(prefix + "NAME", preset.name if preset else provider_id.title()),
                "client_id": client_id,
                "secret": secret,
                "settings": {
                    "server_url": issuer,
                    "oauth_pkce_enabled": True,
                    "token_auth_method": "client_secret_post",
                    "trust_email_verified": trust_email_verified,
                    **(preset.app_settings if preset else {}),
                },
            }
        )
    return apps
