"""Parse ``POSTROOM_SMTP_URL`` (system mail) into Django's email settings.

``smtps://user:pass@host:465`` uses implicit TLS, ``smtp://user:pass@host:587`` STARTTLS, and
``smtp+insecure://host:port`` plain SMTP, accepted only for a server on loopback (tests, a local
relay). Django's SMTP backend verifies certificates with the system's trust store.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import unquote, urlsplit

from postroom.core.env import ConfigError


def smtp_settings_from_url(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    fix = "use smtps://user:password@host:465 or smtp://user:password@host:587"
    if parts.scheme not in {"smtp", "smtps", "smtp+insecure"} or not parts.hostname:
        raise ConfigError("POSTROOM_SMTP_URL", "it is not an smtp:// or smtps:// URL", fix)
    try:
        port = parts.port
    except ValueError:
        raise ConfigError("POSTROOM_SMTP_URL", "the port is not a number", fix) from None
    if parts.scheme == "smtp+insecure":
        try:
            loopback = ipaddress.ip_address(parts.hostname).is_loopback
        except ValueError:
            loopback = parts.hostname == "localhost"
        if not loopback:
            raise ConfigError("POSTROOM_SMTP_URL", "plain SMTP is allowed only to a server on loopback", fix)
    return {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": parts.hostname,
        "EMAIL_PORT": port or (465 if parts.scheme == "smtps" else 587 if parts.scheme == "smtp" else 25),
        "EMAIL_HOST_USER": unquote(parts.username or ""),
        "EMAIL_HOST_PASSWORD": unquote(parts.password or ""),
        "EMAIL_USE_SSL": parts.scheme == "smtps",
        "EMAIL_USE_TLS": parts.scheme == "smtp",
        "EMAIL_TIMEOUT": 20,
    }
