"""Contacts made from mail: automatic contacts from sent mail, "add the sender", the address index
and the contact page's conversations (only those the viewer can see)."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from postroom.conftest import Cast
from postroom.contacts import actions, selectors
from postroom.contacts.cards import Card, address_index
from postroom.contacts.models import Contact, ContactEmail, ContactSource, MessageAddress
from postroom.contacts.tests.conftest import store
from postroom.conversations import access
from postroom.conversations.models import ConversationShare, Message
from postroom.mailboxes.models import Mailbox
from postroom.mailboxes.tests.factories import make_mailbox

pytestmark = pytest.mark.django_db


def _cards(membership) -> list[Card]:  # type: ignore[no-untyped-def]
    return sorted(
        (Card.from_json(contact.card) for contact in Contact.objects.filter(book__owner=membership)), key=lambda card: card.emails or []
    )


def test_recipients_of_sent_mail_become_contacts_once(cast: Cast, alice_mailbox: Mailbox) -> None:
    store(alice_mailbox, outbound=True, sender="Alice <alice@acme.test>", to="Dana <dana@customer.example>, eve@example.org",
          subject="First", message_id="<s1@acme.test>")  # fmt: skip
    store(alice_mailbox, outbound=True, sender="Alice <alice@acme.test>", to="DANA@Customer.example", cc="Eve E <eve@example.org>, alice@acme.test",
          subject="Second", message_id="<s2@acme.test>")  # fmt: skip
    # Mail Alice receives adds nobody.
    store(alice_mailbox, sender="Frank <frank@example.net>", to="alice@acme.test", subject="Third", message_id="<r1@example.net>")
    cards = _cards(cast.alice_membership)
    assert [(card.name, card.emails) for card in cards] == [("Dana", ["dana@customer.example"]), ("", ["eve@example.org"])]
    assert set(Contact.objects.values_list("source", flat=True)) == {ContactSource.AUTOMATIC}
    book = actions.book_default(actor=cast.alice_membership)
    assert Contact.objects.filter(book=book).count() == 2
    # Bob's books are untouched.
    assert not Contact.objects.filter(book__owner=cast.bob_membership).exists()


def test_automatic_contacts_respect_contacts_already_in_the_book(cast: Cast, alice_mailbox: Mailbox) -> None:
    book = actions.book_default(actor=cast.alice_membership)
    actions.contact_create(actor=cast.alice_membership, book=book, card=Card(name="Dana Known", emails=["dana@customer.example"]))
    store(alice_mailbox, outbound=True, sender="alice@acme.test", to="Dana New <Dana@customer.example>", message_id="<s3@acme.test>")
    assert [card.name for card in _cards(cast.alice_membership)] == ["Dana Known"]


def test_a_batch_costs_a_constant_number_of_queries(cast: Cast, alice_mailbox: Mailbox) -> None:
    store(alice_mailbox, outbound=True, sender="alice@acme.test", to="a@example.org", subject="Warm", message_id="<w@acme.test>")

    def queries(recipients: int) -> int:
        to = ", ".join(f"r{recipients}-{number}@example.org" for number in range(recipients))
        message = store(
            alice_mailbox,
            outbound=True,
            sender="alice@acme.test",
            to=to,
            subject=f"To {recipients}",
            message_id=f"<q{recipients}@acme.test>",
        )
        with CaptureQueriesContext(connection) as captured:
            actions.messages_stored(new_message_ids=[message.pk], authors={message.pk: cast.alice_membership.pk})
        return len(captured.captured_queries)

    assert queries(2) == queries(30)
    assert Contact.objects.count() == 1 + 2 + 30


def test_messages_in_hand_are_indexed_without_reading_them_again(cast: Cast, alice_mailbox: Mailbox) -> None:
    first = store(alice_mailbox, sender="Dana <dana@customer.example>", to="alice@acme.test", message_id="<h1@customer.example>")
    second = store(alice_mailbox, sender="eve@example.org", to="alice@acme.test", message_id="<h2@customer.example>")
    MessageAddress.objects.all().delete()
    in_hand = Message.objects.get(pk=first.pk)
    assert in_hand.addresses  # decrypted once, as the ingest holds it
    with CaptureQueriesContext(connection) as captured:
        actions.messages_stored(new_message_ids=[first.pk, second.pk], authors={}, loaded=[in_hand])
    selects = [query["sql"] for query in captured.captured_queries if query["sql"].startswith("SELECT")]
    # Only the message not in hand is read.
    assert len(selects) == 1
    assert str(second.pk).replace("-", "") in selects[0].replace("-", "")
    indexed = set(MessageAddress.objects.values_list("message_id", "address_index"))
    assert indexed == {
        (first.pk, address_index(cast.org_a.pk, "dana@customer.example")),
        (first.pk, address_index(cast.org_a.pk, "alice@acme.test")),
        (second.pk, address_index(cast.org_a.pk, "eve@example.org")),
        (second.pk, address_index(cast.org_a.pk, "alice@acme.test")),
    }


def test_team_mailbox_sent_mail_adds_no_automatic_contacts(cast: Cast) -> None:
    from postroom.orgs.models import Team

    team = Team.objects.create(organization=cast.org_a, name="Support")
    mailbox = make_mailbox(cast.alice_membership, address="support@acme.test", team=team)
    store(mailbox, outbound=True, sender="support@acme.test", to="dana@customer.example", message_id="<t1@acme.test>")
    assert not Contact.objects.exists()
    assert MessageAddress.objects.count() == 2


def test_create_a_contact_from_a_sender(cast: Cast, client_as, alice_mailbox: Mailbox) -> None:
    message = store(alice_mailbox, sender="Dana Customer <dana@customer.example>", message_id="<m1@customer.example>")
    alice = client_as(cast.alice)
    detail = alice.get(f"/o/acme/conversations/{message.conversation_id}/").content.decode()
    assert f"/o/acme/contacts/from-message/{message.pk}/" in detail
    response = alice.post(f"/o/acme/contacts/from-message/{message.pk}/")
    contact = Contact.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/o/acme/contacts/people/{contact.pk}/"
    assert (Card.from_json(contact.card).name, contact.source) == ("Dana Customer", ContactSource.SENDER)
    assert alice.post(f"/o/acme/contacts/from-message/{message.pk}/").status_code == 302
    assert Contact.objects.count() == 1
    # Bob cannot see the message, so he cannot make a contact of its sender.
    assert client_as(cast.bob).post(f"/o/acme/contacts/from-message/{message.pk}/").status_code == 404
    assert Contact.objects.count() == 1


def test_the_contact_page_shows_only_conversations_the_viewer_can_see(
    cast: Cast, client_as, alice_mailbox: Mailbox, bob_mailbox: Mailbox
) -> None:
    alices = store(
        alice_mailbox, sender="Dana <dana@customer.example>", to="alice@acme.test", subject="Private to Alice", message_id="<a1@c.example>"
    )
    bobs_old = store(
        bob_mailbox, sender="Dana <dana@customer.example>", to="bob@acme.test", subject="Bob's first", message_id="<b1@c.example>"
    )
    bobs_new = store(bob_mailbox, sender="bob@acme.test", to="dana@customer.example", subject="Bob's reply", message_id="<b2@c.example>",
                     outbound=True)  # fmt: skip
    store(bob_mailbox, sender="Zed <zed@example.org>", to="bob@acme.test", subject="Unrelated", message_id="<z1@c.example>")
    book = actions.book_default(actor=cast.alice_membership)
    contact = actions.contact_create(actor=cast.alice_membership, book=book, card=Card(name="Dana", emails=["dana@customer.example"]))
    actions.book_share(actor=cast.alice_membership, book=book, team=None, can_write=False)

    seen_by_bob = selectors.contact_conversations(actor=cast.bob_membership, contact=contact)
    assert [conversation.pk for conversation in seen_by_bob] == [bobs_new.conversation_id, bobs_old.conversation_id]
    assert [conversation.pk for conversation in selectors.contact_conversations(actor=cast.alice_membership, contact=contact)] == [
        alices.conversation_id
    ]
    page = client_as(cast.bob).get(f"/o/acme/contacts/people/{contact.pk}/").content.decode()
    assert "Bob&#x27;s first" in page
    assert "Private to Alice" not in page
    assert "Unrelated" not in page

    # Shared with Bob by Alice: now his to see.
    ConversationShare.objects.create(
        conversation_id=alices.conversation_id, membership=cast.bob_membership, created_by=cast.alice_membership
    )
    type(alices).objects.filter(pk=alices.pk).update(shared=True)
    access.access_refresh([alices.conversation_id])
    assert alices.conversation_id in {
        conversation.pk for conversation in selectors.contact_conversations(actor=cast.bob_membership, contact=contact)
    }

    with CaptureQueriesContext(connection) as captured:
        selectors.contact_conversations(actor=cast.bob_membership, contact=contact)
    assert len(captured.captured_queries) == 1


def test_the_backfill_indexes_older_mail_and_can_run_again(cast: Cast, alice_mailbox: Mailbox) -> None:
    message = store(alice_mailbox, sender="Dana <dana@customer.example>", cc="eve@example.org", message_id="<old@c.example>")
    MessageAddress.objects.all().delete()  # as if stored before the contacts app
    call_command("contacts_index_addresses", "--no-progress", "--batch", "1")
    expected = {address_index(cast.org_a.pk, address) for address in ("dana@customer.example", "alice@acme.test", "eve@example.org")}
    assert set(MessageAddress.objects.filter(message=message).values_list("address_index", flat=True)) == expected
    call_command("contacts_index_addresses", "--no-progress")
    assert MessageAddress.objects.count() == 3
    assert not ContactEmail.objects.exists()  # the backfill never makes contacts
