"""allauth's second-factor forms, with the database throttle and one-time TOTP codes.

Attacker: someone who knows (or phished) the password and now guesses TOTP or recovery codes,
or who watched a valid TOTP code being typed and replays it within its 30-second step, possibly
against another web process than the one that accepted it.

Defences:
- Each code attempt takes a slot from ``accounts.throttle`` before it is checked, under the same
  account and network keys as the password, so password, TOTP and recovery-code failures count
  together (SECURITY.md R4); a right code gives its slot back.
- A TOTP code is accepted once: allauth remembers used codes in the cache, which is per process
  here, so we also keep the newest accepted time step per user in the database and accept a
  code only for a later step (SECURITY.md R8). The code that activates TOTP counts as used.
- Only the current 30-second step is valid (``MFA_TOTP_TOLERANCE`` stays 0), judged by the
  server's clock.
Recovery codes are single use in allauth itself (a used-codes bit mask, under a row lock).
"""

from __future__ import annotations

from allauth.account.adapter import get_adapter as get_account_adapter
from allauth.core import context
from allauth.core.internal.cryptokit import compare_user_code
from allauth.mfa.adapter import get_adapter
from allauth.mfa.base.forms import AuthenticateForm, ReauthenticateForm
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.forms import ActivateTOTPForm
from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value, yield_hotp_counters_from_time
from allauth.mfa.utils import decrypt
from django.db import IntegrityError, transaction

from postroom.accounts import throttle
from postroom.accounts.models import TotpStepUse, User


def totp_matching_step(secret: str, code: str) -> int | None:
    for step in yield_hotp_counters_from_time():
        if compare_user_code(actual=code, expected=format_hotp_value(hotp_value(secret, step))):
            return step
    return None


def totp_step_claim(*, user: User, step: int) -> bool:
    """Record ``step`` as used; False when it (or a later one) was used already."""
    if TotpStepUse.objects.filter(user=user, last_step__lt=step).update(last_step=step):
        return True
    try:
        with transaction.atomic():
            TotpStepUse.objects.create(user=user, last_step=step)
    except IntegrityError:
        return False  # a row exists with this step or a later one
    return True


class _ThrottledCodeMixin:
    user: User
    authenticator: Authenticator

    def clean_code(self) -> str:
        try:
            reservation = throttle.attempt_reserve(context.request, user=self.user)
        except throttle.AttemptRefusedError:
            from postroom.accounts.signals import audit_login_refused

            audit_login_refused(request=context.request, login=self.user.email, user=self.user, step="second_factor")
            raise get_account_adapter().validation_error("too_many_login_attempts") from None
        code: str = super().clean_code()  # type: ignore[misc]
        if self.authenticator.type == Authenticator.Type.TOTP:
            step = totp_matching_step(decrypt(self.authenticator.data["secret"]), code)
            if step is None or not totp_step_claim(user=self.user, step=step):
                self._emit_authentication_failed(self.authenticator)  # type: ignore[attr-defined]
                raise get_adapter().validation_error("incorrect_code")
        reservation.release()
        return code


class ThrottledAuthenticateForm(_ThrottledCodeMixin, AuthenticateForm):
    pass


class ThrottledReauthenticateForm(_ThrottledCodeMixin, ReauthenticateForm):
    pass


class OneTimeActivateTOTPForm(ActivateTOTPForm):
    def clean_code(self) -> str:
        code: str = super().clean_code()
        step = totp_matching_step(self.secret, code)
        if step is None or not totp_step_claim(user=self.user, step=step):
            raise get_adapter().validation_error("incorrect_code")
        return code
