"""R52: CSRF on every state-changing route, GET/HEAD never change state, no CORS."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from postroom.conftest import Cast
from postroom.web.tests.routes import Route

# Views that accept a POST without a CSRF token, and the protection they have instead.
CSRF_EXEMPT_ALLOWLIST = {
    # Browsers send CSP reports without cookies or tokens; the view only logs a bounded summary.
    "postroom.web.views.csp_report",
    # django-ninja exempts its views from Django's middleware and checks the CSRF token itself
    # for session-authenticated calls: postroom/api/tests (test_r52_unsafe_methods_need_the_csrf_token).
    "ninja.operation.sync_view_wrapper",
}

# (view, table) pairs where a GET may write, and why that cannot be abused cross-site.
GET_WRITES_ALLOWLIST = {
    # The invitation landing page remembers the link in the visitor's own session so that signing
    # up or in returns to it; joining still needs a POST with a CSRF token from the invited address.
    ("postroom.orgs.views.invitation_accept", "django_session"),
}


def qualified_name(callback: Any) -> str:
    return f"{callback.__module__}.{callback.__name__}"


def fingerprint_query() -> str:
    """One query for the row count and newest ``updated_at``/``modified`` of every table."""
    parts = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            columns = {column.name for column in connection.introspection.get_table_description(cursor, table)}
            change_columns = sorted(columns & {"updated_at", "modified", "modified_at", "changed_at"})
            newest = " || ','  || ".join(f"COALESCE(CAST(MAX({connection.ops.quote_name(column)}) AS TEXT), '')" for column in change_columns) or "''"
            parts.append(f"SELECT '{table}', COUNT(*), {newest} FROM {connection.ops.quote_name(table)}")  # noqa: S608 (names from introspection)
    return " UNION ALL ".join(parts)


def database_fingerprint(query: str) -> dict[str, tuple[int, str]]:
    with connection.cursor() as cursor:
        cursor.execute(query)
        return {table: (count, newest) for table, count, newest in cursor.fetchall()}


def signed_in_client(user: Any, **options: Any) -> Client:
    client = Client(**options)
    client.force_login(user, backend="allauth.account.auth_backends.AuthenticationBackend")
    return client


@pytest.mark.django_db
def test_r52_csrf_exempt_views_are_only_the_allowlisted_ones(routes: list[Route]) -> None:
    exempt = {qualified_name(route.callback) for route in routes if getattr(route.callback, "csrf_exempt", False)}
    assert exempt == CSRF_EXEMPT_ALLOWLIST


@pytest.mark.django_db
def test_r52_post_without_token_is_refused_on_every_route(routes: list[Route], cast: Cast, settings) -> None:  # type: ignore[no-untyped-def]
    clients = {"anonymous": Client(enforce_csrf_checks=True), "alice": signed_in_client(cast.alice, enforce_csrf_checks=True)}
    # The victim's browser holds a CSRF cookie from a form it was shown; the forged form lacks the token.
    for who, page in (("anonymous", "/accounts/login/"), ("alice", f"/o/{cast.org_a.slug}/settings/")):
        assert clients[who].get(page).status_code == 200
        assert clients[who].cookies[settings.CSRF_COOKIE_NAME].value
    query = fingerprint_query()
    before = database_fingerprint(query)
    checked = 0
    for route in routes:
        if qualified_name(route.callback) in CSRF_EXEMPT_ALLOWLIST:
            continue
        for who, client in clients.items():
            response = client.post(route.path, {"name": "changed", "email": "eve@evil.test", "role": "owner"})
            assert response.status_code == 403, f"POST {route.label} as {who} -> {response.status_code}"
            assert b"This form is out of date" in response.content
            checked += 1
    assert checked >= 100
    assert database_fingerprint(query) == before


@pytest.mark.django_db
def test_r52_post_with_a_foreign_origin_is_refused_even_with_a_token(cast: Cast, settings) -> None:  # type: ignore[no-untyped-def]
    client = signed_in_client(cast.alice, enforce_csrf_checks=True)
    client.get("/o/acme/settings/")
    token = client.cookies[settings.CSRF_COOKIE_NAME].value
    response = client.post("/o/acme/settings/", {"name": "Renamed", "csrfmiddlewaretoken": token}, headers={"origin": "https://evil.example"})
    assert response.status_code == 403
    cast.org_a.refresh_from_db()
    assert cast.org_a.name == "Acme Support"


@pytest.mark.django_db
def test_r52_get_and_head_change_nothing(routes: list[Route], cast: Cast, settings) -> None:  # type: ignore[no-untyped-def]
    """Every GET and HEAD, anonymous and signed in, leaves every table as it was.

    A signed-in request may refresh the session's expiry (at most once a minute, by design) and
    the session list's last-seen time; neither changes a row count or an updated_at column.
    Here every request refreshes: with the minute, whether the session list's row was first
    written by the warm-up or in the middle of the loop depended on how fast the machine was.
    No read writes an audit row today; if one ever should, add it to GET_WRITES_ALLOWLIST.
    """
    settings.SESSION_REFRESH_INTERVAL = timedelta(0)
    clients = {"anonymous": Client(), "alice": signed_in_client(cast.alice), "charlie": signed_in_client(cast.charlie)}
    for client in clients.values():
        client.get("/")  # the first request of a session may store what allauth tracks about it
    query = fingerprint_query()
    for route in routes:
        before = database_fingerprint(query)
        for client in clients.values():
            client.get(route.path)
            client.head(route.path)
        after = database_fingerprint(query)
        changed = {
            table for table in before
            if before[table] != after[table] and (qualified_name(route.callback), table) not in GET_WRITES_ALLOWLIST
        }
        assert not changed, f"GET/HEAD {route.label} changed {changed}"


@pytest.mark.django_db
def test_r52_foreign_origin_gets_no_cors_headers(routes: list[Route], cast: Cast) -> None:
    client = signed_in_client(cast.alice)
    foreign = {"origin": "https://evil.example"}
    responses = [client.get(route.path, headers=foreign) for route in routes]
    responses.append(client.options("/", headers={**foreign, "access-control-request-method": "POST"}))
    responses.append(client.post("/csp-report/", b"{}", content_type="application/csp-report", headers=foreign))
    for response in responses:
        for header in response.headers:
            assert not header.lower().startswith("access-control-"), (response.request["PATH_INFO"], header)


@pytest.mark.django_db
def test_r52_csp_report_accepts_reports_and_logs_only_a_bounded_summary(caplog: pytest.LogCaptureFixture) -> None:
    client = Client(enforce_csrf_checks=True)
    report = {"csp-report": {"violated-directive": "script-src", "blocked-uri": "https://evil.example/" + "x" * 5000, "document-uri": "http://testserver/"}}
    with caplog.at_level("WARNING", logger="postroom.csp"):
        response = client.post("/csp-report/", json.dumps(report), content_type="application/csp-report")
    assert response.status_code == 204
    assert client.get("/csp-report/").status_code == 405
    (record,) = caplog.records
    assert "script-src" in record.getMessage()
    assert len(record.getMessage()) < 600
