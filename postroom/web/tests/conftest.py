from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from postroom.conftest import Cast
from postroom.contacts.actions import book_default, contact_create
from postroom.contacts.cards import card_clean
from postroom.conversations.actions import label_create
from postroom.core.logs import SafeFormatter
from postroom.mailboxes.tests.factories import make_mailbox
from postroom.orgs.actions import invitation_create
from postroom.responses.actions import ResponseContent, response_create
from postroom.responses.models import Scope
from postroom.testing.factories import TeamFactory
from postroom.web.tests.routes import Route, all_routes


@pytest.fixture
def routes(cast: Cast) -> list[Route]:
    """Every route, with parameters that name real objects of organization A."""
    team = TeamFactory(organization=cast.org_a, name="Support")
    invitation, token = invitation_create(actor=cast.alice_membership, email="dana@acme.test", role="member")
    book = book_default(actor=cast.alice_membership)
    contact = contact_create(actor=cast.alice_membership, book=book, card=card_clean(name="Dana", emails=["dana@customer.example"]))
    response = response_create(
        actor=cast.alice_membership, scope=Scope.ORGANIZATION, content=ResponseContent(name="Welcome", body="<p>Hi</p>")
    )
    values = {
        "slug": cast.org_a.slug,
        "membership_id": str(cast.bob_membership.pk),
        "team_id": str(team.pk),
        "invitation_id": str(invitation.pk),
        "mailbox_id": str(make_mailbox(cast.bob_membership).pk),
        "token": token,
        "key": "Mg:1tXkqv:not-a-real-key",
        "uidb36": "1",
        "provider_id": "no-such-provider",
        "conversation_id": "00000000-0000-7000-8000-000000000001",
        "outgoing_id": "00000000-0000-7000-8000-000000000002",
        "comment_id": "00000000-0000-7000-8000-000000000003",
        "comment_attachment_id": "00000000-0000-7000-8000-000000000004",
        "notification_id": "00000000-0000-7000-8000-000000000005",
        "label_id": str(label_create(actor=cast.alice_membership, name="Urgent", personal=False).pk),
        "draft_id": "00000000-0000-7000-8000-000000000006",
        "book_id": str(book.pk),
        "contact_id": str(contact.pk),
        "response_id": str(response.pk),
        "rule_id": "00000000-0000-7000-8000-000000000007",
        "message_id": "00000000-0000-7000-8000-000000000003",
        "attachment_id": "00000000-0000-7000-8000-000000000004",
    }
    return all_routes(values)


@pytest.fixture
def configured_console() -> Iterator[io.StringIO]:
    """The console handler configured by settings.LOGGING, writing into a buffer for the test."""
    handlers = {h for name in ("", "django.request") for h in logging.getLogger(name).handlers if isinstance(h.formatter, SafeFormatter)}
    buffer = io.StringIO()
    previous = {handler: handler.setStream(buffer) for handler in handlers if isinstance(handler, logging.StreamHandler)}
    assert previous, "settings.LOGGING has no console handler with SafeFormatter"
    try:
        yield buffer
    finally:
        for handler, stream in previous.items():
            handler.setStream(stream)
