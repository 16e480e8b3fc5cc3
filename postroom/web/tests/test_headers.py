"""R51/R48: a header crawler over every GET route, anonymous and signed in, plus 404, 500 and
static files, under the test settings and under the production settings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.test import Client

from postroom.conftest import Cast
from postroom.web.tests.production import PUBLIC_HOST, production_transport_settings
from postroom.web.tests.routes import Route

STATIC_FILES = ["/static/postroom/app.css", "/static/postroom/app.js", "/static/postroom/favicon.svg"]
STRICT_REFERRER_POLICIES = {"same-origin", "no-referrer"}
UNSAFE_SOURCES = {"'unsafe-inline'", "'unsafe-eval'", "'unsafe-hashes'", "*", "data:", "http:", "https:", "blob:"}
_SCRIPT_TAG = re.compile(r"<script\b([^>]*)>", re.IGNORECASE)
_INLINE_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.IGNORECASE)


def identity_provider_origins() -> list[str]:
    """Forms may also go to the configured OpenID providers (the login redirect); nowhere else."""
    servers = [urlsplit(app["settings"]["server_url"]) for app in settings.SOCIALACCOUNT_PROVIDERS["openid_connect"]["APPS"]]
    return sorted({f"{server.scheme}://{server.netloc}" for server in servers})


def csp_directives(header: str) -> dict[str, list[str]]:
    return {parts[0]: parts[1:] for parts in (directive.split() for directive in header.split(";")) if parts}


def assert_security_headers(response: Any, where: str, *, static: bool = False) -> None:
    headers = response.headers
    csp = csp_directives(headers.get("Content-Security-Policy", ""))
    assert csp.get("default-src") == ["'none'"], where
    assert csp.get("object-src") == ["'none'"], where
    assert csp.get("base-uri") == ["'none'"], where
    assert csp.get("frame-ancestors") == ["'none'"], where
    assert csp.get("form-action") == ["'self'", *identity_provider_origins()], where
    assert csp.get("report-uri") == ["/csp-report/"], where
    assert not UNSAFE_SOURCES & set(csp.get("script-src", [])), where
    assert not UNSAFE_SOURCES & set(csp.get("style-src", [])), where
    assert headers.get("X-Content-Type-Options") == "nosniff", where
    assert headers.get("Referrer-Policy") in STRICT_REFERRER_POLICIES, where
    assert headers.get("Cross-Origin-Opener-Policy") == "same-origin", where
    assert headers.get("Cross-Origin-Resource-Policy") == "same-origin", where
    assert headers.get("X-Frame-Options") == "DENY", where
    permissions = headers.get("Permissions-Policy", "")
    for feature in ("camera=()", "microphone=()", "geolocation=()", "payment=()", "usb=()"):
        assert feature in permissions, where
    for banner in ("Server", "X-Powered-By"):
        assert banner not in headers, where
    if not static:
        assert headers.get("Cache-Control") == "no-store", where
    if response.status_code == 200 and "text/html" in headers.get("Content-Type", "") and not static:
        assert_scripts_carry_the_nonce(response.content.decode(), csp.get("script-src", []), where)


def assert_scripts_carry_the_nonce(html: str, script_sources: list[str], where: str) -> None:
    nonces = {source[len("'nonce-"):-1] for source in script_sources if source.startswith("'nonce-")}
    for attributes in _SCRIPT_TAG.findall(html):
        if "src=" in attributes:
            continue
        found = re.search(r'nonce="([^"]+)"', attributes)
        assert found, f"{where}: inline <script> without a nonce"
        assert found.group(1) in nonces, f"{where}: script nonce not in the CSP header"
    assert not _INLINE_HANDLER.search(html), f"{where}: inline event handler attribute"


def crawl(client: Client, routes: list[Route], **request: Any) -> int:
    """GET every route and check its headers; returns how many answered 200."""
    pages = 0
    for route in routes:
        response = client.get(route.path, **request)
        assert_security_headers(response, f"GET {route.label} -> {response.status_code}")
        pages += response.status_code == 200
    return pages


@pytest.mark.django_db
def test_r51_headers_on_every_get_route_anonymous(routes: list[Route]) -> None:
    pages = crawl(Client(), routes)
    assert pages >= 5  # the login, signup, reset, privacy and security.txt pages really rendered


@pytest.mark.django_db
def test_r51_headers_on_every_get_route_signed_in(routes: list[Route], cast: Cast, client_as) -> None:  # type: ignore[no-untyped-def]
    pages = crawl(client_as(cast.alice), routes)
    assert pages >= 10  # home, members, teams, team, invitations, settings, audit log, 2FA …


@pytest.mark.django_db
@pytest.mark.parametrize("path", STATIC_FILES)
def test_r51_headers_on_static_files(path: str, cast: Cast, client_as) -> None:  # type: ignore[no-untyped-def]
    for client in (Client(), client_as(cast.alice)):
        response = client.get(path)
        assert response.status_code == 200
        assert_security_headers(response, path, static=True)


@pytest.mark.django_db
def test_r51_headers_on_not_found(cast: Cast, client_as) -> None:  # type: ignore[no-untyped-def]
    signed_in = client_as(cast.alice)
    for client, path in [
        (Client(), "/no-such-page/"),
        (Client(), "/static/postroom/no-such-file.css"),
        (signed_in, "/no-such-page/"),
        (signed_in, "/o/no-such-org/members/"),
        (signed_in, f"/o/{cast.org_b.slug}/members/"),
    ]:
        response = client.get(path)
        assert response.status_code == 404, path
        assert_security_headers(response, path, static=path.startswith("/static/"))


@pytest.mark.django_db
@pytest.mark.urls("postroom.web.tests.failing_urls")
def test_r51_headers_on_server_error(cast: Cast) -> None:
    anonymous = Client(raise_request_exception=False)
    signed_in = Client(raise_request_exception=False)
    signed_in.force_login(cast.alice, backend="allauth.account.auth_backends.AuthenticationBackend")
    for client in (anonymous, signed_in):
        response = client.get("/test-only/explode/")
        assert response.status_code == 500
        assert_security_headers(response, "500")


@pytest.mark.django_db
def test_r51_headers_on_other_methods(cast: Cast, client_as) -> None:  # type: ignore[no-untyped-def]
    client = client_as(cast.alice)
    for response in (client.post("/health"), client.generic("TRACE", "/"), client.options("/"), client.head("/privacy/")):
        assert_security_headers(response, f"{response.request['REQUEST_METHOD']} -> {response.status_code}")


@pytest.fixture(scope="module")
def production_values(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return production_transport_settings(tmp_path_factory.mktemp("production-data"))


def production_client(**defaults: Any) -> Client:
    return Client(HTTP_HOST=PUBLIC_HOST, HTTP_X_FORWARDED_PROTO="https", **defaults)


def assert_hsts(response: Any, where: str) -> None:
    value = response.headers.get("Strict-Transport-Security", "")
    max_age = re.search(r"max-age=(\d+)", value)
    assert max_age, where
    assert int(max_age.group(1)) >= 365 * 24 * 3600, where
    assert "includeSubDomains" in value, where


@pytest.mark.django_db
def test_r48_production_settings_send_hsts_and_secure_cookies(production_values: dict[str, Any], settings, routes: list[Route], cast: Cast) -> None:  # type: ignore[no-untyped-def]
    for name, value in production_values.items():
        setattr(settings, name, value)
    assert settings.SESSION_COOKIE_NAME.startswith("__Host-")
    assert settings.SECURE_SSL_REDIRECT

    anonymous = production_client()
    signed_in = production_client()
    signed_in.force_login(cast.alice, backend="allauth.account.auth_backends.AuthenticationBackend")
    for client in (anonymous, signed_in):
        for route in routes:
            response = client.get(route.path)
            where = f"GET {route.label} -> {response.status_code}"
            assert_security_headers(response, where)
            assert_hsts(response, where)

    login_page = anonymous.get("/accounts/login/")
    cookie = login_page.cookies[settings.CSRF_COOKIE_NAME]
    assert settings.CSRF_COOKIE_NAME.startswith("__Host-")
    assert cookie["secure"]
    assert cookie["path"] == "/"
    assert not cookie["domain"]


@pytest.mark.django_db
def test_r48_plain_http_is_redirected_to_https_in_production(production_values: dict[str, Any], settings) -> None:  # type: ignore[no-untyped-def]
    for name, value in production_values.items():
        setattr(settings, name, value)
    response = Client(HTTP_HOST=PUBLIC_HOST).get("/accounts/login/")
    assert response.status_code == 301
    assert response["Location"] == f"https://{PUBLIC_HOST}/accounts/login/"


def test_r51_form_action_allows_only_self_and_the_configured_identity_providers(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    from postroom.core.tests.processes import REPOSITORY
    from postroom.web.tests.production import production_environment

    environment = production_environment(tmp_path) | {
        "POSTROOM_OIDC_PROVIDERS": "corp",
        "POSTROOM_OIDC_CORP_ISSUER": "https://login.corp.example/realms/staff",
        "POSTROOM_OIDC_CORP_CLIENT_ID": "postroom",
        "POSTROOM_OIDC_CORP_CLIENT_SECRET": "client-secret",
    }
    code = "import json, postroom.settings as s; print(json.dumps(s.CONTENT_SECURITY_POLICY['DIRECTIVES']['form-action']))"
    result = subprocess.run([sys.executable, "-c", code], env=environment, cwd=REPOSITORY, capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(result.stdout) == ["'self'", "https://login.corp.example"]
