"""Audit events and security notifications for sign-in and account changes.

Attacker: someone who signs in with stolen credentials or changes a victim's password, email or
second factor, and hopes nobody notices; or an insider who wants to know what was typed.

Defences:
- Every authentication event — login success and failure (also refused by the throttle),
  second factor success and failure, recovery code use, reauthentication, logout — and every
  credential change (password changed, set or reset; email changed, added or removed; an
  authenticator added, removed or reset; a login provider linked or unlinked) is written to the
  hash-chained audit log with the client address (SECURITY.md R53). A failed login names the
  account it targeted when one exists, and otherwise only an HMAC of the typed address; the
  password is never recorded (Django hands the signal a masked copy, and we do not read it).
- Rows are written once per organization the person belongs to, so each organization's audit
  page shows its members' security events (an owner sees a member's failed logins or a disabled
  second factor); a person in no organization, or an unknown address, gets one row with no
  organization. We duplicate rather than keep one organization-less row because the audit page
  of an organization deliberately shows only rows of that organization.
- Independent notifications (SECURITY.md R7): allauth already mails the account's address on a
  password change, set or reset, an email change (to the old address), TOTP on/off, a passkey
  added or removed, new recovery codes and a linked or unlinked login provider. We add the
  ones it does not send: a recovery code was used (with how many are left), and an email
  change is also announced to the new address. All of them say what to do if it was not you
  (``account/email/base_notification.txt``) and carry no code, token or password.
"""

from __future__ import annotations

from typing import Any

from allauth.account import signals as account_signals
from allauth.account.adapter import get_adapter as get_account_adapter
from allauth.mfa import signals as mfa_signals
from allauth.mfa.models import Authenticator
from allauth.socialaccount import signals as social_signals
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest
from django.utils.crypto import salted_hmac

from postroom.accounts import throttle
from postroom.accounts.middleware import mark_session_login
from postroom.accounts.models import User
from postroom.audit.actions import audit_record
from postroom.audit.models import Result


def login_hash(login: str) -> str:
    """An HMAC of a typed sign-in address: lets an operator correlate attempts, not read them."""
    return salted_hmac("postroom.accounts.audit.login", login.strip().lower(), algorithm="sha256").hexdigest()[:32]


def audit_account_event(
    action: str,
    *,
    user: User | None,
    request: HttpRequest | None,
    actor: User | None = None,
    result: str = Result.SUCCESS,
    details: dict[str, Any] | None = None,
) -> None:
    """One row per organization of ``user`` (or one without an organization)."""
    from postroom.orgs.models import Organization

    organizations: list[Organization | None] = list(Organization.objects.filter(memberships__user=user)) if user is not None else []
    for organization in organizations or [None]:
        audit_record(
            action=action,
            actor=actor,
            organization=organization,
            request=request,
            result=result,
            target=user,
            target_label=user.email if user is not None else "",
            details=details,
        )


def audit_login_refused(*, request: HttpRequest, login: str, user: User | None, step: str = "password") -> None:
    audit_account_event(
        "auth.login", user=user, request=request, result=Result.DENIED,
        details={"reason": "throttled", "step": step, "login_hash": login_hash(login)},
    )


def _signed_in_user(request: HttpRequest | None) -> User | None:
    user = getattr(request, "user", None)
    return user if isinstance(user, User) and user.is_authenticated else None


@receiver(user_logged_in)
def on_session_login(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if request is not None and hasattr(request, "session"):
        mark_session_login(request)


@receiver(account_signals.user_logged_in)
def on_login_completed(sender: Any, request: HttpRequest, user: User, **kwargs: Any) -> None:
    """A complete sign-in through allauth (every step passed, every factor given)."""
    from allauth.account.internal.flows.login import AUTHENTICATION_METHODS_SESSION_KEY

    throttle.login_succeeded(request, user=user)
    methods = sorted({entry.get("method", "") for entry in request.session.get(AUTHENTICATION_METHODS_SESSION_KEY, [])})
    audit_account_event("auth.login", user=user, actor=user, request=request, details={"methods": methods})


@receiver(user_login_failed)
def on_login_failed(sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any) -> None:
    from allauth.account.internal.userkit import filter_users_by_email

    login = str(credentials.get("email") or credentials.get("username") or "")
    signed_in = _signed_in_user(request)
    if signed_in is not None:
        audit_account_event("auth.reauthenticate", user=signed_in, actor=signed_in, request=request, result=Result.FAILURE, details={"method": "password"})
        return
    accounts = filter_users_by_email(login, prefer_verified=True, for_login=True) if login else []
    audit_account_event(
        "auth.login", user=accounts[0] if accounts else None, request=request, result=Result.FAILURE,
        details={"step": "password", "login_hash": login_hash(login), "known_account": bool(accounts)},
    )


@receiver(user_logged_out)
def on_logout(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if isinstance(user, User):
        audit_account_event("auth.logout", user=user, actor=user, request=request)


@receiver(account_signals.authentication_step_completed)
def on_authentication_step(sender: Any, request: HttpRequest, user: User, method: str, **kwargs: Any) -> None:
    if kwargs.get("reauthenticated"):
        audit_account_event("auth.reauthenticate", user=user, actor=user, request=request, details={"method": method})


@receiver(mfa_signals.authenticator_used)
def on_authenticator_used(sender: Any, request: HttpRequest, user: User, authenticator: Authenticator, **kwargs: Any) -> None:
    reauthenticated = bool(kwargs.get("reauthenticated"))
    if authenticator.type == Authenticator.Type.RECOVERY_CODES:
        # The instance in the signal predates the use; allauth marked the code on a fresh copy.
        remaining = len(Authenticator.objects.get(pk=authenticator.pk).wrap().get_unused_codes())
        audit_account_event("auth.recovery_code_used", user=user, actor=user, request=request, details={"remaining": remaining, "reauthentication": reauthenticated})
        get_account_adapter(request).send_notification_mail("mfa/email/recovery_code_used", user, {"remaining": remaining})
    elif not reauthenticated:
        audit_account_event("auth.second_factor", user=user, actor=user, request=request, details={"type": authenticator.type})


@receiver(mfa_signals.authentication_failed)
def on_second_factor_failed(sender: Any, request: HttpRequest, user: User, authenticator: Authenticator, **kwargs: Any) -> None:
    if kwargs.get("reauthentication"):
        audit_account_event("auth.reauthenticate", user=user, actor=user, request=request, result=Result.FAILURE, details={"method": "mfa"})
    else:
        audit_account_event("auth.second_factor", user=user, request=request, result=Result.FAILURE, details={"type": authenticator.type})


@receiver(mfa_signals.authenticator_added)
def on_authenticator_added(sender: Any, request: HttpRequest, user: User, authenticator: Authenticator, **kwargs: Any) -> None:
    audit_account_event("auth.2fa_added", user=user, actor=user, request=request, details={"type": authenticator.type})


@receiver(mfa_signals.authenticator_removed)
def on_authenticator_removed(sender: Any, request: HttpRequest, user: User, authenticator: Authenticator, **kwargs: Any) -> None:
    audit_account_event("auth.2fa_removed", user=user, actor=user, request=request, details={"type": authenticator.type})


@receiver(mfa_signals.authenticator_reset)
def on_authenticator_reset(sender: Any, request: HttpRequest, user: User, authenticator: Authenticator, **kwargs: Any) -> None:
    audit_account_event("auth.2fa_reset", user=user, actor=user, request=request, details={"type": authenticator.type})


@receiver(account_signals.password_changed)
def on_password_changed(sender: Any, request: HttpRequest, user: User, **kwargs: Any) -> None:
    audit_account_event("auth.password_changed", user=user, actor=user, request=request)


@receiver(account_signals.password_set)
def on_password_set(sender: Any, request: HttpRequest, user: User, **kwargs: Any) -> None:
    audit_account_event("auth.password_set", user=user, actor=user, request=request)


@receiver(account_signals.password_reset)
def on_password_reset(sender: Any, request: HttpRequest, user: User, **kwargs: Any) -> None:
    # The reset link proved control of the mailbox: lift the account's sign-in throttle.
    audit_account_event("auth.password_reset", user=user, actor=user, request=request)
    throttle.account_throttle_clear(user=user, reason="password_reset", request=request)


@receiver(account_signals.email_changed)
def on_email_changed(sender: Any, request: HttpRequest, user: User, from_email_address: Any, to_email_address: Any, **kwargs: Any) -> None:
    audit_account_event(
        "auth.email_changed", user=user, actor=_signed_in_user(request), request=request,
        details={"from": getattr(from_email_address, "email", ""), "to": to_email_address.email},
    )
    if from_email_address is not None and from_email_address.email.lower() != to_email_address.email.lower():
        # allauth tells the old address; the new one hears it too, from the same template.
        get_account_adapter(request).send_notification_mail(
            "account/email/email_changed", user,
            context={"from_email": from_email_address.email, "to_email": to_email_address.email},
            email=to_email_address.email,
        )


@receiver(account_signals.email_added)
def on_email_added(sender: Any, request: HttpRequest, user: User, email_address: Any, **kwargs: Any) -> None:
    audit_account_event("auth.email_added", user=user, actor=_signed_in_user(request), request=request, details={"email": email_address.email})


@receiver(account_signals.email_removed)
def on_email_removed(sender: Any, request: HttpRequest, user: User, email_address: Any, **kwargs: Any) -> None:
    audit_account_event("auth.email_removed", user=user, actor=_signed_in_user(request), request=request, details={"email": email_address.email})


@receiver(social_signals.social_account_added)
def on_login_provider_linked(sender: Any, request: HttpRequest, sociallogin: Any, **kwargs: Any) -> None:
    account = sociallogin.account
    audit_account_event("auth.login_provider_linked", user=account.user, actor=_signed_in_user(request), request=request, details={"provider": account.provider})


@receiver(social_signals.social_account_removed)
def on_login_provider_unlinked(sender: Any, request: HttpRequest, socialaccount: Any, **kwargs: Any) -> None:
    audit_account_event("auth.login_provider_unlinked", user=socialaccount.user, actor=_signed_in_user(request), request=request, details={"provider": socialaccount.provider})
