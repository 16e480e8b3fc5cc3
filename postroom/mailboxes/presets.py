"""Server settings of the big mail providers, so that a member only types an address and a
password (or signs in with OAuth2) instead of looking up host names and ports.

All of them use TLS: implicit TLS where the provider offers it (RFC 8314 prefers it to
STARTTLS), STARTTLS on port 587 where that is the only submission port (Microsoft 365, iCloud).
"""

from __future__ import annotations

from dataclasses import dataclass

from postroom.mailboxes.connection import MailServers, ServerSettings, TlsMode


@dataclass(frozen=True)
class Preset:
    key: str
    name: str
    servers: MailServers


def _preset(key: str, name: str, imap_host: str, smtp_host: str, smtp_port: int, smtp_tls: TlsMode) -> Preset:
    return Preset(
        key=key,
        name=name,
        servers=MailServers(
            imap=ServerSettings(host=imap_host, port=993, tls=TlsMode.IMPLICIT),
            smtp=ServerSettings(host=smtp_host, port=smtp_port, tls=smtp_tls),
        ),
    )


PRESETS: dict[str, Preset] = {
    preset.key: preset
    for preset in (
        _preset("gmail", "Gmail / Google Workspace", "imap.gmail.com", "smtp.gmail.com", 465, TlsMode.IMPLICIT),
        _preset("outlook", "Outlook.com / Microsoft 365", "outlook.office365.com", "smtp.office365.com", 587, TlsMode.STARTTLS),
        _preset("icloud", "iCloud Mail", "imap.mail.me.com", "smtp.mail.me.com", 587, TlsMode.STARTTLS),
        _preset("fastmail", "Fastmail", "imap.fastmail.com", "smtp.fastmail.com", 465, TlsMode.IMPLICIT),
        _preset("yahoo", "Yahoo Mail", "imap.mail.yahoo.com", "smtp.mail.yahoo.com", 465, TlsMode.IMPLICIT),
    )
}

