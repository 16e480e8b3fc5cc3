"""The composer's recipient autocomplete: the composer points its script at the contacts
autocomplete endpoint, which answers from the books the member can see only (the cast)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from postroom.conftest import Cast
from postroom.contacts import actions
from postroom.contacts.cards import Card
from postroom.mailboxes.tests.factories import make_mailbox

pytestmark = pytest.mark.django_db


def test_the_composer_offers_contacts_from_visible_books_only(cast: Cast, client_as: Any) -> None:
    make_mailbox(cast.alice_membership, address="alice@acme.test")
    make_mailbox(cast.bob_membership, address="bob@acme.test")
    book = actions.book_default(actor=cast.alice_membership)
    actions.contact_create(actor=cast.alice_membership, book=book, card=Card(name="Dana Customer", emails=["dana@customer.example"]))

    alice = client_as(cast.alice)
    page = alice.get("/o/acme/outbox/new/").content.decode()
    assert 'data-recipients-url="/o/acme/contacts/autocomplete/"' in page
    script = re.search(r'<script src="[^"]*contacts/recipients\.js" nonce="([^"]+)"', page)
    assert script is not None  # loaded as a file with the page's nonce: no inline script (CSP)
    found = alice.get("/o/acme/contacts/autocomplete/", {"q": "da"}).json()["results"]
    assert [(item["name"], item["email"]) for item in found] == [("Dana Customer", "dana@customer.example")]

    # Bob's composer gets nothing from Alice's own book; Charlie's organization is not his.
    assert client_as(cast.bob).get("/o/acme/contacts/autocomplete/", {"q": "da"}).json()["results"] == []
    assert client_as(cast.charlie).get("/o/acme/contacts/autocomplete/", {"q": "da"}).status_code == 404
