import smtplib
import socket
import threading
from email import policy

import pytest
from aiosmtpd.controller import Controller

from postroom.mime.addresses import Mailbox
from postroom.mime.build import OutgoingAttachment, build_message, envelope_recipients
from postroom.mime.parse import MessageBody, ParsedMessage, parse_message


def reply(**overrides):
    fields = {
        "from_": Mailbox("Jörg Müller", "joerg@example.de"),
        "to": [Mailbox("Ada, Lovelace", "ada@example.org")],
        "cc": [Mailbox("", "bob@example.org"), Mailbox("Ada again", "ADA@example.org")],
        "bcc": [Mailbox("Secret", "carol@example.net")],
        "subject": "Re: Grüße — Angebot für Q4",
        "text": "Hallo Ada,\n\nanbei das Angebot.\n\n-- \nJörg\n",
        "html": "<p>Hallo Ada,</p><p>anbei das Angebot.</p>",
        "attachments": [OutgoingAttachment("Angebot März.pdf", "application/pdf", b"%PDF-1.7 offer")],
        "in_reply_to": "<offer-1@example.org>",
        "references": ["<thread-0@example.org>", "<offer-1@example.org>"],
        "message_id_domain": "postroom.example.de",
        "extra_headers": {"Auto-Submitted": "no"},
    }
    return build_message(**(fields | overrides))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("subject", "x\r\nBcc: evil@example.net"),
        ("subject", "x\nBcc: evil@example.net"),
        ("subject", "x\rBcc: evil@example.net"),
        ("subject", "nul\x00byte"),
        ("subject", "line\u2028separator"),
        ("from_", Mailbox("Evil\r", "joerg@example.de")),
        ("from_", Mailbox("Jörg", "joerg@example.de\r\nRCPT TO:<evil@example.net>")),
        ("to", [Mailbox("Ada", "ada@example.org>\r\nBcc: evil@example.net")]),
        ("cc", [Mailbox("\n", "bob@example.org")]),
        ("bcc", [Mailbox("", "carol@example.net\x00")]),
        ("in_reply_to", "<a@b>\r\nBcc: evil@example.net"),
        ("references", ["<a@b>", "<c@d>\nX: y"]),
        ("extra_headers", {"X-Note": "fine\r\nBcc: evil@example.net"}),
        ("extra_headers", {"X-Note\r\nBcc": "evil@example.net"}),
    ],
)
def test_r33_line_breaks_and_nul_in_any_header_field_are_rejected(field, value):
    with pytest.raises(ValueError, match="control character"):
        reply(**{field: value})


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("to", [Mailbox("", "not-an-address")], "not of the form name@domain"),
        ("to", [Mailbox("", "a@b@c.example")], "not a plain email address"),
        ("to", [Mailbox("", "user name@example.org")], "not a plain email address"),
        ("to", [Mailbox("", "ülrich@example.org")], "non-ASCII local part"),
        ("to", [Mailbox("", "a@-bad-.example")], "domain|not a plain email address"),
        ("to", [], "at least one recipient"),
        ("in_reply_to", "no-brackets@example.org", "not a message id"),
        ("references", ["<a b@example.org>"], "not a message id"),
        ("extra_headers", {"Bcc": "evil@example.net"}, "cannot be set"),
        ("extra_headers", {"Subject": "second subject"}, "cannot be set"),
        ("extra_headers", {"X Space": "v"}, "cannot be set"),
        ("message_id_domain", "evil.example>", "not a host name"),
        ("attachments", [OutgoingAttachment("a.txt", "text/plain\r\nX: y", b"")], "type/subtype"),
    ],
)
def test_r33_malformed_addresses_ids_and_headers_are_rejected(field, value, error):
    overrides = {field: value} | ({"cc": [], "bcc": []} if field == "to" and not value else {})
    with pytest.raises(ValueError, match=error):
        reply(**overrides)


def test_r33_bcc_is_in_the_envelope_only():
    message = reply()
    assert "Bcc" not in message
    assert b"carol@example.net" not in message.as_bytes()
    assert envelope_recipients(message) == ["ada@example.org", "bob@example.org", "carol@example.net"]


def test_built_message_reparses_to_the_same_fields():
    message = reply()
    raw = message.as_bytes(policy=policy.SMTP)
    assert raw.isascii()
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    parsed = parse_message(raw)
    assert isinstance(parsed, ParsedMessage)
    assert parsed.subject == "Re: Grüße — Angebot für Q4"
    assert parsed.from_ == (Mailbox("Jörg Müller", "joerg@example.de"),)
    assert parsed.to == (Mailbox("Ada, Lovelace", "ada@example.org"),)
    assert parsed.cc == (Mailbox("", "bob@example.org"), Mailbox("Ada again", "ADA@example.org"))
    assert parsed.bcc == ()
    assert parsed.in_reply_to == "<offer-1@example.org>"
    assert parsed.references == ("<thread-0@example.org>", "<offer-1@example.org>")
    assert parsed.message_id is not None
    assert parsed.message_id.endswith("@postroom.example.de>")
    assert parsed.auto_submitted == "no"
    assert parsed.date is not None
    body = parsed.body
    assert isinstance(body, MessageBody)
    assert body.text == "Hallo Ada,\n\nanbei das Angebot.\n\n-- \nJörg\n"
    assert body.html == "<p>Hallo Ada,</p><p>anbei das Angebot.</p>\n"
    [attachment] = body.attachments
    assert (attachment.filename, attachment.content_type, attachment.content) == ("Angebot März.pdf", "application/pdf", b"%PDF-1.7 offer")


def test_non_ascii_headers_and_filenames_are_encoded():
    raw = reply().as_bytes(policy=policy.SMTP)
    assert b"=?utf-8?" in raw
    assert b"filename*=utf-8''Angebot%20M%C3%A4rz.pdf" in raw


def test_every_message_gets_its_own_message_id():
    assert reply()["Message-ID"] != reply()["Message-ID"]


def test_internationalised_domains_are_sent_in_idna():
    message = reply(to=[Mailbox("", "info@bücher.example")], cc=[], bcc=[])
    assert envelope_recipients(message) == ["info@xn--bcher-kva.example"]


def test_a_forwarded_message_is_attached_as_message_rfc822():
    forwarded = reply().as_bytes(policy=policy.SMTP)
    message = reply(attachments=[OutgoingAttachment("original.eml", "message/rfc822", forwarded)])
    parsed = parse_message(message.as_bytes(policy=policy.SMTP))
    assert isinstance(parsed, ParsedMessage)
    assert isinstance(parsed.body, MessageBody)
    [attachment] = parsed.body.attachments
    assert attachment.content_type == "message/rfc822"
    assert b"Subject: Re: =?utf-8?" in attachment.content


class CapturingHandler:
    def __init__(self):
        self.envelopes = []
        self.received = threading.Event()

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        self.received.set()
        return "250 OK"


def free_port() -> int:
    # Controller cannot listen on port 0: start() checks readiness by connecting to the port given.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def smtp_capture():
    handler = CapturingHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield port, handler
    controller.stop()


def test_r33_smtp_envelope_is_exactly_to_cc_bcc(smtp_capture):
    port, handler = smtp_capture
    message = reply()
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail("joerg@example.de", envelope_recipients(message), message.as_bytes(policy=policy.SMTP))
    assert handler.received.wait(10)
    [(mail_from, rcpt_tos, content)] = handler.envelopes
    assert mail_from == "joerg@example.de"
    assert rcpt_tos == ["ada@example.org", "bob@example.org", "carol@example.net"]
    assert b"carol@example.net" not in content
    assert b"\nBcc:" not in content
