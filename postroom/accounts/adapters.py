"""Glue between django-allauth and Postroom.

- Mail allauth sends (verification, reset, security notices) goes through the task queue,
  sealed (``core.tasks``).
- TOTP secrets are stored AES-256-GCM encrypted under the system data key, never in the clear.
- Social (OpenID Connect) logins never attach to an existing account by email address: the
  identity is (issuer, subject), and linking happens only from an account that is signed in.
"""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.mfa.adapter import DefaultMFAAdapter
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from django.core.mail import EmailMultiAlternatives
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse

from postroom.accounts.oidc import check_social_login_purpose, needs_provider_reauthentication, provider_reauthentication_url
from postroom.core.crypto import Field
from postroom.core.keys import SYSTEM_SCOPE, keyring
from postroom.core.tasks import queue_system_mail

TOTP_SECRET_FIELD = Field(table="mfa_authenticator", column="totp_secret", row="-")


class AccountAdapter(DefaultAccountAdapter):
    def send_mail(self, template_prefix: str, email: str, context: dict[str, Any]) -> None:
        from allauth.core import context as allauth_context
        from django.contrib.sites.shortcuts import get_current_site

        request = allauth_context.request
        full_context = {"request": request, "email": email, "current_site": get_current_site(request)}
        full_context.update(context)
        message = self.render_mail(template_prefix, email, full_context)
        html = None
        if isinstance(message, EmailMultiAlternatives):
            html = next((str(content) for content, mimetype in message.alternatives if mimetype == "text/html"), None)
        queue_system_mail(to=list(message.to), subject=str(message.subject), text=str(message.body), html=html)


class MFAAdapter(DefaultMFAAdapter):
    def encrypt(self, text: str) -> str:
        return keyring().encrypt_text(SYSTEM_SCOPE, TOTP_SECRET_FIELD, text).hex()

    def decrypt(self, encrypted_text: str) -> str:
        return keyring().decrypt_text(SYSTEM_SCOPE, TOTP_SECRET_FIELD, bytes.fromhex(encrypted_text))


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    """OpenID Connect glue; the protocol checks themselves are in ``postroom.accounts.oidc``."""

    def is_open_for_signup(self, request: HttpRequest, sociallogin: Any) -> bool:
        return True

    def pre_social_login(self, request: HttpRequest, sociallogin: Any) -> None:
        check_social_login_purpose(request, sociallogin)

    def validate_disconnect(self, account: Any, accounts: Any) -> None:
        from allauth.core import context as allauth_context

        request = allauth_context.request
        # allauth counts a member with neither password nor 2FA as always freshly
        # reauthenticated; unlinking a login still needs a fresh sign-in at a provider.
        if needs_provider_reauthentication(request):
            url = provider_reauthentication_url(request, reverse("socialaccount_connections"))
            if url:
                raise ImmediateHttpResponse(HttpResponseRedirect(url))
