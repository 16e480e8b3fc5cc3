"""Contact books, the contacts in them, and the index of who took part in which message.

A contact's card (name, addresses, phones, company, job title, notes, custom fields) is one
sealed JSON value under the organization's key (``core.sealed``): the database holds no
plaintext about the people a team writes to. What must be found without decrypting is held as
blind indexes (keyed HMACs, ``core.keys``): each email address of a contact (``ContactEmail``),
its normalised name (for "likely duplicates"), and each address a message was from, to or cc
(``MessageAddress``), which is what lets a contact page list conversations in one query.
Book names are plain, like team and label names: they are navigation, written by members
about their own organization, not mail content.
"""

from __future__ import annotations

from typing import Any

from django.db import models

from postroom.core.ids import uuid7
from postroom.core.keys import org_scope
from postroom.core.sealed import Sealed


class BookKind(models.TextChoices):
    PERSONAL = "personal"
    TEAM = "team"
    ORGANIZATION = "organization"


class ContactBook(models.Model):
    """A member's own book (``owner``), a team's (``team``) or the organization's (neither)."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    organization = models.ForeignKey("orgs.Organization", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=12, choices=BookKind.choices)
    owner = models.ForeignKey("orgs.Membership", on_delete=models.CASCADE, null=True, blank=True, related_name="contact_books")
    team = models.ForeignKey("orgs.Team", on_delete=models.CASCADE, null=True, blank=True, related_name="contact_books")
    name = models.CharField(max_length=80)
    # The personal book that automatic contacts go into: one per member.
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["kind", "name", "id"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(kind="personal", owner__isnull=False, team__isnull=True)
                    | models.Q(kind="team", owner__isnull=True, team__isnull=False)
                    | models.Q(kind="organization", owner__isnull=True, team__isnull=True)
                ),
                name="contact_book_scope",
            ),
            models.UniqueConstraint(fields=["owner"], condition=models.Q(is_default=True), name="contact_book_one_default"),
        ]

    def __str__(self) -> str:
        return self.name


class BookShare(models.Model):
    """A book shared with a team, or with the whole organization (``team`` empty)."""

    book = models.ForeignKey(ContactBook, on_delete=models.CASCADE, related_name="shares")
    team = models.ForeignKey("orgs.Team", on_delete=models.CASCADE, null=True, blank=True, related_name="contact_book_shares")
    can_write = models.BooleanField(default=False)
    created_by = models.ForeignKey("orgs.Membership", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["book", "team"], condition=models.Q(team__isnull=False), name="book_share_unique_team"),
            models.UniqueConstraint(fields=["book"], condition=models.Q(team__isnull=True), name="book_share_unique_organization"),
        ]


class ContactSource(models.TextChoices):
    MANUAL = "manual"
    AUTOMATIC = "automatic"  # a recipient of mail the book's owner sent
    SENDER = "sender"  # created from a sender in a conversation
    IMPORT = "import"
    MERGE = "merge"


class Contact(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    organization = models.ForeignKey("orgs.Organization", on_delete=models.CASCADE, related_name="+")
    book = models.ForeignKey(ContactBook, on_delete=models.CASCADE, related_name="contacts")
    # {"name", "emails": [...], "phones": [...], "company", "job_title", "notes", "fields": [[key, value]]}
    card_sealed = models.BinaryField(null=True)
    card: Sealed[dict[str, Any]] = Sealed("json")
    # Blind index of the normalised name (casefolded, accents and extra spaces removed): likely duplicates.
    name_index = models.CharField(max_length=64, blank=True)
    source = models.CharField(max_length=10, choices=ContactSource.choices, default=ContactSource.MANUAL)
    created_by = models.ForeignKey("orgs.Membership", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["book", "name_index"], name="contact_book_name")]

    def key_scope(self) -> str:
        return org_scope(self.organization_id)


class ContactEmail(models.Model):
    """One address of a contact, as a blind index: exact lookup and dedup without decrypting."""

    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="email_rows")
    book = models.ForeignKey(ContactBook, on_delete=models.CASCADE, related_name="+")
    organization = models.ForeignKey("orgs.Organization", on_delete=models.CASCADE, related_name="+")
    address_index = models.CharField(max_length=64)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["contact", "address_index"], name="contact_email_unique")]
        indexes = [
            models.Index(fields=["book", "address_index"], name="contact_email_book"),
            models.Index(fields=["organization", "address_index"], name="contact_email_org"),
        ]


class MessageAddress(models.Model):
    """An address a message was from, to or cc, as a blind index (same index as ``ContactEmail``).

    Written when a message is first stored (``contacts.actions.message_addresses_index``, called
    from ``conversations.arrival``) and for older mail by ``postroom manage contacts_index_addresses``.
    """

    message = models.ForeignKey("conversations.Message", on_delete=models.CASCADE, related_name="address_rows")
    organization = models.ForeignKey("orgs.Organization", on_delete=models.CASCADE, related_name="+")
    address_index = models.CharField(max_length=64)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["message", "address_index"], name="message_address_unique")]
        indexes = [models.Index(fields=["organization", "address_index"], name="message_address_org")]


class ImportStatus(models.TextChoices):
    QUEUED = "queued", "Waiting to start"
    RUNNING = "running", "Importing"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class ContactImport(models.Model):
    """A big import of a file into a book, run by a task in chunks (``contacts.transfer``), with
    its progress: ``done`` of ``total`` entries. The file is sealed here until the import ends
    (then emptied); the rejected rows (row number and reason, which may quote the file) are
    sealed too. Counts and states stay plain: the page polls them."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    organization = models.ForeignKey("orgs.Organization", on_delete=models.CASCADE, related_name="+")
    book = models.ForeignKey(ContactBook, on_delete=models.CASCADE, related_name="imports")
    actor = models.ForeignKey("orgs.Membership", on_delete=models.CASCADE, related_name="+")
    file_format = models.CharField(max_length=5)  # "csv" or "vcard"
    status = models.CharField(max_length=8, choices=ImportStatus.choices, default=ImportStatus.QUEUED)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    merged = models.PositiveIntegerField(default=0)
    rejected_count = models.PositiveIntegerField(default=0)
    content_sealed = models.BinaryField(null=True)
    content: Sealed[str] = Sealed("text")
    rejected_sealed = models.BinaryField(null=True)
    rejected: Sealed[list[list[Any]]] = Sealed("json")
    error = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["book", "actor", "-created_at"], name="contact_import_recent")]

    def key_scope(self) -> str:
        return org_scope(self.organization_id)

    @property
    def percent(self) -> int:
        return 100 if self.status == ImportStatus.DONE else (self.done * 100 // self.total if self.total else 0)

    @property
    def finished(self) -> bool:
        return self.status in (ImportStatus.DONE, ImportStatus.FAILED)
