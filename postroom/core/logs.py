"""Log formatting that cannot be used to forge log lines or to harvest secrets (SECURITY.md R54).

Attackers considered:
- someone who puts CR/LF or terminal escape sequences into a value that gets logged (an email
  address, a user agent, a URL) to forge whole log lines or rewrite an operator's terminal;
- someone who can read the logs (a log shipper, a support engineer, a leaked archive) and would
  use a reset, invitation or confirmation link found there.

Defences: every control character in a message is written as ``\\xNN``, so one record is one
line; the lines of a traceback are each prefixed with ``  | `` and escaped the same way, so an
exception message cannot start a line that looks like a record; and the secret parts of
Postroom's one-time links (path tokens and token-like query parameters), personal API tokens
(cut to their public ``pr_`` prefix) and ``Bearer`` credentials are replaced by ``[redacted]``
before anything is written. Our own code never logs passwords, codes or message
content in the first place; this is the net under that rule.
"""

from __future__ import annotations

import logging
import re

# Control characters, and the Unicode line breaks that log viewers and splitlines() honour.
_UNSAFE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")
# The secret part of Postroom's one-time links: setup and invitation tokens, allauth's password
# reset and email confirmation keys, and OAuth/OIDC callback parameters.
_SECRET_PATH = re.compile(r"(/(?:invitations|password/reset/key|confirm-email)/)[^/\s?#\"']+")
_SECRET_QUERY = re.compile(r"([?&](?:token|key|code|state|nonce|password|secret|[a-z_]*_token)=)[^&\s#\"']+", re.IGNORECASE)
# A personal API token keeps its public prefix (pr_ + 8), so an operator can still tell which one.
_API_TOKEN = re.compile(r"\b(pr_[a-z0-9]{8})[A-Za-z0-9]{12,}")
_BEARER = re.compile(r"(\bBearer\s+)[^\s\"',;]+", re.IGNORECASE)
REDACTED = "[redacted]"
TRACEBACK_PREFIX = "  | "


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def neutralise(text: str) -> str:
    return _UNSAFE.sub(_escape, text)


def redact(text: str) -> str:
    text = _SECRET_QUERY.sub(rf"\1{REDACTED}", _SECRET_PATH.sub(rf"\1{REDACTED}", text))
    return _BEARER.sub(rf"\1{REDACTED}", _API_TOKEN.sub(rf"\1{REDACTED}", text))


def _continuation_lines(text: str) -> str:
    return "\n".join(TRACEBACK_PREFIX + neutralise(redact(line)) for line in text.splitlines())


class SafeFormatter(logging.Formatter):
    """One record, one line; tracebacks as prefixed continuation lines; one-time links redacted.

    Written without logging's exception-text cache: another handler may have filled it with an
    unescaped traceback first.
    """

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "correlation_id"):
            record.correlation_id = "-"
        record.message = neutralise(redact(record.getMessage()))
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        lines = [self.formatMessage(record)]
        if record.exc_info:
            lines.append(self.formatException(record.exc_info))
        elif record.exc_text:
            lines.append(_continuation_lines(record.exc_text))
        if record.stack_info:
            lines.append(self.formatStack(record.stack_info))
        return "\n".join(lines)

    def formatException(self, ei) -> str:  # noqa: N802 (logging's name)
        return _continuation_lines(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:  # noqa: N802 (logging's name)
        return _continuation_lines(stack_info)
