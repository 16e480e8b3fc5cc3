"""Address lists read the way CPython's ``getaddresses(..., strict=True)`` reads them.

The attacker writes a From/To/Cc header meant to be understood one way by a person and another
way by software: ``alice@example.com <bob@evil.example>`` or a display name that hides a comma or
an ``@`` (CPython CVE-2023-27043: ``parseaddr`` silently returned a different address than the
one the header names). Postroom uses these addresses to thread, to match contacts, and to pick
reply recipients, so a misparse is a spoofing or misdelivery bug.

Defences, the same as the strict mode added to CPython 3.11.10 (this machine runs 3.11.7, which
predates it, so we apply the same checks around the stdlib parser ourselves):
- a value whose parentheses do not balance is rejected outright;
- the parser must yield exactly one address per comma-separated item (commas inside quoted
  display names do not count); any other count means it guessed, and a guess is rejected;
- an address that still contains ``[`` after parsing is a leftover of a failed parse.

A rejected field yields ``None`` so the caller can record a defect instead of trusting it.
Encoded words (RFC 2047) are decoded only *after* the split, per display name, so that an encoded
comma or ``<`` cannot change how the list splits.
"""

from __future__ import annotations

import email.utils
import re
from typing import NamedTuple


class Mailbox(NamedTuple):
    display_name: str
    address: str


_QUOTED_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)


def _parentheses_balanced(value: str) -> bool:
    depth = 0
    escaped = False
    for character in value:
        if escaped:
            escaped = False
        elif character == "\\":
            escaped = True
        elif character == "(":
            depth += 1
        elif character == ")":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


def _expected_address_count(value: str) -> int:
    return 1 + _QUOTED_STRING.sub("", value).count(",")


def split_address_field(value: str) -> list[tuple[str, str]] | None:
    """Split one header field value into (display name, address) pairs, or None if ambiguous.

    Display names are returned as they appear in the header (encoded words not yet decoded).
    Empty groups such as ``undisclosed-recipients:;`` yield an empty list.
    """
    if not value.strip():
        return []
    if not _parentheses_balanced(value):
        return None
    pairs = email.utils.getaddresses([value])
    if len(pairs) != _expected_address_count(value):
        return None
    if any("[" in address for _, address in pairs):
        return None
    return [(name, address) for name, address in pairs if address]
