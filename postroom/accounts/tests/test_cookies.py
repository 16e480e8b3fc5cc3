"""R15: cookies under production settings, and session ids that never travel in a URL.

The production values come from running ``postroom/settings.py`` itself with an https
``POSTROOM_PUBLIC_URL``, not from a copy of them in the test.
"""

from __future__ import annotations

import re
import runpy
from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest
from django.test import Client, override_settings

import postroom.settings
from postroom.accounts.tests.session_helpers import every_path
from postroom.mailboxes.tests.factories import make_mailbox
from postroom.testing.factories import DEFAULT_PASSWORD

PUBLIC_HOST = "postroom.example"
COOKIE_SETTINGS = re.compile(r"^(SESSION_|CSRF_|SECURE_)|^ALLOWED_HOSTS$")


@pytest.fixture
def production_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    monkeypatch.setenv("POSTROOM_PUBLIC_URL", f"https://{PUBLIC_HOST}")
    monkeypatch.setenv("POSTROOM_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("POSTROOM_BEHIND_PROXY", raising=False)
    values = runpy.run_path(postroom.settings.__file__)
    chosen = {name: value for name, value in values.items() if COOKIE_SETTINGS.match(name)}
    with override_settings(**chosen):
        yield values


def _set_cookies(response: Any) -> dict[str, str]:
    """The raw Set-Cookie lines, by cookie name."""
    return {name: morsel.OutputString() for name, morsel in response.cookies.items()}


def _attributes(line: str) -> dict[str, str]:
    parts = [part.strip() for part in line.split(";")]
    return {part.split("=", 1)[0].lower(): (part.split("=", 1)[1] if "=" in part else "") for part in parts[1:]}


def _https_client() -> Client:
    return Client(enforce_csrf_checks=True, HTTP_HOST=PUBLIC_HOST, headers={"Origin": f"https://{PUBLIC_HOST}", "Referer": f"https://{PUBLIC_HOST}/accounts/login/"})


def test_r15_session_and_csrf_cookies_under_production_settings(cast, production_settings) -> None:
    assert production_settings["HTTPS"] is True
    client = _https_client()
    page = client.get("/accounts/login/", secure=True)
    assert page.status_code == 200
    csrf_line = _set_cookies(page)["__Host-postroom-csrf"]
    token = SimpleCookie(csrf_line)["__Host-postroom-csrf"].value

    response = client.post("/accounts/login/", {"login": cast.alice.email, "password": DEFAULT_PASSWORD, "csrfmiddlewaretoken": token}, secure=True)
    assert response.status_code == 302
    assert response.wsgi_request.user == cast.alice
    cookies = _set_cookies(response)
    assert set(cookies) >= {"__Host-postroom-session"}
    assert not [name for name in cookies if name in ("sessionid", "csrftoken", "postroom-session")]

    session = _attributes(cookies["__Host-postroom-session"])
    assert "secure" in session
    assert "httponly" in session
    assert session["samesite"] == "Lax"
    assert session["path"] == "/"
    assert "domain" not in session

    csrf = _attributes(csrf_line)
    assert "secure" in csrf
    assert csrf["path"] == "/"
    assert "domain" not in csrf


def test_r15_plain_http_is_sent_to_https_without_a_cookie(production_settings) -> None:
    response = Client(HTTP_HOST=PUBLIC_HOST).get("/accounts/login/")
    assert response.status_code == 301
    assert response["Location"] == f"https://{PUBLIC_HOST}/accounts/login/"
    assert not response.cookies


def test_r15_the_session_id_never_appears_in_a_url_or_page(cast, client_as) -> None:
    client = client_as(cast.alice)
    key = client.session.session_key
    assert key
    paths = every_path({
        "slug": cast.org_a.slug, "membership_id": cast.bob_membership.pk, "team_id": 1, "invitation_id": 1,
        "token": "not-a-token", "pk": 1, "provider_id": "corp", "key": "not-a-key", "uidb36": "1", "session_id": 1, "token_id": 1,
        # UUIDs: the API's routes take nothing else (with "1" they would not reverse, and be skipped).
        **{f"{name}_id": f"00000000-0000-7000-8000-00000000000{number}"
           for number, name in enumerate(("conversation", "message", "attachment", "outgoing", "label"), start=1)},
        "comment_id": "1", "comment_attachment_id": "1", "notification_id": "1", "draft_id": "1",
        "book_id": "00000000-0000-7000-8000-000000000003", "contact_id": "00000000-0000-7000-8000-000000000004",
        "response_id": "00000000-0000-7000-8000-000000000005",
        "rule_id": "00000000-0000-7000-8000-000000000006",
        "mailbox_id": make_mailbox(cast.alice_membership).pk,
    })
    assert len(paths) > 40
    for name, path in sorted(paths.items()):
        response = client.get(path)
        assert key not in response.get("Location", ""), name
        assert key.encode() not in response.content, name
