"""The production configuration, as ``postroom.settings`` computes it from a production environment.

Tests that need production behaviour (HSTS, ``__Host-`` cookies, the HTTPS redirect) take these
values from a real settings import in a child process instead of restating them by hand, so
they follow any change to the settings module.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

from postroom.core.tests.processes import REPOSITORY, clean_environment

PUBLIC_HOST = "postroom.example"
PRODUCTION_ENVIRONMENT = {
    "POSTROOM_PUBLIC_URL": f"https://{PUBLIC_HOST}",
    "POSTROOM_SECRET_KEY": secrets.token_urlsafe(64),
    "POSTROOM_ALLOWED_HOSTS": PUBLIC_HOST,
    "POSTROOM_BEHIND_PROXY": "true",
    "POSTROOM_TRUSTED_PROXIES": "1",
}
_TRANSPORT_SETTINGS_PREFIXES = ("SECURE_", "SESSION_COOKIE_", "CSRF_COOKIE_")
_TRANSPORT_SETTINGS = ("ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", "DEBUG", "X_FRAME_OPTIONS")


def production_environment(data_dir: Path) -> dict[str, str]:
    return clean_environment(data_dir, **PRODUCTION_ENVIRONMENT)


def production_transport_settings(data_dir: Path) -> dict[str, Any]:
    """Transport and cookie settings of a production configuration."""
    code = (
        "import json, postroom.settings as s\n"
        f"names = [n for n in dir(s) if n.startswith({_TRANSPORT_SETTINGS_PREFIXES!r}) or n in {_TRANSPORT_SETTINGS!r}]\n"
        "print(json.dumps({n: getattr(s, n) for n in names}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=production_environment(data_dir), cwd=REPOSITORY,
        capture_output=True, text=True, timeout=60, check=True,
    )
    values: dict[str, Any] = json.loads(result.stdout)
    if "SECURE_PROXY_SSL_HEADER" in values:
        values["SECURE_PROXY_SSL_HEADER"] = tuple(values["SECURE_PROXY_SSL_HEADER"])
    return values
