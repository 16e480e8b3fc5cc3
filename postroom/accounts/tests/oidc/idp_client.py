"""Drives the local OpenID provider over real HTTP, as a member's browser would."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import requests

PASSWORD = "idp-password-for-tests"


class _FormReader(HTMLParser):
    """Collects the first form's action and its inputs' names and values."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self._in_form = False
        self._done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "form" and not self._done:
            self._in_form = True
            self.action = attributes.get("action") or ""
        elif tag == "input" and self._in_form and attributes.get("name") and attributes.get("type") != "submit":
            self.fields[attributes["name"] or ""] = attributes.get("value") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self._in_form:
            self._in_form = False
            self._done = True


def _read_form(response: requests.Response) -> tuple[str, dict[str, str]]:
    reader = _FormReader()
    reader.feed(response.text)
    assert reader.action is not None, f"no form at {response.url}: {response.status_code} {response.text[:300]}"
    return urljoin(response.url, reader.action), reader.fields


@dataclass
class LocalIdentityProvider:
    process: subprocess.Popen[bytes]
    port: int
    control_token: str
    client_id: str
    client_secret: str
    browsers: dict[str, requests.Session] = field(default_factory=dict)

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}/o"

    @property
    def other_issuer(self) -> str:
        """The same provider reached as localhost: a second issuer with the same subjects."""
        return f"http://localhost:{self.port}/o"

    def _control(self, action: str, payload: dict[str, object]) -> None:
        response = requests.post(
            f"http://127.0.0.1:{self.port}/control/{action}",
            json=payload, headers={"Authorization": f"Bearer {self.control_token}"}, timeout=10,
        )
        response.raise_for_status()

    def add_identity(self, sub: str, email: str, *, email_verified: bool = True) -> None:
        self._control("identity", {"sub": sub, "email": email, "email_verified": email_verified, "password": PASSWORD})

    def tamper_next_token(self, mode: str) -> None:
        self._control("tamper", {"mode": mode})

    def browser(self, sub: str) -> requests.Session:
        """The identity's own browser at the provider (cookies persist across calls, as in life)."""
        return self.browsers.setdefault(sub, requests.Session())

    def authorize(self, authorize_url: str, sub: str) -> str:
        """Signs in as ``sub`` when asked, consents, and returns the URL the provider sends the browser back to."""
        browser = self.browser(sub)
        response = browser.get(authorize_url, allow_redirects=False, timeout=10)
        for _ in range(6):
            location = response.headers.get("Location")
            if location is not None:
                target = urljoin(response.url, location)
                if urlsplit(target).port != self.port:
                    return target
                response = browser.get(target, allow_redirects=False, timeout=10)
                continue
            assert response.status_code == 200, f"{response.url}: {response.status_code} {response.text[:500]}"
            action, fields = _read_form(response)
            if "password" in fields:
                fields.update(username=sub, password=PASSWORD)
            else:
                fields["allow"] = "Authorize"
            response = browser.post(action, data=fields, allow_redirects=False, timeout=10)
        raise AssertionError(f"the provider did not send the browser back: {response.status_code} {response.url}")
