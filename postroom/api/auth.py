"""Who is calling the API: a personal API token (``Authorization: Bearer``) or a session.

Attackers considered: another website riding a signed-in member's cookies (CSRF); someone
holding a revoked, expired or made-up token; a read-only token used to change things; a token
used to do what needs a password confirmed minutes ago (R6); a client that sends both a token
and someone else's session cookie.

Defences:
- A request with an ``Authorization`` header is decided by that header alone: a valid token
  acts as its member (``request.user``), anything else answers 401 with a message saying what is
  wrong (not a Bearer token, unknown, revoked, expired, deactivated account). It never falls
  back to the session cookie sent along, so a broken script cannot silently act as whoever is
  signed in in the same browser.
- Token requests need no CSRF token: a browser never adds an ``Authorization`` header to a
  cross-site request by itself, and without CORS (off) no other site can make it send one.
  Session requests keep ninja's CSRF check on every unsafe method (``X-CSRFToken``).
- A read-scope token gets 403 on every method but GET/HEAD/OPTIONS, before any endpoint runs.
- A token of a member whose organization requires two-factor authentication, while the member
  has none, is refused (403), as their session is (RequireTwoFactorMiddleware).
- ``require_recent_confirmation`` gates the few endpoints that need a fresh password
  confirmation: sessions must have confirmed within five minutes; tokens cannot confirm, so
  those endpoints refuse them and say where to do it instead.
- Tokens are never logged here; ninja's own Bearer class (which logs an unexpected header in
  DEBUG) is not used.
"""

from __future__ import annotations

from typing import Any

from allauth.account.decorators import reauthentication_required
from allauth.core.exceptions import ReauthenticationRequired
from allauth.mfa.models import Authenticator
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from ninja.security import SessionAuth
from ninja.security.http import HttpAuthBase

from postroom.accounts.api_tokens import ApiTokenRefusedError, api_token_allows, api_token_authenticate
from postroom.accounts.middleware import TWO_FACTOR_REQUIRED
from postroom.accounts.models import ApiToken, User

BEARER = "bearer"


class ApiTokenAuth(HttpAuthBase):
    """``Authorization: Bearer pr_…``: a personal API token (created under Settings → API tokens)."""

    openapi_scheme = BEARER
    openapi_description = "A personal API token, created under Login & Security → API tokens: `Authorization: Bearer pr_…`."

    def __call__(self, request: HttpRequest) -> Any:
        header = request.headers.get("Authorization")
        if header is None:
            return None  # not a token request: the session decides
        return authenticate_token_header(request, header)


def authenticate_token_header(request: HttpRequest, header: str) -> ApiToken:
    scheme, _, presented = header.strip().partition(" ")
    if scheme.lower() != BEARER or not presented.strip():
        raise ApiTokenRefusedError("Send an API token as `Authorization: Bearer <token>`.")
    token = api_token_authenticate(presented=presented.strip(), request=request)
    request.user = token.user
    request.api_token = token  # type: ignore[attr-defined]
    api_token_allows(token, request.method or "GET")
    _require_two_factor_if_asked(token.user)
    return token


def _require_two_factor_if_asked(user: User) -> None:
    from postroom.orgs.models import Membership

    if (
        Membership.objects.filter(user=user, organization__require_two_factor=True).exists()
        and not Authenticator.objects.filter(user=user, type__in=[Authenticator.Type.TOTP, Authenticator.Type.WEBAUTHN]).exists()
    ):
        raise PermissionDenied(TWO_FACTOR_REQUIRED)


class CookieSessionAuth(SessionAuth):
    """A signed-in browser session; unsafe methods need the CSRF token in ``X-CSRFToken``."""

    openapi_description = "The session cookie of a signed-in browser; POST, PATCH and DELETE also need the `X-CSRFToken` header."


def token_of(request: HttpRequest) -> ApiToken | None:
    """The API token the request was authenticated with, or None for a session."""
    return getattr(request, "api_token", None)


@reauthentication_required
def _confirmed(request: HttpRequest) -> None:
    return None


def require_recent_confirmation(request: HttpRequest, *, what: str) -> None:
    """403 unless the session confirmed the password within the last five minutes (R6)."""
    if token_of(request) is not None:
        raise PermissionDenied(
            f"{what} needs your password confirmed in the last five minutes, which an API token cannot do: do it in Postroom's web app."
        )
    try:
        _confirmed(request)
    except ReauthenticationRequired:
        raise PermissionDenied(
            f"{what} needs your password confirmed in the last five minutes: confirm it in Postroom's web app, then try again."
        ) from None
