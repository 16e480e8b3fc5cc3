"""A member's connected mailbox, its folders and their sync state.

Credentials (username, password or OAuth tokens) are one sealed JSON value; nothing about them
is stored in the clear. Server names and ports are configuration, not content, and stay plain.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.db import models

from postroom.core.ids import uuid7
from postroom.core.keys import org_scope
from postroom.core.sealed import Sealed


class TlsModeChoice(models.TextChoices):
    IMPLICIT = "implicit", "Implicit TLS"
    STARTTLS = "starttls", "STARTTLS"
    INSECURE_PLAINTEXT = "insecure_plaintext", "Plaintext (insecure; loopback test servers only)"


class AuthKind(models.TextChoices):
    PASSWORD = "password", "Password"
    XOAUTH2 = "xoauth2", "OAuth2 (XOAUTH2)"
    OAUTHBEARER = "oauthbearer", "OAuth2 (OAUTHBEARER)"


class MailboxStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    NEEDS_RECONNECT = "needs_reconnect", "Needs reconnecting"
    DISCONNECTED = "disconnected", "Disconnected"
    PAUSED = "paused", "Paused"


# The states in which a mailbox is synced; a paused mailbox, or one whose sign-in was refused,
# waits for its member.
SYNCABLE_STATUSES = (MailboxStatus.ACTIVE, MailboxStatus.DISCONNECTED)


class Mailbox(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    organization = models.ForeignKey("orgs.Organization", on_delete=models.CASCADE, related_name="mailboxes")
    owner = models.ForeignKey("orgs.Membership", on_delete=models.CASCADE, related_name="mailboxes")
    name = models.CharField(max_length=120)
    email_address = models.EmailField()
    # A team mailbox: every conversation it receives is shared with this team.
    team = models.ForeignKey("orgs.Team", on_delete=models.SET_NULL, null=True, blank=True, related_name="mailboxes")

    imap_host = models.CharField(max_length=253)
    imap_port = models.PositiveIntegerField()
    imap_tls = models.CharField(max_length=24, choices=TlsModeChoice.choices, default=TlsModeChoice.IMPLICIT)
    smtp_host = models.CharField(max_length=253)
    smtp_port = models.PositiveIntegerField()
    smtp_tls = models.CharField(max_length=24, choices=TlsModeChoice.choices, default=TlsModeChoice.IMPLICIT)
    private_ca_pem = models.TextField(blank=True)
    auth_kind = models.CharField(max_length=16, choices=AuthKind.choices, default=AuthKind.PASSWORD)
    credentials_sealed = models.BinaryField(null=True)
    credentials: Sealed[dict[str, Any]] = Sealed("json")
    access_token_expires_at = models.DateTimeField(null=True, blank=True)

    # How far back the first import goes; None imports everything.
    import_since = models.DateField(null=True, blank=True)
    status = models.CharField(max_length=20, choices=MailboxStatus.choices, default=MailboxStatus.ACTIVE)
    status_reason = models.CharField(max_length=300, blank=True)
    unreachable_since = models.DateTimeField(null=True, blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    # When the current (first or requested) import began: with the folders' messages_done it
    # gives the import rate and the time left shown to the member.
    import_started_at = models.DateTimeField(null=True, blank=True)

    # One sync service at a time holds the lease (see postroom.sync).
    lease_owner = models.CharField(max_length=64, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)

    DEFAULT_FOLDER_ROLES: ClassVar[tuple[str, ...]] = ("inbox", "sent", "archive", "trash", "junk")

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["lease_expires_at"])]

    def __str__(self) -> str:
        return self.name

    def key_scope(self) -> str:
        return org_scope(self.organization_id)


class FolderRole(models.TextChoices):
    INBOX = "inbox"
    SENT = "sent"
    ARCHIVE = "archive"
    TRASH = "trash"
    JUNK = "junk"
    DRAFTS = "drafts"
    OTHER = "other"


class Folder(models.Model):
    """One IMAP folder and where sync left off in it."""

    mailbox = models.ForeignKey(Mailbox, on_delete=models.CASCADE, related_name="folders")
    name = models.CharField(max_length=512)  # the server's folder name (modified UTF-7 decoded)
    role = models.CharField(max_length=12, choices=FolderRole.choices, default=FolderRole.OTHER)
    uidvalidity = models.BigIntegerField(null=True, blank=True)
    highest_uid = models.BigIntegerField(default=0)
    highest_modseq = models.BigIntegerField(null=True, blank=True)
    # First import runs newest first: UIDs below this one are still to be fetched (None: done).
    backfill_below_uid = models.BigIntegerField(null=True, blank=True)
    messages_total = models.PositiveIntegerField(default=0)
    messages_done = models.PositiveIntegerField(default=0)
    last_synced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["mailbox", "name"], name="folder_unique_name")]
        ordering = ["mailbox", "name"]

    def __str__(self) -> str:
        return self.name
