"""Make received HTML safe to show, and keep it from phoning home.

Threat model
------------
The sender of a message writes its HTML, and wants one of two things when a member opens it:
to run script in Postroom's origin (steal the session, read other conversations, act as the
member: Roundcube CVE-2024-42009, CVE-2023-5631, CVE-2018-19206 are this), or to learn that and
when the message was read, from where (tracking pixels, remote CSS, any URL the browser fetches),
or to mislead (forms that post credentials, overlays, links that hide where they go).

Layers of defence
-----------------
1. Allowlist sanitising with nh3 (ammonia, html5ever underneath): only formatting tags and
   attributes survive. Scripts, event handlers, forms, ``<base>``, ``<meta>``, ``<link>``,
   ``<style>``, frames, objects, embeds, SVG and MathML are removed, most with their content.
   We never post-process the output with a different parser: differences between parsers are
   where mutation XSS lives (``<svg><style><img onerror>``, ``<math>`` namespace confusion).
2. An attribute filter, which fails closed (nh3 keeps an attribute when its filter raises):
   - links keep only http, https and mailto after the URL is read as browsers read it (tabs,
     newlines and control characters removed, so ``jav&#x09;ascript:`` is still ``javascript:``),
     and get ``rel="noopener noreferrer nofollow"``; the frame's own ``<base target="_blank">``
     opens them outside it (a per-link ``target`` would make the output not a fixed point);
   - images keep ``cid:`` (mapped by the caller's ``inline`` function to the URL that serves
     that part of this message) and ``data:`` raster images;
   - every remote reference a browser would fetch without a click (``img src``, ``srcset``, the
     ``background`` attribute, ``url()``/``image-set()`` in ``style``) is removed and counted, or,
     with the member's consent, rewritten to the image proxy (``proxy``), which fetches without
     cookies or Referer from public addresses only (SECURITY.md R29, R30). Only the proxy's URLs
     ever reach the output: a ``srcset`` is rebuilt from proxied candidates, and ``background``
     /``background-image`` keep plain ``url()`` tokens only, each rewritten;
   - known tracking pixels (1x1 or 0x0 images, hidden ones, known tracker hosts and paths) are
     removed and counted, consent or not;
   - ``style`` keeps only allowlisted properties whose values hold no ``url(``, no function other
     than colour and ``calc`` ones, no escapes, comments or at-rules. nh3 checks property names
     only (NOTES.md), so values are our job.
   Everything else that fetches (``<link>``, ``<style>`` with ``@import``, SVG ``href``/
   ``feImage``/``url(#...)``/``<animate>``, ``<video poster>``, ``<audio>``, ``<object>``,
   ``<iframe>``, ``<meta refresh>``, ``<base>``) never reaches the filter: the tags are removed.
   Blocked images leave their ``<img>`` with its size and ``alt`` in place, which the frame's own
   stylesheet draws as a grey placeholder, so the layout keeps its shape.
3. Display isolation, outside this module: the result is shown in an ``<iframe sandbox>``
   without ``allow-scripts`` or ``allow-same-origin``, under a CSP of ``default-src 'none'``
   (SECURITY.md R28). This module must be safe on its own; the iframe is there for the day it is not.

The output is a fixed point: sanitising it again changes nothing (tested with Hypothesis), so
stored and re-sanitised copies agree.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from html import escape, unescape
from urllib.parse import unquote, urlsplit

import nh3

ALLOWED_TAGS = frozenset(
    {
        "a", "abbr", "address", "b", "bdi", "bdo", "big", "blockquote", "br", "caption", "center",
        "cite", "code", "col", "colgroup", "dd", "del", "dfn", "div", "dl", "dt", "em", "figcaption",
        "figure", "font", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li",
        "mark", "ol", "p", "pre", "q", "rp", "rt", "ruby", "s", "samp", "small", "span", "strike",
        "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "time", "tr", "tt",
        "u", "ul", "var", "wbr",
    }
)  # fmt: skip

# Removed together with everything inside them. Tags in neither set are removed and their
# content kept (e.g. <picture> keeps its fallback <img>, <form> keeps its text).
REMOVED_WITH_CONTENT = frozenset(
    {
        "applet", "audio", "canvas", "datalist", "embed", "frame", "frameset", "iframe", "math",
        "noembed", "noframes", "noscript", "object", "script", "select", "style", "svg", "template",
        "textarea", "title", "video", "xmp",
    }
)  # fmt: skip

_GENERIC_ATTRIBUTES = {"align", "dir", "lang", "style", "title", "valign"}
_TABLE_CELL_ATTRIBUTES = {"background", "bgcolor", "colspan", "height", "nowrap", "rowspan", "scope", "width"}
ALLOWED_ATTRIBUTES: dict[str, set[str]] = {
    "*": _GENERIC_ATTRIBUTES,
    "a": {"href"},
    "col": {"span", "width"},
    "colgroup": {"span", "width"},
    "font": {"color", "face", "size"},
    "img": {"alt", "border", "height", "hspace", "src", "srcset", "vspace", "width"},
    "li": {"type", "value"},
    "ol": {"reversed", "start", "type"},
    "table": {"background", "bgcolor", "border", "cellpadding", "cellspacing", "height", "width"},
    "td": _TABLE_CELL_ATTRIBUTES,
    "th": _TABLE_CELL_ATTRIBUTES,
    "time": {"datetime"},
    "tr": {"background", "bgcolor", "height"},
    "ul": {"type"},
}

_ATTRIBUTES_BY_TAG = {tag: frozenset(ALLOWED_ATTRIBUTES["*"] | ALLOWED_ATTRIBUTES.get(tag, set())) for tag in ALLOWED_TAGS}

ALLOWED_STYLE_PROPERTIES = frozenset(
    {
        "background", "background-color", "background-image", "background-position", "background-repeat",
        "background-size", "border", "border-bottom", "border-bottom-color",
        "border-bottom-style", "border-bottom-width", "border-collapse", "border-color", "border-left",
        "border-left-color", "border-left-style", "border-left-width", "border-radius", "border-right",
        "border-right-color", "border-right-style", "border-right-width", "border-spacing",
        "border-style", "border-top", "border-top-color", "border-top-style", "border-top-width",
        "border-width", "clear", "color", "direction", "display", "float", "font", "font-family",
        "font-size", "font-style", "font-variant", "font-weight", "height", "letter-spacing",
        "line-height", "list-style-type", "margin", "margin-bottom", "margin-left", "margin-right",
        "margin-top", "max-height", "max-width", "min-height", "min-width", "overflow-wrap", "padding",
        "padding-bottom", "padding-left", "padding-right", "padding-top", "table-layout", "text-align",
        "text-decoration", "text-indent", "text-transform", "vertical-align", "white-space", "width",
        "word-break", "word-spacing", "word-wrap",
    }
)  # fmt: skip

LINK_SCHEMES = frozenset({"http", "https", "mailto"})
LINK_REL = "noopener noreferrer nofollow"
# What nh3 lets through to the attribute filter; the filter then decides per attribute.
_URL_SCHEMES = LINK_SCHEMES | {"cid", "data"}

_CSS_FORBIDDEN = re.compile(r"[\\<>@&{}]|/\*|\*/|url|expression|script|behavior|binding|image|import")
_CSS_FUNCTION = re.compile(r"([a-z0-9-]*)\s*\(")
_CSS_FUNCTIONS = frozenset({"rgb", "rgba", "hsl", "hsla", "calc"})

_DATA_IMAGE = re.compile(r"data:image/(?:png|gif|jpeg|webp);base64,[a-z0-9+/=]*", re.IGNORECASE)
# Ignored by browsers' URL parser anywhere (tab, CR, LF) or at either end (C0 controls, space).
_URL_IGNORED = re.compile(r"[\t\n\r]")
_URL_TRIMMED = "".join(chr(code) for code in range(0x21))

TRACKER_HOSTS = frozenset(
    {
        "bananatag.com", "doubleclick.net", "exct.net", "getnotify.com", "google-analytics.com",
        "hubspotlinks.com", "list-manage.com", "mailfoogae.appspot.com", "mailtrack.io", "mandrillapp.com",
        "mixmax.com", "mktoresp.com", "pstmrk.it", "sendgrid.net", "sparkpostmail.com", "yesware.com",
    }
)  # fmt: skip
_TRACKER_PATHS = ("/track/open", "/wf/open", "/open.php")
_IMG_TAG = re.compile(r"<img\b[^>]*>", re.IGNORECASE)
_TAG_ATTRIBUTE = re.compile(r"""([a-z-]+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.IGNORECASE)
_ONE_PIXEL = re.compile(r"^\s*[01](?:\.0*)?\s*(?:px)?\s*$")
_HIDDEN_STYLE = re.compile(
    r"(?:^|;)\s*(?:(?:max-)?(?:width|height)\s*:\s*[01](?:\.0*)?(?:px)?|opacity\s*:\s*0(?:\.0*)?)\s*(?:!important\s*)?(?:;|$)"
    r"|display\s*:\s*none|visibility\s*:\s*hidden",
    re.IGNORECASE,
)
_HIDDEN_ATTRIBUTE = re.compile(r"\shidden(?=[\s=/>]|$)", re.IGNORECASE)
_QUOTED = re.compile(r""""[^"]*"|'[^']*'""")


@dataclass(frozen=True, slots=True)
class SanitizedHtml:
    html: str
    remote_blocked: int
    trackers_removed: int
    content_ids: tuple[str, ...]
    flattened: bool = False  # too deeply nested to parse cheaply: shown as its text only


# html5ever's tree building is superlinear in nesting depth and in attributes per element
# (20,000 nested <div> take seconds). Past these, a document is flattened to its text.
MAX_NESTING = 2_000
MAX_ATTRIBUTES_PER_TAG = 1_000
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)([^<>]*)")
_ANY_TAG = re.compile(r"<[^<>]*>?")
# Elements that never nest, or that the tree builder closes implicitly when a sibling starts.
_NOT_NESTING = frozenset(
    {
        "area", "base", "br", "caption", "col", "colgroup", "dd", "dt", "embed", "hr", "img", "input",
        "li", "link", "meta", "option", "optgroup", "p", "param", "rb", "rp", "rt", "rtc", "source",
        "tbody", "td", "tfoot", "th", "thead", "tr", "track", "wbr",
    }
)  # fmt: skip


def _too_complex(html: str) -> bool:
    if html.count("<") <= MAX_NESTING and html.count("=") <= MAX_ATTRIBUTES_PER_TAG:
        return False  # cannot be over either limit: skip the scan
    depth = 0
    for tag in _TAG.finditer(html):
        if tag.group(3).count("=") > MAX_ATTRIBUTES_PER_TAG:
            return True
        if tag.group(2).lower() in _NOT_NESTING:
            continue
        depth = max(depth - 1, 0) if tag.group(1) else depth + 1
        if depth > MAX_NESTING:
            return True
    return False


def _browser_url(value: str) -> str:
    return _URL_IGNORED.sub("", value).strip(_URL_TRIMMED)


_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f]")
_SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*")


def _scheme(url: str) -> str:
    scheme, colon, _ = url.partition(":")
    return scheme.lower() if colon and _SCHEME.fullmatch(scheme) else ""


def _is_tracker_url(url: str) -> bool:
    lowered = url.lower()
    if not any(tracker in lowered for tracker in TRACKER_HOSTS) and not any(marker in lowered for marker in _TRACKER_PATHS):
        return False  # the common case, decided without parsing the URL
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    host = (parts.hostname or "").rstrip(".")
    if any(host == tracker or host.endswith(f".{tracker}") for tracker in TRACKER_HOSTS):
        return True
    return any(marker in parts.path.lower() for marker in _TRACKER_PATHS)


def _one_pixel_sources(html: str) -> set[str]:
    """Sources of images drawn at 1x1 (or 0x0) or hidden, found by a cheap scan of the input.

    Only decides whether an image is counted and dropped as a tracker or offered to the proxy;
    whether anything remote loads at all is decided by the attribute filter, never by this scan.
    """
    sources: set[str] = set()
    for tag in _IMG_TAG.finditer(html):
        attributes: dict[str, str] = {}
        for match in _TAG_ATTRIBUTE.finditer(tag.group()):
            attributes.setdefault(match.group(1).lower(), unescape(match.group(2) or match.group(3) or match.group(4) or ""))
        tiny = bool(_ONE_PIXEL.match(attributes.get("width", "")) and _ONE_PIXEL.match(attributes.get("height", "")))
        if tiny or _HIDDEN_STYLE.search(attributes.get("style", "")) or _HIDDEN_ATTRIBUTE.search(_QUOTED.sub('""', tag.group())):
            sources.add(_browser_url(attributes.get("src", "")))
    return sources


_CSS_REMOTE = re.compile(r"(?:url|image-set|image|cross-fade|element)\s*\(|@import", re.IGNORECASE)
# One url() token with a plain http(s) or scheme-relative URL inside, quoted or not. Only these
# are rewritten through the proxy; a value with any other url() form is dropped.
_CSS_URL = re.compile(r"""url\(\s*(?:"([^"'\\()\s]*)"|'([^"'\\()\s]*)'|([^"'\\()\s]*))\s*\)""", re.IGNORECASE)
_CSS_PROXIED_PROPERTIES = frozenset({"background", "background-image"})
# A srcset candidate's descriptor: a width ("300w") or a pixel density ("2x", "1.5x").
_SRCSET_DESCRIPTOR = re.compile(r"\d+w|\d+(?:\.\d+)?x")


def _style_value_is_safe(name: str, value: str) -> bool:
    lowered = value.lower()
    return not (
        name not in ALLOWED_STYLE_PROPERTIES
        or not value
        or _CSS_FORBIDDEN.search(lowered)
        or any(function not in _CSS_FUNCTIONS for function in _CSS_FUNCTION.findall(lowered))
        or lowered.count('"') % 2
        or lowered.count("'") % 2
        or _CONTROL_CHARACTER.search(value)
    )


def _is_remote(url: str) -> bool:
    return url.startswith("//") or _scheme(url) in {"http", "https"}


def _srcset_candidates(value: str) -> list[tuple[str, str]]:
    """(URL, descriptor) pairs of a ``srcset``, split the way the HTML standard does: a URL
    runs to the next whitespace (a trailing comma ends the candidate), then descriptors run to
    the next comma. Only used to decide what to proxy: the output is rebuilt from scratch."""
    candidates: list[tuple[str, str]] = []
    position, length = 0, len(value)
    while position < length:
        while position < length and (value[position].isspace() or value[position] == ","):
            position += 1
        start = position
        while position < length and not value[position].isspace():
            position += 1
        url = value[start:position]
        descriptor = ""
        if url.endswith(","):
            url = url.rstrip(",")
        else:
            end = value.find(",", position)
            end = length if end == -1 else end
            descriptor, position = value[position:end].strip(), end
        if url:
            candidates.append((url, descriptor))
    return candidates


class _AttributeFilter:
    """Decides each attribute nh3 allowed; counts what it removes. One instance per document."""

    def __init__(
        self,
        *,
        allow_remote: bool,
        proxy: Callable[[str], str] | None,
        inline: Callable[[str], str | None] | None,
        one_pixel_sources: set[str],
    ) -> None:
        self.allow_remote = allow_remote and proxy is not None
        self.proxy = proxy
        self.inline = inline
        self.one_pixel_sources = one_pixel_sources
        self.remote_blocked = 0
        self.trackers_removed = 0
        self.content_ids: list[str] = []

    def __call__(self, tag: str, attribute: str, value: str) -> str | None:
        try:
            return self._decide(tag, attribute, value)
        except Exception:  # nh3 would keep the attribute unfiltered: fail closed instead
            return None

    def _decide(self, tag: str, attribute: str, value: str) -> str | None:
        # nh3 asks about every attribute of every element, removed ones included: decide (and
        # count) only what can reach the output.
        if tag == "a" and attribute == "rel":
            return value  # nh3's own link_rel, which replaces whatever the sender wrote
        if attribute not in _ATTRIBUTES_BY_TAG.get(tag, ()):
            return None
        if attribute == "style":
            return self._style(value)
        if attribute == "href":
            url = _browser_url(value)
            return url if _scheme(url) in LINK_SCHEMES else None
        if attribute == "src":
            return self._image_source(_browser_url(value))
        if attribute == "srcset":
            return self._srcset(value)
        if attribute == "background":
            url = _browser_url(value)
            return self._remote_image(url) if _is_remote(url) else None
        return value

    def _remote_image(self, url: str, *, count: bool = True) -> str | None:
        """The proxy's URL for a remote image, or None (blocked or a tracker; counted)."""
        if url.startswith("//"):
            url = f"https:{url}"  # scheme-relative: the frame would fetch it over https
        if url in self.one_pixel_sources or _is_tracker_url(url):
            self.trackers_removed += count
            return None
        if self.allow_remote and self.proxy is not None:
            return self.proxy(url)
        self.remote_blocked += count
        return None

    def _image_source(self, url: str) -> str | None:
        scheme = _scheme(url)
        if scheme == "cid":
            content_id = unquote(url[4:])
            self.content_ids.append(content_id)
            return url if self.inline is None else self.inline(content_id)
        if scheme == "data":
            return url if _DATA_IMAGE.fullmatch(url) else None
        if _is_remote(url):
            return self._remote_image(url)
        return None

    def _srcset(self, value: str) -> str | None:
        candidates = [(_browser_url(url), descriptor) for url, descriptor in _srcset_candidates(value)]
        remote = [(url, descriptor) for url, descriptor in candidates if _is_remote(url)]
        if not remote:
            return None
        if not self.allow_remote:
            self.remote_blocked += 1  # one image, however many candidates
            return None
        kept: list[str] = []
        for url, descriptor in remote:
            proxied = self._remote_image(url, count=False)
            if proxied is not None and (not descriptor or _SRCSET_DESCRIPTOR.fullmatch(descriptor)):
                kept.append(f"{proxied} {descriptor}".strip())
        return ", ".join(kept) or None

    def _style(self, value: str) -> str | None:
        kept: list[str] = []
        for declaration in value.split(";"):
            name, colon, property_value = declaration.partition(":")
            name, property_value = name.strip().lower(), property_value.strip()
            if not colon:
                continue
            if not _CSS_REMOTE.search(property_value):
                if _style_value_is_safe(name, property_value):
                    kept.append(f"{name}: {property_value}")
                continue
            rewritten = self._proxied_style_value(name, property_value)
            if rewritten is not None:
                kept.append(f"{name}: {rewritten}")
            elif "//" in property_value or re.search(r"https?:", property_value, re.IGNORECASE):
                self.remote_blocked += 1  # a remote reference the frame will not load
        return "; ".join(kept) or None

    def _proxied_style_value(self, name: str, value: str) -> str | None:
        """``background(-image)`` with plain url() tokens of remote images, each rewritten to
        the proxy; None for anything else (the declaration is then dropped)."""
        if not self.allow_remote or name not in _CSS_PROXIED_PROPERTIES:
            return None
        pieces: list[str] = []
        checked: list[str] = []
        position = 0
        for match in _CSS_URL.finditer(value):
            url = _browser_url(next(group for group in match.groups() if group is not None))
            proxied = self._remote_image(url, count=False) if _is_remote(url) else None
            if proxied is None or any(character in proxied for character in "\"'()\\ "):
                return None
            pieces.extend((value[position : match.start()], f'url("{proxied}")'))
            checked.extend((value[position : match.start()], "none"))
            position = match.end()
        pieces.append(value[position:])
        checked.append(value[position:])
        # What is left around the url() tokens passes the same checks as any other value.
        return "".join(pieces) if pieces and _style_value_is_safe(name, "".join(checked)) else None


def sanitize_html(
    html: str,
    *,
    allow_remote: bool = False,
    proxy: Callable[[str], str] | None = None,
    inline: Callable[[str], str | None] | None = None,
) -> SanitizedHtml:
    """Sanitise a received HTML body (or any untrusted HTML) for display in the sandboxed frame.

    ``allow_remote`` with a ``proxy`` (remote URL → the image proxy's URL for it) shows remote
    images through the proxy; without both, they are removed and counted. ``inline`` maps the
    Content-ID of a ``cid:`` image to the URL that serves that part (None drops it); without it,
    ``cid:`` sources are kept as they are (browsers fetch nothing for them).
    """
    if _too_complex(html):
        text = escape(_ANY_TAG.sub(" ", html), quote=False)
        return SanitizedHtml(html=nh3.clean(text, tags=set()), remote_blocked=0, trackers_removed=0, content_ids=(), flattened=True)
    attribute_filter = _AttributeFilter(allow_remote=allow_remote, proxy=proxy, inline=inline, one_pixel_sources=_one_pixel_sources(html))
    cleaned = nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        clean_content_tags=set(REMOVED_WITH_CONTENT),
        attributes=ALLOWED_ATTRIBUTES,
        attribute_filter=attribute_filter,
        strip_comments=True,
        link_rel=LINK_REL,
        url_schemes=set(_URL_SCHEMES),
        # Relative URLs reach the filter, which drops them: only it may emit one (the proxy's).
        url_relative="pass_through",
        filter_style_properties=set(ALLOWED_STYLE_PROPERTIES),
    )
    return SanitizedHtml(
        html=cleaned,
        remote_blocked=attribute_filter.remote_blocked,
        trackers_removed=attribute_filter.trackers_removed,
        content_ids=tuple(dict.fromkeys(attribute_filter.content_ids)),
    )
