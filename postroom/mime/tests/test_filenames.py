import unicodedata
from email.headerregistry import HeaderRegistry

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postroom.mime.filenames import MAX_FILENAME_LENGTH, content_disposition, inline_allowed, safe_filename, served_content_type

HEADERS = HeaderRegistry()


def parsed_parameters(value: str) -> dict[str, str]:
    header = HEADERS("Content-Disposition", value)
    assert not header.defects, (value, header.defects)
    return dict(header.params)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../x.html", "x.html"),
        ("..\\..\\windows\\system32\\x.dll", "x.dll"),
        ('a"\r\nSet-Cookie:x', "a_ Set-Cookie_x"),
        ("\u202egnp.exe", "gnp.exe"),
        ("invoice\u202efdp.exe", "invoice fdp.exe"),
        ("zero\u200bwidth.txt", "zero width.txt"),
        ("nul\x00byte.txt", "nul byte.txt"),
        ("...hidden", "hidden"),
        ("  spaced   out  .pdf", "spaced out.pdf"),
        ("CON.txt", "_CON.txt"),
        ("Bericht März.pdf", "Bericht März.pdf"),
        ("", "attachment.pdf"),
        (None, "attachment.pdf"),
        ("/", "attachment.pdf"),
    ],
)
def test_r32_attachment_names_are_sanitised(name, expected):
    assert safe_filename(name, "application/pdf") == expected


def test_r32_long_names_are_cut_to_150_characters_keeping_the_extension():
    name = "x" * 300 + ".pdf"
    safe = safe_filename(name, "application/pdf")
    assert len(safe) == MAX_FILENAME_LENGTH
    assert safe.endswith("x.pdf")


def test_r32_a_name_without_a_usable_extension_gets_none_invented():
    assert safe_filename("report", "application/pdf") == "report"
    assert safe_filename(None, "message/rfc822") == "attachment.eml"
    assert safe_filename(None, "application/x-unknown") == "attachment"


@pytest.mark.parametrize("name", ["../../x.html", 'a"\r\nSet-Cookie:x', "\u202egnp.exe", "x" * 300 + ".pdf", "日本語 ü.pdf", "100%.txt"])
def test_r32_content_disposition_has_an_ascii_fallback_and_the_exact_name(name):
    value = content_disposition(name)
    assert value.isascii()
    assert "\r" not in value
    assert "\n" not in value
    assert value.startswith("attachment; filename=")
    fallback, _, extended = value.partition("; filename*=")
    assert parsed_parameters(f"attachment; filename*={extended}")["filename"] == safe_filename(name, "application/octet-stream")
    assert parsed_parameters(fallback)["filename"].isascii()


def test_r32_inline_disposition_is_only_on_request():
    assert content_disposition("a.png", inline=True).startswith("inline; ")
    assert content_disposition("a.png").startswith("attachment; ")


@pytest.mark.parametrize(
    ("declared", "served"),
    [
        ("text/html", "application/octet-stream"),
        ("TEXT/HTML; charset=utf-8", "application/octet-stream"),
        ("image/svg+xml", "application/octet-stream"),
        ("application/xhtml+xml", "application/octet-stream"),
        ("text/xml", "application/octet-stream"),
        ("application/xml", "application/octet-stream"),
        ("application/javascript", "application/octet-stream"),
        ("application/x-unknown", "application/octet-stream"),
        ("", "application/octet-stream"),
        ("image/png", "image/png"),
        ("application/pdf; name=x.pdf", "application/pdf"),
        ("text/plain", "text/plain"),
    ],
)
def test_r32_dangerous_and_unknown_types_are_served_as_octet_stream(declared, served):
    assert served_content_type(declared) == served


def test_r32_only_raster_images_may_be_shown_inline():
    assert inline_allowed("image/png")
    assert inline_allowed("image/jpeg; name=x.jpg")
    assert not inline_allowed("image/svg+xml")
    assert not inline_allowed("text/html")
    assert not inline_allowed("application/pdf")


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.none(), st.text(max_size=400)))
def test_r32_fuzz_header_value_never_breaks_and_round_trips(name):
    safe = safe_filename(name, "application/octet-stream")
    assert safe_filename(safe, "application/octet-stream") == safe
    assert 0 < len(safe) <= MAX_FILENAME_LENGTH
    assert not any(character in safe for character in '/\\"\r\n\x00')
    assert not any(unicodedata.category(character).startswith("C") for character in safe)
    value = content_disposition(name)
    assert value.isascii()
    assert "\r" not in value
    assert "\n" not in value
    fallback, _, extended = value.partition("; filename*=")
    assert parsed_parameters(f"attachment; filename*={extended}")["filename"] == safe
    parsed_parameters(fallback)
