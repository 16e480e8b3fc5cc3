import hashlib
import json
import os
import resource
import subprocess
import sys
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest
import test as cpython_test_package
from hypothesis import given, settings
from hypothesis import strategies as st

from postroom.mime.parse import (
    DEFAULT_LIMITS,
    Limits,
    Mailbox,
    MessageBody,
    ParsedMessage,
    Quarantined,
    QuarantineReason,
    content_digest,
    parse_headers,
    parse_message,
)
from postroom.mime.parse import _header_items as header_items
from postroom.mime.tests import pathological

CPYTHON_EMAIL_DATA = Path(cpython_test_package.__file__).parent / "test_email" / "data"
WORKTREE = Path(__file__).resolve().parents[3]


def parsed(raw: bytes) -> ParsedMessage:
    result = parse_message(raw)
    assert isinstance(result, ParsedMessage), result
    return result


def body_of(raw: bytes) -> MessageBody:
    body = parsed(raw).body
    assert isinstance(body, MessageBody), body
    return body


def quarantine_reason(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> QuarantineReason | None:
    result = parse_message(raw, limits=limits)
    outcome = result.body if isinstance(result, ParsedMessage) else result
    return outcome.reason if isinstance(outcome, Quarantined) else None


def rich_message() -> bytes:
    message = EmailMessage()
    message["From"] = "Jörg Müller <joerg@example.de>"
    message["To"] = "Ada <ada@example.org>, bob@example.org"
    message["Cc"] = '"Smith, Jane" <jane@example.org>'
    message["Reply-To"] = "team@example.de"
    message["Subject"] = "Grüße — quarterly report 📈"
    message["Date"] = "Sat, 21 Nov 2026 10:30:00 +0100"
    message["Message-ID"] = "<report-42@example.de>"
    message["In-Reply-To"] = "<report-41@example.org>"
    message["References"] = "<report-40@example.de> <report-41@example.org> <report-40@example.de>"
    message["Auto-Submitted"] = "auto-generated"
    message["List-Id"] = "Reports <reports.example.de>"
    message["List-Unsubscribe"] = "<mailto:leave@example.de>, <https://example.de/leave>"
    message.set_content("Hallo,\nanbei der Bericht.\n", charset="iso-8859-1")
    message.add_alternative('<p>Hallo, <img src="cid:chart@example.de"></p>', subtype="html")
    html_part = message.get_body(preferencelist=("html",))
    assert html_part is not None
    html_part.make_related()
    html_part.add_related(b"\x89PNG chart", maintype="image", subtype="png", cid="<chart@example.de>")
    message.add_attachment(b"%PDF-1.7 report", maintype="application", subtype="pdf", filename="Bericht März.pdf")
    message.add_attachment(
        b"BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nEND:VCALENDAR\r\n", maintype="text", subtype="calendar", params={"method": "REQUEST"}
    )
    return bytes(message)


# --- CPython's own corpus and fuzzing -------------------------------------------------------


@pytest.mark.parametrize("path", sorted(CPYTHON_EMAIL_DATA.iterdir()), ids=lambda path: path.name)
def test_r31_every_cpython_email_test_file_parses_without_exception(path):
    result = parse_message(path.read_bytes())
    assert isinstance(result, ParsedMessage | Quarantined)
    if isinstance(result, ParsedMessage):
        assert isinstance(result.body, MessageBody | Quarantined)
    if path.name.startswith("msg_"):
        # These are real (if odd) messages: they must be read, not merely survived.
        assert isinstance(result, ParsedMessage)
        assert isinstance(result.body, MessageBody)


def test_the_cpython_corpus_is_present():
    assert len(list(CPYTHON_EMAIL_DATA.glob("msg_*.txt"))) >= 40


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4_000))
def test_r31_fuzz_random_bytes_never_raise(raw):
    result = parse_message(raw)
    if isinstance(result, ParsedMessage):
        assert isinstance(result.body, MessageBody | Quarantined)


MIME_FRAGMENTS = [
    b"From: =?utf-8?q?J=C3=B6rg?= <j@example.org>\r\n",
    b'To: a@b, (comment, x) c@d, "q,uoted" <e@f>\r\n',
    b"Subject: =?utf-8?b?w6TDtsO8?= =?bogus?q?x?=\r\n",
    b"Date: Mon, 32 Foo 99999 25:61:61 +9999\r\n",
    b'Content-Type: multipart/mixed; boundary="b"\r\n',
    b"Content-Type: multipart/alternative; boundary=c\r\n",
    b"Content-Type: message/rfc822\r\n",
    b"Content-Type: text/plain; charset=x-unknown\r\n",
    b"Content-Type: text/html; charset=unicode_escape\r\n",
    b"Content-Type: text/calendar; method=request\r\n",
    b"Content-Disposition: attachment; filename*0*=utf-8''%E2%80%AE; filename*1=gnp.exe\r\n",
    b"Content-Transfer-Encoding: base64\r\n",
    b"Content-Transfer-Encoding: quoted-printable\r\n",
    b"Content-ID: <x@y>\r\n",
    b" folded continuation\r\n",
    b"\r\n",
    b"--b\r\n",
    b"--b--\r\n",
    b"--c\r\n",
    b"--c--\r\n",
    b"=E2=82=AC=\r\n",
    b"QUJD====\r\n",
    b"<p onclick=x>\xff\xfe</p>\r\n",
    b"\x00\x80\r",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(MIME_FRAGMENTS), max_size=60))
def test_r31_fuzz_mime_shaped_input_never_raises(fragments):
    result = parse_message(b"".join(fragments))
    if isinstance(result, ParsedMessage):
        assert isinstance(result.body, MessageBody | Quarantined)


# --- the pathological corpus ----------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("deep_multipart", QuarantineReason.MIME_TOO_DEEP),
        ("deep_embedded_messages", QuarantineReason.MIME_TOO_DEEP),
        ("many_parts", QuarantineReason.TOO_MANY_PARTS),
        ("many_to_lines", QuarantineReason.HEADER_TOO_LARGE),
        ("many_addresses", QuarantineReason.TOO_MANY_ADDRESSES),
        ("long_header_line", QuarantineReason.HEADER_TOO_LARGE),
        ("long_body_line", QuarantineReason.LINE_TOO_LONG),
        ("rfc2231_parameters", QuarantineReason.TOO_MANY_PARAMETERS),
        ("base64_bomb", QuarantineReason.TOO_LARGE),
    ],
)
def test_r31_pathological_message_is_quarantined(name, reason):
    assert quarantine_reason(pathological.CORPUS[name]()) == reason


@pytest.mark.timeout(30)
def test_r31_header_field_count_is_limited_even_when_the_block_is_small():
    raw = pathological.many_to_lines(2_000)
    assert len(raw) < DEFAULT_LIMITS.max_header_bytes
    assert quarantine_reason(raw) == QuarantineReason.TOO_MANY_HEADER_FIELDS


@pytest.mark.timeout(30)
def test_r31_one_long_header_field_is_limited_even_when_the_block_limit_is_raised():
    raw = pathological.long_header_line()
    assert quarantine_reason(raw, Limits(max_header_bytes=4 << 20)) == QuarantineReason.HEADER_FIELD_TOO_LONG


@pytest.mark.timeout(30)
def test_r31_decoded_part_size_is_checked_while_parsing():
    raw = pathological.base64_bomb(decoded_size=2 << 20)
    limits = Limits(max_decoded_part_bytes=1 << 20)
    headers = parse_message(raw, limits=limits)
    assert isinstance(headers, ParsedMessage)  # nothing in the raw bytes is over a limit...
    assert isinstance(headers.body, Quarantined)  # ...until the part is decoded
    assert headers.body.reason == QuarantineReason.PART_TOO_LARGE


def test_r31_quarantine_detail_never_contains_content():
    raw = pathological.long_header_line().replace(b"a" * 100, b"SECRET-CANARY" + b"a" * 87, 1)
    result = parse_message(raw)
    assert isinstance(result, Quarantined)
    assert "SECRET" not in result.detail


def test_r31_limits_hold_within_rlimits_in_a_separate_worker():
    """The worker survives the whole corpus under CPU and address-space limits."""
    program = (
        "import json\n"
        "from postroom.mime.parse import ParsedMessage, parse_message\n"
        "from postroom.mime.tests.pathological import CORPUS\n"
        "reasons = {}\n"
        "for name, make in CORPUS.items():\n"
        "    result = parse_message(make())\n"
        "    result = result.body if isinstance(result, ParsedMessage) else result\n"
        "    reasons[name] = str(result.reason)\n"
        "print(json.dumps(reasons))\n"
    )

    def limit_resources():
        resource.setrlimit(resource.RLIMIT_CPU, (60, 60))
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    completed = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit_resources,
        env={**os.environ, "PYTHONPATH": str(WORKTREE)},
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert set(json.loads(completed.stdout)) == set(pathological.CORPUS)


# --- what a well-formed message yields ------------------------------------------------------


def test_headers_are_decoded():
    message = parsed(rich_message())
    assert message.subject == "Grüße — quarterly report 📈"
    assert message.from_ == (Mailbox("Jörg Müller", "joerg@example.de"),)
    assert message.to == (Mailbox("Ada", "ada@example.org"), Mailbox("", "bob@example.org"))
    assert message.cc == (Mailbox("Smith, Jane", "jane@example.org"),)
    assert message.reply_to == (Mailbox("", "team@example.de"),)
    assert message.date == datetime(2026, 11, 21, 9, 30, tzinfo=UTC)
    assert message.message_id == "<report-42@example.de>"
    assert message.in_reply_to == "<report-41@example.org>"
    assert message.references == ("<report-40@example.de>", "<report-41@example.org>")
    assert message.auto_submitted == "auto-generated"
    assert message.list_id == "reports.example.de"
    assert message.list_unsubscribe == ("mailto:leave@example.de", "https://example.de/leave")
    assert message.is_automated


def test_body_parts_are_sorted_into_text_html_inline_attachments_and_calendar():
    body = body_of(rich_message())
    assert body.text == "Hallo,\nanbei der Bericht.\n"
    assert body.html is not None
    assert 'src="cid:chart@example.de"' in body.html
    assert set(body.inline_parts) == {"chart@example.de"}
    assert body.inline_parts["chart@example.de"].content == b"\x89PNG chart"
    pdf, invitation = body.attachments  # the calendar was sent as an attachment too
    assert invitation.content_type == "text/calendar"
    assert (pdf.filename, pdf.content_type, pdf.size) == ("Bericht März.pdf", "application/pdf", len(b"%PDF-1.7 report"))
    assert pdf.sha256 == hashlib.sha256(b"%PDF-1.7 report").hexdigest()
    [calendar] = body.calendar_parts
    assert calendar.method == "REQUEST"
    assert "BEGIN:VCALENDAR" in calendar.text


def test_headers_are_read_without_parsing_the_body():
    message = parsed(rich_message())
    assert "body" not in message.__dict__
    assert isinstance(message.body, MessageBody)
    assert "body" in message.__dict__


def _stdlib_header_items(block: bytes) -> tuple[list[tuple[str, str]], list[str]]:
    message = BytesParser(policy=policy.default).parsebytes(block + b"\r\n\r\n", headersonly=True)
    return list(message.raw_items()), [type(defect).__name__ for defect in message.defects]


HEADER_PIECES = [
    b"Subject: hi",
    b"From: a@example.org",
    b"From x",
    b"From ",
    b" folded",
    b"\tfolded",
    b":no name",
    b"no colon",
    b"X-\xff: v\xe9",
    b"\r\n",
    b"\n",
    b"\r",
    b"\r\n ",
    b"To:",
    b"A:b:c",
    b"  ",
    b"Content-Type: text/plain",
    b"\x00",
    b"=?utf-8?q?x?=",
    b"\r\r\n",
]


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(HEADER_PIECES), max_size=12))
def test_header_blocks_are_read_as_the_stdlib_reads_them(pieces):
    block = b"".join(pieces)
    assert header_items(block) == _stdlib_header_items(block)


def test_header_blocks_of_real_messages_are_read_as_the_stdlib_reads_them():
    for raw in [rich_message(), *(path.read_bytes() for path in sorted(CPYTHON_EMAIL_DATA.glob("msg_*.txt")))]:
        block = raw.split(b"\n\n", 1)[0].rstrip(b"\r")
        assert header_items(block) == _stdlib_header_items(block), raw[:80]


def test_the_header_pass_leaves_the_mime_structure_to_the_body():
    deep = pathological.deep_multipart()
    headers = parse_headers(deep)
    assert isinstance(headers, ParsedMessage)
    assert isinstance(parse_message(deep), Quarantined)
    # Reading the body of a header pass's result checks the structure before the body is parsed.
    assert isinstance(headers.body, Quarantined)
    assert headers.body.reason == QuarantineReason.MIME_TOO_DEEP


def test_r31_the_header_pass_checks_sizes_and_header_limits_first():
    for raw in [pathological.long_header_line(), pathological.many_to_lines(), pathological.many_addresses(), b"x" * (51 << 20)]:
        headers, message = parse_headers(raw), parse_message(raw)
        assert isinstance(headers, Quarantined)
        assert headers == message
    many_fields = b"".join(b"X-%d: v\r\n" % number for number in range(1_500)) + b"\r\nbody"
    assert parse_headers(many_fields) == Quarantined(QuarantineReason.TOO_MANY_HEADER_FIELDS, "1500 header fields, limit 1000")


def test_the_header_pass_reads_what_parse_message_reads():
    message = parsed(rich_message())
    headers = parse_headers(rich_message())
    assert isinstance(headers, ParsedMessage)
    assert headers == message
    assert headers.is_automated is message.is_automated


def _digest_as_first_defined(raw: bytes) -> str:
    # The definition the stored digests were made with; content_digest must keep giving the same.
    body = raw.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in raw else raw
    body = b"\n".join(line.rstrip() for line in body.replace(b"\r\n", b"\n").split(b"\n")).strip(b"\n")
    return hashlib.sha256(body).hexdigest()


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.sampled_from([b"a", b" ", b"\t", b"\r", b"\n", b"\r\n", b"\x0b", b"\x0c", b"\x00", b"\xa0", b"\x85"]), max_size=16))
def test_content_digests_are_those_of_the_first_definition(pieces):
    raw = b"Subject: x\r\n\r\n" + b"".join(pieces)
    assert content_digest(raw) == _digest_as_first_defined(raw)


def test_content_digests_ignore_line_endings_and_trailing_spaces():
    digest = content_digest(b"Subject: a\r\n\r\nHello  \r\nthere\t\r\n\r\n")
    assert digest == content_digest(b"Subject: b\n\nHello\nthere\n")
    assert digest == hashlib.sha256(b"Hello\nthere").hexdigest()
    assert digest != content_digest(b"Subject: b\n\nHello\nthere!\n")


def test_forwarded_message_is_one_attachment_named_after_its_subject():
    inner = EmailMessage()
    inner["Subject"] = "Original/question"
    inner["From"] = "x@example.org"
    inner.set_content("inner body\n")
    outer = EmailMessage()
    outer["Subject"] = "Fwd"
    outer.set_content("see below\n")
    outer.add_attachment(inner)
    body = body_of(bytes(outer))
    assert body.text == "see below\n"
    [attachment] = body.attachments
    assert attachment.content_type == "message/rfc822"
    assert attachment.filename == "question.eml"
    assert b"inner body" in attachment.content


# --- hostile headers ------------------------------------------------------------------------


def test_r33_ambiguous_address_list_is_dropped_with_a_defect():
    message = parsed(b"From: alice@example.com <bob@evil.example>\r\nTo: x@example.org\r\n\r\nhi\r\n")
    assert message.from_ == ()
    assert any(defect.startswith("from:") for defect in message.defects)
    assert message.to == (Mailbox("", "x@example.org"),)


def test_r33_encoded_words_cannot_split_an_address_list():
    message = parsed(b"From: =?utf-8?q?Bank=2C_Support?= <real@evil.example>\r\n\r\nhi\r\n")
    assert message.from_ == (Mailbox("Bank, Support", "real@evil.example"),)
    hidden_address = parsed(b"From: =?utf-8?q?=3Cceo@bank.example=3E?= <real@evil.example>\r\n\r\nhi\r\n")
    assert hidden_address.from_ == ()
    assert "from: ambiguous address list ignored" in hidden_address.defects


def test_r33_encoded_line_breaks_do_not_survive_into_decoded_headers():
    message = parsed(b"Subject: =?utf-8?q?hello=0D=0ABcc:_evil@example.org?=\r\n\r\nhi\r\n")
    assert message.subject == "hello Bcc: evil@example.org"


def test_eight_bit_headers_are_read_as_utf8_or_windows_1252():
    assert parsed("Subject: Grüße\r\n\r\nx".encode()).subject == "Grüße"
    assert parsed("Subject: Grüße\r\n\r\nx".encode("cp1252")).subject == "Grüße"


def test_dates_are_aware_utc_or_none():
    assert parsed(b"Date: Sat, 21 Nov 2026 10:30:00 -0000\r\n\r\nx").date == datetime(2026, 11, 21, 10, 30, tzinfo=UTC)
    broken = parsed(b"Date: someday\r\n\r\nx")
    assert broken.date is None
    assert "date: unparseable" in broken.defects


def test_unknown_and_refused_charsets_fall_back_to_utf8_with_a_defect():
    for charset in (b"x-unknown", b"unicode_escape", b"base64"):
        body = body_of(b"Content-Type: text/plain; charset=" + charset + b"\r\n\r\nGr\xc3\xbc\xc3\x9fe \\u0041\r\n")
        assert body.text == "Grüße \\u0041\n"
        assert any("charset" in defect for defect in body.defects)


def test_attachment_names_are_sanitised():
    message = EmailMessage()
    message.set_content("x")
    for name in ("../../x.html", "\u202egnp.exe"):
        message.add_attachment(b"<script>", maintype="text", subtype="html", filename=name)
    assert [attachment.filename for attachment in body_of(bytes(message)).attachments] == ["x.html", "gnp.exe"]


# Inputs that made the stdlib's header parsers take seconds before the header limits existed.
SLOW_HEADERS = {
    "encoded_word_subject": b"Subject: " + b"=?utf-8?q?a?= " * 9_000,
    "angle_brackets_in_to": b"To: " + b"<" * 120_000,
    "quotes_in_to": b"To: " + b'"a' * 60_000,
    "parameters_in_content_type": b"Content-Type: text/plain; " + b"; ".join(b'p%d="%s"' % (i, b"x" * 1000) for i in range(99)),
    "escapes_in_charset": b'Content-Type: text/plain; charset="' + b'\\"' * 60_000 + b'"',
    "encoded_words_in_filename": b'Content-Type: application/pdf\r\nContent-Disposition: attachment; filename="'
    + b"=?utf-8?q?a?=" * 9_000
    + b'"',
}


@pytest.mark.timeout(10)
@pytest.mark.parametrize("name", SLOW_HEADERS)
def test_r31_slow_header_inputs_stay_fast(name):
    raw = b"From: a@example.org\r\n" + SLOW_HEADERS[name] + b"\r\n\r\nbody\r\n"
    result = parse_message(raw)
    if isinstance(result, ParsedMessage):
        assert isinstance(result.body, MessageBody | Quarantined)


def test_r31_over_long_mime_headers_are_quarantined_while_parsing():
    raw = b"From: a@example.org\r\n" + SLOW_HEADERS["encoded_words_in_filename"] + b"\r\n\r\nbody\r\n"
    result = parse_message(raw)
    assert isinstance(result, ParsedMessage)
    assert isinstance(result.body, Quarantined)
    assert result.body.reason == QuarantineReason.HEADER_FIELD_TOO_LONG


def test_over_long_subjects_are_cut_with_a_defect():
    message = parsed(b"Subject: " + b"a" * 20_000 + b"\r\n\r\nbody\r\n")
    assert len(message.subject) == 16 * 1024
    assert "subject: cut to 16384 characters" in message.defects
