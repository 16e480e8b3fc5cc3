"""Drafts saved as the member types, the inline composer, sending a draft, and send & close.

No mail server is needed: sending queues the message after the commit, which these tests do not
run; what would go on the wire is checked in the stored envelope (test_send.py sends for real).
"""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from postroom.audit.models import AuditEvent
from postroom.conftest import Cast
from postroom.conversations.models import Conversation, ConversationStatus, Message
from postroom.conversations.tests.conftest import TeamInbox
from postroom.mailboxes.models import Mailbox
from postroom.mailboxes.tests.factories import make_mailbox
from postroom.outbox.models import Draft, OutgoingMessage

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
SAVE = reverse("outbox:draft_save", args=["acme"])


@pytest.fixture
def bobs_mailbox(cast: Cast) -> Mailbox:
    return make_mailbox(cast.bob_membership, address="bob@acme.test")


def opened(value: dict[str, Any] | None) -> dict[str, Any]:
    """A sealed JSON value, read (present in every row these tests make)."""
    assert value is not None
    return value


def typed(mailbox: Mailbox, conversation: Conversation | None = None, **fields: Any) -> dict[str, Any]:
    body = {"mailbox": str(mailbox.pk), "kind": "reply" if conversation else "new", "to": "Dana <dana@customer.example>",
            "cc": "", "bcc": "", "subject": "", "text": "Dear Dana,\nthe parcel left today."}  # fmt: skip
    if conversation is not None:
        body["conversation"] = str(conversation.pk)
    body.update(fields)
    return body


def test_a_draft_is_saved_sealed_as_typed_and_saved_again_in_place(  # type: ignore[no-untyped-def]
    cast: Cast,
    client_as,
    team_inbox: TeamInbox,
    bobs_mailbox: Mailbox,
) -> None:
    conversation = team_inbox.deliver().conversation
    bob = client_as(cast.bob)
    response = bob.post(SAVE, typed(bobs_mailbox, conversation, to="dana@"), **HTMX)  # not an address yet: kept as typed
    assert response.status_code == 200
    draft = Draft.objects.get()
    assert f'value="{draft.pk}" id="draft-id" hx-swap-oob="true"' in response.content.decode()
    assert "Draft saved" in response.content.decode()
    assert opened(draft.content)["to"] == "dana@"
    assert draft.conversation_id == conversation.pk
    assert b"the parcel left today" not in bytes(draft.content_sealed)
    bob.post(SAVE, typed(bobs_mailbox, conversation, draft=str(draft.pk), text="Dear Dana,\nit arrives tomorrow."), **HTMX)
    assert Draft.objects.count() == 1
    assert opened(Draft.objects.get().content)["text"] == "Dear Dana,\nit arrives tomorrow."
    assert not AuditEvent.objects.filter(action__startswith="outbox.draft").exists()
    listing = bob.get(reverse("outbox:drafts", args=["acme"])).content.decode()
    assert "it arrives tomorrow" in listing
    page = bob.get(reverse("conversations:detail", args=["acme", conversation.pk])).content.decode()
    assert "it arrives tomorrow" in page  # the composer opens with the draft
    assert 'id="composer-form"' in page


def test_r21_drafts_are_their_authors_alone(cast: Cast, client_as, team_inbox: TeamInbox, bobs_mailbox: Mailbox) -> None:  # type: ignore[no-untyped-def]
    conversation = team_inbox.deliver().conversation
    client_as(cast.bob).post(SAVE, typed(bobs_mailbox, conversation, text="Bob's private words"), **HTMX)
    draft = Draft.objects.get()
    for outsider in (cast.alice, cast.charlie):
        client = client_as(outsider)
        assert "private words" not in client.get(reverse("outbox:drafts", args=["acme"])).content.decode()
        assert client.get(reverse("outbox:draft", args=["acme", draft.pk])).status_code == 404
        assert client.post(reverse("outbox:draft_delete", args=["acme", draft.pk])).status_code == 404
        assert client.post(reverse("outbox:draft_detach", args=["acme", draft.pk]), {"index": "0"}).status_code == 404
        assert client.post(SAVE, {**typed(bobs_mailbox, conversation), "draft": str(draft.pk), "text": "overwritten"}).status_code == 404
        assert "private words" not in client.get(reverse("conversations:detail", args=["acme", conversation.pk])).content.decode()
    assert opened(Draft.objects.get().content)["text"] == "Bob's private words"
    # A conversation Bob cannot see, or a mailbox that is neither his nor his team's (Alice's
    # personal one; the team mailbox he may use), saves nothing.
    private = team_inbox.deliver(team_inbox.private_mailbox, subject="Alice only").conversation
    bob = client_as(cast.bob)
    assert bob.post(SAVE, typed(bobs_mailbox, private), **HTMX).status_code == 404
    refused = bob.post(SAVE, typed(team_inbox.private_mailbox, conversation), **HTMX)
    assert refused.status_code == 422
    assert "Not saved" in refused.content.decode()
    assert Draft.objects.count() == 1


def test_attachments_join_the_draft_go_out_with_it_and_the_draft_is_gone_after_sending(  # type: ignore[no-untyped-def]
    cast: Cast,
    client_as,
    team_inbox: TeamInbox,
    bobs_mailbox: Mailbox,
) -> None:
    conversation = team_inbox.deliver(sender="Dana Customer <dana@customer.example>").conversation
    bob = client_as(cast.bob)
    files = [SimpleUploadedFile("label.pdf", b"%PDF label", "application/pdf"), SimpleUploadedFile("note.txt", b"note", "text/plain")]
    saved = bob.post(SAVE, {**typed(bobs_mailbox, conversation), "attachments": files}, **HTMX).content.decode()
    assert "label.pdf" in saved
    assert "note.txt" in saved
    draft = Draft.objects.get()
    assert b"label.pdf" not in bytes(draft.content_sealed)
    detached = bob.post(reverse("outbox:draft_detach", args=["acme", draft.pk]), {"index": "1"}, **HTMX).content.decode()
    assert "note.txt" not in detached
    assert bob.post(reverse("outbox:draft_detach", args=["acme", draft.pk]), {"index": "7"}, **HTMX).status_code == 422
    reply = reverse("outbox:reply", args=["acme", conversation.pk])
    response = bob.post(reply, {**typed(bobs_mailbox, conversation), "draft": str(draft.pk), "close": "1",
                                "attachments": SimpleUploadedFile("late.txt", b"late", "text/plain")}, **HTMX)  # fmt: skip
    assert response.status_code == 204
    assert response["HX-Redirect"] == reverse("conversations:list", args=["acme"])  # send & close: back to the list
    outgoing = OutgoingMessage.objects.get()
    assert [item["filename"] for item in opened(outgoing.envelope)["attachments"]] == ["label.pdf", "late.txt"]
    assert opened(outgoing.envelope)["recipients"] == ["dana@customer.example"]
    assert outgoing.mailbox == bobs_mailbox  # a teammate answers the team's conversation from his own mailbox
    assert not Draft.objects.exists()
    assert Conversation.objects.get(pk=conversation.pk).status == ConversationStatus.CLOSED


def test_a_failed_send_keeps_what_was_typed_and_the_draft(  # type: ignore[no-untyped-def]
    cast: Cast,
    client_as,
    team_inbox: TeamInbox,
    bobs_mailbox: Mailbox,
) -> None:
    conversation = team_inbox.deliver().conversation
    bob = client_as(cast.bob)
    bob.post(SAVE, typed(bobs_mailbox, conversation, to="dana@"), **HTMX)
    draft = Draft.objects.get()
    reply = reverse("outbox:reply", args=["acme", conversation.pk])
    response = bob.post(reply, typed(bobs_mailbox, conversation, to="dana@ <", draft=str(draft.pk)), **HTMX)
    assert response.status_code == 422
    html = response.content.decode()
    assert 'id="composer-form"' in html
    assert "the parcel left today" in html
    assert "errorlist" in html
    assert Draft.objects.filter(pk=draft.pk).exists()
    assert not OutgoingMessage.objects.exists()


def test_r21_the_reply_quotes_only_what_the_writer_can_see(  # type: ignore[no-untyped-def]
    cast: Cast,
    client_as,
    team_inbox: TeamInbox,
    bobs_mailbox: Mailbox,
) -> None:
    from django.utils import timezone

    first = team_inbox.deliver(subject="Renewal", text="Can we renew?\n", sender="Dana Customer <dana@customer.example>")
    carols = make_mailbox(cast.carol_membership, address="carol@acme.test")
    team_inbox.deliver(carols, subject="Re: Renewal", sender="Carol Admin <carol@acme.test>", to="dana@customer.example",
                       in_reply_to="<m1@customer.example>", text="Internal: give them 50% off.\n", message_id="<carol@acme.test>",
                       date=timezone.now())  # fmt: skip
    assert Message.objects.filter(conversation_id=first.conversation_id).count() == 2
    composer = client_as(cast.bob).get(reverse("outbox:reply", args=["acme", first.conversation_id]) + "?kind=reply", **HTMX)
    assert composer.status_code == 200
    html = composer.content.decode()
    assert "<html" not in html
    assert "&gt; Can we renew?" in html
    assert "50% off" not in html
    assert "dana@customer.example" in html


def test_discarding_deletes_the_draft(cast: Cast, client_as, team_inbox: TeamInbox, bobs_mailbox: Mailbox) -> None:  # type: ignore[no-untyped-def]
    conversation = team_inbox.deliver().conversation
    bob = client_as(cast.bob)
    bob.post(SAVE, typed(bobs_mailbox, conversation), **HTMX)
    draft = Draft.objects.get()
    back = reverse("conversations:detail", args=["acme", conversation.pk])
    response = bob.post(reverse("outbox:draft_discard", args=["acme"]), {"draft": str(draft.pk), "next": back}, **HTMX)
    assert response["HX-Redirect"] == back
    assert not Draft.objects.exists()
    plain = bob.post(reverse("outbox:draft_discard", args=["acme"]), {"next": "https://evil.example/"})
    assert plain["Location"] == reverse("outbox:drafts", args=["acme"])  # never an outside address


def test_a_new_message_draft_without_javascript(cast: Cast, client_as, bobs_mailbox: Mailbox) -> None:  # type: ignore[no-untyped-def]
    bob = client_as(cast.bob)
    new = reverse("outbox:new", args=["acme"])
    response = bob.post(new, {**typed(bobs_mailbox, subject="Offer"), "intent": "save",
                              "attachments": SimpleUploadedFile("offer.pdf", b"%PDF", "application/pdf")})  # fmt: skip
    assert response.status_code == 302
    draft = Draft.objects.get()
    assert (draft.kind, draft.conversation_id, opened(draft.content)["subject"]) == ("new", None, "Offer")
    reopened = bob.get(reverse("outbox:draft", args=["acme", draft.pk]))
    assert reopened["Location"] == f"{new}?draft={draft.pk}"
    page = bob.get(reopened["Location"]).content.decode()
    assert 'value="Offer"' in page
    assert "offer.pdf" in page
    sidebar = bob.get(reverse("outbox:drafts", args=["acme"])).content.decode()
    assert '<span class="count">1<span class="visually-hidden"> drafts</span>' in sidebar
    sent = bob.post(new, {**typed(bobs_mailbox, subject="Offer"), "draft": str(draft.pk)})
    assert sent.status_code == 302
    assert [item["filename"] for item in opened(OutgoingMessage.objects.get().envelope)["attachments"]] == ["offer.pdf"]
    assert not Draft.objects.exists()


def test_the_conversation_draft_is_the_latest_of_its_author(cast: Cast, team_inbox: TeamInbox, bobs_mailbox: Mailbox) -> None:
    """``draft_of_conversation`` (a constant query) answers what ``drafts_of`` filtered to the
    conversation does: the author's latest draft there, never a teammate's or another conversation's."""
    from datetime import timedelta

    from django.utils import timezone

    from postroom.outbox import selectors

    conversation = team_inbox.deliver().conversation
    other = team_inbox.deliver(subject="Other", message_id="<other@customer.example>").conversation
    bob, alice = cast.bob_membership, cast.alice_membership
    assert selectors.draft_of_conversation(actor=bob, conversation=conversation) is None
    now = timezone.now()
    made = []
    for author, target, age in (
        (bob, conversation, 3),
        (bob, conversation, 1),
        (bob, conversation, 2),
        (alice, conversation, 0),
        (bob, other, 0),
    ):
        draft = Draft.objects.create(organization_id=author.organization_id, author=author, conversation=target, kind="reply")
        Draft.objects.filter(pk=draft.pk).update(updated_at=now - timedelta(hours=age))
        made.append(draft)
    for actor in (bob, alice, cast.carol_membership):
        for target in (conversation, other):
            expected = selectors.drafts_of(actor=actor).filter(conversation=target).first()
            found = selectors.draft_of_conversation(actor=actor, conversation=target)
            assert (found.pk if found else None) == (expected.pk if expected else None)
    found = selectors.draft_of_conversation(actor=bob, conversation=conversation)
    assert found is not None
    assert found.pk == made[1].pk
