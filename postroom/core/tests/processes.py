"""Real ``postroom`` processes for tests: a clean environment, a free port, waiting for HTTP.

Output goes to files rather than pipes so that a chatty child can never block on a full pipe.
"""

from __future__ import annotations

import http.client
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPOSITORY = Path(__file__).resolve().parents[3]
# Variables of the test run that must not leak into a production-like child.
_NOT_INHERITED = {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"}


def clean_environment(data_dir: Path, **overrides: str) -> dict[str, str]:
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("POSTROOM_") and name not in _NOT_INHERITED
    }
    environment.update(POSTROOM_DATA_DIR=str(data_dir), PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1")
    environment.update(overrides)
    return environment


def postroom_command(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "postroom", *arguments]


def run_postroom(*arguments: str, environment: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        postroom_command(*arguments), env=environment, cwd=REPOSITORY, capture_output=True, text=True, timeout=timeout, check=False
    )


@dataclass
class RunningProcess:
    process: subprocess.Popen[bytes]
    output_path: Path
    port: int

    def output(self) -> str:
        return self.output_path.read_text(encoding="utf-8", errors="replace")

    def request(self, method: str, path: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        response.read()
        connection.close()
        return response

    def wait_for_http(self, path: str = "/health", headers: dict[str, str] | None = None, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"postroom exited with {self.process.returncode}:\n{self.output()}")
            try:
                self.request("GET", path, headers)
            except OSError:
                time.sleep(0.25)
            else:
                return
        raise AssertionError(f"postroom did not answer on port {self.port} within {timeout} s:\n{self.output()}")

    def wait_for_output(self, text: str, *, occurrences: int = 1, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            output = self.output()
            if output.count(text) >= occurrences:
                return output
            time.sleep(0.1)
        raise AssertionError(f"{text!r} did not appear {occurrences} time(s) within {timeout} s:\n{self.output()}")


@contextmanager
def running_postroom(*arguments: str, environment: dict[str, str], port: int, output_path: Path) -> Iterator[RunningProcess]:
    with output_path.open("wb") as output:
        process = subprocess.Popen(postroom_command(*arguments), env=environment, cwd=REPOSITORY, stdout=output, stderr=subprocess.STDOUT)
    running = RunningProcess(process=process, output_path=output_path, port=port)
    try:
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def process_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@contextmanager
def product_database(purpose: str = "browser") -> Iterator[str | None]:
    """On the PostgreSQL run, a fresh database next to the suite's for a server process.

    The suite's own database belongs to pytest-django; the product gets one of its own, named
    after it, created empty (the server migrates it) and dropped afterwards.
    """
    url = os.environ.get("DATABASE_URL")
    if not url:
        yield None
        return
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = f"{parts.path.lstrip('/') or 'postroom'}_{purpose}_{secrets.token_hex(4)}"
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(maintenance, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlunsplit(parts._replace(path="/" + name))
    finally:
        with psycopg.connect(maintenance, autocommit=True) as connection:
            connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
