"""Glue between django-allauth and Postroom.

- Mail allauth sends (verification, reset, security notices) goes through the task queue,
  sealed (``core.tasks``).
- Every password check at login and reauthentication first takes a slot from the database
  throttle (``accounts.throttle``: per account and per client network, shared with the second
  factor); the slot is given back only when the password was right. allauth's own per-process
  cache limit for failed logins is switched off in settings, because this one replaces it and
  does not let a stranger lock an owner out.
- A failed login costs one password hash whether or not the address has an account: allauth's
  backend hashes for unknown addresses and Django's ``check_password`` hashes for accounts
  without a usable password (OpenID Connect sign-ups); test_enumeration checks both.
- TOTP secrets are stored AES-256-GCM encrypted under the system data key, never in the clear.
- Sign-up (by password or OpenID Connect) stays closed until first-run setup is done.
- Social (OpenID Connect) logins never attach to an existing account by email address: the
  identity is (issuer, subject), and linking happens only from an account that is signed in.
"""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.internal.userkit import filter_users_by_email
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.mfa.adapter import DefaultMFAAdapter
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from django.core.exceptions import PermissionDenied
from django.core.mail import EmailMultiAlternatives
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse

from postroom.accounts import throttle
from postroom.accounts.actions import setup_needed
from postroom.accounts.models import User
from postroom.accounts.oidc import check_social_login_purpose, needs_provider_reauthentication, provider_reauthentication_url
from postroom.core.crypto import Field
from postroom.core.http import client_ip
from postroom.core.keys import SYSTEM_SCOPE, keyring
from postroom.core.tasks import queue_system_mail

TOTP_SECRET_FIELD = Field(table="mfa_authenticator", column="totp_secret", row="-")


def _login_identifier(credentials: dict[str, Any]) -> str:
    return str(credentials.get("email") or credentials.get("username") or "")


def _accounts_for(login: str) -> list[User]:
    return filter_users_by_email(login, prefer_verified=True, for_login=True) if login else []


class AccountAdapter(DefaultAccountAdapter):
    _login_reservation: throttle.Reservation | None = None

    def pre_authenticate(self, request: HttpRequest, **credentials: Any) -> None:
        super().pre_authenticate(request, **credentials)
        login = _login_identifier(credentials)
        accounts = _accounts_for(login)
        try:
            self._login_reservation = throttle.attempt_reserve(request, user=accounts[0] if accounts else None, login=login)
        except throttle.AttemptRefusedError:
            from postroom.accounts.signals import audit_login_refused

            audit_login_refused(request=request, login=login, user=accounts[0] if accounts else None)
            raise self.validation_error("too_many_login_attempts") from None

    def authenticate(self, request: HttpRequest, **credentials: Any) -> Any:
        self._login_reservation = None
        user = super().authenticate(request, **credentials)
        if user is not None and self._login_reservation is not None:
            self._login_reservation.release()
        return user

    def is_open_for_signup(self, request: HttpRequest) -> bool:
        # Until the first owner has used the console setup link, nobody may sign up: the first
        # account would otherwise close the setup page (it exists only while there are no users).
        return not setup_needed()

    def get_client_ip(self, request: HttpRequest) -> str:
        # One answer everywhere (rate limits, session list, notices, audit, our throttle): the
        # peer address, or X-Forwarded-For only for the proxy hops POSTROOM_TRUSTED_PROXIES names.
        address = client_ip(request)
        if address is None:
            raise PermissionDenied("Unable to determine client IP address")
        return address

    def send_notification_mail(
        self, template_prefix: str, user: Any, context: dict[str, Any] | None = None, email: str | None = None
    ) -> None:
        from allauth.utils import build_absolute_uri
        from django.urls import reverse

        # Every notice tells the reader where to reset the password if the change was not theirs.
        full_context = {"password_reset_url": build_absolute_uri(self.request, reverse("account_reset_password"))}
        full_context.update(context or {})
        super().send_notification_mail(template_prefix, user, full_context, email)

    def send_mail(self, template_prefix: str, email: str, context: dict[str, Any]) -> None:
        from allauth.core import context as allauth_context
        from django.contrib.sites.shortcuts import get_current_site

        # allauth sends some notices from on-commit callbacks, which can run after its request
        # context is gone; the adapter kept the request it was made for.
        request = allauth_context.request or self.request
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
        return not setup_needed()  # see AccountAdapter.is_open_for_signup

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
