"""Who sees and changes which book (R21, R22), through the pages and the API, with the cast:
Alice (owner) and Bob (member) and Carol (admin) in A, Charlie in B."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied
from django.http import Http404

from postroom.api.tests.helpers import ApiClient
from postroom.conftest import Cast
from postroom.contacts import actions, selectors
from postroom.contacts.cards import Card, card_clean
from postroom.contacts.models import BookKind, Contact, ContactBook
from postroom.orgs.models import Team, TeamMembership

pytestmark = pytest.mark.django_db


def _card(name: str = "Dana Customer", email: str = "dana@customer.example") -> Card:
    return card_clean(name=name, emails=[email])


def _contacts_state() -> list[tuple[object, ...]]:
    return list(Contact.objects.order_by("pk").values_list("pk", "book_id", "card_sealed", "name_index"))


def test_a_personal_book_is_invisible_to_a_teammate_until_shared(cast: Cast, client_as) -> None:
    book = actions.book_default(actor=cast.alice_membership)
    contact = actions.contact_create(actor=cast.alice_membership, book=book, card=_card())
    bob = client_as(cast.bob)
    assert bob.get(f"/o/acme/contacts/books/{book.pk}/").status_code == 404
    assert bob.get(f"/o/acme/contacts/people/{contact.pk}/").status_code == 404
    assert bob.post(f"/o/acme/contacts/books/{book.pk}/export.csv").status_code == 404
    assert ApiClient(cast.bob).get(f"/orgs/acme/contacts/{contact.pk}").status_code == 404
    assert ApiClient(cast.bob).get(f"/orgs/acme/contact-books/{book.pk}/contacts").status_code == 404
    assert bob.get("/o/acme/contacts/autocomplete/", {"q": "dana"}).json()["results"] == []
    # Carol is an admin: roles do not open a member's personal book either.
    assert client_as(cast.carol).get(f"/o/acme/contacts/people/{contact.pk}/").status_code == 404

    actions.book_share(actor=cast.alice_membership, book=book, team=None, can_write=False)
    assert bob.get(f"/o/acme/contacts/people/{contact.pk}/").status_code == 200
    assert [item["email"] for item in bob.get("/o/acme/contacts/autocomplete/", {"q": "dana"}).json()["results"]] == [
        "dana@customer.example"
    ]


def test_a_read_only_share_cannot_edit(cast: Cast, client_as) -> None:
    book = actions.book_default(actor=cast.alice_membership)
    contact = actions.contact_create(actor=cast.alice_membership, book=book, card=_card())
    actions.book_share(actor=cast.alice_membership, book=book, team=None, can_write=False)
    before = _contacts_state()
    bob = client_as(cast.bob)
    assert bob.post(f"/o/acme/contacts/people/{contact.pk}/edit/", {"name": "Changed", "emails": "x@example.test"}).status_code == 403
    assert bob.post(f"/o/acme/contacts/people/{contact.pk}/delete/").status_code == 403
    assert bob.post(f"/o/acme/contacts/books/{book.pk}/new/", {"name": "New"}).status_code == 403
    assert bob.post(f"/o/acme/contacts/books/{book.pk}/settings/", {"operation": "rename", "name": "Mine"}).status_code == 403
    api = ApiClient(cast.bob)
    assert api.patch(f"/orgs/acme/contacts/{contact.pk}", {"name": "Changed"}).status_code == 403
    assert api.delete(f"/orgs/acme/contacts/{contact.pk}").status_code == 403
    assert api.post(f"/orgs/acme/contact-books/{book.pk}/contacts", {"name": "New"}).status_code == 403
    assert api.delete(f"/orgs/acme/contact-books/{book.pk}").status_code == 403
    assert _contacts_state() == before
    assert ContactBook.objects.get(pk=book.pk).name == "My contacts"

    # Read-write lets Bob change contacts, but not the book itself.
    actions.book_share(actor=cast.alice_membership, book=book, team=None, can_write=True)
    assert api.patch(f"/orgs/acme/contacts/{contact.pk}", {"company": "Customer Ltd"}).status_code == 200
    assert Card.from_json(Contact.objects.get(pk=contact.pk).card).company == "Customer Ltd"
    assert api.patch(f"/orgs/acme/contact-books/{book.pk}", {"name": "Bob's now"}).status_code == 403


def test_a_team_book_is_for_the_team_and_what_it_is_shared_with(cast: Cast, client_as) -> None:
    support = Team.objects.create(organization=cast.org_a, name="Support")
    sales = Team.objects.create(organization=cast.org_a, name="Sales")
    TeamMembership.objects.create(team=support, membership=cast.alice_membership)
    TeamMembership.objects.create(team=sales, membership=cast.bob_membership)
    book = actions.book_create(actor=cast.alice_membership, name="Support customers", kind=BookKind.TEAM, team=support)
    contact = actions.contact_create(actor=cast.alice_membership, book=book, card=_card())
    # Bob is in another team; Carol is an admin outside the team.
    for user in (cast.bob, cast.carol):
        assert client_as(user).get(f"/o/acme/contacts/books/{book.pk}/").status_code == 404
        assert ApiClient(user).get(f"/orgs/acme/contact-books/{book.pk}").status_code == 404
    assert book.pk not in {item["id"] for item in ApiClient(cast.bob).get("/orgs/acme/contact-books").json()["items"]}
    with pytest.raises(PermissionDenied):
        actions.book_create(actor=cast.bob_membership, name="Not mine", kind=BookKind.TEAM, team=support)

    actions.book_share(actor=cast.alice_membership, book=book, team=sales, can_write=True)
    assert client_as(cast.bob).get(f"/o/acme/contacts/people/{contact.pk}/").status_code == 200
    assert client_as(cast.carol).get(f"/o/acme/contacts/people/{contact.pk}/").status_code == 404  # not in Sales
    actions.contact_update(actor=cast.bob_membership, contact=contact, card=_card(name="Dana C."))
    with pytest.raises(PermissionDenied):
        actions.book_share(actor=cast.bob_membership, book=book, team=None, can_write=True)


def test_the_organization_book_is_read_by_all_and_written_by_admins(cast: Cast) -> None:
    with pytest.raises(PermissionDenied):
        actions.book_create(actor=cast.bob_membership, name="Everyone", kind=BookKind.ORGANIZATION)
    book = actions.book_create(actor=cast.carol_membership, name="Everyone", kind=BookKind.ORGANIZATION)
    contact = actions.contact_create(actor=cast.carol_membership, book=book, card=_card())
    assert selectors.contact_get(actor=cast.bob_membership, contact_id=contact.pk) == contact
    assert ApiClient(cast.bob).patch(f"/orgs/acme/contacts/{contact.pk}", {"name": "Bob was here"}).status_code == 403
    assert ApiClient(cast.alice).patch(f"/orgs/acme/contacts/{contact.pk}", {"name": "Dana"}).status_code == 200


def test_everything_of_another_organization_is_missing(cast: Cast, client_as) -> None:
    book = actions.book_create(actor=cast.charlie_membership, name="Beta everyone", kind=BookKind.ORGANIZATION)
    actions.book_share(actor=cast.charlie_membership, book=book, team=None, can_write=True)
    contact = actions.contact_create(actor=cast.charlie_membership, book=book, card=_card(email="canary@beta.example"))
    before = _contacts_state()
    alice = client_as(cast.alice)
    for path in (
        f"/o/acme/contacts/books/{book.pk}/",
        f"/o/acme/contacts/people/{contact.pk}/",
        f"/o/acme/contacts/books/{book.pk}/duplicates/",
    ):
        assert alice.get(path).status_code == 404
    assert alice.post(f"/o/acme/contacts/people/{contact.pk}/delete/").status_code == 404
    assert alice.post(f"/o/acme/contacts/books/{book.pk}/export.csv").status_code == 404
    assert alice.get(f"/o/beta/contacts/people/{contact.pk}/").status_code == 404
    api = ApiClient(cast.alice)
    assert api.get(f"/orgs/acme/contacts/{contact.pk}").status_code == 404
    assert api.patch(f"/orgs/acme/contacts/{contact.pk}", {"name": "x"}).status_code == 404
    assert api.post(f"/orgs/acme/contact-books/{book.pk}/contacts", {"name": "x"}).status_code == 404
    assert api.get("/orgs/acme/contacts/autocomplete", q="canary").json()["results"] == []
    assert alice.get("/o/acme/contacts/autocomplete/", {"q": "canary@beta.example"}).json()["results"] == []
    assert book.pk not in {item["id"] for item in api.get("/orgs/acme/contact-books").json()["items"]}
    assert _contacts_state() == before
    with pytest.raises(Http404):
        selectors.book_get(actor=cast.alice_membership, book_id=book.pk)


def test_pages_render_for_the_owner(cast: Cast, client_as) -> None:
    alice = client_as(cast.alice)
    response = alice.post("/o/acme/contacts/", {"name": "Suppliers", "kind": "personal"})
    assert response.status_code == 302
    book = ContactBook.objects.get(name="Suppliers")
    response = alice.post(f"/o/acme/contacts/books/{book.pk}/new/", {
        "name": "Dana <b>Customer</b>", "emails": "dana@customer.example\nDANA@other.example", "phones": "+1 555 0100",
        "fields_text": "Account: 42",
    })  # fmt: skip
    assert response.status_code == 302
    contact = Contact.objects.get(book=book)
    page = alice.get(f"/o/acme/contacts/people/{contact.pk}/").content.decode()
    assert "Dana &lt;b&gt;Customer&lt;/b&gt;" in page
    assert "dana@other.example" in page
    assert "Account" in page
    assert "Contacts" in alice.get("/o/acme/contacts/").content.decode()
    assert alice.get(f"/o/acme/contacts/books/{book.pk}/", {"q": "dan"}).status_code == 200
    assert alice.get(f"/o/acme/contacts/books/{book.pk}/settings/").status_code == 200
    bad = alice.post(f"/o/acme/contacts/books/{book.pk}/new/", {"name": "", "emails": "not an address"})
    assert bad.status_code == 200
    assert "is not an email address" in bad.content.decode()
