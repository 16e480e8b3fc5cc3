"""Sending through the REST API (``postroom.conversations.api``) with a token, end to end: the
reply is queued, the worker sends it through a real SMTP peer (aiosmtpd) with the threading
headers, stores the Sent copy on a real Dovecot, and the status endpoint follows it."""

from __future__ import annotations

from collections.abc import Callable
from email import policy
from email.parser import BytesParser
from typing import Any

import pytest

from postroom.accounts.api_tokens import api_token_create
from postroom.api.tests.helpers import ApiClient
from postroom.conftest import Cast
from postroom.conversations.models import Conversation
from postroom.mailboxes.models import Mailbox
from postroom.outbox.tests.conftest import CUSTOMER_MESSAGE_ID, THREAD_ROOT_ID
from postroom.testing.smtp import SmtpPeer

pytestmark = pytest.mark.django_db


def test_a_reply_all_sent_with_a_token_arrives_threaded_and_its_status_follows(
    cast: Cast, mailbox: Mailbox, conversation: Conversation, smtp_peer_requiring_auth: SmtpPeer,
    run_due: Callable[[], int], django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    client = ApiClient(token=api_token_create(user=cast.alice, name="Script", scope="write", expires_at=None).token)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/orgs/acme/conversations/{conversation.pk}/messages",
            {"mailbox_id": str(mailbox.pk), "kind": "reply_all", "text": "Sie ist unterwegs.\n"},
        )
    assert response.status_code == 202
    queued = response.json()
    assert (queued["status"], queued["kind"], queued["attempts"]) == ("queued", "reply_all", 0)

    assert run_due() == 1
    [received] = smtp_peer_requiring_auth.messages
    # Reply all: the sender, and the other recipients but the mailbox's own address.
    assert set(received.recipients) == {"dana@customer.example", "bob@acme.test", "erin@customer.example"}
    message = BytesParser(policy=policy.default).parsebytes(received.content)
    assert message["In-Reply-To"] == CUSTOMER_MESSAGE_ID
    assert message["References"].split() == [THREAD_ROOT_ID, CUSTOMER_MESSAGE_ID]
    assert message["Subject"] == "Re: Bestellung für Müller"

    status = client.get(f"/orgs/acme/outgoing/{queued['id']}").json()
    assert (status["status"], status["attempts"], status["sent_copy"]) == ("sent", 1, "stored")
    assert status["sent_at"] is not None
    # The Sent copy joined the conversation: the API lists it as our own message.
    messages = client.get(f"/orgs/acme/conversations/{conversation.pk}/messages").json()["items"]
    assert [item["direction"] for item in messages] == ["inbound", "outbound"]
    assert messages[-1]["text"].startswith("Sie ist unterwegs.")
