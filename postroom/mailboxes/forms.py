"""Forms of Settings › Mailboxes: plain forms with explicit fields (R23), never ModelForms.

Secrets (password, tokens, client secret) are ``PasswordInput`` without ``render_value``: a
form shown again after an error never sends them back to the browser.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from django import forms
from django.utils import timezone

from postroom.mailboxes.actions import MailboxSignIn, OAuthGrant
from postroom.mailboxes.connection import MailServers, ServerSettings, TlsMode
from postroom.mailboxes.models import AuthKind, Mailbox, TlsModeChoice
from postroom.mailboxes.oauth import PRESET_TOKEN_ENDPOINTS, OAuthError, token_endpoint_check
from postroom.mailboxes.presets import PRESETS

IMPORT_RANGES = {"1m": ("The last month", 31), "3m": ("The last 3 months", 92), "1y": ("The last year", 366), "all": ("Everything", None)}
IMPORT_RANGE_CHOICES = [(key, label) for key, (label, _days) in IMPORT_RANGES.items()]


def import_since_from(choice: str, *, today: date | None = None) -> date | None:
    days = IMPORT_RANGES[choice][1]
    return None if days is None else (today or timezone.localdate()) - timedelta(days=days)


def _secret(label: str, **options: Any) -> forms.CharField:
    options.setdefault("required", False)
    return forms.CharField(label=label, strip=False, widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}), **options)


def preset_initial(key: str) -> dict[str, Any]:
    """Server fields filled from a preset (the ``?preset=`` link and the select without JS)."""
    preset = PRESETS.get(key)
    if preset is None:
        return {}
    servers = preset.servers
    return {
        "imap_host": servers.imap.host, "imap_port": servers.imap.port, "imap_tls": servers.imap.tls.value,
        "smtp_host": servers.smtp.host, "smtp_port": servers.smtp.port, "smtp_tls": servers.smtp.tls.value,
        "token_endpoint": PRESET_TOKEN_ENDPOINTS.get(key, ""),
    }


class SignInForm(forms.Form):
    """Servers and credentials: what connecting and reconnecting share."""

    imap_host = forms.CharField(label="IMAP server", max_length=253)
    imap_port = forms.IntegerField(label="IMAP port", min_value=1, max_value=65535, initial=993)
    imap_tls = forms.ChoiceField(label="IMAP security", choices=TlsModeChoice.choices, initial=TlsModeChoice.IMPLICIT)
    smtp_host = forms.CharField(label="SMTP server", max_length=253)
    smtp_port = forms.IntegerField(label="SMTP port", min_value=1, max_value=65535, initial=465)
    smtp_tls = forms.ChoiceField(label="SMTP security", choices=TlsModeChoice.choices, initial=TlsModeChoice.IMPLICIT)
    private_ca_pem = forms.CharField(
        label="Private certificate authority (optional)", required=False, widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false"}),
        help_text="Only if your server's certificate is issued by your own CA: paste that CA's certificate (PEM). "
        "Certificates are always verified.",
    )
    auth_kind = forms.ChoiceField(label="Sign in with", choices=AuthKind.choices, initial=AuthKind.PASSWORD)
    username = forms.CharField(label="Username", max_length=320, help_text="Usually the email address.")
    password = _secret("Password", max_length=1024, help_text="For Gmail, iCloud, Fastmail and Yahoo, an app password.")
    access_token = _secret("OAuth2 access token", max_length=8192)
    refresh_token = _secret("OAuth2 refresh token", max_length=8192, help_text="Lets Postroom renew the access token before it expires.")
    token_endpoint = forms.CharField(label="Token endpoint", required=False, max_length=2000)
    client_id = forms.CharField(label="OAuth2 client ID", required=False, max_length=500)
    client_secret = _secret("OAuth2 client secret", max_length=1024)

    def _server(self, prefix: str) -> ServerSettings | None:
        data = self.cleaned_data
        if not all(data.get(f"{prefix}_{name}") for name in ("host", "port", "tls")):
            return None
        try:
            return ServerSettings(
                host=data[f"{prefix}_host"].strip(), port=data[f"{prefix}_port"], tls=TlsMode(data[f"{prefix}_tls"]),
                private_ca_pem=data.get("private_ca_pem") or None,
            )
        except ValueError as error:
            self.add_error("private_ca_pem" if "certificate" in str(error) else f"{prefix}_host", str(error))
            return None

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind = data.get("auth_kind")
        if kind == AuthKind.PASSWORD and not data.get("password"):
            self.add_error("password", "Enter the password.")
        if kind in {AuthKind.XOAUTH2, AuthKind.OAUTHBEARER}:
            if data.get("refresh_token"):
                for name in ("token_endpoint", "client_id"):
                    if not data.get(name):
                        self.add_error(name, "Needed to renew the access token.")
            elif not data.get("access_token"):
                self.add_error("access_token", "Enter an access token, or a refresh token with the token endpoint and client ID.")
            if data.get("token_endpoint"):
                try:
                    token_endpoint_check(data["token_endpoint"])
                except OAuthError as error:
                    self.add_error("token_endpoint", str(error))
        return data

    def sign_in(self) -> MailboxSignIn | None:
        """The typed settings, or None if a field is invalid (the errors are on the form)."""
        imap, smtp = self._server("imap"), self._server("smtp")
        if imap is None or smtp is None or self.errors:
            return None
        data = self.cleaned_data
        kind = AuthKind(data["auth_kind"])
        oauth = None
        if kind != AuthKind.PASSWORD and data.get("refresh_token"):
            oauth = OAuthGrant(
                token_endpoint=data["token_endpoint"], refresh_token=data["refresh_token"],
                client_id=data["client_id"], client_secret=data.get("client_secret", ""),
            )
        return MailboxSignIn(
            servers=MailServers(imap=imap, smtp=smtp), auth_kind=kind, username=data["username"],
            password=data.get("password", "") if kind == AuthKind.PASSWORD else "",
            access_token=data.get("access_token", "") if kind != AuthKind.PASSWORD else "", oauth=oauth,
        )


class ConnectForm(SignInForm):
    email_address = forms.EmailField(label="Email address")
    name = forms.CharField(label="Name", max_length=120, required=False, help_text="Shown in Postroom; the address if left empty.")
    import_range = forms.ChoiceField(label="Import mail from", choices=IMPORT_RANGE_CHOICES, initial="3m")

    field_order = ["email_address", "name", "import_range"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["username"].required = False
        self.fields["username"].help_text = "Usually the email address, which is used if this is left empty."

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not data.get("username") and data.get("email_address"):
            data["username"] = data["email_address"]
        return data


class ReconnectForm(SignInForm):
    @classmethod
    def initial_for(cls, mailbox: Mailbox) -> dict[str, Any]:
        """The servers as stored; never a secret. The username is asked again with the rest."""
        return {
            "imap_host": mailbox.imap_host, "imap_port": mailbox.imap_port, "imap_tls": mailbox.imap_tls,
            "smtp_host": mailbox.smtp_host, "smtp_port": mailbox.smtp_port, "smtp_tls": mailbox.smtp_tls,
            "private_ca_pem": mailbox.private_ca_pem, "auth_kind": mailbox.auth_kind,
        }


class ImportRangeForm(forms.Form):
    import_range = forms.ChoiceField(label="Import mail from", choices=IMPORT_RANGE_CHOICES)


class ReimportForm(forms.Form):
    since = forms.DateField(
        label="Import again from", required=False, widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Leave empty to import everything. Mail already in Postroom is not duplicated.",
    )
