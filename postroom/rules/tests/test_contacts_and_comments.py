"""The "sender is in a contact book" condition and the "add a comment" action: on real ingest,
in the preview, the builder and the API, with the owner / teammate / outsider cast."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from postroom.api.tests.helpers import ApiClient
from postroom.comments.models import Comment, CommentMention
from postroom.contacts import actions as contact_actions
from postroom.contacts.cards import Card
from postroom.contacts.models import BookKind, ContactBook
from postroom.conversations.models import ConversationLabel, TimelineEvent
from postroom.notifications.models import Notification
from postroom.orgs.models import Membership
from postroom.rules import actions
from postroom.rules.models import Rule
from postroom.rules.tests.conftest import Place

pytestmark = pytest.mark.django_db

DANA = "Dana Customer <dana@customer.example>"
EVE = "Eve <eve@elsewhere.example>"


def book_with_dana(actor: Membership, *, kind: str = BookKind.PERSONAL, name: str = "Customers") -> ContactBook:
    book = contact_actions.book_create(actor=actor, name=name, kind=kind)
    contact_actions.contact_create(actor=actor, book=book, card=Card(name="Dana Customer", emails=["dana@customer.example"]))
    return book


def label_action(place: Place) -> list[dict[str, Any]]:
    return [{"kind": "label", "label_id": str(place.billing.pk)}]


def labelled(place: Place, message: Any) -> bool:
    return ConversationLabel.objects.filter(conversation=message.conversation, label=place.billing).exists()


def test_sender_in_any_of_the_owners_books_is_looked_up_by_blind_index(place: Place, make_rule: Callable[..., Rule]) -> None:
    alice = place.cast.alice_membership
    book_with_dana(alice)
    make_rule(alice, conditions=[{"field": "contact_book", "value": "any"}], actions_=label_action(place))
    assert labelled(place, place.deliver(place.alice_mailbox, sender=DANA))
    assert not labelled(place, place.deliver(place.alice_mailbox, sender=EVE))
    assert not labelled(place, place.deliver(place.alice_mailbox, sender="Dana <dana@customer.example.evil>"))


def test_a_chosen_book_matches_only_its_contacts(place: Place, make_rule: Callable[..., Rule]) -> None:
    alice = place.cast.alice_membership
    book_with_dana(alice, name="Friends")
    other = contact_actions.book_create(actor=alice, name="Suppliers")
    make_rule(alice, conditions=[{"field": "contact_book", "value": str(other.pk)}], actions_=label_action(place))
    assert not labelled(place, place.deliver(place.alice_mailbox, sender=DANA))
    contact_actions.contact_create(actor=alice, book=other, card=Card(name="Dana", emails=["DANA@customer.example"]))
    assert labelled(place, place.deliver(place.alice_mailbox, sender=DANA))


def test_a_book_the_owner_cannot_read_is_refused_and_never_matched(place: Place, make_rule: Callable[..., Rule]) -> None:
    cast = place.cast
    bobs = book_with_dana(cast.bob_membership)  # Bob's own book, not shared
    charlies = book_with_dana(cast.charlie_membership)  # another organization
    for book in (bobs, charlies):
        with pytest.raises(ValidationError, match="contact book"):
            make_rule(cast.alice_membership, conditions=[{"field": "contact_book", "value": str(book.pk)}])
    # "Any book" of Alice's does not look into Bob's unshared book.
    make_rule(cast.alice_membership, conditions=[{"field": "contact_book", "value": "any"}], actions_=label_action(place))
    assert not labelled(place, place.deliver(place.alice_mailbox, sender=DANA))


def test_organization_rules_look_in_shared_books_never_in_a_members_own(place: Place, make_rule: Callable[..., Rule]) -> None:
    cast = place.cast
    book_with_dana(cast.alice_membership)  # personal, unshared
    make_rule(cast.carol_membership, organization=True, conditions=[{"field": "contact_book", "value": "any"}],
              actions_=label_action(place))  # fmt: skip
    assert not labelled(place, place.deliver(place.support_mailbox, sender=DANA))
    book_with_dana(cast.carol_membership, kind=BookKind.ORGANIZATION, name="Clients")
    assert labelled(place, place.deliver(place.support_mailbox, sender=DANA))


def test_the_preview_uses_the_contact_book_condition(place: Place, make_rule: Callable[..., Rule]) -> None:
    alice = place.cast.alice_membership
    from_dana = place.deliver(place.alice_mailbox, sender=DANA)
    place.deliver(place.alice_mailbox, sender=EVE)
    rule = make_rule(alice, conditions=[{"field": "contact_book", "value": "any"}], enabled=False)
    assert actions.rule_preview(actor=alice, rule=rule) == []
    book_with_dana(alice)
    assert [conversation.pk for conversation in actions.rule_preview(actor=alice, rule=rule)] == [from_dana.conversation_id]


def test_a_rule_comments_as_itself_without_mention_side_effects(place: Place, make_rule: Callable[..., Rule], client_as: Any) -> None:
    cast = place.cast
    text = f"Check the contract first, @[Alice](member:{cast.alice_membership.pk})."
    rule = make_rule(cast.carol_membership, organization=True, name="Contract check", conditions=[],
                     actions_=[{"kind": "comment", "text": text}])  # fmt: skip
    message = place.deliver(place.support_mailbox, sender=DANA)

    [comment] = Comment.objects.filter(conversation=message.conversation)
    assert comment.author is None
    assert comment.rule == rule
    assert comment.body == text
    assert not CommentMention.objects.exists()
    assert not Notification.objects.filter(recipient=cast.alice_membership).exists()
    [event] = TimelineEvent.objects.filter(conversation=message.conversation, kind="rule_applied")
    assert event.details["changes"] == [{"kind": "comment", "comment_id": str(comment.pk)}]
    # Shown in the thread as written by the rule, to a member of the team; nobody can edit it.
    page = client_as(cast.bob).get(f"/o/acme/conversations/{message.conversation_id}/")
    assert page.status_code == 200
    body = page.content.decode()
    assert "Rule Contract check" in body
    assert "Check the contract first" in body
    assert f"/comments/{comment.pk}/edit" not in body


def test_comment_and_condition_shapes_are_checked(place: Place, make_rule: Callable[..., Rule]) -> None:
    alice = place.cast.alice_membership
    for bad in ({"kind": "comment", "text": ""}, {"kind": "comment", "text": "x" * 2001}, {"kind": "comment"}):
        with pytest.raises(ValidationError, match="Comment"):
            make_rule(alice, actions_=[bad])
    with pytest.raises(ValidationError, match="Contact book"):
        make_rule(alice, conditions=[{"field": "contact_book", "value": "some"}])


def test_the_builder_makes_contact_book_comment_and_auto_reply_rows(place: Place, client_as: Any) -> None:
    from postroom.responses.actions import ResponseContent, response_create

    alice = place.cast.alice_membership
    book = book_with_dana(alice)
    response = response_create(actor=alice, scope="personal", content=ResponseContent(name="Thanks", body="<p>Thanks!</p>"))
    client = client_as(place.cast.alice)
    form = client.get("/o/acme/rules/new/").content.decode()
    assert f"book:{book.pk}" in form
    assert f"response:{response.pk}" in form
    posted = client.post("/o/acme/rules/new/", {
        "name": "Known senders", "trigger": "incoming", "match": "all", "enabled": "on",
        "condition-0-field": "contact_book", "condition-0-target": f"book:{book.pk}",
        "action-0-kind": "comment", "action-0-value": "A known customer.",
        "action-1-kind": "auto_reply", "action-1-target": f"response:{response.pk}",
    })  # fmt: skip
    assert posted.status_code == 302
    rule = Rule.objects.get()
    assert rule.definition == {
        "conditions": [{"field": "contact_book", "value": str(book.pk)}],
        "actions": [{"kind": "comment", "text": "A known customer."}, {"kind": "auto_reply", "response_id": str(response.pk)}],
    }
    page = client.get(f"/o/acme/rules/{rule.pk}/").content.decode()
    assert "A known customer." in page
    assert f'value="response:{response.pk}" selected' in page


def test_api_cast_on_the_new_shapes(place: Place) -> None:
    from postroom.responses.actions import ResponseContent, response_create

    cast = place.cast
    alice_book = book_with_dana(cast.alice_membership)
    alice_response = response_create(actor=cast.alice_membership, scope="personal", content=ResponseContent(name="Hi", body="<p>Hi</p>"))
    new_rule = {
        "name": "Known", "trigger": "incoming",
        "conditions": [{"field": "contact_book", "value": str(alice_book.pk)}],
        "actions": [{"kind": "comment", "text": "Known sender"}, {"kind": "auto_reply", "response_id": str(alice_response.pk)}],
    }  # fmt: skip
    created = ApiClient(cast.alice).post("/orgs/acme/rules", new_rule)
    assert created.status_code == 201
    assert created.json()["actions"][1] == {"kind": "auto_reply", "response_id": str(alice_response.pk)}
    # Her teammate may use neither her book nor her response; the outsider sees no organization.
    assert ApiClient(cast.bob).post("/orgs/acme/rules", new_rule).status_code == 422
    bob_rule = {**new_rule, "conditions": [{"field": "contact_book", "value": "any"}]}
    assert ApiClient(cast.bob).post("/orgs/acme/rules", bob_rule).status_code == 422  # still Alice's response
    assert ApiClient(cast.charlie).post("/orgs/acme/rules", new_rule).status_code == 404
    assert ApiClient(cast.charlie).get(f"/orgs/acme/rules/{created.json()['id']}").status_code == 404
