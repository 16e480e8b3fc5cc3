"""Parse ``POSTROOM_SMTP_URL`` (system mail) into Django's email settings.

``smtps://user:pass@host:465`` uses implicit TLS, ``smtp://user:pass@host:587`` STARTTLS, and
``smtp+insecure://host:port`` plain SMTP, accepted only for a server on loopback (tests, a local
relay). Django's SMTP backend verifies certificates with the system's trust store.

Without ``POSTROOM_SMTP_URL`` a loopback trial install prints mail to its console; anywhere else
``UnconfiguredEmailBackend`` drops it, because printed mail would put reset and invitation links
into the service logs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.message import EmailMessage

from postroom.core.env import ConfigError
from postroom.core.net import is_loopback_name

logger = logging.getLogger(__name__)


def smtp_settings_from_url(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    fix = "use smtps://user:password@host:465 or smtp://user:password@host:587"
    if parts.scheme not in {"smtp", "smtps", "smtp+insecure"} or not parts.hostname:
        raise ConfigError("POSTROOM_SMTP_URL", "it is not an smtp:// or smtps:// URL", fix)
    try:
        port = parts.port
    except ValueError:
        raise ConfigError("POSTROOM_SMTP_URL", "the port is not a number", fix) from None
    if parts.scheme == "smtp+insecure" and not is_loopback_name(parts.hostname):
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


class UnconfiguredEmailBackend(BaseEmailBackend):
    """Drops system mail with a warning that says how to fix it, and never logs the content."""

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        if email_messages:
            logger.warning(
                "%d system message(s) not sent: no mail server is configured. Fix: set POSTROOM_SMTP_URL",
                len(email_messages),
            )
        return 0
