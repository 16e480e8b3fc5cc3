"""The public pages every install has: security.txt (RFC 9116) and the operator's privacy page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.test import Client


@pytest.mark.django_db
def test_r60_security_txt_names_contact_expiry_and_canonical_address(settings) -> None:  # type: ignore[no-untyped-def]
    settings.POSTROOM_SECURITY_CONTACT = "mailto:security@postroom.example"
    response = Client().get("/.well-known/security.txt")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    fields = dict(line.split(": ", 1) for line in response.content.decode().splitlines() if line)
    assert fields["Contact"] == "mailto:security@postroom.example"
    assert fields["Canonical"] == f"{settings.PUBLIC_URL}/.well-known/security.txt"
    expires = datetime.strptime(fields["Expires"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    # RFC 9116 asks for an expiry less than a year ahead; it must also not be in the past.
    assert datetime.now(UTC) < expires < datetime.now(UTC) + timedelta(days=366)


@pytest.mark.django_db
def test_privacy_page_shows_the_operators_text_escaped(settings, tmp_path: Path, cast, client_as) -> None:  # type: ignore[no-untyped-def]
    policy = tmp_path / "privacy.txt"
    policy.write_text("We keep mail for <b>90 days</b>.\n\n<script>alert('x')</script> Contact dpo@postroom.example.\n", encoding="utf-8")
    settings.POSTROOM_PRIVACY_POLICY_FILE = str(policy)
    for client in (Client(), client_as(cast.bob)):
        body = client.get("/privacy/").content.decode()
        assert "We keep mail for &lt;b&gt;90 days&lt;/b&gt;." in body
        assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; Contact dpo@postroom.example." in body
        assert "<script>alert" not in body
        assert body.count("<p>") >= 2


@pytest.mark.django_db
def test_privacy_page_has_a_default_text_without_a_policy_file() -> None:
    body = Client().get("/privacy/").content.decode()
    assert "Ask the operator of this server for its privacy policy" in body
