"""R54: one record is one line, tracebacks cannot forge records, one-time links are redacted."""

from __future__ import annotations

import logging

import pytest

from postroom.core.logs import TRACEBACK_PREFIX, SafeFormatter, redact

FORMAT = "%(levelname)s %(name)s [%(correlation_id)s] %(message)s"


def format_record(message: str, *args: object, exc_info: bool = False) -> str:
    record = logging.LogRecord("postroom.test", logging.WARNING, __file__, 1, message, args, None)
    if exc_info:
        try:
            raise ValueError("bad value x\r\nWARNING postroom.auth [-] FAKE admin logged in")
        except ValueError:
            import sys

            record.exc_info = sys.exc_info()
    return SafeFormatter(FORMAT).format(record)


def test_r54_crlf_in_a_logged_value_stays_on_one_line() -> None:
    line = format_record("login failed for %s", "x\r\nFAKE")
    assert "\n" not in line
    assert "\r" not in line
    assert line == "WARNING postroom.test [-] login failed for x\\x0d\\x0aFAKE"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("\x1b[2J\x1b[31mred", "\\x1b[2J\\x1b[31mred"),
        ("a\u2028b\u2029c\x85d", "a\\u2028b\\u2029c\\x85d"),
        ("nul\x00bell\x07del\x7f", "nul\\x00bell\\x07del\\x7f"),
        ("tab\tstays", "tab\tstays"),
    ],
)
def test_r54_control_and_escape_sequences_are_escaped(value: str, shown: str) -> None:
    line = format_record("user agent %s", value)
    assert line.endswith(shown)
    assert len(line.splitlines()) == 1


def test_r54_exception_messages_cannot_start_a_new_record() -> None:
    text = format_record("request failed", exc_info=True)
    first, *rest = text.split("\n")
    assert first == "WARNING postroom.test [-] request failed"
    assert rest
    assert all(line.startswith(TRACEBACK_PREFIX) for line in rest)
    assert "\r" not in text
    assert not any(line.startswith("WARNING") for line in rest)


def test_r54_a_traceback_cached_by_another_handler_is_still_escaped() -> None:
    record = logging.LogRecord("postroom.test", logging.ERROR, __file__, 1, "failed", None, None)
    record.exc_text = "Traceback (most recent call last):\nValueError: x\r\nERROR forged line"
    lines = SafeFormatter(FORMAT).format(record).split("\n")
    assert lines[0] == "ERROR postroom.test [-] failed"
    assert all(line.startswith(TRACEBACK_PREFIX) for line in lines[1:])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Forbidden (CSRF token missing.): /invitations/9HCo2zVcBvAbXvCTBiz9ttXuVdMsZtJ/", "/invitations/[redacted]/"),
        ("Not Found: /accounts/password/reset/key/1-cyh5nb-abcdef0123/", "/accounts/password/reset/key/[redacted]/"),
        ("Not Found: /accounts/confirm-email/MQ:1tXkqv:abcdEFGH/", "/accounts/confirm-email/[redacted]/"),
        ("GET /setup/?token=L6djJW7ySaxPaNUff5HiG1tR HTTP/1.1", "/setup/?token=[redacted] HTTP/1.1"),
        ("callback /accounts/oidc/corp/login/callback/?code=abc123&state=xyz789", "?code=[redacted]&state=[redacted]"),
        ("refresh?access_token=sekrit&page=2", "?access_token=[redacted]&page=2"),
    ],
)
def test_r54_one_time_links_are_redacted(text: str, expected: str) -> None:
    redacted = redact(text)
    assert expected in redacted
    assert "9HCo2z" not in redacted
    assert "cyh5nb" not in redacted
    assert "abcdEFGH" not in redacted
    assert "L6djJW" not in redacted
    assert "abc123" not in redacted
    assert "sekrit" not in redacted


def test_r54_redaction_leaves_ordinary_paths_alone() -> None:
    for text in ("GET /o/acme/invitations/ 200", "GET /accounts/confirm-email/ 200", "GET /o/acme/audit/?action=login 200"):
        assert redact(text) == text
