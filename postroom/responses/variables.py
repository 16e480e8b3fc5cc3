"""The variable engine of responses: a fixed set of ``{{ name }}`` placeholders, filled in by a
regular expression, and nothing else.

Attacker: a member who writes a response (or anyone who gets text into one) and wants the server
to evaluate it: template injection (``{% debug %}``, ``{{ settings.SECRET_KEY }}``,
``{% include "/etc/passwd" %}``, ``{{ request.META }}``, ``{{7*7}}``) to read secrets or files or
run code; or a value (a recipient's name, a custom input) that turns into markup or a header.

Defences (SECURITY.md R39):
- No template engine ever sees the text: Django's and Jinja's are never called on it. A single
  regular expression finds ``{{ name }}`` tokens whose name is one of ``VARIABLES`` or
  ``input:<label>``; each is replaced by a value from a plain dictionary built by our code. There
  is no attribute lookup, no filter, no expression, no tag, no loop, no include: anything else,
  unknown names included, stays in the text exactly as written, visible to the member.
- The substitution is one pass: a value that itself looks like ``{{ … }}`` is not looked at again.
- In HTML every value is escaped before it is inserted, and the result goes through the response
  sanitiser again (``postroom.responses.sanitize``, R27). In a subject, line breaks and other
  control characters in a value become spaces (R33; the message builder refuses them anyway).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from html import escape, unescape

VARIABLES: dict[str, str] = {
    "recipient_first_name": "The recipient's first name",
    "recipient_last_name": "The recipient's last name",
    "recipient_email": "The recipient's email address",
    "sender_name": "Your name",
    "organization_name": "The organization's name",
    "today": "Today's date, as 2026-11-21",
}
INPUT_PREFIX = "input:"
MAX_INPUT_LABEL = 60
MAX_INPUTS = 10
MAX_INPUT_VALUE = 500

# A label is any text without braces, angle brackets or line breaks; in HTML it is read with its
# character references (a quote may arrive as &quot;), which unescape() turns back.
_TOKEN = re.compile(r"\{\{\s*(?:(?P<name>[a-z_]{1,40})|input:\s*(?P<label>[^{}<>\r\n]{1,200}?))\s*\}\}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def _label(raw: str, *, html: bool) -> str:
    label = unescape(raw) if html else raw
    return label.strip()[:MAX_INPUT_LABEL]


def input_labels(*sources: tuple[str, bool]) -> list[str]:
    """The custom inputs a response asks for, in order of first use, from (text, is_html) pairs."""
    labels: list[str] = []
    for source, html in sources:
        for match in _TOKEN.finditer(source):
            if match["label"] is not None:
                label = _label(match["label"], html=html)
                if label and label not in labels:
                    labels.append(label)
    return labels[:MAX_INPUTS]


def unknown_variables(*sources: tuple[str, bool]) -> list[str]:
    """``{{ … }}`` tokens that look like variables but are not ours (shown as a warning on save)."""
    found: list[str] = []
    for source, html in sources:
        text = unescape(source) if html else source
        for token in re.findall(r"\{\{[^{}]{0,80}\}\}", text):
            match = _TOKEN.fullmatch(token)
            known = match is not None and (match["label"] is not None or match["name"] in VARIABLES)
            if not known and token not in found:
                found.append(token)
    return found


def fill(source: str, values: Mapping[str, str], inputs: Mapping[str, str], *, html: bool) -> str:
    """``source`` with every known variable replaced by its value (escaped for HTML, or without
    control characters for a one-line text); unknown tokens and inputs without a value stay."""

    def replace(match: re.Match[str]) -> str:
        if match["name"] is not None:
            value = values.get(match["name"])
        else:
            value = inputs.get(_label(match["label"], html=html))
        if value is None:
            return match.group(0)
        return escape(value, quote=True) if html else _CONTROL.sub(" ", value)

    return _TOKEN.sub(replace, source)
