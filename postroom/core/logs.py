"""Log formatting that cannot be used to forge log lines (CR/LF, ANSI escapes)."""

from __future__ import annotations

import logging
import re

_UNSAFE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x1b]")


def neutralise(text: str) -> str:
    return _UNSAFE.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


class SafeFormatter(logging.Formatter):
    """Escapes control characters in the message; tracebacks keep their own newlines."""

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "correlation_id"):
            record.correlation_id = "-"
        original_msg, original_args = record.msg, record.args
        record.msg, record.args = neutralise(record.getMessage()), None
        try:
            return super().format(record)
        finally:
            record.msg, record.args = original_msg, original_args
