"""Driving the real login, second-factor and confirmation forms from tests, and looking at
sessions the way an attacker replaying a cookie would."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pyotp
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.conf import settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import NoReverseMatch, URLPattern, URLResolver, get_resolver, reverse

from postroom.accounts.models import User
from postroom.testing.factories import DEFAULT_PASSWORD

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as Response

PROTECTED_URL = "/settings/security/"


def password_step(client: Client, user: User, password: str = DEFAULT_PASSWORD) -> Response:
    return client.post("/accounts/login/", {"login": user.email, "password": password})


def signed_in_client(user: User, *, user_agent: str = "Test browser") -> Client:
    """A client signed in through the real login form (no second factor on the account)."""
    client = Client(HTTP_USER_AGENT=user_agent)
    response = password_step(client, user)
    assert response.status_code == 302, response.content[:500]
    assert response.wsgi_request.user.is_authenticated
    return client


def enable_totp(user: User) -> str:
    """Give the account an authenticator app (and its recovery codes); returns the secret."""
    secret = generate_totp_secret()
    TOTP.activate(user, secret)
    RecoveryCodes.activate(user)
    return secret


def totp_code(secret: str) -> str:
    return pyotp.TOTP(secret).now()


def confirm_password(client: Client, password: str = DEFAULT_PASSWORD) -> Response:
    response = client.post("/accounts/reauthenticate/", {"password": password})
    assert response.status_code == 302, response.content[:500]
    return response


def confirm_second_factor(client: Client, secret: str) -> Response:
    response = client.post("/accounts/2fa/reauthenticate/", {"code": totp_code(secret)})
    assert response.status_code == 302, response.content[:500]
    return response


def session_key(client: Client) -> str:
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def replay(key: str, path: str = PROTECTED_URL) -> Response:
    """A fresh browser that sends nothing but a raw session cookie."""
    return Client().get(path, HTTP_COOKIE=f"{settings.SESSION_COOKIE_NAME}={key}")


def is_signed_in(client: Client) -> bool:
    response = client.get(PROTECTED_URL)
    return response.status_code == 200 and response.wsgi_request.user.is_authenticated


def sent_to_login(response: Response) -> bool:
    return response.status_code == 302 and response["Location"].startswith("/accounts/login/") and not response.wsgi_request.user.is_authenticated


@contextmanager
def counting_writes() -> Iterator[Callable[[], list[str]]]:
    """Yields a function listing the INSERT/UPDATE/DELETE statements run inside the block."""
    with CaptureQueriesContext(connection) as context:
        yield lambda: [
            query["sql"] for query in context.captured_queries
            if query["sql"].lstrip().split(" ", 1)[0].upper() in {"INSERT", "UPDATE", "DELETE"}
        ]


def _patterns(resolver: URLResolver, namespace: str = "", params: frozenset[str] = frozenset()) -> Iterator[tuple[str, frozenset[str]]]:
    for pattern in resolver.url_patterns:
        own = frozenset(getattr(pattern.pattern, "converters", {}) or pattern.pattern.regex.groupindex)
        if isinstance(pattern, URLResolver):
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            yield from _patterns(pattern, inner, params | own)
        elif isinstance(pattern, URLPattern) and pattern.name:
            yield f"{namespace}{pattern.name}", params | own


def every_path(values: dict[str, Any]) -> dict[str, str]:
    """Every named URL of the application, its parameters filled from ``values``."""
    paths = {}
    for name, params in _patterns(get_resolver()):
        try:
            paths[name] = reverse(name, kwargs={param: values[param] for param in params})
        except NoReverseMatch:
            continue
    return paths


def url_names() -> set[str]:
    return {name for name, _params in _patterns(get_resolver())}
