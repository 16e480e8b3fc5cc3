"""OpenID Connect providers from the environment, with presets for the big identity providers.

``POSTROOM_OIDC_PROVIDERS`` lists provider ids (e.g. ``google,corp``). For each id ``X``:
``POSTROOM_OIDC_X_ISSUER`` (or a preset: ``POSTROOM_OIDC_X_PRESET=google|microsoft|apple``),
``POSTROOM_OIDC_X_CLIENT_ID``, ``POSTROOM_OIDC_X_CLIENT_SECRET`` (or ``…_FILE``) and an optional
``POSTROOM_OIDC_X_NAME`` shown on the login button.
"""

from __future__ import annotations

import re
from typing import Any

from postroom.core.env import ConfigError, Env

PRESETS = {
    "google": ("Google", "https://accounts.google.com"),
    "microsoft": ("Microsoft", "https://login.microsoftonline.com/common/v2.0"),
    "apple": ("Apple", "https://appleid.apple.com"),
}


def oidc_providers_from_env(env: Env) -> list[dict[str, Any]]:
    apps = []
    for provider_id in env.strings("POSTROOM_OIDC_PROVIDERS"):
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,30}", provider_id):
            raise ConfigError("POSTROOM_OIDC_PROVIDERS", f"{provider_id!r} is not a valid id", "use lowercase letters, digits and dashes")
        prefix = f"POSTROOM_OIDC_{provider_id.upper().replace('-', '_')}_"
        preset = env.string(prefix + "PRESET")
        if preset and preset not in PRESETS:
            raise ConfigError(prefix + "PRESET", f"{preset!r} is not a known preset", f"use one of: {', '.join(PRESETS)}")
        default_name, default_issuer = PRESETS.get(preset, (provider_id.title(), ""))
        issuer = env.url(prefix + "ISSUER", default_issuer)
        client_id = env.string(prefix + "CLIENT_ID")
        secret = env.secret(prefix + "CLIENT_SECRET")
        for name, value in ((prefix + "ISSUER", issuer), (prefix + "CLIENT_ID", client_id), (prefix + "CLIENT_SECRET", secret)):
            if not value:
                raise ConfigError(name, "it is required for this provider", f"set {name}")
        apps.append(
            {
                "provider_id": provider_id,
                "name": env.string(prefix + "NAME", default_name),
                "client_id": client_id,
                "secret": secret,
                "settings": {"server_url": issuer, "oauth_pkce_enabled": True, "token_auth_method": "client_secret_post"},
            }
        )
    return apps
