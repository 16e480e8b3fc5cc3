"""R50/R48/R51/R56 against a real ``postroom web`` process, configured as in production behind a
TLS-terminating proxy (the proxy itself is the operator's; see README, "Deploying behind TLS")."""

from __future__ import annotations

import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from postroom.core.tests.processes import REPOSITORY, RunningProcess, clean_environment, run_postroom, running_postroom
from postroom.testing.dovecot import free_port, free_ports
from postroom.web.tests.production import PUBLIC_HOST, production_environment

THROUGH_PROXY = {"Host": PUBLIC_HOST, "X-Forwarded-Proto": "https"}


def test_r50_check_deploy_passes_with_production_settings(tmp_path: Path) -> None:
    result = run_postroom("manage", "check", "--deploy", "--fail-level", "WARNING", environment=production_environment(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_r50_check_deploy_fails_for_a_debug_server(tmp_path: Path) -> None:
    """The check above can fail: the same settings with debugging on do not pass."""
    environment = production_environment(tmp_path) | {"POSTROOM_DEBUG": "true"}
    result = run_postroom("manage", "check", "--deploy", "--fail-level", "WARNING", environment=environment)
    assert result.returncode != 0
    assert "security.W018" in result.stderr


@pytest.fixture(scope="module")
def production_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProcess]:
    data_dir = tmp_path_factory.mktemp("production-server")
    port = free_port()
    with running_postroom("web", "--host", "127.0.0.1", "--port", str(port), environment=production_environment(data_dir), port=port, output_path=data_dir / "output.log") as server:
        server.wait_for_http("/health", THROUGH_PROXY)
        yield server


@pytest.mark.parametrize("path", ["/.git/HEAD", "/.git/config", "/.env", "/__debug__/", "/admin/", "/admin/login/", "/static/", "/static/postroom/", "/data/master.key", "/secret_key"])
def test_r50_nothing_but_the_product_is_reachable(production_server: RunningProcess, path: str) -> None:
    response = production_server.request("GET", path, THROUGH_PROXY)
    assert response.status == 404, path


@pytest.mark.parametrize(("method", "refusals"), [("TRACE", {405}), ("CONNECT", {405}), ("TRACK", {400, 405})])
def test_r50_diagnostic_methods_are_refused(production_server: RunningProcess, method: str, refusals: set[int]) -> None:
    """TRACK is not even HTTP: uvicorn's parser answers 400 before Django sees it."""
    for path in ("/", "/accounts/login/", "/csp-report/"):
        response = production_server.request(method, path, THROUGH_PROXY)
        assert response.status in refusals, (method, path, response.status)


def test_r51_no_version_banners(production_server: RunningProcess) -> None:
    for path in ("/", "/accounts/login/", "/no-such-page/", "/static/postroom/app.css", "/health"):
        response = production_server.request("GET", path, THROUGH_PROXY)
        names = {name.lower() for name, _value in response.getheaders()}
        assert "server" not in names, path
        assert "x-powered-by" not in names, path
        for name, value in response.getheaders():
            assert not re.search(r"uvicorn|python|django|starlette|postroom/\d", value, re.IGNORECASE), (path, name, value)


def test_r48_hsts_and_redirect_from_plain_http(production_server: RunningProcess) -> None:
    response = production_server.request("GET", "/accounts/login/", THROUGH_PROXY)
    assert response.status == 200
    hsts = response.getheader("Strict-Transport-Security", "")
    assert int(re.search(r"max-age=(\d+)", hsts).group(1)) >= 365 * 24 * 3600  # type: ignore[union-attr]
    assert "includeSubDomains" in hsts
    cookies = response.getheader("Set-Cookie", "")
    assert cookies.startswith("__Host-postroom-csrf=")
    assert "Secure" in cookies

    plain = production_server.request("GET", "/accounts/login/", {"Host": PUBLIC_HOST})
    assert plain.status == 301
    assert plain.getheader("Location") == f"https://{PUBLIC_HOST}/accounts/login/"


def test_r50_unknown_host_is_refused(production_server: RunningProcess) -> None:
    response = production_server.request("GET", "/accounts/login/", {"Host": "evil.example", "X-Forwarded-Proto": "https"})
    assert response.status == 400


def test_r46_running_server_keeps_database_files_private(production_server: RunningProcess) -> None:
    data_dir = production_server.output_path.parent
    database_files = list(data_dir.glob("postroom.sqlite3*"))
    assert database_files
    for path in [data_dir, *database_files, data_dir / "secret_key", data_dir / "master.key"]:
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path


def test_r56_database_outage_gives_the_generic_page_and_a_logged_reference(tmp_path: Path) -> None:
    """PostgreSQL configured but down: the server starts (no migrate) and every page needing the
    database answers the generic 500 page; the reference on it is in the log line of the error."""
    port, database_port = free_ports(2)  # two different ports: nothing may listen on the database's
    environment = clean_environment(tmp_path, DATABASE_URL=f"postgres://postroom:canary-db-password@127.0.0.1:{database_port}/postroom")
    with running_postroom("web", "--port", str(port), "--no-migrate", environment=environment, port=port, output_path=tmp_path / "output.log") as server:
        server.wait_for_http("/health")
        health = server.request("GET", "/health")
        assert health.status == 503
        connection_response = _get_body(server, "/")
        status, headers, body = connection_response
        assert status == 500
        reference = headers["x-request-id"]
        assert reference in body
        for leak in ("Traceback", "OperationalError", "canary-db-password", "127.0.0.1", "psycopg", 'File "'):
            assert leak not in body, leak
        assert "object-src 'none'" in headers["content-security-policy"]
        output = server.wait_for_output(f"[{reference}]")
    (line,) = [line for line in output.splitlines() if f"[{reference}]" in line]
    assert "Internal Server Error: /" in line
    assert "canary-db-password" not in output


def _get_body(server: RunningProcess, path: str) -> tuple[int, dict[str, str], str]:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read().decode()
    connection.close()
    return response.status, {name.lower(): value for name, value in response.getheaders()}, body


def test_r54_unconfigured_mail_is_dropped_without_printing_links(tmp_path: Path) -> None:
    """A production server without POSTROOM_SMTP_URL sends a reset mail: nothing of it is printed."""
    code = (
        "import django; django.setup()\n"
        "from django.conf import settings\n"
        "from django.core.mail import send_mail\n"
        "print('backend', settings.EMAIL_BACKEND)\n"
        "send_mail('[Postroom] Password reset', 'Reset: https://postroom.example/accounts/password/reset/key/1-canary-key/', None, ['erin@example.test'])\n"
    )
    environment = production_environment(tmp_path) | {"DJANGO_SETTINGS_MODULE": "postroom.settings"}
    result = subprocess.run([sys.executable, "-c", code], env=environment, cwd=REPOSITORY, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "backend postroom.core.mailconfig.UnconfiguredEmailBackend" in result.stdout
    printed = result.stdout + result.stderr
    assert "not sent: no mail server is configured. Fix: set POSTROOM_SMTP_URL" in printed
    for leak in ("canary-key", "erin@example.test", "Password reset"):
        assert leak not in printed


def test_loopback_trial_install_prints_mail_to_the_console(tmp_path: Path) -> None:
    code = "import django; django.setup()\nfrom django.conf import settings\nprint(settings.EMAIL_BACKEND)\n"
    environment = clean_environment(tmp_path, DJANGO_SETTINGS_MODULE="postroom.settings")
    result = subprocess.run([sys.executable, "-c", code], env=environment, cwd=REPOSITORY, capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "django.core.mail.backends.console.EmailBackend"
