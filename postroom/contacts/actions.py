"""Writes to contact books and contacts, on behalf of a member or of arriving mail.

Every write checks the actor's access to the book (``contacts.selectors``: 404 for a book they
cannot see, 403 for one they may only read), changes the rows in one transaction, and records
book-level events (created, shared, deleted, imported, exported, merged) in the audit log with
counts only: the audit table is not encrypted, so no name or address ever goes there.

Automatic contacts (``messages_stored``) run inside the ingest transaction, for the messages a
batch created. Why there and not after a send in ``outbox``: mail a member sends from any client
(a phone, Thunderbird, Postroom's own composer, which appends to Sent) arrives through the Sent
folder of their mailbox as an outbound message, so one hook sees all of it, once, and the same
pass indexes every new message's addresses for the contact pages. It stays cheap: one query for
the batch's addresses, one for the default books, one for the addresses those books already
have, and bulk inserts. Mail sent from a team mailbox has no single author and adds no
automatic contacts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.http import Http404, HttpRequest

from postroom.audit.actions import audit_record
from postroom.contacts import selectors
from postroom.contacts.cards import Card, address_index, card_clean, card_union, name_index, normalise_address
from postroom.contacts.models import BookKind, BookShare, Contact, ContactBook, ContactEmail, ContactSource, MessageAddress
from postroom.conversations.models import Message
from postroom.core.bulk import rows_insert
from postroom.core.ids import uuid7
from postroom.orgs.models import Membership, Team, TeamMembership
from postroom.orgs.policy import Permission, role_allows

DEFAULT_BOOK_NAME = "My contacts"
MAX_BOOK_NAME = 80
# Roles of a message's addresses that make someone a participant (the contact page).
PARTICIPANT_ROLES = ("from", "to", "cc")
# Roles whose addresses become automatic contacts of the member who sent the message.
RECIPIENT_ROLES = ("to", "cc", "bcc")


def _audit(actor: Membership, action: str, book: ContactBook, request: HttpRequest | None, **details: Any) -> None:
    audit_record(action=action, actor=actor.user, organization=actor.organization, request=request, target=book, details=details)


def _book_name(name: str) -> str:
    name = " ".join((name or "").split())
    if not name:
        raise ValidationError({"name": "Give the book a name."})
    if len(name) > MAX_BOOK_NAME:
        raise ValidationError({"name": f"At most {MAX_BOOK_NAME} characters."})
    return name


def _require(actor: Membership, book: ContactBook, *, write: bool = False, manage: bool = False) -> None:
    access = selectors.book_access(actor=actor, book=book)
    if not access.read:
        raise Http404
    if manage and not access.manage:
        raise PermissionDenied("Only the book's owner (its team, or admins for the organization's book) can change the book itself.")
    if write and not access.write:
        raise PermissionDenied("This book is shared with you read-only.")


# Books --------------------------------------------------------------------------------------------


def book_default(*, actor: Membership) -> ContactBook:
    """The actor's default personal book, created the first time it is needed."""
    existing = selectors.book_default_of(actor=actor)
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            return ContactBook.objects.create(
                organization_id=actor.organization_id, kind=BookKind.PERSONAL, owner=actor, name=DEFAULT_BOOK_NAME, is_default=True
            )
    except IntegrityError:  # created meanwhile by another request or worker
        book = selectors.book_default_of(actor=actor)
        if book is None:
            raise
        return book


def book_create(
    *, actor: Membership, name: str, kind: str = BookKind.PERSONAL, team: Team | None = None, request: HttpRequest | None = None
) -> ContactBook:
    name = _book_name(name)
    if kind == BookKind.PERSONAL:
        owner, team = actor, None
    elif kind == BookKind.TEAM:
        if team is None:
            raise ValidationError({"team": "Choose the team the book belongs to."})
        if team.organization_id != actor.organization_id:
            raise Http404
        if not TeamMembership.objects.filter(team=team, membership=actor).exists():
            raise PermissionDenied("Only the team's members create its books.")
        owner = None
    elif kind == BookKind.ORGANIZATION:
        if not role_allows(actor.role, Permission.MANAGE_ORGANIZATION_CONTACTS):
            raise PermissionDenied("Only admins create the organization's books.")
        owner, team = None, None
    else:
        raise ValidationError({"kind": "Choose personal, team or organization."})
    with transaction.atomic():
        book = ContactBook.objects.create(organization_id=actor.organization_id, kind=kind, owner=owner, team=team, name=name)
        _audit(actor, "contacts.book_created", book, request, kind=kind)
    return book


def book_rename(*, actor: Membership, book: ContactBook, name: str) -> ContactBook:
    _require(actor, book, manage=True)
    book.name = _book_name(name)
    book.save(update_fields=["name"])
    return book


def book_delete(*, actor: Membership, book: ContactBook, request: HttpRequest | None = None) -> None:
    _require(actor, book, manage=True)
    with transaction.atomic():
        count = Contact.objects.filter(book=book).count()
        _audit(actor, "contacts.book_deleted", book, request, contacts=count)
        book.delete()


def book_share(
    *, actor: Membership, book: ContactBook, team: Team | None, can_write: bool, request: HttpRequest | None = None
) -> BookShare:
    """Share with a team (or the whole organization when ``team`` is None); again changes the access."""
    _require(actor, book, manage=True)
    if team is not None and team.organization_id != actor.organization_id:
        raise Http404
    with transaction.atomic():
        share, _created = BookShare.objects.update_or_create(book=book, team=team, defaults={"can_write": can_write, "created_by": actor})
        _audit(actor, "contacts.book_shared", book, request, team=team.pk if team else None, can_write=can_write)
    return share


def book_unshare(*, actor: Membership, book: ContactBook, team: Team | None, request: HttpRequest | None = None) -> None:
    _require(actor, book, manage=True)
    with transaction.atomic():
        BookShare.objects.filter(book=book, team=team).delete()
        _audit(actor, "contacts.book_unshared", book, request, team=team.pk if team else None)


# Contacts -----------------------------------------------------------------------------------------


def _new_contact(
    book: ContactBook, card: Card, *, source: str, actor: Membership | None, pk: Any = None
) -> tuple[Contact, list[ContactEmail]]:
    contact = Contact(id=pk or uuid7(), organization_id=book.organization_id, book=book, source=source, created_by=actor)
    contact.card = card.as_json()
    contact.name_index = name_index(book.organization_id, card.name)
    emails = [
        ContactEmail(
            contact=contact, book=book, organization_id=book.organization_id, address_index=address_index(book.organization_id, email)
        )
        for email in card.emails or []
    ]
    return contact, emails


def _store_card(contact: Contact, card: Card) -> None:
    contact.card = card.as_json()
    contact.name_index = name_index(contact.organization_id, card.name)
    contact.save(update_fields=["card_sealed", "name_index", "updated_at"])
    indexes = {address_index(contact.organization_id, email) for email in card.emails or []}
    ContactEmail.objects.filter(contact=contact).exclude(address_index__in=indexes).delete()
    have = set(ContactEmail.objects.filter(contact=contact).values_list("address_index", flat=True))
    ContactEmail.objects.bulk_create([
        ContactEmail(contact=contact, book_id=contact.book_id, organization_id=contact.organization_id, address_index=index)
        for index in indexes - have
    ])  # fmt: skip


def contact_create(*, actor: Membership, book: ContactBook, card: Card, source: str = ContactSource.MANUAL) -> Contact:
    _require(actor, book, write=True)
    with transaction.atomic():
        contact, emails = _new_contact(book, card, source=source, actor=actor)
        contact.save()
        ContactEmail.objects.bulk_create(emails)
    return contact


def contact_update(*, actor: Membership, contact: Contact, card: Card) -> Contact:
    _require(actor, contact.book, write=True)
    with transaction.atomic():
        _store_card(contact, card)
    return contact


def contact_delete(*, actor: Membership, contact: Contact) -> None:
    _require(actor, contact.book, write=True)
    contact.delete()


def contact_move(*, actor: Membership, contact: Contact, book: ContactBook) -> Contact:
    """Into another book: written in both."""
    _require(actor, contact.book, write=True)
    _require(actor, book, write=True)
    with transaction.atomic():
        contact.book = book
        contact.save(update_fields=["book", "updated_at"])
        ContactEmail.objects.filter(contact=contact).update(book=book)
    return contact


def contact_from_sender(*, actor: Membership, message: Message, book: ContactBook | None = None) -> tuple[Contact, bool]:
    """A contact for the sender of a message the actor can see (the caller fetched it with
    ``conversations.selectors.message_get``): the existing one in the book when its address is
    there already, else a new one. Into the actor's default book unless ``book`` is given."""
    senders = [pair for pair in (message.addresses or {}).get("from", []) if len(pair) == 2 and pair[1]]
    if not senders:
        raise ValidationError("This message has no sender address.")
    name, address = senders[0]
    book = book or book_default(actor=actor)
    _require(actor, book, write=True)
    card = card_clean(name=name, emails=[address])
    index = address_index(actor.organization_id, card.emails[0] if card.emails else address)
    existing = Contact.objects.filter(book=book, email_rows__address_index=index).first()
    if existing is not None:
        return existing, False
    return contact_create(actor=actor, book=book, card=card, source=ContactSource.SENDER), True


def contacts_merge(*, actor: Membership, kept: Contact, merged: Contact, request: HttpRequest | None = None) -> Contact:
    """Fold ``merged`` into ``kept`` (addresses, phones and fields unioned, empty fields filled),
    then delete ``merged``. Both must be in books the actor may write."""
    if kept.pk == merged.pk:
        raise ValidationError("Choose two different contacts.")
    _require(actor, kept.book, write=True)
    _require(actor, merged.book, write=True)
    with transaction.atomic():
        union = card_union(Card.from_json(kept.card), Card.from_json(merged.card))
        _store_card(kept, union)
        merged.delete()
        _audit(actor, "contacts.merged", kept.book, request, kept=str(kept.pk), merged=str(merged.pk))
    return kept


# Arriving mail ------------------------------------------------------------------------------------


def _pairs(addresses: dict[str, Any], roles: Iterable[str]) -> list[tuple[str, str]]:
    pairs = []
    for role in roles:
        for pair in addresses.get(role, []) or []:
            if isinstance(pair, list | tuple) and len(pair) == 2 and isinstance(pair[1], str) and "@" in pair[1]:
                pairs.append((str(pair[0] or ""), normalise_address(pair[1])))
    return pairs


def messages_stored(*, new_message_ids: Iterable[Any], authors: Mapping[Any, int], loaded: Iterable[Message] = ()) -> None:
    """New messages were stored (inside the ingest transaction): index their addresses, and add
    the recipients of ``authors`` (message id → membership id of the member who sent it) to each
    author's default book. ``loaded``: some of them as the caller holds them (addresses set), so
    that they are not read and decrypted again."""
    ids = list(new_message_ids)
    if not ids:
        return
    wanted = set(ids)
    messages = [message for message in loaded if message.pk in wanted]
    missing = wanted - {message.pk for message in messages}
    if missing:
        messages += Message.objects.filter(pk__in=missing).only("id", "organization_id", "addresses_sealed")
    rows: list[tuple[Any, Any, str]] = []  # MessageAddress rows
    recipients: dict[int, dict[str, str]] = {}
    organization_of: dict[int, Any] = {}
    indexed: dict[tuple[Any, str], str] = {}  # a batch of mail names the same people again and again
    for message in messages:
        addresses = message.addresses or {}
        indexes = set()
        for _name, address in _pairs(addresses, PARTICIPANT_ROLES):
            key = (message.organization_id, address)
            index = indexed.get(key)
            if index is None:
                index = indexed[key] = address_index(message.organization_id, address)
            indexes.add(index)
        rows += [(message.pk, message.organization_id, index) for index in indexes]
        author = authors.get(message.pk)
        if author is not None:
            own = {address for _name, address in _pairs(addresses, ("from",))}
            chosen = recipients.setdefault(author, {})
            organization_of[author] = message.organization_id
            for name, address in _pairs(addresses, RECIPIENT_ROLES):
                if address not in own and (address not in chosen or not chosen[address]):
                    chosen[address] = name
    rows_insert(MessageAddress, ("message", "organization", "address_index"), rows, ignore_conflicts=True)
    if recipients:
        _automatic_contacts(recipients, organization_of)


def _automatic_contacts(recipients: dict[int, dict[str, str]], organization_of: dict[int, Any]) -> None:
    authors = {membership.pk: membership for membership in Membership.objects.filter(pk__in=list(recipients))}
    books = {author_id: book_default(actor=author) for author_id, author in authors.items()}
    # Serialises two workers storing sent mail of the same member, so neither adds a contact
    # the other is adding (PostgreSQL; SQLite serialises every write anyway).
    list(ContactBook.objects.select_for_update().filter(pk__in=[book.pk for book in books.values()]).values_list("pk", flat=True))
    wanted: dict[tuple[Any, str], tuple[str, str]] = {}
    for author_id, chosen in recipients.items():
        book = books.get(author_id)
        if book is None:
            continue
        for address, name in chosen.items():
            wanted[(book.pk, address_index(organization_of[author_id], address))] = (name, address)
    existing = set(
        ContactEmail.objects.filter(
            book_id__in=[book.pk for book in books.values()], address_index__in={index for _book, index in wanted}
        ).values_list("book_id", "address_index")
    )
    book_by_id = {book.pk: book for book in books.values()}
    contacts: list[Contact] = []
    emails: list[ContactEmail] = []
    for (book_id, index), (name, address) in wanted.items():
        if (book_id, index) in existing:
            continue
        try:
            card = card_clean(name=name, emails=[address])
        except ValidationError:
            continue  # an address our validator refuses (mail servers accept more): no contact, the mail is stored
        contact, contact_emails = _new_contact(book_by_id[book_id], card, source=ContactSource.AUTOMATIC, actor=None)
        contacts.append(contact)
        emails += contact_emails
    Contact.objects.bulk_create(contacts)
    ContactEmail.objects.bulk_create(emails, ignore_conflicts=True)
