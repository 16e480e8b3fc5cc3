"""Attachment names and types as Postroom shows and serves them.

Threat model: the sender chooses an attachment's MIME filename and content type. Used as they
are, a name can walk out of a directory (``../../x.html``), inject a response header through
``Content-Disposition`` (``a"\\r\\nSet-Cookie: x``), disguise an executable with a right-to-left
override (``\\u202egnp.exe`` shows as ``exe.png``), or break a layout with a 10,000-character
name; a declared ``text/html`` or ``image/svg+xml`` served from our origin is stored XSS.

Defences:
- Attachments are stored under server-generated names; a MIME filename is only ever *shown* or
  put in a ``Content-Disposition`` header, and always through ``safe_filename`` first: last path
  component only, no control, format (bidi, zero-width) or quote characters, no leading dots,
  at most 150 characters with the extension kept, never empty.
- ``content_disposition`` builds the header value per RFC 6266 with an ASCII ``filename=``
  fallback and the exact name in ``filename*=UTF-8''`` (RFC 8187 percent-encoding), so no
  character of the name reaches the header unencoded.
- ``served_content_type`` answers ``application/octet-stream`` for anything a browser could run
  or render as a document (HTML, SVG, XML, unknown types); only an allowlist keeps its own type,
  and only raster images may be shown inline (``inline_allowed``).
"""

from __future__ import annotations

import mimetypes
import re
import unicodedata
from urllib.parse import quote

MAX_FILENAME_LENGTH = 150
_MAX_EXTENSION_LENGTH = 16
_FALLBACK_STEM = "attachment"
# Characters Windows refuses in names, plus both quote kinds: harmless here, surprising elsewhere.
_RESERVED_CHARACTERS = re.compile(r'[<>:"|?*\']')
_WINDOWS_DEVICE_NAMES = frozenset(
    {"con", "prn", "aux", "nul", *(f"com{digit}" for digit in range(10)), *(f"lpt{digit}" for digit in range(10))}
)
_EXTENSIONS = {"message/rfc822": ".eml", "message/global": ".eml", "text/plain": ".txt", "text/calendar": ".ics"}


def _is_visible(character: str) -> bool:
    # Cc: controls (CR, LF, NUL, ...); Cf: format characters (bidi overrides, zero-width);
    # Cs: lone surrogates from undecodable bytes; Co/Cn: private-use and unassigned.
    return unicodedata.category(character)[0] != "C" and character not in "\u2028\u2029"


def _extension_for(content_type: str) -> str:
    content_type = content_type.split(";")[0].strip().lower()
    return _EXTENSIONS.get(content_type) or mimetypes.guess_extension(content_type, strict=False) or ""


def safe_filename(name: str | None, content_type: str) -> str:
    """A name safe to display and to offer for download; idempotent."""
    text = unicodedata.normalize("NFC", name or "")
    text = "".join(character if _is_visible(character) else " " for character in text)
    text = re.split(r"[/\\]", text)[-1]
    text = _RESERVED_CHARACTERS.sub("_", text)
    text = " ".join(text.split()).strip(" .")
    stem, dot, extension = text.rpartition(".")
    if not dot or len(extension) > _MAX_EXTENSION_LENGTH or not stem:
        stem, extension = text, ""
    if stem.lower() in _WINDOWS_DEVICE_NAMES:
        stem = f"_{stem}"
    if not stem:
        stem = _FALLBACK_STEM
        extension = _extension_for(content_type).lstrip(".")
    suffix = f".{extension}" if extension else ""
    stem = stem[: MAX_FILENAME_LENGTH - len(suffix)].rstrip(" .") or _FALLBACK_STEM
    return f"{stem}{suffix}"


def _ascii(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    # Some browsers percent-decode or unescape filename=, so % and backslash are replaced too.
    return "".join(character if " " <= character <= "~" and character not in '"\\%' else "_" for character in decomposed)


def _ascii_fallback(filename: str) -> str:
    stem, dot, extension = filename.rpartition(".")
    if not dot:
        stem, extension = filename, ""
    ascii_stem = _ascii(stem).strip(" .")
    ascii_extension = _ascii(extension).strip(" .")
    if not ascii_stem.strip("_"):
        ascii_stem = _FALLBACK_STEM
    return f"{ascii_stem}.{ascii_extension}" if ascii_extension else ascii_stem


def content_disposition(name: str | None, inline: bool = False) -> str:
    """A ``Content-Disposition`` header value (RFC 6266) for serving an attachment."""
    filename = safe_filename(name, "application/octet-stream")
    fallback = _ascii_fallback(filename)
    disposition = "inline" if inline else "attachment"
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


# Types served as themselves. Everything else, notably text/html, image/svg+xml, any XML and
# anything unknown, is served as an opaque download.
_SERVED_AS_IS = frozenset(
    {
        "application/pdf",
        "application/zip",
        "application/gzip",
        "application/msword",
        "application/vnd.ms-excel",
        "application/vnd.ms-powerpoint",
        "application/vnd.oasis.opendocument.text",
        "application/vnd.oasis.opendocument.spreadsheet",
        "application/vnd.oasis.opendocument.presentation",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "audio/mpeg",
        "audio/ogg",
        "audio/wav",
        "image/avif",
        "image/bmp",
        "image/gif",
        "image/jpeg",
        "image/png",
        "image/webp",
        "text/calendar",
        "text/csv",
        "text/plain",
        "video/mp4",
        "video/webm",
    }
)
_INLINE_IMAGES = frozenset({"image/avif", "image/bmp", "image/gif", "image/jpeg", "image/png", "image/webp"})
OPAQUE_CONTENT_TYPE = "application/octet-stream"


def _bare_type(content_type: str) -> str:
    return content_type.split(";")[0].strip().lower()


def served_content_type(content_type: str) -> str:
    """The Content-Type to serve an attachment with (always alongside ``nosniff``)."""
    bare = _bare_type(content_type)
    return bare if bare in _SERVED_AS_IS else OPAQUE_CONTENT_TYPE


def inline_allowed(content_type: str) -> bool:
    """Whether an attachment may be shown inline: raster images only."""
    return _bare_type(content_type) in _INLINE_IMAGES
