"""Postroom's side of an OpenID Connect sign-in, driven with the Django test client."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlencode, urlsplit

from django.test import Client
from django.urls import reverse

from postroom.accounts.tests.oidc.idp_client import LocalIdentityProvider

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as TestResponse


def start(client: Client, provider_id: str, **params: str) -> str:
    """Presses the "continue with …" button; returns the provider's authorize URL."""
    url = reverse("openid_connect_login", kwargs={"provider_id": provider_id})
    response = client.post(f"{url}?{urlencode(params)}" if params else url)
    assert response.status_code == 302, response.content[:500]
    return response["Location"]


def query(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


def finish(client: Client, callback_url: str) -> TestResponse:
    parts = urlsplit(callback_url)
    assert parts.netloc == "testserver", callback_url
    return client.get(parts.path, query(callback_url))


def sign_in(client: Client, idp: LocalIdentityProvider, provider_id: str, sub: str, **params: str) -> TestResponse:
    """The whole round trip: Postroom → provider (sign in, consent) → Postroom's callback."""
    return finish(client, idp.authorize(start(client, provider_id, **params), sub))
