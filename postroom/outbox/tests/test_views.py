"""The composer, the outbox list, retry, and the conversation include; access is per member."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.template import Context, Template
from django.test import RequestFactory
from django.urls import reverse

from postroom.conftest import Cast
from postroom.conversations.models import Conversation
from postroom.mailboxes.models import Mailbox
from postroom.outbox.models import OutgoingMessage, OutgoingStatus
from postroom.outbox.tests.test_send import parsed, script
from postroom.testing.smtp import SmtpPeer

pytestmark = pytest.mark.django_db


def test_a_new_message_is_composed_queued_and_sent(
    cast: Cast, mailbox: Mailbox, client_as: Any, smtp_peer_requiring_auth: SmtpPeer, run_due: Callable[[], int],
    django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    client = client_as(cast.alice)
    assert client.get(reverse("outbox:new", args=["acme"])).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("outbox:new", args=["acme"]), {
            "mailbox": str(mailbox.pk), "to": "Dana <dana@customer.example>", "cc": "", "bcc": "boss@acme.test",
            "subject": "Angebot", "text": "Anbei das Angebot.",
            "attachments": SimpleUploadedFile("angebot.pdf", b"%PDF offer", content_type="application/pdf"),
        })  # fmt: skip
    assert response.status_code == 302
    run_due()
    [received] = smtp_peer_requiring_auth.messages
    assert sorted(received.recipients) == ["boss@acme.test", "dana@customer.example"]
    [attachment] = list(parsed(received.content).iter_attachments())
    assert attachment.get_filename() == "angebot.pdf"
    listing = client.get(reverse("outbox:list", args=["acme"])).content.decode()
    assert "Angebot" in listing
    assert "Sent" in listing


def test_r33_a_subject_with_a_line_break_is_shown_as_an_error_on_the_subject(
    cast: Cast, mailbox: Mailbox, client_as: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = client_as(cast.alice).post(reverse("outbox:new", args=["acme"]), {
            "mailbox": str(mailbox.pk), "to": "dana@customer.example", "subject": "Hi\r\nBcc: evil@attacker.example", "text": "x",
        })  # fmt: skip
    assert response.status_code == 200
    assert "line break" in " ".join(response.context["form"].errors["subject"])
    assert not OutgoingMessage.objects.exists()


def test_the_reply_page_is_prefilled_from_the_conversation(
    cast: Cast, mailbox: Mailbox, conversation: Conversation, client_as: Any
) -> None:
    response = client_as(cast.alice).get(reverse("outbox:reply", args=["acme", conversation.pk]) + "?kind=reply_all")
    assert response.status_code == 200
    form = response.context["form"]
    assert form.initial["to"] == '"Dana Customer" <dana@customer.example>'
    assert form.initial["cc"] == '"Bob" <bob@acme.test>, "Erin" <erin@customer.example>'
    assert form.initial["subject"] == "Re: Bestellung für Müller"
    assert "> Wo bleibt meine Bestellung?" in form.initial["text"]


def test_r21_others_cannot_answer_a_conversation_or_retry_a_message_they_do_not_own(
    cast: Cast, mailbox: Mailbox, conversation: Conversation, client_as: Any, smtp_peer_requiring_auth: SmtpPeer,
    run_due: Callable[[], int], django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    script(smtp_peer_requiring_auth, "554 5.7.1 Rejected")
    alice = client_as(cast.alice)
    with django_capture_on_commit_callbacks(execute=True):
        alice.post(reverse("outbox:reply", args=["acme", conversation.pk]) + "?kind=reply", {
            "mailbox": str(mailbox.pk), "to": "", "subject": "", "text": "Hallo",
        })  # fmt: skip
    run_due()
    outgoing = OutgoingMessage.objects.get()
    assert outgoing.status == OutgoingStatus.FAILED_PERMANENT
    reply_url = reverse("outbox:reply", args=["acme", conversation.pk])
    retry_url = reverse("outbox:retry", args=["acme", outgoing.pk])
    for outsider, slug in ((cast.charlie, "acme"), (cast.charlie, "beta"), (cast.bob, "acme")):
        client = client_as(outsider)
        assert client.get(reverse("outbox:reply", args=[slug, conversation.pk])).status_code == 404
        assert client.post(reverse("outbox:retry", args=[slug, outgoing.pk])).status_code == 404
        assert client.post(reply_url, {"mailbox": str(mailbox.pk), "to": "x@example.test", "text": "x"}).status_code == 404
        assert "Bestellung" not in client.get(reverse("outbox:list", args=["acme"])).content.decode()
    # Bob may compose in his organization, but never from Alice's mailbox.
    response = client_as(cast.bob).post(
        reverse("outbox:new", args=["acme"]), {"mailbox": str(mailbox.pk), "to": "x@example.test", "text": "x"}
    )
    assert response.status_code == 200
    assert "mailbox" in response.context["form"].errors
    assert OutgoingMessage.objects.count() == 1
    outgoing.refresh_from_db()
    assert outgoing.status == OutgoingStatus.FAILED_PERMANENT
    assert alice.post(retry_url).status_code == 302
    outgoing.refresh_from_db()
    assert outgoing.status == OutgoingStatus.QUEUED


def test_the_conversation_include_shows_a_permanent_failure_with_its_reason(
    cast: Cast, mailbox: Mailbox, conversation: Conversation, client_as: Any, smtp_peer_requiring_auth: SmtpPeer,
    run_due: Callable[[], int], django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    script(smtp_peer_requiring_auth, "550 5.1.1 Mailbox unavailable")
    with django_capture_on_commit_callbacks(execute=True):
        client_as(cast.alice).post(reverse("outbox:reply", args=["acme", conversation.pk]), {
            "mailbox": str(mailbox.pk), "to": "", "subject": "", "text": "Hallo",
        })  # fmt: skip
    run_due()
    request = RequestFactory().get("/")
    request.user = cast.alice
    html = Template("{% load outbox %}{% outbox_composer conversation %}").render(
        Context({"request": request, "conversation": conversation})
    )
    assert "Failed" in html
    assert "550 5.1.1 Mailbox unavailable" in html
    assert reverse("outbox:retry", args=["acme", OutgoingMessage.objects.get().pk]) in html
    assert "?kind=reply_all" in html
    request.user = cast.bob  # a teammate sees the reply links but not Alice's queue
    assert "Mailbox unavailable" not in Template("{% load outbox %}{% outbox_composer conversation %}").render(
        Context({"request": request, "conversation": conversation})
    )


def test_the_conversation_page_offers_reply_reply_all_and_forward(
    cast: Cast, mailbox: Mailbox, conversation: Conversation, client_as: Any
) -> None:
    page = client_as(cast.alice).get(reverse("conversations:detail", args=["acme", conversation.pk]))
    assert page.status_code == 200
    reply = reverse("outbox:reply", args=["acme", conversation.pk])
    for kind in ("reply", "reply_all", "forward"):
        assert f"{reply}?kind={kind}".encode() in page.content
