"""The one-line preview of a message shown in the conversation list.

Runs in the parser process (``postroom.mime.isolation``): extracting text from attacker-written
HTML is parsing too. Only the start of each body is looked at, so the cost is bounded whatever
the message's size.
"""

from __future__ import annotations

from html.parser import HTMLParser

SNIPPET_LENGTH = 200


class _TextExtractor(HTMLParser):
    _SKIPPED = frozenset({"script", "style", "head", "title", "template"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0
        self.length = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIPPED:
            self.skipping += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIPPED and self.skipping:
            self.skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self.skipping and self.length < SNIPPET_LENGTH * 4:
            self.parts.append(data)
            self.length += len(data)


def snippet_of(text: str | None, html: str | None) -> str:
    """The first words of the text body (else of the HTML), without quoted lines, one line."""
    if text and text.strip():
        source = text[: SNIPPET_LENGTH * 20]
    elif html:
        extractor = _TextExtractor()
        # Enough of the document for a snippet; the parser's cost grows with its input.
        extractor.feed(html[:100_000])
        source = " ".join(extractor.parts)
    else:
        return ""
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(">")]
    collapsed = " ".join(" ".join(lines).split())
    return collapsed[:SNIPPET_LENGTH]
