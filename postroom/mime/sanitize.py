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
   - images keep ``cid:`` (the caller maps them to inline parts) and ``data:`` raster images;
     http(s) images are removed and counted, or with the member's consent rewritten through the
     image proxy, which fetches without cookies or Referer (SECURITY.md R29, R30); known tracking
     pixels (1x1 images, known tracker hosts) are removed and counted either way;
   - ``srcset`` and ``background`` are always removed (counted): the proxy handles ``src`` only;
   - ``style`` keeps only allowlisted properties whose values hold no ``url(``, no function other
     than colour and ``calc`` ones, no escapes, comments or at-rules. nh3 checks property names
     only (NOTES.md), so values are our job.
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
from urllib.parse import urlsplit

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

ALLOWED_STYLE_PROPERTIES = frozenset(
    {
        "background", "background-color", "border", "border-bottom", "border-bottom-color",
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
        "bananatag.com", "doubleclick.net", "exct.net", "google-analytics.com", "hubspotlinks.com",
        "list-manage.com", "mailtrack.io", "mandrillapp.com", "mixmax.com", "mktoresp.com",
        "sendgrid.net", "sparkpostmail.com", "yesware.com",
    }
)  # fmt: skip
_TRACKER_PATHS = ("/track/open", "/wf/open", "/open.php")
_IMG_TAG = re.compile(r"<img\b[^>]*>", re.IGNORECASE)
_TAG_ATTRIBUTE = re.compile(r"""([a-z-]+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.IGNORECASE)
_ONE_PIXEL = re.compile(r"^\s*[01](?:\.0*)?\s*(?:px)?\s*$")
_ONE_PIXEL_STYLE = re.compile(r"(?:^|;)\s*(?:width|height)\s*:\s*[01](?:px)?\s*(?:;|$)|display\s*:\s*none", re.IGNORECASE)


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


def _scheme(url: str) -> str:
    scheme, colon, _ = url.partition(":")
    return scheme.lower() if colon and re.fullmatch(r"[a-zA-Z][a-zA-Z0-9+.-]*", scheme) else ""


def _is_tracker_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    host = (parts.hostname or "").rstrip(".")
    if any(host == tracker or host.endswith(f".{tracker}") for tracker in TRACKER_HOSTS):
        return True
    return any(marker in parts.path.lower() for marker in _TRACKER_PATHS)


def _one_pixel_sources(html: str) -> set[str]:
    """Sources of images drawn at 1x1 or hidden, found by a cheap scan of the input.

    Only decides whether an image is counted and dropped as a tracker or offered to the proxy;
    whether anything remote loads at all is decided by the attribute filter, never by this scan.
    """
    sources: set[str] = set()
    for tag in _IMG_TAG.finditer(html):
        attributes: dict[str, str] = {}
        for match in _TAG_ATTRIBUTE.finditer(tag.group()):
            attributes.setdefault(match.group(1).lower(), unescape(match.group(2) or match.group(3) or match.group(4) or ""))
        tiny = bool(_ONE_PIXEL.match(attributes.get("width", "")) and _ONE_PIXEL.match(attributes.get("height", "")))
        if tiny or _ONE_PIXEL_STYLE.search(attributes.get("style", "")):
            sources.add(_browser_url(attributes.get("src", "")))
    return sources


def _filtered_style(value: str) -> str | None:
    kept: list[str] = []
    for declaration in value.split(";"):
        name, colon, property_value = declaration.partition(":")
        name, property_value = name.strip().lower(), property_value.strip()
        lowered = property_value.lower()
        if (
            not colon
            or name not in ALLOWED_STYLE_PROPERTIES
            or not property_value
            or _CSS_FORBIDDEN.search(lowered)
            or any(function not in _CSS_FUNCTIONS for function in _CSS_FUNCTION.findall(lowered))
            or lowered.count('"') % 2
            or lowered.count("'") % 2
            or any(ord(character) < 0x20 for character in property_value)
        ):
            continue
        kept.append(f"{name}: {property_value}")
    return "; ".join(kept) or None


class _AttributeFilter:
    """Decides each attribute nh3 allowed; counts what it removes. One instance per document."""

    def __init__(self, *, allow_remote: bool, proxy: Callable[[str], str] | None, one_pixel_sources: set[str]) -> None:
        self.allow_remote = allow_remote
        self.proxy = proxy
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
        if attribute == "style":
            return _filtered_style(value)
        if attribute == "href":
            url = _browser_url(value)
            return url if _scheme(url) in LINK_SCHEMES else None
        if attribute == "src":
            return self._image_source(_browser_url(value))
        if attribute in {"srcset", "background"}:
            if any(
                _scheme(_browser_url(candidate)) in {"http", "https"} or candidate.strip().startswith("//")
                for candidate in value.split(",")
            ):
                self.remote_blocked += 1
            return None
        return value

    def _image_source(self, url: str) -> str | None:
        if url.startswith("//"):
            url = f"https:{url}"  # scheme-relative: the frame would fetch it over https
        scheme = _scheme(url)
        if scheme == "cid":
            self.content_ids.append(url[4:])
            return url
        if scheme == "data":
            return url if _DATA_IMAGE.fullmatch(url) else None
        if scheme not in {"http", "https"}:
            return None
        if url in self.one_pixel_sources or _is_tracker_url(url):
            self.trackers_removed += 1
            return None
        if self.allow_remote and self.proxy is not None:
            return self.proxy(url)
        self.remote_blocked += 1
        return None


def sanitize_html(html: str, *, allow_remote: bool = False, proxy: Callable[[str], str] | None = None) -> SanitizedHtml:
    """Sanitise a received HTML body (or any untrusted HTML) for display in the sandboxed frame."""
    if _too_complex(html):
        text = escape(_ANY_TAG.sub(" ", html), quote=False)
        return SanitizedHtml(html=nh3.clean(text, tags=set()), remote_blocked=0, trackers_removed=0, content_ids=(), flattened=True)
    attribute_filter = _AttributeFilter(allow_remote=allow_remote, proxy=proxy, one_pixel_sources=_one_pixel_sources(html))
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
