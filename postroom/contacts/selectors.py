"""Reads of contact books and contacts, scoped to the member asking.

Attacker: a member who reads a teammate's personal book, a team's book from outside the team,
or anything of another organization, by id, list, search, autocomplete or export (R21).
Defences: every read starts from ``books_visible`` (one query, the rules below) and filters by
the actor's organization; missing, foreign and forbidden all answer 404. Within a visible book,
a member who may only read gets 403 on writes (R22): they already know the book exists.

Who sees and changes a book:

- personal: its owner reads, writes and manages it;
- team: the team's members (observers included) read, write and manage it;
- organization: every member reads it; admins and owners write and manage it;
- a share (with a team, or the whole organization) adds read, or read and write, for the members
  it reaches. Managing (rename, share, delete) stays with the book's scope.

The contact page lists conversations through ``MessageAddress`` joined with the messages the
viewer can see (``conversations.selectors.messages_visible``), not only the conversations: a
teammate's private message to the contact, threaded into a shared conversation, does not make
the conversation show up on the contact page.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.http import Http404

from postroom.contacts.cards import Card, address_index, normalise_address
from postroom.contacts.models import BookKind, BookShare, Contact, ContactBook, ContactEmail, ContactImport, MessageAddress
from postroom.conversations.models import Conversation
from postroom.conversations.selectors import messages_visible
from postroom.core.crypto import Field
from postroom.core.keys import keyring, org_scope
from postroom.orgs.models import Membership, TeamMembership
from postroom.orgs.policy import Permission, role_allows

# Autocomplete decrypts the cards of the books the member can see, most recently changed first,
# up to this many per request (see ``contacts_autocomplete``).
AUTOCOMPLETE_SCAN_LIMIT = 2_000
AUTOCOMPLETE_RESULTS = 10
CONTACT_PAGE_CONVERSATIONS = 100


def _uuid(value: Any) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise Http404 from None


def _in_team(actor: Membership, team_field: str) -> Exists:
    return Exists(TeamMembership.objects.filter(team_id=OuterRef(team_field), membership=actor))


def _shared_with(actor: Membership, *, writable: bool = False) -> Exists:
    shares = BookShare.objects.filter(book_id=OuterRef("pk")).filter(
        Q(team__isnull=True) | Q(team__in=TeamMembership.objects.filter(membership=actor).values("team_id"))
    )
    if writable:
        shares = shares.filter(can_write=True)
    return Exists(shares)


def books_visible(*, actor: Membership) -> QuerySet[ContactBook]:
    """Every book the actor may read."""
    return ContactBook.objects.filter(organization_id=actor.organization_id).filter(
        Q(kind=BookKind.PERSONAL, owner=actor)
        | Q(kind=BookKind.TEAM, team__in=TeamMembership.objects.filter(membership=actor).values("team_id"))
        | Q(kind=BookKind.ORGANIZATION)
        | _shared_with(actor)
    )


def books_writable(*, actor: Membership) -> QuerySet[ContactBook]:
    """Every book the actor may add contacts to or change contacts in."""
    scope = Q(kind=BookKind.PERSONAL, owner=actor) | Q(
        kind=BookKind.TEAM, team__in=TeamMembership.objects.filter(membership=actor).values("team_id")
    )
    if role_allows(actor.role, Permission.MANAGE_ORGANIZATION_CONTACTS):
        scope |= Q(kind=BookKind.ORGANIZATION)
    return ContactBook.objects.filter(organization_id=actor.organization_id).filter(scope | _shared_with(actor, writable=True))


@dataclass(frozen=True)
class BookAccess:
    read: bool
    write: bool
    manage: bool


def book_access(*, actor: Membership, book: ContactBook) -> BookAccess:
    if book.organization_id != actor.organization_id:
        return BookAccess(False, False, False)
    if book.kind == BookKind.PERSONAL:
        manage = book.owner_id == actor.pk
    elif book.kind == BookKind.TEAM:
        manage = book.team_id is not None and TeamMembership.objects.filter(team_id=book.team_id, membership=actor).exists()
    else:
        manage = role_allows(actor.role, Permission.MANAGE_ORGANIZATION_CONTACTS)
    if manage:
        return BookAccess(True, True, True)
    shares = BookShare.objects.filter(book=book).filter(
        Q(team__isnull=True) | Q(team__in=TeamMembership.objects.filter(membership=actor).values("team_id"))
    )
    can_write = any(shares.values_list("can_write", flat=True))
    read = can_write or book.kind == BookKind.ORGANIZATION or shares.exists()
    return BookAccess(read=read, write=can_write, manage=False)


def book_get(*, actor: Membership, book_id: Any) -> ContactBook:
    book = books_visible(actor=actor).filter(pk=_uuid(book_id)).select_related("owner__user", "team").first()
    if book is None:
        raise Http404
    return book


def book_default_of(*, actor: Membership) -> ContactBook | None:
    return ContactBook.objects.filter(organization_id=actor.organization_id, owner=actor, is_default=True).first()


def book_contacts(*, actor: Membership, book: ContactBook) -> QuerySet[Contact]:
    """The contacts of a book the actor can see (``book`` comes from ``book_get``)."""
    if not book_access(actor=actor, book=book).read:
        raise Http404
    return Contact.objects.filter(organization_id=actor.organization_id, book=book)


def book_contacts_sorted(*, actor: Membership, book: ContactBook, query: str = "") -> list[Contact]:
    """Decrypted and sorted by name (names are sealed, so the database cannot sort them)."""
    contacts = list(book_contacts(actor=actor, book=book))
    if query:
        contacts = [contact for contact in contacts if _matches(Card.from_json(contact.card), query.casefold())]
    return sorted(contacts, key=lambda contact: (Card.from_json(contact.card).label.casefold(), str(contact.pk)))


def contacts_visible(*, actor: Membership) -> QuerySet[Contact]:
    return Contact.objects.filter(organization_id=actor.organization_id, book__in=books_visible(actor=actor))


def contact_get(*, actor: Membership, contact_id: Any) -> Contact:
    contact = contacts_visible(actor=actor).filter(pk=_uuid(contact_id)).select_related("book").first()
    if contact is None:
        raise Http404
    return contact


def contact_conversations(*, actor: Membership, contact: Contact, limit: int = CONTACT_PAGE_CONVERSATIONS) -> list[Conversation]:
    """Conversations with a message the actor can see from, to or cc one of the contact's
    addresses, newest first: one query, whatever the number of addresses or messages."""
    indexes = ContactEmail.objects.filter(contact=contact).values("address_index")
    with_contact = MessageAddress.objects.filter(
        organization_id=actor.organization_id, address_index__in=indexes, message__in=messages_visible(actor=actor)
    ).values("message__conversation_id")
    return list(
        Conversation.objects.filter(organization_id=actor.organization_id, members__membership=actor, pk__in=with_contact).order_by(
            "-last_message_at", "-pk"
        )[:limit]
    )


def _name_matches(card: Card, query: str) -> bool:
    name = card.name.casefold()
    return name.startswith(query) or any(word.startswith(query) for word in name.split())


def _matches(card: Card, query: str) -> bool:
    return _name_matches(card, query) or any(email.startswith(query) for email in card.emails or [])


@dataclass(frozen=True)
class Suggestion:
    contact_id: uuid.UUID
    book_id: uuid.UUID
    name: str
    email: str


def contacts_autocomplete(*, actor: Membership, query: str, limit: int = AUTOCOMPLETE_RESULTS) -> tuple[list[Suggestion], bool]:
    """Recipients whose name (or a word of it) or address starts with ``query``, from the books
    the actor can see; and whether the scan stopped at ``AUTOCOMPLETE_SCAN_LIMIT`` cards.

    Names and addresses are sealed, so matching happens here, after decrypting: a prefix cannot
    be looked up by blind index. A full address is also looked up by its index, so an exact
    address is found whatever the size of the books."""
    query = query.strip().casefold()
    if not query:
        return [], False
    visible = contacts_visible(actor=actor)
    columns = ("pk", "book_id", "card_sealed")
    exact = (
        visible.filter(email_rows__address_index=address_index(actor.organization_id, query)).values_list(*columns) if "@" in query else []
    )
    scanned = list(visible.order_by("-updated_at", "-pk").values_list(*columns)[: AUTOCOMPLETE_SCAN_LIMIT + 1])
    truncated = len(scanned) > AUTOCOMPLETE_SCAN_LIMIT
    # Rows, not model instances, decrypted here directly: half the time of building instances.
    candidates = {pk: (book_id, sealed) for pk, book_id, sealed in [*exact, *scanned[:AUTOCOMPLETE_SCAN_LIMIT]]}
    scope, table, ring = org_scope(actor.organization_id), Contact._meta.db_table, keyring()
    suggestions: list[Suggestion] = []
    seen: set[str] = set()
    for pk, (book_id, sealed) in candidates.items():
        if sealed is None:
            continue
        card = Card.from_json(json.loads(ring.decrypt(scope, Field(table=table, column="card_sealed", row=str(pk)), bytes(sealed))))
        if not _matches(card, query):
            continue
        name_matches = _name_matches(card, query)
        for email in card.emails or []:
            # Found by its name: every address; found by an address: that one.
            if email in seen or not (name_matches or email.startswith(query)):
                continue
            seen.add(email)
            suggestions.append(Suggestion(contact_id=pk, book_id=book_id, name=card.name, email=email))
    suggestions.sort(
        key=lambda item: (not item.email.startswith(query), not item.name.casefold().startswith(query), item.name.casefold(), item.email)
    )
    return suggestions[:limit], truncated


def contacts_by_address(*, actor: Membership, address: str) -> list[Contact]:
    """Contacts with this exact address in the books the actor can see."""
    index = address_index(actor.organization_id, normalise_address(address))
    return list(contacts_visible(actor=actor).filter(email_rows__address_index=index).distinct())


def book_duplicates(*, actor: Membership, book: ContactBook) -> list[list[Contact]]:
    """Groups of contacts of the book that share an address or a normalised name."""
    contacts = book_contacts(actor=actor, book=book)
    same_address = (
        ContactEmail.objects.filter(book=book)
        .values("address_index")
        .annotate(count=Count("contact_id", distinct=True))
        .filter(count__gt=1)
    )
    pairs = list(
        ContactEmail.objects.filter(book=book, address_index__in=same_address.values("address_index")).values_list(
            "address_index", "contact_id"
        )
    )
    same_name = contacts.exclude(name_index="").values("name_index").annotate(count=Count("pk")).filter(count__gt=1)
    pairs += list(contacts.filter(name_index__in=same_name.values("name_index")).values_list("name_index", "pk"))
    groups: dict[str, set[Any]] = defaultdict(set)
    for key, contact_id in pairs:
        groups[key].add(contact_id)
    # Two contacts sharing both an address and a name are one group, not two.
    unique_groups = {frozenset(members) for members in groups.values() if len(members) > 1}
    by_id = {contact.pk: contact for contact in contacts.filter(pk__in={pk for group in unique_groups for pk in group})}
    ordered = [sorted((by_id[pk] for pk in group if pk in by_id), key=lambda contact: contact.created_at) for group in unique_groups]
    return sorted((group for group in ordered if len(group) > 1), key=lambda group: Card.from_json(group[0].card).label.casefold())


def book_import_latest(*, actor: Membership, book: ContactBook) -> ContactImport | None:
    """The actor's latest big import into ``book`` (``book`` comes from ``book_get``): its
    progress while it runs, its report once it is done. Only its author sees it."""
    return ContactImport.objects.filter(book=book, actor=actor, organization_id=actor.organization_id).order_by("-created_at").first()
