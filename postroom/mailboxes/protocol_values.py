"""Validation of values that Postroom puts into IMAP and SMTP command lines (SECURITY.md R33).

Attacker: anyone who controls a value that ends up in a command line: a member typing a folder
name or a username, a mail server that sends back a crafted folder name which we later SELECT,
or a stored value altered in the database. IMAP and SMTP are line-based: a CR or LF inside a
value ends the command there and lets the rest run as a new command (``DELETE INBOX``, a second
``RCPT TO``), and a NUL truncates values in C servers and splits SASL PLAIN fields.

Defences: values are rejected (not cleaned: a silently altered folder name would act on the
wrong folder) when they contain CR, LF, NUL or any other control character; UIDs must be plain
32-bit positive integers, never strings that could carry ``1:*`` or a command; quoting itself
is left to IMAPClient (which escapes quotes and backslashes and encodes non-ASCII names as
modified UTF-7), so a quote inside a folder name stays part of the name.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

MAX_UID = 2**32 - 1  # RFC 3501 nz-number
MAX_FOLDER_NAME_LENGTH = 1000


class UnsafeProtocolValue(ValueError):  # noqa: N818 (a ValueError already says it is an error)
    """A value that must not be sent to a mail server; the message says which and why."""


def _has_control_character(value: str) -> bool:
    return any(unicodedata.category(character) == "Cc" for character in value)


def single_line(value: str, *, what: str) -> str:
    """``value`` unchanged, or ``UnsafeProtocolValue`` if it holds CR, LF or NUL."""
    if any(character in value for character in "\r\n\0"):
        raise UnsafeProtocolValue(f"The {what} contains a line break or NUL character, which mail servers would misread.")
    return value


def imap_folder_name(name: str) -> str:
    """A folder name safe to pass to IMAPClient: not empty, no control characters at all."""
    single_line(name, what="folder name")
    if not name or len(name) > MAX_FOLDER_NAME_LENGTH:
        raise UnsafeProtocolValue(f"A folder name must have between 1 and {MAX_FOLDER_NAME_LENGTH} characters.")
    if _has_control_character(name):
        raise UnsafeProtocolValue("The folder name contains a control character.")
    return name


def imap_uid(value: int | str) -> int:
    """A message UID as an ``int`` in 1..2**32-1; a string is accepted only if it is all digits."""
    if isinstance(value, bool):
        raise UnsafeProtocolValue("A UID must be a number.")
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit()):
            raise UnsafeProtocolValue("A UID must be a number.")
        value = int(value)
    if not isinstance(value, int) or not 1 <= value <= MAX_UID:
        raise UnsafeProtocolValue(f"A UID must be a number between 1 and {MAX_UID}.")
    return value


def imap_uids(values: Iterable[int | str]) -> list[int]:
    """Validated UIDs, sorted and without duplicates, ready for IMAPClient's message-set arguments."""
    return sorted({imap_uid(value) for value in values})
