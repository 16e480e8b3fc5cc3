"""Session lifetime and the organization's two-factor requirement.

The attacker: someone who got hold of a session cookie — copied from a shared computer, a
backup of a browser profile, a leaked log — and replays it days or weeks later; or a member who
never signs out, so that a session lives forever on a laptop that is later lost.

The defences (SECURITY.md R17):

- Idle timeout, 14 days. The session row's expiry (Django's database backend refuses rows past
  ``expire_date`` before any view runs) moves forward whenever the session is saved. Reading
  pages would otherwise write the row on every request (``SESSION_SAVE_EVERY_REQUEST``), so the
  refresh happens at most once a minute per session; the same refresh records the session's last
  activity for the member's session list (allauth.usersessions), instead of allauth's middleware,
  which writes on every request.
- Absolute lifetime, 30 days after login, however active the session is. The login time lives
  inside the session (set on ``user_logged_in``); a signed-in session without one is treated as
  expired rather than given a fresh start. Neither limit is a setting a member can change.

Both are checked on the server: the cookie's own Max-Age is a convenience for the browser and
is never relied upon. Requests a page makes by itself are not activity: the live-update stream
(``Accept: text/event-stream``) and the re-fetches it triggers (``live.js`` marks them with
``X-Postroom-Automatic``) never move the idle expiry, so a tab left open on a busy inbox does not
keep its session alive for ever.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from django.conf import settings
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import reverse
from django.utils import timezone

LOGIN_AT = "postroom_login_at"
REFRESHED_AT = "postroom_refreshed_at"
# Tells the browser to drop everything it kept for this origin once a session ends (R16).
CLEAR_SITE_DATA = '"cache", "cookies", "storage"'
AUTOMATIC_HEADER = "X-Postroom-Automatic"


def mark_session_login(request: HttpRequest) -> None:
    now = timezone.now().isoformat()
    request.session[LOGIN_AT] = now
    request.session[REFRESHED_AT] = now


def _stored_time(request: HttpRequest, key: str) -> datetime | None:
    value = request.session.get(key)
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if timezone.is_aware(moment) else None


def _by_the_person(request: HttpRequest) -> bool:
    return AUTOMATIC_HEADER not in request.headers and not request.headers.get("Accept", "").startswith("text/event-stream")


def end_session_response(request: HttpRequest) -> HttpResponse:
    """Log out (deleting the session row) and send the browser to the login page, wiped."""
    logout(request)
    response = HttpResponseRedirect(reverse("account_login"))
    response["Clear-Site-Data"] = CLEAR_SITE_DATA
    return response


class SessionLifetimeMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.user.is_authenticated:
            now = timezone.now()
            login_at = _stored_time(request, LOGIN_AT)
            if login_at is None or now - login_at > settings.SESSION_ABSOLUTE_LIFETIME:
                return end_session_response(request)
            refreshed_at = _stored_time(request, REFRESHED_AT)
            if _by_the_person(request) and (refreshed_at is None or now - refreshed_at >= settings.SESSION_REFRESH_INTERVAL):
                self.refresh(request, now)
        return self.get_response(request)

    def refresh(self, request: HttpRequest, now: datetime) -> None:
        from allauth.usersessions.models import UserSession

        # Modifying the session makes SessionMiddleware save it, which moves the row's
        # expire_date (and the cookie's Max-Age) 14 days ahead of now.
        request.session[REFRESHED_AT] = now.isoformat()
        UserSession.objects.create_from_request(request)


TWO_FACTOR_REQUIRED = "An organization you belong to requires two-factor authentication: set it up in Postroom before using the API."
TWO_FACTOR_EXEMPT_PREFIXES = ("/accounts/", "/static/", "/.well-known/", "/privacy/", "/csp-report/", "/health")


class RequireTwoFactorMiddleware:
    """Members of an organization that requires 2FA must set it up before anything else."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        from postroom.orgs.selectors import second_factor_missing  # the request's one read (orgs.viewer)

        user = request.user
        if user.is_authenticated and not request.path.startswith(TWO_FACTOR_EXEMPT_PREFIXES) and second_factor_missing(user=user):
            if request.path.startswith("/api/"):  # an API client cannot follow a redirect to a page
                return JsonResponse({"detail": TWO_FACTOR_REQUIRED}, status=403, content_type="application/json; charset=utf-8")
            return HttpResponseRedirect(reverse("mfa_index"))
        return self.get_response(request)
