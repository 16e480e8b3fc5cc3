"""message_ingest: idempotence, deduplication across mailboxes, attachments, quarantine."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage

import pytest

from postroom.conversations.ingest import message_ingest
from postroom.conversations.models import Attachment, Conversation, Message, MessageCopy
from postroom.conversations.tests.conftest import build_raw, inbox_of
from postroom.core.blobs import blob_get
from postroom.mailboxes.models import Mailbox

pytestmark = pytest.mark.django_db


def ingest(mailbox: Mailbox, uid: int, raw: bytes, **options: object) -> MessageCopy:
    return message_ingest(mailbox=mailbox, folder=inbox_of(mailbox), uidvalidity=7, uid=uid, raw=raw, **options)  # type: ignore[arg-type]


def test_a_message_is_stored_sealed_and_readable(alice_mailbox: Mailbox) -> None:
    raw = build_raw(cc="Bob <bob@acme.test>", html="<p>Hello <b>there</b></p>")
    copy = ingest(alice_mailbox, 1, raw, flags=[b"\\Seen"])
    message = Message.objects.get()
    assert copy.message == message
    assert copy.seen
    assert not copy.flagged
    assert message.subject == "Order 1234 never arrived"
    assert message.addresses is not None
    assert message.addresses["from"] == [["Dana Customer", "dana@customer.example"]]
    assert message.addresses["cc"] == [["Bob", "bob@acme.test"]]
    assert message.snippet == "Hello, my order never arrived."
    assert message.text_body == "Hello,\nmy order never arrived.\n"
    assert message.html_body is not None
    assert "<b>there</b>" in message.html_body
    assert message.sent_at == datetime(2026, 3, 2, 9, 30).astimezone().astimezone(UTC)
    assert blob_get(copy.mailbox.key_scope(), message.raw_blob) == raw
    assert message.quarantine_reason == ""
    conversation = message.conversation
    assert conversation.subject == "Order 1234 never arrived"
    assert conversation.message_count == 1


def test_the_same_uid_twice_is_one_copy_with_its_flags_updated(alice_mailbox: Mailbox) -> None:
    raw = build_raw()
    first = ingest(alice_mailbox, 1, raw)
    second = ingest(alice_mailbox, 1, raw, flags=["\\Flagged", "\\Answered"], modseq=44)
    assert first.pk == second.pk
    assert MessageCopy.objects.count() == 1
    assert Message.objects.count() == 1
    second.refresh_from_db()
    assert second.flagged
    assert second.answered
    assert not second.seen
    assert second.modseq == 44


def test_the_same_message_in_two_mailboxes_is_one_message_with_two_copies(alice_mailbox: Mailbox, bob_mailbox: Mailbox) -> None:
    # Each server adds its own trace headers and may use other line endings.
    raw = build_raw(to="alice@acme.test", cc="bob@acme.test")
    ingest(alice_mailbox, 1, b"Delivered-To: alice@acme.test\r\n" + raw)
    ingest(bob_mailbox, 90, b"Delivered-To: bob@acme.test\n" + raw.replace(b"\r\n", b"\n"))
    assert Message.objects.count() == 1
    assert Conversation.objects.count() == 1
    assert set(MessageCopy.objects.values_list("mailbox_id", flat=True)) == {alice_mailbox.pk, bob_mailbox.pk}
    assert Conversation.objects.get().message_count == 1


def test_the_same_message_in_another_organization_is_stored_there_separately(alice_mailbox: Mailbox, charlie_mailbox: Mailbox) -> None:
    raw = build_raw()
    ingest(alice_mailbox, 1, raw)
    ingest(charlie_mailbox, 1, raw)
    assert Message.objects.count() == 2
    assert Message.objects.filter(organization=alice_mailbox.organization).get().message_id_index != (
        Message.objects.filter(organization=charlie_mailbox.organization).get().message_id_index
    )


def test_a_message_without_message_id_is_deduplicated_by_content(alice_mailbox: Mailbox, bob_mailbox: Mailbox) -> None:
    raw = build_raw(message_id=None)
    ingest(alice_mailbox, 1, raw)
    ingest(bob_mailbox, 1, raw)
    ingest(bob_mailbox, 2, build_raw(message_id=None, text="Something else entirely.\n"))
    assert Message.objects.count() == 2
    assert MessageCopy.objects.count() == 3


def test_a_forged_message_id_does_not_hide_the_new_message_behind_the_old_one(alice_mailbox: Mailbox, bob_mailbox: Mailbox) -> None:
    ingest(alice_mailbox, 1, build_raw(text="The original.\n"))
    forged = build_raw(sender="mallory@evil.example", text="Something new.\n")  # same Message-ID
    copy = ingest(bob_mailbox, 1, forged)
    assert Message.objects.count() == 2
    assert copy.message.text_body == "Something new.\n"
    assert copy.message.message_id_index == ""
    # A teammate receiving the forged message too gets the same (forged) message, not a third.
    ingest(alice_mailbox, 2, forged)
    assert Message.objects.count() == 2


def test_attachments_are_stored_once_per_organization(alice_mailbox: Mailbox, bob_mailbox: Mailbox) -> None:
    content = b"%PDF-1.4 an invoice\n"
    ingest(alice_mailbox, 1, build_raw(attachments=(("invoice.pdf", "application/pdf", content),)))
    ingest(
        bob_mailbox,
        1,
        build_raw(message_id="<other@customer.example>", text="Again.\n", attachments=(("copy.pdf", "application/pdf", content),)),
    )
    attachments = list(Attachment.objects.order_by("filename_sealed"))
    assert len(attachments) == 2
    assert attachments[0].blob == attachments[1].blob
    assert {attachment.filename for attachment in attachments} == {"invoice.pdf", "copy.pdf"}
    assert blob_get(alice_mailbox.key_scope(), attachments[0].blob) == content
    assert all(message.has_attachments for message in Message.objects.all())


def test_inline_images_are_indexed_by_content_id(alice_mailbox: Mailbox) -> None:
    message = EmailMessage()
    message["Subject"] = "Logo"
    message["From"] = "dana@customer.example"
    message["Message-ID"] = "<inline@customer.example>"
    message.set_content("See the logo")
    message.add_alternative('<p><img src="cid:logo@x"></p>', subtype="html")
    html_part = list(message.iter_parts())[1]
    assert isinstance(html_part, EmailMessage)
    html_part.add_related(b"\x89PNG fake", maintype="image", subtype="png", cid="<logo@x>")
    ingest(alice_mailbox, 1, message.as_bytes())
    attachment = Attachment.objects.get()
    assert attachment.is_inline
    assert attachment.content_id
    assert len(attachment.content_id) == 64
    assert not Message.objects.get().has_attachments


def test_a_message_breaking_a_limit_is_stored_raw_and_quarantined(alice_mailbox: Mailbox) -> None:
    raw = b"Subject: deep\r\nFrom: x@example.test\r\nMessage-ID: <deep@example.test>\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n"
    raw += b"".join(f"--b{depth}\r\nContent-Type: multipart/mixed; boundary=b{depth + 1}\r\n\r\n".encode() for depth in range(150))
    copy = ingest(alice_mailbox, 1, raw)
    message = copy.message
    assert message.quarantine_reason == "mime_too_deep"
    assert blob_get(alice_mailbox.key_scope(), message.raw_blob) == raw
    assert message.text_body is None
    assert message.html_body is None


def test_a_message_whose_body_fails_keeps_its_headers(alice_mailbox: Mailbox) -> None:
    # Headers within every limit, and an attachment whose Content-Disposition is over the limit
    # of parameters: only the body pass finds out.
    parameters = "".join(f'; p{number}="v"' for number in range(150))
    raw = build_raw(attachments=(("notes.txt", "text/plain", b"notes"),)).replace(
        b'Content-Disposition: attachment; filename="notes.txt"',
        f'Content-Disposition: attachment; filename="notes.txt"{parameters}'.encode(),
    )
    assert parameters.encode() in raw
    message = ingest(alice_mailbox, 1, raw).message
    assert message.quarantine_reason == "too_many_parameters"
    assert not message.body_pending
    assert message.subject == "Order 1234 never arrived"
    assert (message.addresses or {})["from"] == [["Dana Customer", "dana@customer.example"]]
    assert message.text_body is None


def test_garbage_is_stored_without_raising(alice_mailbox: Mailbox) -> None:
    for uid, raw in enumerate([b"", b"\x00\xff" * 100, b"Subject: =?utf-8?q?broken\r\n\r\n", b'From: "\r\n\r\n<'], start=1):
        copy = ingest(alice_mailbox, uid, raw)
        assert blob_get(alice_mailbox.key_scope(), copy.message.raw_blob) == raw
