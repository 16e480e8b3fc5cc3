"""Conversation list and view: access by the cast, escaping, the sandboxed HTML frame, downloads."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from postroom.audit.models import AuditEvent
from postroom.conftest import Cast
from postroom.conversations.ingest import IngestItem, message_ingest, messages_ingest_batch
from postroom.conversations.models import Attachment, Message
from postroom.conversations.tests.conftest import build_raw, inbox_of
from postroom.mailboxes.models import Mailbox

pytestmark = pytest.mark.django_db

HOSTILE_HTML = (
    '<p>Hi</p><script>window.__xss=1</script><img src="https://tracker.evil.example/p.gif" onerror="alert(1)">'
    '<a href="javascript:alert(1)">click</a><svg><style><img src=x onerror=alert(2)></style></svg>'
)


def ingest(mailbox: Mailbox, uid: int, raw: bytes) -> Message:
    return message_ingest(mailbox=mailbox, folder=inbox_of(mailbox), uidvalidity=7, uid=uid, raw=raw).message


@pytest.fixture
def alices_message(alice_mailbox: Mailbox) -> Message:
    raw = build_raw(
        subject='<img src=x onerror=alert("subject")>',
        sender='"<script>alert(1)</script>" <dana@customer.example>',
        html=HOSTILE_HTML,
        attachments=(("../../x.html", "text/html", b"<script>alert(1)</script>"),),
    )
    return ingest(alice_mailbox, 1, raw)


def _urls(cast: Cast, message: Message) -> dict[str, str]:
    slug = cast.org_a.slug
    attachment = Attachment.objects.get(message=message)
    return {
        "detail": reverse("conversations:detail", args=[slug, message.conversation_id]),
        "frame": reverse("conversations:html_frame", args=[slug, message.pk]),
        "raw": reverse("conversations:raw", args=[slug, message.pk]),
        "attachment": reverse("conversations:attachment", args=[slug, attachment.pk]),
    }


def test_the_owner_of_the_mailbox_sees_the_conversation_escaped(cast: Cast, client_as, alices_message: Message) -> None:  # type: ignore[no-untyped-def]
    client = client_as(cast.alice)
    listing = client.get(reverse("conversations:list", args=[cast.org_a.slug]))
    assert listing.status_code == 200
    page = listing.content.decode()
    assert "&lt;img src=x onerror=alert(&quot;subject&quot;)&gt;" in page
    assert "<img src=x" not in page
    assert "Hello, my order never arrived." in page  # the snippet
    detail = client.get(_urls(cast, alices_message)["detail"])
    assert detail.status_code == 200
    html = detail.content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert(1)" not in html
    sandbox = re.search(r'<iframe class="message-frame" sandbox="([^"]*)"', html)
    assert sandbox is not None
    assert set(sandbox.group(1).split()) == {"allow-popups", "allow-popups-to-escape-sandbox"}  # links open in a new tab; no script
    assert "allow-scripts" not in html
    assert "allow-same-origin" not in html
    assert "x.html" in html  # the attachment is listed under its sanitised name
    assert "../" not in html.split("attachment-list")[1]


@pytest.mark.parametrize("who", ["bob", "carol", "charlie"])
def test_r28_other_members_and_outsiders_get_404_everywhere(cast: Cast, client_as, alices_message: Message, who: str) -> None:  # type: ignore[no-untyped-def]
    client = client_as(getattr(cast, who))
    slug = cast.org_a.slug if who != "charlie" else cast.org_b.slug
    for name, url in _urls(cast, alices_message).items():
        assert client.get(url).status_code == 404, name
        assert client.get(url.replace(f"/o/{cast.org_a.slug}/", f"/o/{slug}/")).status_code == 404, name
    listing = client.get(reverse("conversations:list", args=[slug]))
    assert listing.status_code == 200
    assert "onerror" not in listing.content.decode()
    assert not AuditEvent.objects.filter(action="message.attachment_downloaded").exists()


def test_a_teammate_in_cc_sees_the_same_conversation(cast: Cast, client_as, alice_mailbox: Mailbox, bob_mailbox: Mailbox) -> None:  # type: ignore[no-untyped-def]
    raw = build_raw(cc="bob@acme.test")
    message = ingest(alice_mailbox, 1, raw)
    ingest(bob_mailbox, 1, raw)
    for user in (cast.alice, cast.bob):
        assert client_as(user).get(reverse("conversations:detail", args=[cast.org_a.slug, message.conversation_id])).status_code == 200


def test_malformed_ids_are_404(cast: Cast, client_as) -> None:  # type: ignore[no-untyped-def]
    client = client_as(cast.alice)
    for url in ("/o/acme/conversations/not-a-uuid/", "/o/acme/conversations/messages/1/body/", "/o/acme/conversations/attachments/x/"):
        assert client.get(url).status_code == 404


def test_r28_the_html_frame_is_sanitised_and_locked_down(cast: Cast, client_as, alices_message: Message) -> None:  # type: ignore[no-untyped-def]
    response = client_as(cast.alice).get(_urls(cast, alices_message)["frame"])
    assert response.status_code == 200
    assert response["Content-Security-Policy"].startswith("default-src 'none'; style-src 'unsafe-inline'; img-src data:")
    assert "frame-ancestors 'self'" in response["Content-Security-Policy"]
    assert "script-src" not in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "SAMEORIGIN"
    assert response["X-Content-Type-Options"] == "nosniff"
    body = response.content.decode()
    assert "<p>Hi</p>" in body
    for dangerous in ("<script", "onerror", "javascript:", "tracker.evil.example"):
        assert dangerous not in body, dangerous


def test_other_pages_stay_unframeable(cast: Cast, client_as, alices_message: Message) -> None:  # type: ignore[no-untyped-def]
    response = client_as(cast.alice).get(_urls(cast, alices_message)["detail"])
    assert response["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]


def test_r32_attachment_download_headers_and_audit(cast: Cast, client_as, alices_message: Message) -> None:  # type: ignore[no-untyped-def]
    response = client_as(cast.alice).get(_urls(cast, alices_message)["attachment"])
    assert response.status_code == 200
    assert response.content == b"<script>alert(1)</script>"
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"].startswith('attachment; filename="x.html"')
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Security-Policy"].split(";")[0] == "sandbox"
    event = AuditEvent.objects.get(action="message.attachment_downloaded")
    assert event.actor == cast.alice
    assert "x.html" not in str(event.details)


def test_a_quarantined_message_is_shown_as_such_with_its_raw_source(cast: Cast, client_as, alice_mailbox: Mailbox) -> None:  # type: ignore[no-untyped-def]
    raw = b"Subject: broken\r\nFrom: x@example.test\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n"
    raw += b"".join(f"--b{depth}\r\nContent-Type: multipart/mixed; boundary=b{depth + 1}\r\n\r\n".encode() for depth in range(150))
    message = ingest(alice_mailbox, 1, raw)
    client = client_as(cast.alice)
    page = client.get(reverse("conversations:detail", args=[cast.org_a.slug, message.conversation_id])).content.decode()
    assert "could not be shown safely (mime_too_deep)" in page
    download = client.get(reverse("conversations:raw", args=[cast.org_a.slug, message.pk]))
    assert download.content == raw
    assert download["Content-Disposition"].startswith("attachment;")
    assert download["Content-Type"] == "application/octet-stream"


def test_plain_text_quotes_are_folded(cast: Cast, client_as, alice_mailbox: Mailbox) -> None:  # type: ignore[no-untyped-def]
    text = "Thanks!\n\nOn Mon, Dana wrote:\n> my order <b>never</b> arrived\n> see https://example.test/x\n"
    message = ingest(alice_mailbox, 1, build_raw(text=text))
    page = client_as(cast.alice).get(reverse("conversations:detail", args=[cast.org_a.slug, message.conversation_id])).content.decode()
    assert "<details" in page
    assert "&lt;b&gt;never&lt;/b&gt;" in page
    assert "<b>never</b>" not in page


def test_opening_a_conversation_before_the_body_pass_parses_its_bodies_once(cast: Cast, client_as, alice_mailbox: Mailbox) -> None:  # type: ignore[no-untyped-def]
    raw = build_raw(text="Plain words first\n", html="<p>Rich <b>words</b></p>", attachments=(("notes.txt", "text/plain", b"n"),))
    # The sync engine's path: stored from its headers, the body pass queued after the commit
    # (which this test's transaction never reaches).
    copies = messages_ingest_batch(mailbox=alice_mailbox, folder=inbox_of(alice_mailbox), uidvalidity=7, items=[IngestItem(uid=1, raw=raw)])
    message = Message.objects.get(pk=copies[1].message_id)
    assert message.body_pending
    client = client_as(cast.alice)
    listing = client.get(reverse("conversations:list", args=[cast.org_a.slug])).content.decode()
    assert "Order 1234 never arrived" in listing  # listed, threaded, before its body is read
    detail = client.get(reverse("conversations:detail", args=[cast.org_a.slug, message.conversation_id])).content.decode()
    assert "notes.txt" in detail
    frame = client.get(reverse("conversations:html_frame", args=[cast.org_a.slug, message.pk])).content.decode()
    assert "Rich <b>words</b>" in frame
    message.refresh_from_db()
    assert not message.body_pending
    assert message.snippet == "Plain words first"
    assert Attachment.objects.filter(message=message).count() == 1
    # Opened again: nothing is parsed or stored twice.
    client.get(reverse("conversations:detail", args=[cast.org_a.slug, message.conversation_id]))
    assert Attachment.objects.filter(message=message).count() == 1
