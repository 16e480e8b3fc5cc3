"""Turn the raw bytes of a received message into the fields Postroom stores and shows.

Threat model: anyone on the internet can send a mailbox any bytes. Hostile or merely broken
messages must not crash, hang, or exhaust the import worker (CPython's ``email`` package has had
quadratic and infinite-loop bugs: gh-136063, bpo-37461, gh-87075; deep MIME nesting overflows
its recursive parser), and must never block the mailbox behind them.

Defences, in order:
1. ``_prescan``: cheap checks on the raw bytes *before* the stdlib parser sees them — total size,
   top-level header block size and field count, longest header field and line, MIME nesting depth
   and part count estimated from boundary lines, address count. Work is linear in the input and
   mostly done by ``re`` and ``bytes`` methods in C.
2. While parsing: a header factory refuses parameter lists longer than the limit (RFC 2231
   continuations multiply them) before the stdlib header parser runs on them; the part tree is
   walked iteratively with depth and part counters; every decoded part is size-checked.
3. Any exception inside the parser is caught and the message is returned as ``Quarantined``
   with a reason: the caller stores the raw bytes (encrypted) and shows them as such. Nothing here
   raises for malformed input; ``Quarantined.detail`` never contains message content, so it can be
   logged.

Speed: a full ``policy.default`` parse of every part runs at ~450-750 messages/s per core, most of
it spent re-parsing the same Content-Type headers through ``email.headerregistry``. So headers are
parsed eagerly from the header block alone, the body only when ``ParsedMessage.body`` is first
read (a duplicate already stored from a teammate's mailbox needs no body), and the structural MIME
headers, which repeat across parts and messages, are parsed once and memoised. See
``bench/mime_parse.py`` for the figures.
"""

from __future__ import annotations

import codecs
import enum
import functools
import hashlib
import heapq
import io
import operator
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.generator import BytesGenerator
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from types import MappingProxyType

from postroom.mime.addresses import Mailbox, split_address_field
from postroom.mime.filenames import safe_filename

KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True, slots=True)
class Limits:
    max_message_bytes: int = 50 * MIB
    max_header_bytes: int = 512 * KIB
    max_header_fields: int = 1_000
    max_header_field_bytes: int = 128 * KIB
    max_line_bytes: int = 1 * MIB
    max_mime_depth: int = 100
    max_mime_parts: int = 10_000
    max_addresses: int = 1_000
    max_parameters: int = 100
    # The stdlib's parser of Content-Type and Content-Disposition values is superlinear.
    max_mime_header_bytes: int = 8 * KIB
    max_decoded_part_bytes: int = 32 * MIB


DEFAULT_LIMITS = Limits()


class QuarantineReason(enum.StrEnum):
    TOO_LARGE = "too_large"
    HEADER_TOO_LARGE = "header_too_large"
    TOO_MANY_HEADER_FIELDS = "too_many_header_fields"
    HEADER_FIELD_TOO_LONG = "header_field_too_long"
    LINE_TOO_LONG = "line_too_long"
    MIME_TOO_DEEP = "mime_too_deep"
    TOO_MANY_PARTS = "too_many_parts"
    TOO_MANY_ADDRESSES = "too_many_addresses"
    TOO_MANY_PARAMETERS = "too_many_parameters"
    PART_TOO_LARGE = "part_too_large"
    UNPARSEABLE = "unparseable"
    # Limits of the parser process itself (``postroom.mime.isolation``), past the checks above.
    PARSER_TIMEOUT = "parser_timeout"
    PARSER_CPU_LIMIT = "parser_cpu_limit"
    PARSER_MEMORY_LIMIT = "parser_memory_limit"
    PARSER_CRASHED = "parser_crashed"


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A message Postroom keeps only raw. ``detail`` names the limit, never the content."""

    reason: QuarantineReason
    detail: str


class _LimitExceededError(Exception):
    def __init__(self, reason: QuarantineReason, detail: str) -> None:
        super().__init__(detail)
        self.quarantined = Quarantined(reason, detail)


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content_type: str
    size: int
    sha256: str
    content: bytes = field(repr=False)
    content_id: str | None = None


@dataclass(frozen=True, slots=True)
class CalendarPart:
    method: str | None
    text: str


@dataclass(frozen=True, slots=True)
class MessageBody:
    text: str | None
    html: str | None
    inline_parts: Mapping[str, Attachment]
    attachments: tuple[Attachment, ...]
    calendar_parts: tuple[CalendarPart, ...]
    defects: tuple[str, ...]


_AUTOMATED_PRECEDENCE = frozenset({"bulk", "list", "junk", "auto_reply"})


@dataclass(frozen=True)
class ParsedMessage:
    message_id: str | None
    in_reply_to: str | None
    references: tuple[str, ...]
    subject: str
    from_: tuple[Mailbox, ...]
    to: tuple[Mailbox, ...]
    cc: tuple[Mailbox, ...]
    bcc: tuple[Mailbox, ...]
    reply_to: tuple[Mailbox, ...]
    date: datetime | None
    auto_submitted: str | None
    precedence: str | None
    list_id: str | None
    list_unsubscribe: tuple[str, ...]
    defects: tuple[str, ...]
    raw: bytes = field(repr=False, compare=False)
    limits: Limits = field(repr=False, compare=False)
    # False after ``parse_headers``: the MIME structure (depth, part count) is checked by ``body``.
    structure_checked: bool = field(default=True, repr=False, compare=False)

    @property
    def is_automated(self) -> bool:
        """Mail no human wrote to us personally: auto-replies, bulk and list mail (RFC 3834)."""
        return (
            (self.auto_submitted is not None and self.auto_submitted != "no")
            or self.precedence in _AUTOMATED_PRECEDENCE
            or self.list_id is not None
        )

    @functools.cached_property
    def body(self) -> MessageBody | Quarantined:
        """Bodies, attachments, inline and calendar parts, parsed on first use."""
        try:
            if not self.structure_checked:
                _prescan_structure(self.raw, self.limits)
            return _parse_body(self.raw, self.limits)
        except _LimitExceededError as limit:
            return limit.quarantined
        except Exception as error:  # the stdlib parser's failure modes are not enumerable
            return Quarantined(QuarantineReason.UNPARSEABLE, f"body: {type(error).__name__}")


def parse_message(raw: bytes, *, limits: Limits = DEFAULT_LIMITS) -> ParsedMessage | Quarantined:
    """Check ``raw`` against ``limits`` and read its headers; the body is read lazily."""
    return _parse(raw, limits, structure=True)


def parse_headers(raw: bytes, *, limits: Limits = DEFAULT_LIMITS) -> ParsedMessage | Quarantined:
    """``parse_message`` for the header pass: the size of the message and of its header block,
    its header fields, lines and addresses are checked before the header block is parsed, as
    always; the MIME structure (nesting depth, part count), which only the body parse walks, is
    checked before the body is (by the body pass's ``parse_message``, or by ``body`` here)."""
    return _parse(raw, limits, structure=False)


def _parse(raw: bytes, limits: Limits, *, structure: bool) -> ParsedMessage | Quarantined:
    try:
        header_end = _prescan(raw, limits, structure=structure)
        return _parse_headers(raw, header_end, limits, structure_checked=structure)
    except _LimitExceededError as limit:
        return limit.quarantined
    except Exception as error:  # the stdlib parser's failure modes are not enumerable
        return Quarantined(QuarantineReason.UNPARSEABLE, f"headers: {type(error).__name__}")


def content_digest(raw: bytes) -> str:
    """SHA-256 of the body with line endings and trailing whitespace normalised: the same for a
    message however a server rewrote its trace headers and line endings (duplicate detection)."""
    match = _HEADER_END.search(raw)
    body = raw[match.end() :] if match else raw
    # Cut at each LF, a line's trailing whitespace (its CR included) goes: the same bytes as
    # replacing CRLF by LF first, in one pass fewer.
    return hashlib.sha256(b"\n".join(map(bytes.rstrip, body.split(b"\n"))).strip(b"\n")).hexdigest()


# --- 1. Pre-scan of the raw bytes -----------------------------------------------------------

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_FIELD_START = re.compile(rb"^[^ \t\r\n]", re.MULTILINE)
_FIELD_SPLIT = re.compile(rb"\r?\n(?![ \t])")
_ADDRESS_FIELD = re.compile(rb"(?:from|to|cc|bcc|reply-to|sender|resent-(?:from|to|cc|bcc|sender))[ \t]*:", re.IGNORECASE)
# What shapes the MIME tree: boundary declarations, lines that may be boundary delimiters, and
# embedded messages (which nest without any boundary). Three patterns, each starting with a
# literal, run on a lowercased copy: one case-insensitive alternation is fifty times slower.
_BOUNDARY_DECLARATION = re.compile(rb'boundary[ \t]*=[ \t]*(?:"([^"\r\n]*)"|([^\s;"]+))')
_DELIMITER_LINE = re.compile(rb"\n--([^\r\n]*)")
_EMBEDDED_MESSAGE = re.compile(rb"\ncontent-type:[ \t]*message/(?:rfc822|global)")


class _Structure(enum.Enum):
    DECLARATION = enum.auto()
    DELIMITER = enum.auto()
    EMBEDDED = enum.auto()


def _structure_events(raw: bytes) -> Iterator[tuple[int, _Structure, bytes]]:
    lowered = raw.lower()
    declarations = (
        (match.start(), _Structure.DECLARATION, match.group(1) or match.group(2) or b"")
        for match in _BOUNDARY_DECLARATION.finditer(lowered)
    )
    delimiters = ((match.start(), _Structure.DELIMITER, match.group(1)) for match in _DELIMITER_LINE.finditer(lowered))
    embedded = ((match.start(), _Structure.EMBEDDED, b"") for match in _EMBEDDED_MESSAGE.finditer(lowered))
    return heapq.merge(declarations, delimiters, embedded, key=operator.itemgetter(0))


def _prescan(raw: bytes, limits: Limits, *, structure: bool = True) -> int:
    """Raise _LimitExceededError for anything over ``limits`` (the MIME structure's only with
    ``structure``); return where the header block ends."""
    if len(raw) > limits.max_message_bytes:
        raise _LimitExceededError(QuarantineReason.TOO_LARGE, f"{len(raw)} bytes, limit {limits.max_message_bytes}")
    header_end_match = _HEADER_END.search(raw, 0, limits.max_header_bytes + 4)
    header_end = header_end_match.start() if header_end_match else len(raw)
    if header_end > limits.max_header_bytes:
        raise _LimitExceededError(QuarantineReason.HEADER_TOO_LARGE, f"header block over {limits.max_header_bytes} bytes")
    header_block = raw[:header_end]
    field_count = len(_FIELD_START.findall(header_block))
    if field_count > limits.max_header_fields:
        raise _LimitExceededError(QuarantineReason.TOO_MANY_HEADER_FIELDS, f"{field_count} header fields, limit {limits.max_header_fields}")
    fields = _FIELD_SPLIT.split(header_block)
    longest_field = max(map(len, fields), default=0)
    if longest_field > limits.max_header_field_bytes:
        raise _LimitExceededError(QuarantineReason.HEADER_FIELD_TOO_LONG, f"{longest_field} bytes, limit {limits.max_header_field_bytes}")
    address_count = sum(header_field.count(b"@") for header_field in fields if _ADDRESS_FIELD.match(header_field))
    if address_count > limits.max_addresses:
        raise _LimitExceededError(QuarantineReason.TOO_MANY_ADDRESSES, f"{address_count} addresses, limit {limits.max_addresses}")
    if len(raw) > limits.max_line_bytes:
        longest_line = max(map(len, raw.splitlines()), default=0)
        if longest_line > limits.max_line_bytes:
            raise _LimitExceededError(QuarantineReason.LINE_TOO_LONG, f"{longest_line} bytes, limit {limits.max_line_bytes}")
    if structure:
        _prescan_structure(raw, limits)
    return header_end


def _prescan_structure(raw: bytes, limits: Limits) -> None:
    """Estimate MIME depth and part count the way the parser will see them, without parsing.

    A stack of open multiparts (by boundary) and embedded messages: a delimiter of a boundary
    already on the stack closes everything opened inside it, as the stdlib parser does.
    """
    declared: set[bytes] = set()
    stack: list[bytes | None] = []  # a boundary, or None for an embedded message
    position: dict[bytes, int] = {}
    parts = 1
    for _, kind, value in _structure_events(raw):
        if kind is _Structure.EMBEDDED:
            stack.append(None)
            parts += 1
        elif kind is _Structure.DECLARATION:
            declared.add(value)
        else:
            line = value.rstrip(b" \t")
            if line in declared:
                if line in position:
                    _truncate(stack, position, position[line] + 1)
                else:
                    position[line] = len(stack)
                    stack.append(line)
                parts += 1
            elif line.endswith(b"--") and line[:-2] in position:
                _truncate(stack, position, position[line[:-2]])
        if len(stack) > limits.max_mime_depth:
            raise _LimitExceededError(QuarantineReason.MIME_TOO_DEEP, f"nesting over {limits.max_mime_depth}")
        if parts > limits.max_mime_parts:
            raise _LimitExceededError(QuarantineReason.TOO_MANY_PARTS, f"over {limits.max_mime_parts} parts")


def _truncate(stack: list[bytes | None], position: dict[bytes, int], length: int) -> None:
    for boundary in stack[length:]:
        if boundary is not None:
            del position[boundary]
    del stack[length:]


# --- 2. The stdlib parser, with guarded and memoised MIME headers ---------------------------

_PARAMETERISED_HEADERS = frozenset({"content-type", "content-disposition"})
_STRUCTURAL_HEADERS = _PARAMETERISED_HEADERS | {"content-transfer-encoding"}
_REGISTRY = HeaderRegistry()
_MEMOISED_VALUE_LIMIT = 256


@functools.lru_cache(maxsize=256)
def _header_class(lowered_name: str) -> type[BaseHeader]:
    # HeaderRegistry builds a new class with type() on every lookup; build each one once.
    return _REGISTRY[lowered_name]


def _header(name: str, value: str) -> BaseHeader:
    return _header_class(name.lower())(name, value)


@functools.lru_cache(maxsize=2048)
def _memoised_header(name: str, value: str) -> BaseHeader:
    # Header objects are immutable str subclasses, so sharing one between messages is safe.
    return _header(name, value)


class _GuardedHeaderFactory:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits

    def check(self, name: str, value: str) -> None:
        if name.lower() in _PARAMETERISED_HEADERS:
            if value.count(";") > self.limits.max_parameters:
                raise _LimitExceededError(QuarantineReason.TOO_MANY_PARAMETERS, f"{name}: over {self.limits.max_parameters} parameters")
            if len(value) > self.limits.max_mime_header_bytes:
                raise _LimitExceededError(QuarantineReason.HEADER_FIELD_TOO_LONG, f"{name}: over {self.limits.max_mime_header_bytes} bytes")

    def __call__(self, name: str, value: str) -> BaseHeader:
        self.check(name, value)
        lowered = name.lower()
        if lowered in _STRUCTURAL_HEADERS and len(value) <= _MEMOISED_VALUE_LIMIT:
            return _memoised_header(lowered, value)
        return _header(name, value)


@functools.lru_cache(maxsize=16)
def _parser_for(limits: Limits) -> BytesParser:
    return BytesParser(policy=policy.default.clone(header_factory=_GuardedHeaderFactory(limits)))


# --- 3. Headers ----------------------------------------------------------------------------

_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
_FOLDING = re.compile(r"\r?\n(?=[ \t])")
_MESSAGE_ID = re.compile(r"<([^<>\s]+)>")
_MAX_MESSAGE_ID_LENGTH = 998
_MAX_SUBJECT_LENGTH = 16 * KIB
_MAX_DISPLAY_NAME_LENGTH = 1 * KIB


def _source_text(value: str) -> str:
    """A raw header value as text: 8-bit bytes as UTF-8 (RFC 6532), else Windows-1252; unfolded."""
    raw_bytes = _FOLDING.sub("", value).encode("utf-8", "surrogateescape")
    try:
        return raw_bytes.decode("utf-8")
    except UnicodeDecodeError:
        return raw_bytes.decode("cp1252", "replace")


def _display_text(text: str) -> str:
    """Decoded header text fit to show and to reuse in a reply: no controls, no line breaks."""
    return " ".join(_CONTROL_CHARACTERS.sub(" ", text).split())


def _decode_words(text: str, defects: list[str], header_name: str, max_length: int) -> str:
    """Decode RFC 2047 encoded words; on a parser bug keep the raw text and note a defect.

    Only the first ``max_length`` characters are decoded: the stdlib's decoder is superlinear
    and no honest subject or display name comes near the cut.
    """
    if len(text) > max_length:
        defects.append(f"{header_name}: cut to {max_length} characters")
        text = text[:max_length]
    if "=?" not in text:
        return _display_text(text)
    try:
        return _memoised_words(text) if len(text) <= _MEMOISED_WORDS_LIMIT else _display_text(str(_header("subject", text)))
    except Exception:  # the stdlib parser's failure modes are not enumerable
        defects.append(f"{header_name}: undecodable encoded words")
        return _display_text(text)


# Subjects of one thread and senders' names repeat: their encoded words are decoded once.
_MEMOISED_WORDS_LIMIT = 1 * KIB


@functools.lru_cache(maxsize=1024)
def _memoised_words(text: str) -> str:
    return _display_text(str(_header("subject", text)))


def _message_ids(text: str) -> list[str]:
    found = [f"<{identifier}>" for identifier in _MESSAGE_ID.findall(text)]
    if not found and text.strip() and " " not in text.strip() and "<" not in text and ">" not in text:
        found = [f"<{text.strip()}>"]
    return [identifier for identifier in found if len(identifier) <= _MAX_MESSAGE_ID_LENGTH]


def _unique(values: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


class _HeaderFields:
    """Header values by lowercased name, as text (``_source_text``) when first asked for: most
    fields of a message (trace, signatures) are never read."""

    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        self.raw_values: dict[str, list[str]] = {}
        for name, value in items:
            self.raw_values.setdefault(name.lower(), []).append(value)
        self.values: dict[str, list[str]] = {}

    def all(self, name: str) -> list[str]:
        values = self.values.get(name)
        if values is None:
            values = self.values[name] = [_source_text(value) for value in self.raw_values.get(name, ())]
        return values

    def first(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None


# An address field's mailboxes depend on its value alone, and the same values (a team's own
# addresses, regular correspondents) come back in message after message: each is read once per
# parser process. Longer values are read each time, so that the cache stays small.
_MEMOISED_ADDRESS_FIELD_LIMIT = 1 * KIB


def _mailbox_list(name: str, value: str) -> tuple[tuple[Mailbox, ...], tuple[str, ...]]:
    """The mailboxes of one address field's value, and the defects found reading it."""
    defects: list[str] = []
    pairs = split_address_field(value)
    if pairs is None:
        return (), (f"{name}: ambiguous address list ignored",)
    mailboxes = tuple(
        Mailbox(_decode_words(display_name, defects, name, _MAX_DISPLAY_NAME_LENGTH), _display_text(address))
        for display_name, address in pairs
    )
    return mailboxes, tuple(defects)


_memoised_mailbox_list = functools.lru_cache(maxsize=1024)(_mailbox_list)


def _mailboxes(fields: _HeaderFields, name: str, defects: list[str]) -> tuple[Mailbox, ...]:
    mailboxes: list[Mailbox] = []
    for value in fields.all(name):
        found, found_defects = (
            _memoised_mailbox_list(name, value) if len(value) <= _MEMOISED_ADDRESS_FIELD_LIMIT else _mailbox_list(name, value)
        )
        mailboxes.extend(found)
        defects.extend(found_defects)
    return tuple(mailboxes)


def _date(value: str | None, defects: list[str]) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (ValueError, TypeError, IndexError, OverflowError):
        defects.append("date: unparseable")
        return None
    # RFC 5322 "-0000" means UTC with the sender's zone unknown; the stdlib returns it naive.
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _token(value: str | None) -> str | None:
    if value is None:
        return None
    words = _display_text(value).lower().split()
    return words[0] if words else None


# The stdlib's feedparser, on a header block: how it cuts lines, which lines it takes for header
# fields (``email.feedparser.headerRE``) and which for the end of the block.
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")
_HEADER_LINE = re.compile(r"From |[\041-\071\073-\176]*:|[\t ]")
_NEWLINE = re.compile(r"\r\n|\r|\n")


def _header_items(header_block: bytes) -> tuple[list[tuple[str, str]], list[str]]:
    """The (name, raw value) pairs and the defect names that ``BytesParser(policy=default)
    .parsebytes(header_block + b"\\r\\n\\r\\n", headersonly=True)`` yields, read the way its
    feedparser reads them (``FeedParser._parsegen`` and ``_parse_headers``, ``EmailPolicy.
    header_source_parse``) but without building a message: the header pass reads a few fields
    and needs none of the rest (tests compare the two on many blocks)."""
    defects: list[str] = []
    lines: list[str] = []
    for line in _LINE.findall(header_block.decode("ascii", "surrogateescape") + "\r\n\r\n"):
        if not _HEADER_LINE.match(line):
            if not _NEWLINE.match(line):
                defects.append("MissingHeaderBodySeparatorDefect")
            break
        lines.append(line)
    items: list[tuple[str, str]] = []
    field_lines: list[str] = []
    for number, line in enumerate(lines):
        if line[0] in " \t":
            if not field_lines:
                defects.append("FirstHeaderLineIsContinuationDefect")
            else:
                field_lines.append(line)
            continue
        if field_lines:
            items.append(_field_item(field_lines))
            field_lines = []
        if line.startswith("From "):  # an mbox envelope line
            if number == 0:
                continue
            if number == len(lines) - 1:
                break  # the first line of a body (the stdlib pushes it back)
            defects.append("MisplacedEnvelopeHeaderDefect")
            continue
        if line.startswith(":"):
            defects.append("InvalidHeaderDefect")
            continue
        field_lines = [line]
    if field_lines:
        items.append(_field_item(field_lines))
    return items, defects


def _field_item(lines: list[str]) -> tuple[str, str]:
    name, value = lines[0].split(":", 1)
    value = value.lstrip(" \t") + "".join(lines[1:])
    return name, value.rstrip("\r\n")


def _check_content_type(items: list[tuple[str, str]], limits: Limits) -> None:
    """The limits the guarded header factory applies to the top-level Content-Type, which the
    stdlib's parser reads as it closes (the factory sees the value without line breaks)."""
    for name, value in items:
        if name.lower() == "content-type":
            _GuardedHeaderFactory(limits).check(name, value.replace("\r", "").replace("\n", ""))
            return


def _parse_headers(raw: bytes, header_end: int, limits: Limits, *, structure_checked: bool = True) -> ParsedMessage:
    items, defects = _header_items(raw[:header_end])
    _check_content_type(items, limits)
    fields = _HeaderFields(items)
    message_ids = _message_ids(fields.first("message-id") or "")
    in_reply_to = _message_ids(fields.first("in-reply-to") or "")
    list_id = _message_ids(fields.first("list-id") or "")
    return ParsedMessage(
        message_id=message_ids[0] if message_ids else None,
        in_reply_to=in_reply_to[0] if in_reply_to else None,
        references=_unique([identifier for value in fields.all("references") for identifier in _message_ids(value)]),
        subject=_decode_words(fields.first("subject") or "", defects, "subject", _MAX_SUBJECT_LENGTH),
        from_=_mailboxes(fields, "from", defects),
        to=_mailboxes(fields, "to", defects),
        cc=_mailboxes(fields, "cc", defects),
        bcc=_mailboxes(fields, "bcc", defects),
        reply_to=_mailboxes(fields, "reply-to", defects),
        date=_date(fields.first("date"), defects),
        auto_submitted=_token(fields.first("auto-submitted")),
        precedence=_token(fields.first("precedence")),
        list_id=list_id[0][1:-1] if list_id else None,
        list_unsubscribe=tuple(_MESSAGE_ID.findall(fields.first("list-unsubscribe") or "")),
        defects=_unique(defects),
        raw=raw,
        limits=limits,
        structure_checked=structure_checked,
    )


# --- 4. Body -------------------------------------------------------------------------------

# Codecs that exist in Python but are no mail charset; decoding with them is a parser trick.
_REFUSED_CODECS = frozenset({"unicode-escape", "raw-unicode-escape", "idna", "punycode", "undefined", "charmap"})
_BODY_TYPES = frozenset({"text/plain", "text/html"})
_SERIALIZE_POLICY = policy.default.clone(refold_source="none")


def _walk(message: Message, limits: Limits) -> Iterator[Message]:
    """Every part of the multipart tree, iteratively (the stdlib's ``walk`` recurses)."""
    stack: list[tuple[Message, int]] = [(message, 0)]
    count = 0
    while stack:
        part, depth = stack.pop()
        count += 1
        if depth > limits.max_mime_depth:
            raise _LimitExceededError(QuarantineReason.MIME_TOO_DEEP, f"nesting over {limits.max_mime_depth}")
        if count > limits.max_mime_parts:
            raise _LimitExceededError(QuarantineReason.TOO_MANY_PARTS, f"over {limits.max_mime_parts} parts")
        yield part
        if part.is_multipart() and part.get_content_maintype() == "multipart":
            children = part.get_payload()
            if isinstance(children, list):
                stack.extend((child, depth + 1) for child in reversed(children))


def _decoded_payload(part: Message, limits: Limits) -> bytes:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        payload = b""
    if len(payload) > limits.max_decoded_part_bytes:
        raise _LimitExceededError(QuarantineReason.PART_TOO_LARGE, f"a part decodes to over {limits.max_decoded_part_bytes} bytes")
    return payload


def _text(payload: bytes, charset: str | None, defects: list[str]) -> str:
    name = (charset or "us-ascii").strip().lower()
    try:
        codec = codecs.lookup(name).name
        if codec in _REFUSED_CODECS:
            raise LookupError(codec)
        # Mislabelled 8-bit text is far more often UTF-8 than anything else, and ASCII is a subset.
        text = payload.decode("utf-8" if codec == "ascii" else codec, "replace")
    except (LookupError, ValueError):  # unknown name, or a codec that is not a text encoding
        defects.append(f"unusable charset {name[:40]!r}")
        text = payload.decode("utf-8", "replace")
    return text.replace("\r\n", "\n")


def _embedded_messages(part: Message) -> list[EmailMessage]:
    payload = part.get_payload()
    return [embedded for embedded in payload if isinstance(embedded, EmailMessage)] if isinstance(payload, list) else []


def _embedded_bytes(part: Message, limits: Limits) -> bytes:
    embedded_messages = _embedded_messages(part)
    if not embedded_messages:
        return _decoded_payload(part, limits)
    buffer = io.BytesIO()
    for embedded in embedded_messages:
        BytesGenerator(buffer, mangle_from_=False, policy=_SERIALIZE_POLICY).flatten(embedded)
    return buffer.getvalue()


def _embedded_name(part: Message, defects: list[str]) -> str | None:
    embedded_messages = _embedded_messages(part)
    if not embedded_messages:
        return None
    subject = _HeaderFields(embedded_messages[0].raw_items()).first("subject")
    return f"{_decode_words(subject, defects, 'subject', _MAX_SUBJECT_LENGTH)}.eml" if subject else None


def _header_parameter(part: Message, header: str, parameter: str) -> str | None:
    params = getattr(part.get(header), "params", None)
    found = params.get(parameter) if params is not None else None
    return _source_text(str(found)) if found is not None else None


def _content_id(part: Message) -> str | None:
    for name, value in part.raw_items():
        if name.lower() == "content-id":
            return _source_text(value).strip().strip("<>").strip() or None
    return None


def _attachment(content: bytes, name: str | None, content_type: str, content_id: str | None) -> Attachment:
    return Attachment(
        filename=safe_filename(name, content_type),
        content_type=content_type,
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        content=content,
        content_id=content_id,
    )


def _parse_body(raw: bytes, limits: Limits) -> MessageBody:
    message = _parser_for(limits).parsebytes(raw)
    defects: list[str] = []
    texts: list[str] = []
    htmls: list[str] = []
    inline_parts: dict[str, Attachment] = {}
    attachments: list[Attachment] = []
    calendar_parts: list[CalendarPart] = []
    for part in _walk(message, limits):
        defects.extend(type(defect).__name__ for defect in part.defects)
        content_type = part.get_content_type()
        if content_type.startswith("multipart/"):
            continue
        name = _header_parameter(part, "content-disposition", "filename") or _header_parameter(part, "content-type", "name")
        if content_type.startswith("message/"):
            # A forwarded message is one attachment, not part of this message's body.
            attachments.append(_attachment(_embedded_bytes(part, limits), name or _embedded_name(part, defects), content_type, None))
            continue
        disposition = part.get_content_disposition()
        payload = _decoded_payload(part, limits)
        if content_type == "text/calendar":
            method = _header_parameter(part, "content-type", "method")
            calendar_parts.append(CalendarPart(method.upper() if method else None, _text(payload, part.get_content_charset(), defects)))
            if disposition != "attachment":
                continue
        if content_type in _BODY_TYPES and disposition != "attachment" and name is None:
            (texts if content_type == "text/plain" else htmls).append(_text(payload, part.get_content_charset(), defects))
            continue
        content_id = _content_id(part)
        if content_id is not None and disposition != "attachment":
            inline_parts.setdefault(content_id, _attachment(payload, name, content_type, content_id))
        else:
            attachments.append(_attachment(payload, name, content_type, content_id))
    return MessageBody(
        text="\n".join(texts) if texts else None,
        html="\n".join(htmls) if htmls else None,
        inline_parts=MappingProxyType(inline_parts),
        attachments=tuple(attachments),
        calendar_parts=tuple(calendar_parts),
        defects=_unique(defects),
    )
