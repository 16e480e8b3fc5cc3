"""A response inserted into the composer: filled in by the render endpoint, its attachment sent
with the message to a real SMTP peer (aiosmtpd)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.urls import reverse

from postroom.api.tests.helpers import ApiClient
from postroom.conftest import Cast
from postroom.conversations.models import Conversation
from postroom.mailboxes.models import Mailbox
from postroom.outbox.models import OutgoingMessage
from postroom.outbox.tests.test_send import parsed
from postroom.responses import actions
from postroom.responses.tests.conftest import Responses
from postroom.testing.smtp import SmtpPeer

pytestmark = pytest.mark.django_db

POLICY_PDF = b"%PDF-1.4 refund policy\n" * 40


def test_a_team_response_is_inserted_into_a_reply_and_its_attachment_arrives(
    cast: Cast, responses: Responses, mailbox: Mailbox, conversation: Conversation, client_as: Any,
    smtp_peer_requiring_auth: SmtpPeer, run_due: Callable[[], int], django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    actions.response_attachments_add(
        actor=cast.bob_membership, response=responses.support_team,
        files=[actions.NewAttachment(filename="Refund policy.pdf", content_type="application/pdf", content=POLICY_PDF)],
    )  # fmt: skip
    client = client_as(cast.alice)
    reply_url = reverse("outbox:reply", args=["acme", conversation.pk])
    page = client.get(reply_url).content.decode()
    assert "data-response-picker" in page
    assert "Refund" in page
    assert 'data-target="#composer-body"' in page

    # What the picker does: render for the conversation (no To typed yet), then insert the text.
    rendered = (
        ApiClient(cast.alice)
        .post(
            f"/orgs/acme/responses/{responses.support_team.pk}/render",
            {"conversation_id": str(conversation.pk), "inputs": {"Order number": "4711"}},
        )
        .json()
    )
    assert rendered["text"] == "Hi Dana, order 4711."
    [attachment] = rendered["attachments"]

    with django_capture_on_commit_callbacks(execute=True):
        sent = client.post(reply_url, {
            "mailbox": str(mailbox.pk), "to": "Dana Customer <dana@customer.example>", "subject": "Re: Bestellung",
            "text": rendered["text"], "response_attachment": [attachment["id"]],
        })  # fmt: skip
    assert sent.status_code == 302
    assert run_due() == 1
    [received] = smtp_peer_requiring_auth.messages
    message = parsed(received.content)
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    assert body.get_content().strip() == "Hi Dana, order 4711."
    [arrived] = list(message.iter_attachments())
    assert arrived.get_filename() == "Refund policy.pdf"
    assert arrived.get_content() == POLICY_PDF


def test_an_attachment_of_a_response_the_sender_cannot_see_is_refused(
    cast: Cast, responses: Responses, mailbox: Mailbox, client_as: Any, django_capture_on_commit_callbacks: Any
) -> None:
    [foreign] = actions.response_attachments_add(
        actor=cast.bob_membership, response=responses.bob_personal,
        files=[actions.NewAttachment(filename="private.txt", content_type="text/plain", content=b"Bob's only")],
    )  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        refused = client_as(cast.alice).post(reverse("outbox:new", args=["acme"]), {
            "mailbox": str(mailbox.pk), "to": "dana@customer.example", "subject": "Hi", "text": "x", "response_attachment": [str(foreign.pk)],
        })  # fmt: skip
    assert refused.status_code == 200
    assert "no longer available" in " ".join(refused.context["form"].non_field_errors())
    assert not OutgoingMessage.objects.exists()
