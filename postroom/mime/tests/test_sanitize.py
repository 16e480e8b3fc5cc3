import re
from urllib.parse import quote

import html5lib
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postroom.mime.sanitize import ALLOWED_ATTRIBUTES, ALLOWED_TAGS, sanitize_html
from postroom.mime.tests.hostile import corpus

HTML_NAMESPACE = "http://www.w3.org/1999/xhtml"
PROXY_PREFIX = "https://postroom.test/proxy?url="


def proxy(url: str) -> str:
    return PROXY_PREFIX + quote(url, safe="")


def browser_view(html: str) -> list[tuple[str, str, dict[str, str]]]:
    """(namespace, tag, attributes) of every element, as a browser's parser builds the frame's body."""
    document = html5lib.parse(f"<!doctype html><html><head></head><body>{html}</body></html>")
    elements = []
    for element in document.iter():
        namespace, _, tag = element.tag.rpartition("}")
        attributes = {name.rpartition("}")[2]: value for name, value in element.attrib.items()}
        elements.append((namespace.lstrip("{"), tag, attributes))
    return elements


def url_as_browser_reads_it(value: str) -> str:
    return re.sub(r"[\t\n\r]", "", value).strip("".join(chr(code) for code in range(0x21))).lower()


def assert_inert(html: str) -> None:
    """No element, attribute, URL scheme or CSS construct that could run script or fetch."""
    for namespace, tag, attributes in browser_view(html):
        assert namespace == HTML_NAMESPACE, (tag, html)
        assert tag in ALLOWED_TAGS | {"html", "head", "body"}, (tag, html)
        allowed = ALLOWED_ATTRIBUTES["*"] | ALLOWED_ATTRIBUTES.get(tag, set()) | ({"rel"} if tag == "a" else set())
        for name, value in attributes.items():
            assert name in allowed, (tag, name, html)
            assert not name.startswith("on"), (tag, name, html)
            if name == "href":
                assert url_as_browser_reads_it(value).split(":")[0] in {"http", "https", "mailto"}, html
            if name == "src":
                assert re.match(r"(cid:|data:image/(png|gif|jpeg|webp);base64,)", url_as_browser_reads_it(value)), html
            if name == "style":
                assert not re.search(r"url|expression|import|image|script|behavior|binding|\\|/\*|[@{}<>]", value.lower()), html
            assert name not in {"srcset", "background"}, html


def assert_fetches_nothing_remote(html: str) -> None:
    for _, tag, attributes in browser_view(html):
        for name, value in attributes.items():
            if not (tag == "a" and name == "href"):  # a link is fetched only when clicked
                assert "canary" not in value.lower(), (tag, name, html)


@pytest.mark.parametrize("payload", corpus("xss.txt"))
def test_r27_hostile_html_is_inert_after_sanitising(payload):
    result = sanitize_html(payload)
    assert_inert(result.html)
    assert_inert(sanitize_html(result.html).html)


@pytest.mark.parametrize("payload", corpus("remote.txt"))
def test_r29_remote_references_are_removed_by_default(payload):
    result = sanitize_html(payload)
    assert_inert(result.html)
    assert_fetches_nothing_remote(result.html)


def fetched_urls(tag: str, name: str, value: str) -> list[str]:
    """The URLs a browser would fetch for this attribute once the frame renders."""
    if name in {"src", "background"}:
        return [value]
    if name == "srcset":
        return [candidate.split()[0] for candidate in value.split(", ")]
    if name == "style":
        return re.findall(r'url\("([^"]*)"\)', value.replace("&quot;", '"'))
    return []


@pytest.mark.parametrize("payload", corpus("remote.txt"))
def test_r29_after_opt_in_images_load_only_through_the_proxy(payload):
    result = sanitize_html(payload, allow_remote=True, proxy=proxy)
    for _, tag, attributes in browser_view(result.html):
        for name, value in attributes.items():
            if tag == "a" and name == "href":
                continue  # a link is fetched only when clicked
            urls = fetched_urls(tag, name, value)
            assert all(url.startswith(PROXY_PREFIX) for url in urls), (tag, name, result.html)
            without_urls = value
            for url in urls:
                without_urls = without_urls.replace(url, "")
            assert "canary" not in without_urls.lower(), (tag, name, result.html)


def test_r29_blocked_images_and_trackers_are_counted():
    result = sanitize_html(
        '<img src="https://shop.invalid/hero.jpg">'
        '<img src="//cdn.invalid/logo.png" srcset="https://cdn.invalid/logo@2x.png 2x">'
        '<img src="https://shop.invalid/open.gif" width="1" height="1">'
        '<img src="https://mc.us1.list-manage.com/track/open.php?u=1">'
        '<table><tr><td background="https://shop.invalid/bg.png">x</td></tr></table>'
        '<img src="cid:logo@shop.invalid">'
    )
    assert (result.remote_blocked, result.trackers_removed) == (4, 2)
    assert result.content_ids == ("logo@shop.invalid",)
    assert '<img src="cid:logo@shop.invalid">' in result.html


def test_r29_trackers_are_not_proxied_even_after_opt_in():
    result = sanitize_html(
        '<img src="https://shop.invalid/hero.jpg"><img src="https://shop.invalid/o.gif" width="1" height="1">',
        allow_remote=True,
        proxy=proxy,
    )
    assert result.html == f'<img src="{proxy("https://shop.invalid/hero.jpg")}"><img height="1" width="1">'
    assert (result.remote_blocked, result.trackers_removed) == (0, 1)


def test_r27_links_keep_no_opener_and_no_referrer():
    result = sanitize_html('<a href="https://example.invalid/a?b=1&amp;c=2" rel="opener" target="_self">x</a>')
    assert result.html == '<a href="https://example.invalid/a?b=1&amp;c=2" rel="noopener noreferrer nofollow">x</a>'


def test_r27_safe_formatting_survives():
    html = (
        '<table width="600" cellpadding="4"><tbody><tr><td bgcolor="#eeeeee" style="color:#333333;'
        'font-family:Arial, sans-serif;padding:8px 4px">Hello <b>there</b></td></tr></tbody></table>'
        '<p style="color:rgb(10, 20, 30);width:calc(100% - 2px)">x</p><img src="data:image/png;base64,iVBORw0KGgo=" alt="dot">'
    )
    result = sanitize_html(html)
    assert "sans-serif" in result.html
    assert "padding:8px 4px" in result.html
    assert "color:rgb(10, 20, 30)" in result.html
    assert 'src="data:image/png;base64,iVBORw0KGgo="' in result.html
    assert "<b>there</b>" in result.html


def test_r27_a_css_value_with_a_url_loses_only_that_declaration():
    result = sanitize_html('<p style="color: red; background: url(https://x.invalid/a.png); font-weight: bold">x</p>')
    assert result.html == '<p style="color:red;font-weight:bold">x</p>'


def test_r29_srcset_is_rebuilt_from_proxied_candidates_only():
    result = sanitize_html(
        '<img srcset="https://cdn.invalid/w_100,h_50/a.png 1x, //cdn.invalid/b.png 2x, cid:x 3x, data:image/png;base64,AA 4x, '
        'https://cdn.invalid/c.png 300w, https://cdn.invalid/d.png bogus(descriptor)">',
        allow_remote=True,
        proxy=proxy,
    )
    srcset = re.search(r'srcset="([^"]*)"', result.html)
    assert srcset is not None
    assert srcset.group(1).split(", ") == [
        proxy("https://cdn.invalid/w_100,h_50/a.png") + " 1x",
        proxy("https://cdn.invalid/b.png") + " 2x",
        proxy("https://cdn.invalid/c.png") + " 300w",
    ]


def test_r29_background_css_is_proxied_only_in_its_plain_form():
    def shown(style: str) -> str:
        return sanitize_html(f'<div style="{style}">x</div>', allow_remote=True, proxy=proxy).html

    assert proxy("https://cdn.invalid/a.png") in shown("background-image: url('https://cdn.invalid/a.png')")
    assert proxy("https://cdn.invalid/b.png") in shown("background: #fff url(https://cdn.invalid/b.png) no-repeat")
    for refused in (
        "background: url(https://cdn.invalid/a.png), expression(alert(1))",
        "background: url(https://cdn.invalid/a.png) /* comment */",
        "background: url(javascript:alert(1))",
        "background: url(relative.png)",
        "list-style-image: url(https://cdn.invalid/a.png)",
        "background: u\\rl(https://cdn.invalid/a.png)",
        "background: image-set(url(https://cdn.invalid/a.png) 1x)",
    ):
        assert "url" not in shown(refused).replace("&quot;", ""), refused


def test_r29_cid_images_are_mapped_by_the_caller_and_unknown_ones_dropped():
    result = sanitize_html(
        '<img src="cid:logo%40shop.invalid"><img src="cid:unknown@shop.invalid" alt="gone">',
        inline=lambda content_id: "/inline/logo" if content_id == "logo@shop.invalid" else None,
    )
    assert result.html == '<img src="/inline/logo"><img alt="gone">'
    assert result.content_ids == ("logo@shop.invalid", "unknown@shop.invalid")


@pytest.mark.parametrize(
    "image",
    [
        '<img src="https://shop.invalid/o.gif" width="0" height="0">',
        '<img src="https://shop.invalid/o.gif" style="display: none">',
        '<img src="https://shop.invalid/o.gif" style="visibility:hidden">',
        '<img src="https://shop.invalid/o.gif" style="opacity: 0">',
        '<img src="https://shop.invalid/o.gif" style="max-height:0px;max-width:0px">',
        '<img src="https://shop.invalid/o.gif" hidden>',
        '<img src="https://t.pstmrk.it/open?m=1">',
        '<img src="https://mailfoogae.appspot.com/t?sender=x">',
    ],
)
def test_r29_hidden_and_known_tracking_images_are_removed_and_counted(image):
    for allow_remote in (False, True):
        result = sanitize_html(image, allow_remote=allow_remote, proxy=proxy)
        assert (result.remote_blocked, result.trackers_removed) == (0, 1)
        assert "src=" not in result.html


def test_r29_removed_elements_are_not_counted_or_proxied():
    """nh3 shows the filter every attribute, of removed elements too: a <video poster> is not an
    image the member could choose to see, so it neither counts nor reaches the proxy."""
    proxied: list[str] = []

    def record(url: str) -> str:
        proxied.append(url)
        return "/p/"

    html = '<video poster="https://shop.invalid/p.png" src="https://shop.invalid/v.mp4"></video><input type="image" src="https://shop.invalid/i.png">'
    assert sanitize_html(html).remote_blocked == 0
    assert sanitize_html(html, allow_remote=True, proxy=record).html == ""
    assert proxied == []


def test_r29_a_visible_image_whose_alt_says_hidden_is_not_a_tracker():
    result = sanitize_html('<img src="https://shop.invalid/hero.png" alt="a hidden gem">', allow_remote=True, proxy=proxy)
    assert result.trackers_removed == 0
    assert proxy("https://shop.invalid/hero.png") in result.html


HTML_FRAGMENTS = st.sampled_from(
    [
        "<a href='", "<img src=", "<svg>", "<math>", "<style>", "</style>", "<table>", "<td>", "<p>", "</p>",
        "<div style='", "'>", '"', "'", ">", "<", "&", "&#x09;", "&#0;", "&quot;", "javascript:", "http://canary.invalid/",
        "cid:x", "data:image/png;base64,AA", "url(", ")", "expression(", "\\", "/*", "*/", ";", ":", "color", "onerror=",
        "<!--", "-->", "<![CDATA[", "]]>", "<noscript>", "<textarea>", "<title>", "<select>", "<template>", "<form>",
        " ", "\n", "x", "é", "\u202e",
    ]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(HTML_FRAGMENTS, max_size=40).map("".join))
def test_r27_fuzz_sanitising_is_idempotent_and_inert(html):
    once = sanitize_html(html)
    assert sanitize_html(once.html).html == once.html
    assert_inert(once.html)
    assert_fetches_nothing_remote(once.html)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_r27_fuzz_arbitrary_text_is_idempotent(text):
    once = sanitize_html(text)
    assert sanitize_html(once.html).html == once.html
    assert_inert(once.html)


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "html",
    [
        "<div>" * 50_000 + "<script>alert(1)</script>deep",
        "<p " + " ".join(f'a{number}="x"' for number in range(50_000)) + ">attributes",
    ],
)
def test_r31_pathological_html_is_flattened_to_text_quickly(html):
    result = sanitize_html(html)
    assert result.flattened
    assert "<" not in result.html
    assert_inert(result.html)
    assert sanitize_html(result.html).html == result.html


def test_ordinary_deep_html_is_not_flattened():
    result = sanitize_html("<div>" * 500 + "<p>" * 5_000 + "text")
    assert not result.flattened
    assert "<div>" in result.html


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        HTML_FRAGMENTS | st.sampled_from(["<img srcset='", " 2x, ", "<td background='", "background-image:", "//canary.invalid/x"]),
        max_size=40,
    ).map("".join)
)
def test_r29_fuzz_after_opt_in_only_proxy_urls_are_fetched(html):
    result = sanitize_html(html, allow_remote=True, proxy=proxy)
    for _, tag, attributes in browser_view(result.html):
        for name, value in attributes.items():
            if tag == "a" and name == "href":
                continue
            for url in fetched_urls(tag, name, value):
                assert url.startswith(PROXY_PREFIX) or url.startswith(("cid:", "data:image/")), (tag, name, result.html)
            assert "url(" not in value.lower().replace('url("' + PROXY_PREFIX, ""), (tag, name, result.html)
