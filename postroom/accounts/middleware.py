"""Session lifetime and the organization's two-factor requirement.

Sessions end after 14 days without activity (the session row's expiry, refreshed at most once
a minute so that reading pages does not write to the database on every request) and 30 days
after login at the latest (the login time is kept in the session). Both are enforced on the
server: a replayed cookie of an expired session finds no session row, or is logged out here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from django.conf import settings
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone

LOGIN_AT = "postroom_login_at"
REFRESHED_AT = "postroom_refreshed_at"


def mark_session_login(request: HttpRequest) -> None:
    now = timezone.now().isoformat()
    request.session[LOGIN_AT] = now
    request.session[REFRESHED_AT] = now


class SessionLifetimeMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.user.is_authenticated:
            now = timezone.now()
            login_at = request.session.get(LOGIN_AT)
            if login_at is None:
                mark_session_login(request)
            elif now - datetime.fromisoformat(login_at) > settings.SESSION_ABSOLUTE_LIFETIME:
                logout(request)
                return HttpResponseRedirect(reverse("account_login"))
            else:
                refreshed_at = datetime.fromisoformat(request.session.get(REFRESHED_AT, login_at))
                if now - refreshed_at >= settings.SESSION_REFRESH_INTERVAL:
                    request.session[REFRESHED_AT] = now.isoformat()  # saving moves the idle expiry
        return self.get_response(request)


TWO_FACTOR_EXEMPT_PREFIXES = ("/accounts/", "/static/", "/.well-known/", "/privacy/", "/csp-report/", "/health")


class RequireTwoFactorMiddleware:
    """Members of an organization that requires 2FA must set it up before anything else."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        if user.is_authenticated and not request.path.startswith(TWO_FACTOR_EXEMPT_PREFIXES):
            from allauth.mfa.models import Authenticator

            from postroom.orgs.models import Membership

            required = Membership.objects.filter(user=user, organization__require_two_factor=True).exists()
            if required and not Authenticator.objects.filter(
                user=user, type__in=[Authenticator.Type.TOTP, Authenticator.Type.WEBAUTHN]
            ).exists():
                return HttpResponseRedirect(reverse("mfa_index"))
        return self.get_response(request)
