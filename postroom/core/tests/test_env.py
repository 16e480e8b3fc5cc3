"""The environment helpers: every error names the variable and the fix, and never echoes a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from postroom.core.env import ConfigError, Env, redact_url


def error_of(call) -> ConfigError:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as caught:
        call()
    return caught.value


@pytest.mark.parametrize(
    ("variable", "value", "read"),
    [
        ("POSTROOM_DEBUG", "maybe", lambda env: env.boolean("POSTROOM_DEBUG")),
        ("POSTROOM_TRUSTED_PROXIES", "two", lambda env: env.integer("POSTROOM_TRUSTED_PROXIES", 0)),
        ("POSTROOM_TRUSTED_PROXIES", "9", lambda env: env.integer("POSTROOM_TRUSTED_PROXIES", 0, minimum=0, maximum=5)),
        ("POSTROOM_PUBLIC_URL", "ftp://example.org", lambda env: env.url("POSTROOM_PUBLIC_URL")),
        ("POSTROOM_PUBLIC_URL", "https://", lambda env: env.url("POSTROOM_PUBLIC_URL")),
        ("POSTROOM_PUBLIC_URL", "https://example.org:port", lambda env: env.url("POSTROOM_PUBLIC_URL")),
        ("POSTROOM_LOG_LEVEL", "LOUD", lambda env: env.choice("POSTROOM_LOG_LEVEL", "INFO", ("DEBUG", "INFO"))),
        ("POSTROOM_PRIVACY_POLICY_FILE", "/nonexistent/policy.txt", lambda env: env.readable_file("POSTROOM_PRIVACY_POLICY_FILE")),
    ],
)
def test_r50_every_error_names_the_variable_and_the_fix(variable: str, value: str, read) -> None:  # type: ignore[no-untyped-def]
    error = error_of(lambda: read(Env({variable: value})))
    assert error.variable == variable
    message = str(error)
    assert message.startswith(f"{variable}: ")
    problem, _, fix = message.partition(". Fix: ")
    assert problem, message
    assert fix, message


def test_r50_unset_and_blank_values_fall_back_to_the_default() -> None:
    env = Env({"POSTROOM_DEBUG": "  ", "POSTROOM_PORT": ""})
    assert env.boolean("POSTROOM_DEBUG", True) is True
    assert env.integer("POSTROOM_PORT", 8000) == 8000
    assert env.url("POSTROOM_PUBLIC_URL", "http://127.0.0.1:8000") == "http://127.0.0.1:8000"
    assert env.readable_file("POSTROOM_PRIVACY_POLICY_FILE") == ""


def test_r46_secret_comes_from_the_variable_or_its_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-the-file\n")
    assert Env({"POSTROOM_SECRET_KEY": "direct"}).secret("POSTROOM_SECRET_KEY") == "direct"
    assert Env({"POSTROOM_SECRET_KEY_FILE": str(secret_file)}).secret("POSTROOM_SECRET_KEY") == "from-the-file"
    assert Env({}).secret("POSTROOM_SECRET_KEY") is None


def test_r46_both_the_variable_and_its_file_is_an_error(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-the-file")
    error = error_of(lambda: Env({"DATABASE_URL": "postgres://a@b/c", "DATABASE_URL_FILE": str(secret_file)}).secret("DATABASE_URL"))
    assert error.variable == "DATABASE_URL"
    assert "DATABASE_URL_FILE" in str(error)
    assert "set only one" in str(error)


@pytest.mark.parametrize("content", [None, "", "   \n"])
def test_r46_missing_or_empty_secret_file_names_the_file_variable(tmp_path: Path, content: str | None) -> None:
    secret_file = tmp_path / "secret"
    if content is not None:
        secret_file.write_text(content)
    error = error_of(lambda: Env({"REDIS_URL_FILE": str(secret_file)}).secret("REDIS_URL"))
    assert error.variable == "REDIS_URL_FILE"
    assert str(secret_file) in str(error)
    assert "Fix: " in str(error)


def test_r54_url_errors_do_not_repeat_credentials() -> None:
    error = error_of(lambda: Env({"REDIS_URL": "http://user:hunter2-canary@cache.internal:6379/0"}).url("REDIS_URL", schemes=("redis", "rediss")))
    assert "hunter2-canary" not in str(error)
    assert "user" not in str(error)
    assert "cache.internal" in str(error)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@host:6379/0", "redis://***@host:6379/0"),
        ("postgres://user:p%40ss@db/name", "postgres://***@db/name"),
        ("smtps://user@mail:465", "smtps://***@mail:465"),
        ("https://example.org/a@b", "https://example.org/a@b"),
        ("not a url", "not a url"),
    ],
)
def test_r54_redact_url_masks_only_the_user_information(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_r50_readable_file_accepts_an_existing_file(tmp_path: Path) -> None:
    policy = tmp_path / "privacy.txt"
    policy.write_text("Our policy.")
    assert Env({"POSTROOM_PRIVACY_POLICY_FILE": str(policy)}).readable_file("POSTROOM_PRIVACY_POLICY_FILE") == str(policy)
    error = error_of(lambda: Env({"POSTROOM_PRIVACY_POLICY_FILE": str(tmp_path)}).readable_file("POSTROOM_PRIVACY_POLICY_FILE"))
    assert error.variable == "POSTROOM_PRIVACY_POLICY_FILE"
