"""Confirm your password before changing how this account signs in (SECURITY.md R6).

The attacker: someone using a live session that is not theirs — an unlocked laptop, a stolen
session cookie, a malicious browser extension. With the session alone they must not be able to
keep the account: change its password or email address (and with it the reset channel), turn
off or replace its second factor, read or renew its recovery codes, link their own login
provider or unlink the owner's, or sign the owner out of their other sessions.

The defence: each of those requests needs the password (or a second factor) to have been
confirmed in this session within ``ACCOUNT_REAUTHENTICATION_TIMEOUT`` (five minutes), checked on
the server for every request, GET and POST alike, whatever the page showed. django-allauth
gates its email, two-factor and provider flows itself (a link is confirmed when the provider
sends the member back, before anything is stored); ``allauth_overrides`` (served before
``include("allauth.urls")``) wraps the views it leaves open — password change and set, ending
other sessions — with the same check, and Postroom's own views use ``confirmation_required``.
Every other setting works without asking.

Unlike allauth's own handling, this gate never replays a POST after the confirmation: allauth
would keep the submitted form in the session row in clear — for a password change, the new
password. The member confirms, lands on the form again and submits it once more.

An account with neither a password nor a second factor (signed up through OpenID Connect only)
counts as always confirmed for allauth; such a member confirms at their identity provider
instead (``prompt=login``, R12), which the OpenID Connect views handle.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode, urlsplit

from allauth.account import views as account_views
from allauth.account.adapter import get_adapter
from allauth.account.decorators import reauthentication_required
from allauth.core.exceptions import ReauthenticationRequired
from allauth.usersessions import views as usersessions_views
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path
from django.utils.http import url_has_allowed_host_and_scheme

from postroom.accounts.middleware import CLEAR_SITE_DATA

View = Callable[..., HttpResponse]


def confirmation_required(view: View | None = None, *, allow_get: bool = False) -> Any:
    """Send the member to confirm their password first, unless they did within the timeout.

    ``allow_get`` lets a page be looked at without confirming (only changes need it).
    """

    def decorator(view_function: View) -> View:
        gated = reauthentication_required(view_function, allow_get=allow_get)

        @wraps(view_function)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            try:
                return gated(request, *args, **kwargs)
            except ReauthenticationRequired:
                return _ask_for_confirmation(request)

        return wrapper

    return decorator(view) if view is not None else decorator


def _ask_for_confirmation(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    methods = get_adapter().get_reauthentication_methods(request.user)
    # Back to the same URL, by GET: the member submits the form again once confirmed. A form
    # that posts to an action URL (ending one session) has no page there: back to the page the
    # form was on instead, when the browser says which one (same origin only).
    return_to = request.get_full_path()
    referer = request.META.get("HTTP_REFERER", "")
    if request.method not in ("GET", "HEAD") and referer and url_has_allowed_host_and_scheme(referer, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        parts = urlsplit(referer)
        return_to = parts.path + (f"?{parts.query}" if parts.query else "")
    return HttpResponseRedirect(f"{methods[0]['url']}?{urlencode({REDIRECT_FIELD_NAME: return_to})}")


def logout_clearing_site_data(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """allauth's logout, plus Clear-Site-Data once the session is gone (R16)."""
    response = account_views.logout(request, *args, **kwargs)
    if request.method == "POST" and not request.user.is_authenticated:
        response["Clear-Site-Data"] = CLEAR_SITE_DATA
    return response


# The same paths and names as allauth's, so links and reverse() keep working; Django serves the
# first match, so these must come before include("allauth.urls").
allauth_overrides = [
    path("logout/", logout_clearing_site_data, name="account_logout"),
    path("password/change/", confirmation_required(account_views.password_change), name="account_change_password"),
    path("password/set/", confirmation_required(account_views.password_set), name="account_set_password"),
    path("sessions/", confirmation_required(usersessions_views.list_usersessions, allow_get=True), name="usersessions_list"),
]
