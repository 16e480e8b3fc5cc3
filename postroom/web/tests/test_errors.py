"""R56: error pages are generic, carry a correlation id that the log line repeats, and render even
when the database or the template context is what failed. R54: logged request data stays on one line."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.http import HttpRequest
from django.test import Client

from postroom.core.tests.processes import REPOSITORY
from postroom.web.tests.failing_urls import FAILURE_MESSAGE

LEAKS = ["Traceback", 'File "', "RuntimeError", "canary", "SECRET_KEY", "DATABASES", "SELECT", "/srv/", "site-packages", ".py", str(REPOSITORY)]


def assert_generic_error_page(response: Any, status: int) -> str:
    assert response.status_code == status
    body = response.content.decode()
    for leak in LEAKS:
        assert leak not in body, leak
    assert str(django_settings.DATA_DIR) not in body
    return body


@pytest.mark.django_db
@pytest.mark.urls("postroom.web.tests.failing_urls")
def test_r56_server_error_is_generic_and_logged_with_its_correlation_id(configured_console: io.StringIO) -> None:
    assert not django_settings.DEBUG
    response = Client(raise_request_exception=False).get("/test-only/explode/")
    body = assert_generic_error_page(response, 500)
    reference = response["X-Request-ID"]
    assert len(reference) == 16
    assert reference in body

    lines = configured_console.getvalue().splitlines()
    (record_line,) = [line for line in lines if not line.startswith("  | ")]
    assert f"[{reference}]" in record_line
    assert "ERROR django.request" in record_line
    assert "Internal Server Error: /test-only/explode/" in record_line
    assert any(FAILURE_MESSAGE in line for line in lines), "the log keeps the details the page leaves out"


def broken_context_processor(request: HttpRequest) -> dict[str, Any]:
    raise RuntimeError("canary: a context processor failed")


@pytest.mark.django_db
def test_r56_error_pages_render_when_the_template_context_is_broken(settings) -> None:  # type: ignore[no-untyped-def]
    template_settings = [dict(engine) for engine in settings.TEMPLATES]
    template_settings[0]["OPTIONS"] = {
        **template_settings[0]["OPTIONS"],
        "context_processors": [*template_settings[0]["OPTIONS"]["context_processors"], f"{__name__}.broken_context_processor"],
    }
    settings.TEMPLATES = template_settings
    client = Client(raise_request_exception=False)
    body = assert_generic_error_page(client.get("/privacy/"), 500)
    assert "Something went wrong" in body
    assert "Not found" in assert_generic_error_page(client.get("/no-such-page/"), 404)


def test_r56_error_pages_render_without_the_database() -> None:
    """No database access is allowed in this test: any query raises, as with a database outage."""
    client = Client(raise_request_exception=False)
    body = assert_generic_error_page(client.get("/"), 500)  # the home page needs the database
    assert "Something went wrong" in body
    assert_generic_error_page(client.get("/no-such-page/"), 404)
    # A browser with a session cookie: loading the session is what fails.
    client.cookies[django_settings.SESSION_COOKIE_NAME] = "a" * 32
    response = client.get("/o/acme/members/")
    assert_generic_error_page(response, 500)
    assert response["Cache-Control"] == "no-store"
    assert "object-src 'none'" in response["Content-Security-Policy"]


@pytest.mark.django_db
def test_r56_permission_errors_show_only_the_sentence_written_for_people(client_as, cast) -> None:  # type: ignore[no-untyped-def]
    client = client_as(cast.bob)
    response = client.post(f"/o/{cast.org_a.slug}/members/{cast.alice_membership.pk}/remove/")
    assert response.status_code in (403, 404)
    assert_generic_error_page(response, response.status_code)


@pytest.mark.django_db
def test_r54_a_forged_line_in_a_request_is_one_escaped_log_line(configured_console: io.StringIO) -> None:
    """The CSP report endpoint logs what an anonymous client sends: the hostile case."""
    forged = "x\r\nERROR django.request [-] FAKE admin signed in"
    report = {"csp-report": {"violated-directive": forged, "blocked-uri": "\x1b[2Jinline", "document-uri": "http://testserver/"}}
    response = Client().post("/csp-report/", json.dumps(report), content_type="application/csp-report")
    assert response.status_code == 204
    lines = configured_console.getvalue().splitlines()
    assert len(lines) == 1
    assert "x\\x0d\\x0aERROR django.request [-] FAKE admin signed in" in lines[0]
    assert "\\x1b[2Jinline" in lines[0]
    assert f"[{response['X-Request-ID']}]" in lines[0]
