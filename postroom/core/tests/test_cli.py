"""The ``postroom`` command as an operator runs it: real processes, a fresh data directory each."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from postroom.core.tests.processes import REPOSITORY, clean_environment, run_postroom
from postroom.testing.dovecot import free_port

BAD_VALUES = [
    ("DATABASE_URL", "mysql://app:canary-password-1@db.internal/postroom"),
    ("DATABASE_URL", "postgres://app:canary-password-2@db.internal:notaport/postroom"),
    ("DATABASE_URL", "not a url at all"),
    ("REDIS_URL", "http://:canary-password-3@cache.internal:6379/0"),
    ("POSTROOM_PUBLIC_URL", "ftp://postroom.example"),
    ("POSTROOM_PUBLIC_URL", "http://postroom.example"),
    ("POSTROOM_SMTP_URL", "http://mailer:canary-password-4@mail.internal"),
    ("POSTROOM_SMTP_URL", "smtp+insecure://mail.example.org:25"),
    ("POSTROOM_SECRET_KEY", "too-short"),
    ("POSTROOM_DEBUG", "perhaps"),
]


def assert_configuration_error(result: subprocess.CompletedProcess[str], variable: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert f"postroom: configuration error — {variable}" in result.stderr, result.stderr
    assert "Fix: " in result.stderr
    assert "Traceback" not in result.stderr
    assert "canary-password" not in result.stderr + result.stdout


@pytest.mark.parametrize(("variable", "value"), BAD_VALUES)
def test_r50_bad_configuration_stops_the_web_server(tmp_path: Path, variable: str, value: str) -> None:
    result = run_postroom("web", "--port", str(free_port()), environment=clean_environment(tmp_path, **{variable: value}))
    assert_configuration_error(result, variable)


@pytest.mark.parametrize(("variable", "value"), BAD_VALUES[::3])
def test_r50_bad_configuration_stops_management_commands(tmp_path: Path, variable: str, value: str) -> None:
    result = run_postroom("manage", "check", environment=clean_environment(tmp_path, **{variable: value}))
    assert_configuration_error(result, variable)


def test_r50_unreachable_database_stops_the_web_server(tmp_path: Path) -> None:
    unused_port = free_port()
    url = f"postgres://postroom:canary-password-5@127.0.0.1:{unused_port}/postroom"
    result = run_postroom("web", "--port", str(free_port()), environment=clean_environment(tmp_path, DATABASE_URL=url))
    assert_configuration_error(result, "DATABASE_URL")
    assert "cannot be used" in result.stderr


def test_r50_unreadable_privacy_policy_file_stops_start_up(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-policy.txt"
    result = run_postroom("manage", "check", environment=clean_environment(tmp_path, POSTROOM_PRIVACY_POLICY_FILE=str(missing)))
    assert_configuration_error(result, "POSTROOM_PRIVACY_POLICY_FILE")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("command", [("setup-token",), ("manage", "check")])
def test_r46_first_run_creates_private_keys_and_never_prints_them(tmp_path: Path, command: tuple[str, ...]) -> None:
    data_dir = tmp_path / "data"
    result = run_postroom(*command, environment=clean_environment(data_dir))
    assert result.returncode == 0, result.stderr

    secret_key = (data_dir / "secret_key").read_text().strip()
    master_line = (data_dir / "master.key").read_text().strip()
    master_key = master_line.partition(":")[2]
    assert len(secret_key) >= 50
    assert len(master_key) == 44  # base64 of 32 bytes
    printed = result.stdout + result.stderr
    for secret in (secret_key, master_key, secret_key[:20], master_key[:20]):
        assert secret not in printed
    assert mode(data_dir) == 0o700
    assert mode(data_dir / "secret_key") == 0o600
    assert mode(data_dir / "master.key") == 0o600
    if command == ("setup-token",):
        assert "/setup/?token=" in result.stdout


def test_r46_second_run_keeps_the_keys(tmp_path: Path) -> None:
    environment = clean_environment(tmp_path)
    assert run_postroom("manage", "check", environment=environment).returncode == 0
    first = (tmp_path / "secret_key").read_text(), (tmp_path / "master.key").read_text()
    assert run_postroom("manage", "check", environment=environment).returncode == 0
    assert ((tmp_path / "secret_key").read_text(), (tmp_path / "master.key").read_text()) == first


def test_r46_sqlite_database_is_private_through_the_cli(tmp_path: Path) -> None:
    result = run_postroom("setup-token", environment=clean_environment(tmp_path))
    assert result.returncode == 0, result.stderr
    database = tmp_path / "postroom.sqlite3"
    assert database.stat().st_size > 0
    assert mode(database) == 0o600
    for path in tmp_path.iterdir():
        assert mode(path) & 0o077 == 0, path


def test_r46_sqlite_database_is_private_without_the_cli_umask(tmp_path: Path) -> None:
    """``manage.py`` runs with the operator's umask (022 here); the settings still create it 0600."""
    database = tmp_path / "postroom.sqlite3"
    database.write_bytes(b"")
    database.chmod(0o644)  # as left by an older version
    code = "import os, sys, runpy; os.umask(0o022); sys.argv = ['manage.py', 'migrate', '--verbosity', '0']; runpy.run_path('manage.py', run_name='__main__')"
    result = subprocess.run(
        [sys.executable, "-c", code], env=clean_environment(tmp_path), cwd=REPOSITORY, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert database.stat().st_size > 0
    assert mode(database) == 0o600


def test_r14_setup_token_is_refused_once_set_up(tmp_path: Path) -> None:
    environment = clean_environment(tmp_path)
    first = run_postroom("setup-token", environment=environment)
    assert first.returncode == 0
    create_owner = (
        "from postroom.testing.factories import UserFactory; UserFactory(email='owner@postroom.test')"
    )
    shell = run_postroom("manage", "shell", "-c", create_owner, environment=environment)
    assert shell.returncode == 0, shell.stderr
    second = run_postroom("setup-token", environment=environment)
    assert second.returncode == 1
    assert "/setup/?token=" not in second.stdout
    assert "already set up" in second.stderr


def test_the_sync_process_leaves_its_start_up_heap_out_of_the_cyclic_collector(monkeypatch: pytest.MonkeyPatch) -> None:
    """``postroom sync`` freezes what start-up made before it syncs, so that full collections
    during a first import do not walk Django and the apps' modules again and again."""
    import argparse
    import gc
    import signal

    from postroom import cli
    from postroom.sync import service

    frozen: list[int] = []

    class Service:
        def __init__(self, **options: object) -> None:
            pass

        def run(self) -> None:
            frozen.append(gc.get_freeze_count())

        def stop(self) -> None:
            pass

    monkeypatch.setattr(service, "SyncService", Service)
    handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    try:
        assert cli.command_sync(argparse.Namespace(max_mailboxes=1, lease_seconds=60)) == 0
    finally:
        gc.unfreeze()
        signal.signal(signal.SIGTERM, handlers[0])
        signal.signal(signal.SIGINT, handlers[1])
    assert frozen[0] > 10_000
