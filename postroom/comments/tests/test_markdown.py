"""SECURITY.md R27/R28/R40: comment markdown is rendered with raw HTML off, then sanitised; the
output is re-parsed with html5lib and checked for anything that could run or load."""

from __future__ import annotations

import html5lib
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postroom.comments.markdown import LINK_REL, MentionRef, comment_html, mentions_in, sanitize_comment_html

PAYLOADS = [
    "[x](javascript:alert(1))",
    "[x](JaVaScRiPt:alert(1))",
    "[x](jav&#x09;ascript:alert(1))",
    "[x](  javascript:alert(1))",
    "[x](vbscript:msgbox(1))",
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[x](file:///etc/passwd)",
    "<javascript:alert(1)>",
    "<img src=x onerror=alert(1)>",
    '<img src="x" onerror="alert(1)">',
    "<script>alert(1)</script>",
    "<svg><style><img src=x onerror=alert(2)></style></svg>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(3)>",
    '<a href="javascript:alert(1)">click</a>',
    '<iframe src="https://evil.example"></iframe>',
    '<form action="https://evil.example"><input name=p></form>',
    '<meta http-equiv="refresh" content="0;url=https://evil.example">',
    '<base href="https://evil.example/">',
    "![pixel](https://tracker.evil.example/p.gif)",
    '![x](https://evil.example/x.png "title" onerror=alert(1))',
    '[x](https://evil.example/" onmouseover="alert(1))',
    '<div style="background:url(https://evil.example/p.gif)">x</div>',
    "`<script>alert(1)</script>`",
    "```html\n<script>alert(1)</script>\n```",
    "<!-- <script>alert(1)</script> -->",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "[a](https://ok.example) <a href=https://ok.example target=_self rel=opener>b</a>",
]
DANGEROUS_TAGS = {"script", "img", "iframe", "svg", "math", "style", "form", "input", "meta", "base", "object", "embed", "link", "div"}
SAFE_SCHEMES = ("http://", "https://", "mailto:")


def _parse(fragment: str):  # type: ignore[no-untyped-def]
    return html5lib.parseFragment(fragment, namespaceHTMLElements=False)


def assert_inert(fragment: str) -> None:
    tree = _parse(fragment)
    for element in tree.iter():
        if not isinstance(element.tag, str):
            continue
        assert element.tag not in DANGEROUS_TAGS, fragment
        for name, value in element.attrib.items():
            assert not name.lower().startswith("on"), fragment
            assert name in {"href", "rel", "target", "class", "start"}, fragment
            if name == "href":
                assert value.startswith(SAFE_SCHEMES), fragment
            if name == "class":
                assert value == "mention", fragment
        if element.tag == "a":
            assert element.attrib.get("rel") == LINK_REL, fragment
            assert element.attrib.get("target") == "_blank", fragment


@pytest.mark.parametrize("payload", PAYLOADS)
def test_r40_markdown_payloads_are_neutralised(payload: str) -> None:
    assert_inert(str(comment_html(payload)))


@pytest.mark.parametrize("payload", PAYLOADS)
def test_r27_the_sanitiser_alone_neutralises_raw_html(payload: str) -> None:
    """Layer 3 does not rely on markdown having escaped the HTML."""
    assert_inert(sanitize_comment_html(payload))


def test_raw_html_is_shown_as_text_not_dropped() -> None:
    html = str(comment_html("<img src=x onerror=alert(1)> and <b>bold</b>"))
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html


def test_links_open_outside_with_no_referrer_and_plain_urls_are_linked() -> None:
    html = str(comment_html("see https://shop.example/order?id=1&x=2 and [docs](https://docs.example)"))
    tree = _parse(html)
    links = [element for element in tree.iter() if element.tag == "a"]
    assert [link.attrib["href"] for link in links] == ["https://shop.example/order?id=1&x=2", "https://docs.example"]
    assert all(link.attrib["rel"] == LINK_REL and link.attrib["target"] == "_blank" for link in links)


def test_images_never_load_they_become_links() -> None:
    html = str(comment_html("![chart](https://images.example/chart.png)"))
    assert "<img" not in html
    assert 'href="https://images.example/chart.png"' in html


def test_markdown_formatting_survives() -> None:
    html = str(comment_html("**bold** _it_ `code` ~~gone~~\n\n- one\n- two\n\n> quoted"))
    for fragment in ("<strong>bold</strong>", "<em>it</em>", "<code>code</code>", "<s>gone</s>", "<li>one</li>", "<blockquote>"):
        assert fragment in html


def test_a_mention_shows_the_current_name_never_the_typed_label() -> None:
    body = "ping @[The CEO](member:7) and @[Anyone](member:8)"
    html = str(comment_html(body, {MentionRef("member", 7): "Bob <b>Member</b>"}))
    assert '<span class="mention">@Bob &lt;b&gt;Member&lt;/b&gt;</span>' in html
    assert "The CEO" not in html
    assert "@Anyone" in html  # not a stored mention: plain text, no mention styling
    assert html.count('class="mention"') == 1


def test_mentions_inside_code_are_text() -> None:
    assert mentions_in("`@[Bob](member:1)`\n\n```\n@[Ann](member:2)\n```\n@[Support](team:3) @[Bob](member:1)") == [
        MentionRef("team", 3),
        MentionRef("member", 1),
    ]


def test_a_mention_label_cannot_smuggle_markup() -> None:
    body = '@[<img src=x onerror=alert(1)>](member:5) @["><script>alert(1)</script>](team:1)'
    assert_inert(str(comment_html(body)))
    assert_inert(str(comment_html(body, {MentionRef("member", 5): "<script>x</script>", MentionRef("team", 1): '"><svg onload=x>'})))


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("<>\"'=/ :;&#()[]!@`*_-\nabcjvsrptioneg")), max_size=80))
def test_r27_any_text_renders_to_inert_html_and_sanitising_is_a_fixed_point(text: str) -> None:
    html = str(comment_html(text))
    assert_inert(html)
    assert sanitize_comment_html(html) == html
