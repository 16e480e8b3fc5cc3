import html5lib
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postroom.mime.text import LINK_REL, BlockKind, linkify, text_blocks

PLAIN_TEXT_XSS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    'http://example.invalid/"><script>alert(1)</script>',
    "http://example.invalid/'onmouseover='alert(1)'",
    "http://example.invalid/ onmouseover=alert(1) x=",
    "http://example.invalid/?q=<img src=x onerror=alert(1)>",
    "https://example.invalid/`onfocus=alert(1)`",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1) jav\tascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    'mailto:"><svg onload=alert(1)>@example.invalid',
    '"><svg/onload=alert(1)>@example.invalid',
    'a@b.invalid"onmouseover=alert(1)',
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "https://example.invalid/\u2028<script>alert(1)</script>",
    "https://example.invalid/\x00<script>alert(1)</script>",
    "http://</a><script>alert(1)</script>",
    "http:///<script>",
    'https://[::1"]/x',
]


def assert_only_safe_links(html: str) -> None:
    fragment = html5lib.parseFragment(html, namespaceHTMLElements=False)
    for element in fragment.iter():
        if element is fragment:
            continue
        assert element.tag == "a", html
        assert set(element.attrib) == {"href", "rel", "target"}, html
        assert element.attrib["rel"] == LINK_REL
        assert element.attrib["target"] == "_blank"
        assert element.attrib["href"].split(":")[0].lower() in {"http", "https", "mailto"}, html


@pytest.mark.parametrize("payload", PLAIN_TEXT_XSS)
def test_r28_plain_text_xss_is_escaped(payload):
    for block in text_blocks(f"Hello\n{payload}\n> {payload}\n-- \n{payload}\n"):
        assert_only_safe_links(block.html)
        assert "<script" not in block.html
        assert "<svg" not in block.html
        assert "<img" not in block.html


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from([*"ab:/.@<>\"'` =\n\t&;()[]-", "http://", "https://", "mailto:", "javascript:", "> ", "-- \n"])).map("".join)
)
def test_r28_fuzz_linkified_text_contains_only_safe_links(text):
    for block in text_blocks(text):
        assert_only_safe_links(block.html)


def test_links_are_made_for_http_https_mailto_and_addresses_only():
    html = linkify("see https://a.invalid/x?y=1&z=2, ftp://b.invalid/ and mail me@c.invalid.")
    assert html == (
        f'see <a href="https://a.invalid/x?y=1&amp;z=2" rel="{LINK_REL}" target="_blank">https://a.invalid/x?y=1&amp;z=2</a>, '
        f'ftp://b.invalid/ and mail <a href="mailto:me@c.invalid" rel="{LINK_REL}" target="_blank">me@c.invalid</a>.'
    )


def test_trailing_punctuation_is_not_part_of_a_link_but_balanced_parentheses_are():
    assert 'href="https://w.invalid/Mail_(x)"' in linkify("(see https://w.invalid/Mail_(x)).")
    assert 'href="https://w.invalid/a"' in linkify("https://w.invalid/a!")


def test_quotes_attributions_and_signature_become_blocks():
    text = (
        "Thanks, sounds good.\r\n\r\n-- \r\nBob\r\n\r\n"
        "On Sat, 21 Nov 2026 at 10:00, Alice <alice@example.invalid>\r\nwrote:\r\n"
        "> Shall we meet?\r\n>\r\n> Tuesday works.\r\n>> Earlier mail\r\n"
    )
    blocks = [(block.kind, block.depth, block.text) for block in text_blocks(text)]
    assert blocks == [
        (BlockKind.TEXT, 0, "Thanks, sounds good."),
        (BlockKind.SIGNATURE, 0, "-- \nBob"),
        (BlockKind.ATTRIBUTION, 0, "On Sat, 21 Nov 2026 at 10:00, Alice <alice@example.invalid>\nwrote:"),
        (BlockKind.QUOTE, 1, "Shall we meet?\n\nTuesday works."),
        (BlockKind.QUOTE, 2, "Earlier mail"),
    ]


def test_outlook_original_message_quotes_the_rest():
    blocks = text_blocks("Yes.\n\n-----Original Message-----\nFrom: Alice\nSubject: Plan\n\nShall we?\n")
    assert [(block.kind, block.depth) for block in blocks] == [(BlockKind.TEXT, 0), (BlockKind.ATTRIBUTION, 0), (BlockKind.QUOTE, 1)]
    assert blocks[2].text == "From: Alice\nSubject: Plan\n\nShall we?"


def test_a_wrote_line_without_a_quote_after_it_is_just_text():
    blocks = text_blocks("He wrote:\nnothing quoted here\n")
    assert [block.kind for block in blocks] == [BlockKind.TEXT]


@pytest.mark.timeout(30)
def test_long_runs_of_blank_lines_stay_linear():
    text_blocks("> a\n" + "\n" * 200_000 + "> b\n" + "wrote:\n" * 50_000 + "\n" * 200_000)
