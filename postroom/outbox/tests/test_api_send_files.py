"""Sending an HTML body and attachments through the REST API (issue #4): the JSON endpoints take
``html``; their ``…/multipart`` twins take the same JSON in the ``message`` field and files in
``attachments``. Every answer is checked against the OpenAPI document; what arrives at the real
SMTP peer (aiosmtpd) is read back: the HTML alternative (sanitised), the text, the file."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from postroom.accounts.api_tokens import api_token_create
from postroom.api.tests.helpers import API, ApiClient, checker
from postroom.conftest import Cast
from postroom.conversations.models import Conversation
from postroom.mailboxes.models import Mailbox
from postroom.outbox import actions
from postroom.outbox.models import OutgoingMessage
from postroom.outbox.tests.conftest import CUSTOMER_MESSAGE_ID
from postroom.outbox.tests.test_send import parsed
from postroom.testing.smtp import SmtpPeer

pytestmark = pytest.mark.django_db

PDF = b"%PDF-1.4 invoice 4711\n" + bytes(range(256)) * 40


def token_client(cast: Cast) -> ApiClient:
    return ApiClient(token=api_token_create(user=cast.alice, name="Script", scope="write", expires_at=None).token)


def post_multipart(client: ApiClient, path: str, data: dict[str, Any]) -> Any:
    url = API + path
    response = client.client.post(url, data, headers=client.headers)  # the test client encodes multipart/form-data
    checker().check("POST", url, response)
    return response


def test_the_multipart_operations_are_documented_as_multipart() -> None:
    document = checker().document
    for path in ("/api/v1/orgs/{slug}/messages/multipart", "/api/v1/orgs/{slug}/conversations/{conversation_id}/messages/multipart"):
        body = document["paths"][path]["post"]["requestBody"]["content"]
        assert list(body) == ["multipart/form-data"]
        properties = body["multipart/form-data"]["schema"]["properties"]
        assert {"message", "attachments"} <= set(properties)


def test_a_reply_with_html_and_an_attachment_arrives_with_both(
    cast: Cast, mailbox: Mailbox, conversation: Conversation, smtp_peer_requiring_auth: SmtpPeer,
    run_due: Callable[[], int], django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    message = {
        "mailbox_id": str(mailbox.pk), "kind": "reply",
        "html": '<p>Hello <b>Dana</b>, the <a href="https://shop.example/track">invoice</a> is attached.</p>'
                '<script>alert(1)</script><img src="https://tracker.example/pixel.gif" onerror="alert(2)">',
    }  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        response = post_multipart(
            token_client(cast), f"/orgs/acme/conversations/{conversation.pk}/messages/multipart",
            {"message": json.dumps(message), "attachments": [SimpleUploadedFile("Rechnung 4711.pdf", PDF, content_type="application/pdf")]},
        )  # fmt: skip
    assert response.status_code == 202, response.content
    assert run_due() == 1
    [received] = smtp_peer_requiring_auth.messages
    sent = parsed(received.content)
    assert sent["In-Reply-To"] == CUSTOMER_MESSAGE_ID
    html = sent.get_body(preferencelist=("html",))
    text = sent.get_body(preferencelist=("plain",))
    assert html is not None
    assert text is not None
    assert "<b>Dana</b>" in html.get_content()
    assert 'href="https://shop.example/track"' in html.get_content()
    for removed in ("<script", "alert(", "tracker.example", "onerror"):
        assert removed not in html.get_content()
    # No text was given: the text alternative is the HTML's text.
    assert "Hello Dana, the invoice (https://shop.example/track) is attached." in text.get_content()
    [attachment] = list(sent.iter_attachments())
    assert attachment.get_filename() == "Rechnung 4711.pdf"
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_content() == PDF


def test_a_new_message_with_html_through_the_json_endpoint(
    cast: Cast, mailbox: Mailbox, smtp_peer_requiring_auth: SmtpPeer, run_due: Callable[[], int], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = token_client(cast).post("/orgs/acme/messages", {
            "mailbox_id": str(mailbox.pk), "to": [{"address": "dana@customer.example"}], "subject": "Angebot",
            "text": "Das Angebot.\n", "html": "<p>Das <em>Angebot</em>.</p>",
        })  # fmt: skip
    assert response.status_code == 202
    run_due()
    [received] = smtp_peer_requiring_auth.messages
    sent = parsed(received.content)
    assert sent.get_body(preferencelist=("plain",)).get_content().strip() == "Das Angebot."  # type: ignore[union-attr]
    assert "<em>Angebot</em>" in sent.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    assert list(sent.iter_attachments()) == []


def test_multipart_errors_are_clear_and_send_nothing(
    cast: Cast, mailbox: Mailbox, settings: Any, django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = token_client(cast)
    path = "/orgs/acme/messages/multipart"
    valid = {"mailbox_id": str(mailbox.pk), "to": [{"address": "dana@customer.example"}], "subject": "x", "text": "x"}

    missing = post_multipart(client, path, {"attachments": [SimpleUploadedFile("a.txt", b"a")]})
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["field"] == "message"

    not_json = post_multipart(client, path, {"message": "{not json"})
    assert not_json.status_code == 422
    assert "JSON" in not_json.json()["detail"]

    no_address = post_multipart(client, path, {"message": json.dumps({**valid, "to": [{"name": "Dana"}]})})
    assert no_address.status_code == 422
    assert no_address.json()["errors"][0]["field"] == "address"

    too_many = [SimpleUploadedFile(f"{number}.txt", b"x") for number in range(actions.MAX_ATTACHMENT_FILES + 1)]
    refused = post_multipart(client, path, {"message": json.dumps(valid), "attachments": too_many})
    assert refused.status_code == 422
    assert refused.json()["errors"] == [{"field": "attachments", "message": f"Attach at most {actions.MAX_ATTACHMENT_FILES} files."}]

    monkeypatch.setattr(actions, "MAX_ATTACHMENTS_BYTES", 1024)
    too_big = post_multipart(client, path, {"message": json.dumps(valid), "attachments": [SimpleUploadedFile("big.bin", b"x" * 2048)]})
    assert too_big.status_code == 422
    assert too_big.json()["errors"][0]["field"] == "attachments"
    assert not OutgoingMessage.objects.exists()


def test_r21_the_multipart_twins_refuse_what_the_json_endpoints_refuse(cast: Cast, mailbox: Mailbox, conversation: Conversation) -> None:
    charlie = ApiClient(token=api_token_create(user=cast.charlie, name="Script", scope="write", expires_at=None).token)
    bob = ApiClient(token=api_token_create(user=cast.bob, name="Script", scope="write", expires_at=None).token)
    message = json.dumps({"mailbox_id": str(mailbox.pk), "to": [{"address": "x@example.test"}], "text": "x"})
    for client, path in (
        (charlie, f"/orgs/acme/conversations/{conversation.pk}/messages/multipart"),
        (charlie, "/orgs/acme/messages/multipart"),
        (charlie, "/orgs/beta/messages/multipart"),  # his own organization, Alice's mailbox
        (bob, f"/orgs/acme/conversations/{conversation.pk}/messages/multipart"),  # a conversation he cannot see
        (bob, "/orgs/acme/messages/multipart"),  # a mailbox that is neither his nor his team's
    ):
        assert post_multipart(client, path, {"message": message}).status_code == 404, path
    reader = ApiClient(token=api_token_create(user=cast.alice, name="Reader", scope="read", expires_at=None).token)
    assert post_multipart(reader, "/orgs/acme/messages/multipart", {"message": message}).status_code == 403
    assert not OutgoingMessage.objects.exists()


def test_bodies_over_the_limits_are_refused_with_a_clear_detail(cast: Cast, mailbox: Mailbox, settings: Any) -> None:
    client = token_client(cast)
    valid = {"mailbox_id": str(mailbox.pk), "to": [{"address": "dana@customer.example"}], "subject": "x", "text": "x"}
    settings.POSTROOM_MAX_UPLOAD_BYTES = 1024 * 1024
    files = post_multipart(
        client, "/orgs/acme/messages/multipart", {"message": json.dumps(valid), "attachments": [SimpleUploadedFile("big.bin", b"x" * 1100 * 1024)]}
    )
    assert files.status_code == 400
    assert files.json()["detail"] == "The upload is too large: files may total at most 1 MB."
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
    as_json = client.post("/orgs/acme/messages", {**valid, "text": "x" * 100 * 1024})
    assert as_json.status_code == 400
    assert "multipart" in as_json.json()["detail"]
    assert not OutgoingMessage.objects.exists()
