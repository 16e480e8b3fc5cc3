"""Which images Postroom serves: raster types, recognised by their first bytes.

A remote server (or a sender, for inline parts) declares whatever type it likes; browsers that
sniff can be talked into treating an "image" as HTML or script. We decide the type from the
content's signature, serve exactly that type with ``nosniff``, and refuse everything else,
SVG included: an SVG is a document that can carry script and references to other URLs.
"""

from __future__ import annotations

RASTER_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp", "image/avif")


def raster_type(content: bytes) -> str | None:
    """The image type ``content`` starts like, if it is one we serve."""
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if content.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if content.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "image/webp"
    if content[4:12] in (b"ftypavif", b"ftypavis"):
        return "image/avif"
    return None
