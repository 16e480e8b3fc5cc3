"""Comment text: markdown with raw HTML off, mentions, then an allowlist sanitiser.

Threat model
------------
A member of the organization writes a comment that every teammate who can see the
conversation will read inside Postroom's own pages (not in a sandboxed frame, unlike mail). An
attacker is a member who wants to run script in a teammate's session (stored XSS: a
``javascript:`` link, an ``<img onerror>``, a ``<script>``), to make a teammate's browser load a
remote resource (learn who read it, from where), to pass off a mention of someone else as real,
or a sender of mail whose text a member pastes into a comment.

Layers of defence (SECURITY.md R27, R28, R40)
---------------------------------------------
1. markdown-it-py with ``html=False``: ``<script>`` and every other raw tag in the text is
   escaped as text, never parsed as HTML. Images are switched off (``![x](url)`` stays a link,
   so nothing loads by itself), and markdown-it's own link validation refuses ``javascript:``,
   ``vbscript:``, ``file:`` and ``data:`` URLs.
2. Mentions are a markdown-it inline rule for ``@[label](member:ID)`` / ``@[label](team:ID)``.
   The label is never shown: a mention renders the *current* name of the member or team, looked
   up by the caller among the comment's stored mentions (ids resolved inside the organization
   when the comment was saved), so ``@[the CEO](member:7)`` cannot dress up someone else, and an
   id from another organization renders as plain text. Mentions inside code stay text.
3. The HTML is then cleaned by nh3 with an allowlist much smaller than the one for mail
   (``postroom.mime.sanitize``): formatting tags only, no images, no ``style``, no ids or
   classes except the ``mention`` class; links keep only absolute http, https and mailto URLs
   and get ``rel="noopener noreferrer nofollow"`` and ``target="_blank"``. This layer does not
   trust layer 1: it would make raw HTML safe too (tested with the same payloads fed to it
   directly).
4. Pages are served under a CSP without inline script (``script-src 'self' 'nonce-…'``), so a
   bypass of both layers would still not run an inline handler.

Nothing here stores HTML: comments are stored as the text the member wrote (sealed) and
rendered when shown, so a fix here applies to every old comment at once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import nh3
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.renderer import RendererHTML
from markdown_it.rules_inline import StateInline
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

MENTION_MEMBER = "member"
MENTION_TEAM = "team"
# @[Label](member:12): what the composer's autocomplete inserts. The label is a hint for the
# person writing; only the id counts.
MENTION_PATTERN = re.compile(r"@\[([^\[\]\n]{1,100})\]\((member|team):([0-9]{1,18})\)")

ALLOWED_TAGS = frozenset(
    {
        "a", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "li",
        "ol", "p", "pre", "s", "span", "strong", "ul",
    }
)  # fmt: skip
REMOVED_WITH_CONTENT = frozenset({"script", "style", "template", "svg", "math", "iframe", "object", "embed", "noscript", "textarea"})
ALLOWED_ATTRIBUTES: dict[str, set[str]] = {"a": {"href"}, "ol": {"start"}}
LINK_SCHEMES = frozenset({"http", "https", "mailto"})
LINK_REL = "noopener noreferrer nofollow"


@dataclass(frozen=True, slots=True)
class MentionRef:
    kind: str  # MENTION_MEMBER or MENTION_TEAM
    id: int


def _mention_rule(state: StateInline, silent: bool) -> bool:
    if state.src[state.pos] != "@":
        return False
    match = MENTION_PATTERN.match(state.src, state.pos, state.posMax)
    if match is None:
        return False
    if not silent:
        token = state.push("mention", "", 0)
        token.meta = {"kind": match.group(2), "id": int(match.group(3))}
        token.content = match.group(1)
    state.pos = match.end()
    return True


def _render_mention(self: RendererHTML, tokens: Sequence[Token], index: int, options: OptionsDict, env: EnvType) -> str:
    token = tokens[index]
    names: Mapping[MentionRef, str] = env.get("mention_names", {})
    name = names.get(MentionRef(token.meta["kind"], token.meta["id"]))
    if name is None:
        return escapeHtml(f"@{token.content}")
    return f'<span class="mention">@{escapeHtml(name)}</span>'


def _markdown() -> MarkdownIt:
    # breaks: a single newline is a line break, as in a chat; typographer off: text stays as typed.
    md = MarkdownIt("commonmark", {"html": False, "linkify": True, "breaks": True, "typographer": False})
    md.enable(["linkify", "strikethrough"])
    md.disable("image")
    md.inline.ruler.before("linkify", "mention", _mention_rule)
    md.add_render_rule("mention", _render_mention)
    return md


_MD = _markdown()


def mentions_in(body: str) -> list[MentionRef]:
    """The mentions markdown sees in ``body`` (not those inside code), first occurrence order."""
    found: dict[MentionRef, None] = {}
    stack: list[Token] = list(_MD.parse(body or ""))
    while stack:
        token = stack.pop(0)
        if token.type == "mention":
            found.setdefault(MentionRef(token.meta["kind"], token.meta["id"]))
        if token.children:
            stack[:0] = token.children
    return list(found)


def sanitize_comment_html(html: str) -> str:
    """Layer 3 alone (see the module docstring): safe whatever HTML it is given."""
    return nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        clean_content_tags=set(REMOVED_WITH_CONTENT),
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        tag_attribute_values={"span": {"class": {"mention"}}},
        set_tag_attribute_values={"a": {"target": "_blank"}},
        link_rel=LINK_REL,
        url_schemes=set(LINK_SCHEMES),
        url_relative="deny",
        strip_comments=True,
    )


def comment_html(body: str, mention_names: Mapping[MentionRef, str] | None = None) -> SafeString:
    """The comment as HTML to put in a page: rendered with raw HTML off, then sanitised."""
    env: dict[str, Any] = {"mention_names": dict(mention_names or {})}
    # Sanitised by the nh3 allowlist just above (markdown rendered with raw HTML off first).
    return mark_safe(sanitize_comment_html(_MD.render(body or "", env)))  # noqa: S308  # nosec B308 B703
