"""Live updates are not activity: an open tab on a busy inbox does not keep its session alive
(SECURITY.md R17, the 14-day idle expiry)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.conf import settings
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse

from postroom.conftest import Cast

START = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
LIST = reverse("conversations:list", args=["acme"])


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("headers", "extended"),
    [
        ({}, True),
        ({"HTTP_X_POSTROOM_AUTOMATIC": "live"}, False),
        ({"HTTP_ACCEPT": "text/event-stream"}, False),
    ],
)
def test_r17_requests_a_page_makes_by_itself_do_not_extend_the_session(cast: Cast, headers: dict[str, str], extended: bool) -> None:
    with time_machine.travel(START, tick=False) as clock:
        client = Client()
        client.force_login(cast.bob, backend="allauth.account.auth_backends.AuthenticationBackend")
        key = client.cookies[settings.SESSION_COOKIE_NAME].value
        clock.shift(timedelta(days=3))
        # The event stream itself would stay open; its headers are what counts, so ask for the list.
        assert client.get(LIST, **headers).status_code == 200  # type: ignore[arg-type]
        expiry = Session.objects.get(session_key=key).expire_date
        assert expiry == (START + timedelta(days=17) if extended else START + timedelta(days=14))
