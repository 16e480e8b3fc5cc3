"""HTML for responses: what the editor may produce and what may go out in a member's mail.

Threat model
------------
A response body is written by a member, but it is HTML that Postroom stores, shows to every
member in its scope (in the editor and the preview) and sends to customers. A hostile or careless
author (or a pasted web page) could plant script that runs in a teammate's session when they open
the editor, a form or a look-alike link, or remote images that tell a tracker when each customer
reads the reply.

Defences
--------
1. Everything goes first through ``postroom.mime.sanitize.sanitize_html``, the sanitiser of
   received mail (nh3 allowlist, links read as browsers read them and kept only for http, https
   and mailto, remote images removed, style values checked; SECURITY.md R27).
2. Then a second, narrower nh3 pass keeps only what the response editor makes: paragraphs, line
   breaks, bold, italic, underline, strike, lists, quotes and links. Images are dropped, even
   ``data:`` ones: a file goes with a response as an attachment, and no image can fetch anything.
   No ``style`` survives, so no CSS reaches a customer's mail client from us.
Both passes use the same parser (html5ever), so they cannot disagree about the tree (mutation
XSS lives in parser differences); the output is a fixed point (sanitising it again changes
nothing), which is checked in the tests.

This runs when a response is saved and again on every render, after the variables are filled in
(``postroom.responses.variables``), so a value a member types never becomes markup either.
"""

from __future__ import annotations

from html.parser import HTMLParser

import nh3

from postroom.mime.sanitize import LINK_REL, LINK_SCHEMES, sanitize_html

EDITOR_TAGS = frozenset({"a", "b", "blockquote", "br", "div", "em", "i", "li", "ol", "p", "s", "strong", "u", "ul"})
EDITOR_ATTRIBUTES = {"a": {"href"}}


def sanitize_response_html(html: str) -> str:
    """The body as the editor's safe subset of HTML (see the module docstring)."""
    first = sanitize_html(html).html
    return nh3.clean(
        first,
        tags=set(EDITOR_TAGS),
        attributes={tag: set(names) for tag, names in EDITOR_ATTRIBUTES.items()},
        strip_comments=True,
        link_rel=LINK_REL,
        url_schemes=set(LINK_SCHEMES),
        url_relative="deny",
    )


_BLOCKS = frozenset({"p", "div", "blockquote", "ul", "ol"})


class _TextWriter(HTMLParser):
    """Sanitised response HTML as plain text: blocks on their own lines, list items with "- ",
    a link's address after its text when they differ."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.links: list[str | None] = []
        self.link_text: list[str] = []

    def _newline(self) -> None:
        if self.parts and not self.parts[-1].endswith("\n"):
            self.parts.append("\n")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCKS:
            self._newline()
        elif tag == "br":
            self.parts.append("\n")
        elif tag == "li":
            self._newline()
            self.parts.append("- ")
        elif tag == "a":
            self.links.append(dict(attrs).get("href"))
            self.link_text.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag in _BLOCKS or tag == "li":
            self._newline()
        elif tag == "a" and self.links:
            href, text = self.links.pop(), self.link_text.pop()
            if href:
                shown = href.removeprefix("mailto:")
                if shown not in text:
                    self.parts.append(f" ({shown})")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)
        if self.link_text:
            self.link_text[-1] += data


def html_to_text(html: str) -> str:
    """The plain-text alternative of a sanitised body."""
    writer = _TextWriter()
    writer.feed(html)
    writer.close()
    lines = "".join(writer.parts).split("\n")
    text = "\n".join(line.rstrip() for line in lines).strip("\n")
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text
