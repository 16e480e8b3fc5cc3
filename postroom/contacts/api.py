"""API for contact books and contacts: the same selectors and actions as the pages.

A book the caller cannot see is 404 (other organizations' ids, a teammate's personal book, a
team's book from outside the team); a book they may only read answers 403 to writes. Request
bodies are ``schemas.Input`` allowlists: ``organization``, ``owner``, ``source``, ids and index
columns cannot be written (R23). Answers carry the decrypted card, never the blind indexes.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest
from ninja import Field, Query, Router, Schema, Status

from postroom.api.errors import ERRORS
from postroom.api.pagination import Page, PageParams, paginate
from postroom.api.schemas import Input
from postroom.contacts import actions, selectors
from postroom.contacts.cards import Card, card_clean
from postroom.contacts.models import BookKind, BookShare, Contact, ContactBook
from postroom.orgs.models import Membership, Team
from postroom.orgs.selectors import membership_get

router = Router(tags=["contacts"])


class ShareOut(Schema):
    team_id: int | None = Field(description="The team it is shared with; null: the whole organization.")
    can_write: bool


class BookOut(Schema):
    id: uuid.UUID
    name: str
    kind: BookKind
    owner_id: int | None = Field(description="The membership that owns a personal book.")
    team_id: int | None = Field(description="The team of a team book.")
    is_default: bool = Field(description="The personal book that receives automatic contacts.")
    can_write: bool = Field(description="Whether the caller may add and change contacts in it.")
    can_manage: bool = Field(description="Whether the caller may rename, share or delete it.")
    shares: list[ShareOut]
    created_at: datetime


class BookPage(Page[BookOut]):
    """One page of the contact books the caller can see, oldest first."""


class BookIn(Input):
    name: str = Field(max_length=80)
    kind: BookKind = BookKind.PERSONAL
    team_id: int | None = Field(None, description="Required for a team book: a team of the caller's.")


class BookPatch(Input):
    name: str = Field(max_length=80)


class BookShareIn(Input):
    team_id: int | None = Field(None, description="A team of the organization; null shares with the whole organization.")
    can_write: bool = False


class CustomField(Schema):
    name: str
    value: str


class ContactOut(Schema):
    id: uuid.UUID
    book_id: uuid.UUID
    name: str
    emails: list[str]
    phones: list[str]
    company: str
    job_title: str
    notes: str
    fields: list[CustomField]
    source: str
    created_at: datetime
    updated_at: datetime


class ContactPage(Page[ContactOut]):
    """One page of a book's contacts, oldest first."""


class CustomFieldIn(Input):
    name: str = Field(max_length=60)
    value: str = Field(max_length=1000)


class ContactIn(Input):
    name: str = Field("", max_length=200)
    emails: list[str] = Field(default_factory=list, max_length=20)
    phones: list[str] = Field(default_factory=list, max_length=20)
    company: str = Field("", max_length=200)
    job_title: str = Field("", max_length=200)
    notes: str = Field("", max_length=10_000)
    fields: list[CustomFieldIn] = Field(default_factory=list, max_length=50)


class ContactPatch(Input):
    """Only the fields sent change."""

    name: str | None = Field(None, max_length=200)
    emails: list[str] | None = Field(None, max_length=20)
    phones: list[str] | None = Field(None, max_length=20)
    company: str | None = Field(None, max_length=200)
    job_title: str | None = Field(None, max_length=200)
    notes: str | None = Field(None, max_length=10_000)
    fields: list[CustomFieldIn] | None = Field(None, max_length=50)


class SuggestionOut(Schema):
    contact_id: uuid.UUID
    book_id: uuid.UUID
    name: str
    email: str


class AutocompleteOut(Schema):
    results: list[SuggestionOut]
    truncated: bool = Field(description="The scan stopped at its cap: type more (a full address is always found).")


def _book_out(actor: Membership, book: ContactBook) -> BookOut:
    access = selectors.book_access(actor=actor, book=book)
    shares = (
        [ShareOut(team_id=share.team_id, can_write=share.can_write) for share in BookShare.objects.filter(book=book)]
        if access.manage
        else []
    )
    return BookOut(
        id=book.pk, name=book.name, kind=BookKind(book.kind), owner_id=book.owner_id, team_id=book.team_id, is_default=book.is_default,
        can_write=access.write, can_manage=access.manage, shares=shares, created_at=book.created_at,
    )  # fmt: skip


def _contact_out(contact: Contact) -> ContactOut:
    card = Card.from_json(contact.card)
    return ContactOut(
        id=contact.pk, book_id=contact.book_id, name=card.name, emails=card.emails or [], phones=card.phones or [], company=card.company,
        job_title=card.job_title, notes=card.notes, fields=[CustomField(name=key, value=value) for key, value in card.fields or []],
        source=contact.source, created_at=contact.created_at, updated_at=contact.updated_at,
    )  # fmt: skip


def _team(actor: Membership, team_id: int | None) -> Team | None:
    if team_id is None:
        return None
    team = Team.objects.filter(organization_id=actor.organization_id, pk=team_id).first()
    if team is None:
        raise Http404
    return team


def _card(values: dict[str, Any]) -> Card:
    fields = [[pair["name"], pair["value"]] for pair in values.get("fields") or []]
    return card_clean(**{**values, "fields": fields})


@router.get("/orgs/{slug}/contact-books", response={200: BookPage, **ERRORS}, summary="List the contact books you can see")
def book_list(request: HttpRequest, slug: str, page: Query[PageParams]) -> BookPage:
    actor = membership_get(user=request.user, slug=slug)
    paged = paginate(selectors.books_visible(actor=actor), order=("created_at", "id"), params=page, key="contact-books")
    return BookPage(items=[_book_out(actor, book) for book in paged.items], next=paged.next)


@router.post("/orgs/{slug}/contact-books", response={201: BookOut, **ERRORS}, summary="Create a contact book")
def book_create(request: HttpRequest, slug: str, payload: BookIn) -> Status[BookOut]:
    actor = membership_get(user=request.user, slug=slug)
    if payload.kind == BookKind.TEAM and payload.team_id is None:
        raise ValidationError({"team_id": "A team book needs the team."})
    book = actions.book_create(actor=actor, name=payload.name, kind=payload.kind, team=_team(actor, payload.team_id), request=request)
    return Status(201, _book_out(actor, book))


@router.get("/orgs/{slug}/contact-books/{uuid:book_id}", response={200: BookOut, **ERRORS}, summary="One contact book")
def book_detail(request: HttpRequest, slug: str, book_id: uuid.UUID) -> BookOut:
    actor = membership_get(user=request.user, slug=slug)
    return _book_out(actor, selectors.book_get(actor=actor, book_id=book_id))


@router.patch("/orgs/{slug}/contact-books/{uuid:book_id}", response={200: BookOut, **ERRORS}, summary="Rename a contact book")
def book_update(request: HttpRequest, slug: str, book_id: uuid.UUID, payload: BookPatch) -> BookOut:
    actor = membership_get(user=request.user, slug=slug)
    book = actions.book_rename(actor=actor, book=selectors.book_get(actor=actor, book_id=book_id), name=payload.name)
    return _book_out(actor, book)


@router.delete(
    "/orgs/{slug}/contact-books/{uuid:book_id}", response={204: None, **ERRORS}, summary="Delete a contact book and its contacts"
)
def book_delete(request: HttpRequest, slug: str, book_id: uuid.UUID) -> Status[None]:
    actor = membership_get(user=request.user, slug=slug)
    book = selectors.book_get(actor=actor, book_id=book_id)
    if book.is_default and selectors.book_access(actor=actor, book=book).manage:
        raise ValidationError({"book": "Your default book receives your automatic contacts; it cannot be deleted."})
    actions.book_delete(actor=actor, book=book, request=request)
    return Status(204, None)


@router.post(
    "/orgs/{slug}/contact-books/{uuid:book_id}/shares",
    response={200: BookOut, **ERRORS},
    summary="Share a book with a team or the organization",
)
def book_share(request: HttpRequest, slug: str, book_id: uuid.UUID, payload: BookShareIn) -> BookOut:
    actor = membership_get(user=request.user, slug=slug)
    book = selectors.book_get(actor=actor, book_id=book_id)
    actions.book_share(actor=actor, book=book, team=_team(actor, payload.team_id), can_write=payload.can_write, request=request)
    return _book_out(actor, book)


@router.delete("/orgs/{slug}/contact-books/{uuid:book_id}/shares", response={200: BookOut, **ERRORS}, summary="Stop sharing a book")
def book_unshare(request: HttpRequest, slug: str, book_id: uuid.UUID, team_id: Query[int | None] = None) -> BookOut:
    actor = membership_get(user=request.user, slug=slug)
    book = selectors.book_get(actor=actor, book_id=book_id)
    actions.book_unshare(actor=actor, book=book, team=_team(actor, team_id), request=request)
    return _book_out(actor, book)


@router.get("/orgs/{slug}/contact-books/{uuid:book_id}/contacts", response={200: ContactPage, **ERRORS}, summary="List a book's contacts")
def contact_list(request: HttpRequest, slug: str, book_id: uuid.UUID, page: Query[PageParams]) -> ContactPage:
    actor = membership_get(user=request.user, slug=slug)
    book = selectors.book_get(actor=actor, book_id=book_id)
    paged = paginate(selectors.book_contacts(actor=actor, book=book), order=("created_at", "id"), params=page, key="contacts")
    return ContactPage(items=[_contact_out(contact) for contact in paged.items], next=paged.next)


@router.post("/orgs/{slug}/contact-books/{uuid:book_id}/contacts", response={201: ContactOut, **ERRORS}, summary="Add a contact to a book")
def contact_create(request: HttpRequest, slug: str, book_id: uuid.UUID, payload: ContactIn) -> Status[ContactOut]:
    actor = membership_get(user=request.user, slug=slug)
    book = selectors.book_get(actor=actor, book_id=book_id)
    contact = actions.contact_create(actor=actor, book=book, card=_card(payload.model_dump()))
    return Status(201, _contact_out(contact))


@router.get(
    "/orgs/{slug}/contacts/autocomplete", response={200: AutocompleteOut, **ERRORS}, summary="Recipients starting with q, from your books"
)
def contact_autocomplete(request: HttpRequest, slug: str, q: Query[str] = "") -> AutocompleteOut:
    actor = membership_get(user=request.user, slug=slug)
    suggestions, truncated = selectors.contacts_autocomplete(actor=actor, query=q[:100])
    return AutocompleteOut(
        results=[SuggestionOut(contact_id=item.contact_id, book_id=item.book_id, name=item.name, email=item.email) for item in suggestions],
        truncated=truncated,
    )


@router.get("/orgs/{slug}/contacts/{uuid:contact_id}", response={200: ContactOut, **ERRORS}, summary="One contact")
def contact_detail(request: HttpRequest, slug: str, contact_id: uuid.UUID) -> ContactOut:
    actor = membership_get(user=request.user, slug=slug)
    return _contact_out(selectors.contact_get(actor=actor, contact_id=contact_id))


@router.patch("/orgs/{slug}/contacts/{uuid:contact_id}", response={200: ContactOut, **ERRORS}, summary="Change a contact")
def contact_update(request: HttpRequest, slug: str, contact_id: uuid.UUID, payload: ContactPatch) -> ContactOut:
    actor = membership_get(user=request.user, slug=slug)
    contact = selectors.contact_get(actor=actor, contact_id=contact_id)
    current = Card.from_json(contact.card).as_json()
    current["fields"] = [{"name": key, "value": value} for key, value in current["fields"]]
    changes = payload.model_dump(exclude_unset=True, exclude_none=True)
    contact = actions.contact_update(actor=actor, contact=contact, card=_card({**current, **changes}))
    return _contact_out(contact)


@router.delete("/orgs/{slug}/contacts/{uuid:contact_id}", response={204: None, **ERRORS}, summary="Delete a contact")
def contact_delete(request: HttpRequest, slug: str, contact_id: uuid.UUID) -> Status[None]:
    actor = membership_get(user=request.user, slug=slug)
    actions.contact_delete(actor=actor, contact=selectors.contact_get(actor=actor, contact_id=contact_id))
    return Status(204, None)
