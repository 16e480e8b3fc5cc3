"""Plain-text bodies as escaped, linkified blocks of text, quotes and signature.

Threat model: a plain-text body is attacker-written text that Postroom turns into HTML, which
makes the turning itself the attack surface. Roundcube CVE-2026-54433 was a zero-click XSS in
plain-text mail: its linkifier let characters of a crafted URL end the ``href`` attribute.

Defences:
- Every piece of text is escaped (``&``, ``<``, ``>``, both quotes) before it reaches the output,
  link text included; the only markup we emit is our own ``<a>`` with a fixed attribute order.
- A link is emitted only for ``http``/``https`` URLs with a host, ``mailto:`` and bare addresses.
  A URL match stops at whitespace, quotes, ``<``, ``>`` and control characters, so no character
  that could close the attribute or open a tag is ever inside ``href`` (and it is escaped anyway).
- Links carry ``rel="noopener noreferrer nofollow"`` and ``target="_blank"``.

Quoted text (``>`` lines, an "On ... wrote:" attribution, Outlook's "Original Message" separator)
and a signature (after a ``-- `` line) are returned as typed blocks, for the template to fold; the
HTML of each block contains no layout, only text and links (render it with ``white-space: pre-wrap``).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

LINK_REL = "noopener noreferrer nofollow"

_LINK = re.compile(
    r"(?<![\w@/.+-])(?:(?P<url>(?:https?://|mailto:)[^\s<>\"'`\x00-\x1f\x7f]+)"
    r"|(?P<address>[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}))",
    re.IGNORECASE,
)
_TRAILING_PUNCTUATION = ".,;:!?)]}*"
_QUOTE_PREFIX = re.compile(r"^((?:[ \t]*>)+)[ \t]?")
_ATTRIBUTION_END = re.compile(
    r"(?:wrote|writes|schrieb|a écrit|escribió|escreveu|scrisse|skrev|schreef|napisał\(a\)|napisał|написал\(а\)|написал|kirjoitti)\s*:\s*$",
    re.IGNORECASE,
)
_ATTRIBUTION_START = re.compile(r"^\s*(?:on|am|le|el|em|il|den|op|w dniu|в)\s", re.IGNORECASE)
_OUTLOOK_SEPARATOR = re.compile(r"^\s*-{2,}\s*(?:original message|ursprüngliche nachricht|message d'origine)\s*-{2,}\s*$", re.IGNORECASE)
_SIGNATURE_SEPARATOR = "-- "


class BlockKind(enum.StrEnum):
    TEXT = "text"
    ATTRIBUTION = "attribution"
    QUOTE = "quote"
    SIGNATURE = "signature"


@dataclass(frozen=True, slots=True)
class TextBlock:
    kind: BlockKind
    depth: int  # quote depth; 0 for everything that is not quoted
    text: str  # the block's lines without quote markers
    html: SafeString  # ``text`` escaped and linkified


def _trim_url(url: str) -> str:
    while url and url[-1] in _TRAILING_PUNCTUATION:
        closing = url[-1]
        opening = {")": "(", "]": "[", "}": "{"}.get(closing)
        if opening is not None and url.count(opening) >= url.count(closing):
            break  # balanced, as in https://en.wikipedia.org/wiki/Mail_(disambiguation)
        url = url[:-1]
    return url


def _link_target(url: str) -> str | None:
    if url.lower().startswith("mailto:"):
        return url if len(url) > len("mailto:") else None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return url if parts.scheme.lower() in {"http", "https"} and parts.hostname else None


def linkify(text: str) -> SafeString:
    """Escape ``text`` and turn its http(s) URLs, mailto: URLs and addresses into links."""
    pieces: list[str] = []
    position = 0
    for match in _LINK.finditer(text):
        if match.group("url") is not None:
            shown = _trim_url(match.group("url"))
            target = _link_target(shown)
        else:
            shown = match.group("address")
            target = f"mailto:{shown}"
        if target is None:
            continue
        pieces.append(escape(text[position : match.start()]))
        pieces.append(f'<a href="{escape(target)}" rel="{LINK_REL}" target="_blank">{escape(shown)}</a>')
        position = match.start() + len(shown)
    pieces.append(escape(text[position:]))
    return mark_safe("".join(pieces))  # noqa: S308 - every piece above is escaped or our own markup


def _quote_depth(line: str) -> tuple[int, str]:
    match = _QUOTE_PREFIX.match(line)
    if match is None:
        return 0, line
    return match.group(1).count(">"), line[match.end() :]


def _neighbours(lines: list[str]) -> tuple[list[int | None], list[int | None]]:
    """For each line, the index of the nearest non-blank line before it and after it."""
    previous: list[int | None] = []
    last: int | None = None
    for index, line in enumerate(lines):
        previous.append(last)
        if line.strip():
            last = index
    following: list[int | None] = [None] * len(lines)
    last = None
    for index in range(len(lines) - 1, -1, -1):
        following[index] = last
        if lines[index].strip():
            last = index
    return previous, following


def _classify(lines: list[str]) -> list[tuple[BlockKind, int, str]]:
    quoted = [_quote_depth(line) for line in lines]
    previous, following = _neighbours(lines)

    def is_attribution(index: int) -> bool:
        """Unquoted, ends like "... wrote:", and followed by quoted text."""
        after = following[index]
        return not quoted[index][0] and bool(_ATTRIBUTION_END.search(lines[index])) and after is not None and quoted[after][0] > 0

    attributions: set[int] = set()
    for index in range(len(lines)):
        if is_attribution(index):
            attributions.add(index)
            first_line = index - 1
            if first_line >= 0 and lines[first_line].strip() and not quoted[first_line][0] and not _ATTRIBUTION_START.match(lines[index]):
                attributions.add(first_line)  # the attribution wrapped onto a second line

    classified: list[tuple[BlockKind, int, str]] = []
    in_signature = in_outlook_quote = False
    for index, line in enumerate(lines):
        depth, unquoted = quoted[index]
        if in_outlook_quote:
            classified.append((BlockKind.QUOTE, max(depth, 1), unquoted))
        elif depth:
            in_signature = False
            classified.append((BlockKind.QUOTE, depth, unquoted))
        elif index in attributions:
            in_signature = False
            classified.append((BlockKind.ATTRIBUTION, 0, line))
        elif _OUTLOOK_SEPARATOR.match(line):
            in_signature, in_outlook_quote = False, True
            classified.append((BlockKind.ATTRIBUTION, 0, line))
        elif line in (_SIGNATURE_SEPARATOR, _SIGNATURE_SEPARATOR.rstrip()) or in_signature:
            in_signature = True
            classified.append((BlockKind.SIGNATURE, 0, line))
        else:
            classified.append((BlockKind.TEXT, 0, line))

    # A blank line between two quoted lines of one depth belongs to that quote.
    for index, line in enumerate(lines):
        before, after = previous[index], following[index]
        if line.strip() or classified[index][0] is not BlockKind.TEXT or before is None or after is None:
            continue
        if classified[before][0] is classified[after][0] is BlockKind.QUOTE and classified[before][1] == classified[after][1]:
            classified[index] = (BlockKind.QUOTE, classified[before][1], "")
    return classified


def text_blocks(text: str) -> tuple[TextBlock, ...]:
    """Split a plain-text body into blocks of text, attribution, quote and signature."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").strip("\n").split("\n")
    blocks: list[TextBlock] = []
    group: list[str] = []
    current: tuple[BlockKind, int] | None = None
    for kind, depth, line in [*_classify(lines), (BlockKind.TEXT, -1, "")]:
        if (kind, depth) != current:
            if current is not None and any(part.strip() for part in group):
                joined = "\n".join(group).strip("\n")
                blocks.append(TextBlock(current[0], current[1], joined, linkify(joined)))
            current, group = (kind, depth), []
        group.append(line)
    return tuple(blocks)
