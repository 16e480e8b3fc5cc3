"""The contacts API, every answer checked against the OpenAPI document (``ApiClient``)."""

from __future__ import annotations

import pytest

from postroom.api.tests.helpers import ApiClient
from postroom.conftest import Cast
from postroom.contacts.models import Contact, ContactBook, ContactEmail, ContactSource
from postroom.orgs.models import Team, TeamMembership

pytestmark = pytest.mark.django_db

PROTECTED = {
    "id": "00000000-0000-7000-8000-000000000009", "organization": 2, "organization_id": 2, "owner_id": 4, "book_id": "x",
    "source": "import", "name_index": "x", "card_sealed": "x", "is_default": True, "created_at": "2099-01-01T00:00:00Z",
}  # fmt: skip


def test_books_and_contacts_crud_with_pages(cast: Cast) -> None:
    api = ApiClient(cast.alice)
    created = api.post("/orgs/acme/contact-books", {"name": "Suppliers", **PROTECTED})
    assert created.status_code == 201
    book = ContactBook.objects.get(pk=created.json()["id"])
    assert (book.organization_id, book.owner_id, book.kind, book.is_default) == (cast.org_a.pk, cast.alice_membership.pk, "personal", False)
    assert api.patch(f"/orgs/acme/contact-books/{book.pk}", {"name": "Vendors"}).json()["name"] == "Vendors"

    ids = []
    for number in range(5):
        response = api.post(f"/orgs/acme/contact-books/{book.pk}/contacts", {
            **PROTECTED, "name": f"Person {number}", "emails": [f"P{number}@Example.org"], "phones": ["+1 555"],
            "fields": [{"name": "Tier", "value": "gold"}],
        })  # fmt: skip
        assert response.status_code == 201, response.content
        ids.append(response.json()["id"])
        assert response.json()["emails"] == [f"p{number}@example.org"]
    contact = Contact.objects.get(pk=ids[0])
    assert (contact.book_id, contact.organization_id, contact.source) == (book.pk, cast.org_a.pk, ContactSource.MANUAL)

    seen, cursor = [], None
    while True:
        page = api.get(f"/orgs/acme/contact-books/{book.pk}/contacts", limit=2, **({"cursor": cursor} if cursor else {})).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == ids

    patched = api.patch(f"/orgs/acme/contacts/{ids[0]}", {"company": "Example Ltd", "emails": ["p0@example.org", "p0@home.example"]})
    assert patched.status_code == 200
    assert (patched.json()["name"], patched.json()["company"], patched.json()["phones"]) == ("Person 0", "Example Ltd", ["+1 555"])
    assert ContactEmail.objects.filter(contact_id=ids[0]).count() == 2
    bad = api.patch(f"/orgs/acme/contacts/{ids[0]}", {"emails": ["not an address"]})
    assert bad.status_code == 422
    assert "not an email address" in bad.content.decode()

    suggestions = api.get("/orgs/acme/contacts/autocomplete", q="person 1").json()
    assert [item["email"] for item in suggestions["results"]] == ["p1@example.org"]
    suggestions = api.get("/orgs/acme/contacts/autocomplete", q="p0@ex").json()
    assert [item["email"] for item in suggestions["results"]] == ["p0@example.org"]
    assert suggestions["truncated"] is False

    assert api.delete(f"/orgs/acme/contacts/{ids[0]}").status_code == 204
    assert api.delete(f"/orgs/acme/contact-books/{book.pk}").status_code == 204
    assert not Contact.objects.exists()


def test_team_books_and_shares_through_the_api(cast: Cast) -> None:
    support = Team.objects.create(organization=cast.org_a, name="Support")
    TeamMembership.objects.create(team=support, membership=cast.alice_membership)
    alice, bob = ApiClient(cast.alice), ApiClient(cast.bob)
    assert bob.post("/orgs/acme/contact-books", {"name": "Support", "kind": "team", "team_id": support.pk}).status_code == 403
    assert alice.post("/orgs/acme/contact-books", {"name": "Support", "kind": "team"}).status_code == 422
    book_id = alice.post("/orgs/acme/contact-books", {"name": "Support", "kind": "team", "team_id": support.pk}).json()["id"]
    assert bob.get(f"/orgs/acme/contact-books/{book_id}").status_code == 404
    shared = alice.post(f"/orgs/acme/contact-books/{book_id}/shares", {"team_id": None, "can_write": False})
    assert shared.json()["shares"] == [{"team_id": None, "can_write": False}]
    answer = bob.get(f"/orgs/acme/contact-books/{book_id}").json()
    assert (answer["can_write"], answer["can_manage"], answer["shares"]) == (False, False, [])
    assert bob.post(f"/orgs/acme/contact-books/{book_id}/contacts", {"name": "X"}).status_code == 403
    assert alice.delete(f"/orgs/acme/contact-books/{book_id}/shares").status_code == 200
    assert bob.get(f"/orgs/acme/contact-books/{book_id}").status_code == 404


def test_the_default_book_cannot_be_deleted(cast: Cast, client_as) -> None:
    from postroom.contacts.actions import book_default

    book = book_default(actor=cast.alice_membership)
    assert ApiClient(cast.alice).delete(f"/orgs/acme/contact-books/{book.pk}").status_code == 422
    client_as(cast.alice).post(f"/o/acme/contacts/books/{book.pk}/settings/", {"operation": "delete"})
    assert ContactBook.objects.filter(pk=book.pk).exists()
