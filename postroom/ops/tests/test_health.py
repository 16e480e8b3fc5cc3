"""SECURITY.md R25: operators' endpoints show states, never content; /health is liveness only."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client


@pytest.mark.django_db
def test_r25_health_answers_liveness_with_allowlisted_keys_only() -> None:
    response = Client().get("/health")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert set(response.json()) == {"status", "database"}
    assert response.json() == {"status": "ok", "database": "ok"}


def test_r25_no_operator_admin_is_installed() -> None:
    # Django's admin would show rows, content included; Postroom's operator tools never do.
    assert "django.contrib.admin" not in settings.INSTALLED_APPS
