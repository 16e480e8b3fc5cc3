"""Messages members write and Postroom sends through a mailbox's SMTP server.

Everything a member wrote (addresses, subject, bodies, attachment names) is one sealed JSON
value; the built MIME message, which is what goes on the wire, is an encrypted blob. The
Message-ID we generated is kept only as a blind index, to find the message again when the
server's Sent copy comes back through sync.

The queue state is plain: the status, attempts, when the next attempt is due, and the last
error as a short text that says what the server answered (no message content).
"""

from __future__ import annotations

from typing import Any

from django.db import models

from postroom.core.ids import uuid7
from postroom.core.keys import org_scope
from postroom.core.sealed import Sealed


class OutgoingKind(models.TextChoices):
    NEW = "new", "New message"
    REPLY = "reply", "Reply"
    REPLY_ALL = "reply_all", "Reply all"
    FORWARD = "forward", "Forward"


class OutgoingStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    FAILED_TEMPORARY = "failed_temporary", "Failed, will retry"
    FAILED_PERMANENT = "failed_permanent", "Failed"


class SentCopy(models.TextChoices):
    """What became of the copy in the server's Sent folder."""

    PENDING = "pending", "Not stored yet"
    STORED = "stored", "In the Sent folder"
    PROVIDER = "provider", "Stored by the provider"
    NO_FOLDER = "no_folder", "The mailbox has no Sent folder"
    FAILED = "failed", "Could not be stored"


class OutgoingMessage(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    organization = models.ForeignKey("orgs.Organization", on_delete=models.CASCADE, related_name="+")
    mailbox = models.ForeignKey("mailboxes.Mailbox", on_delete=models.CASCADE, related_name="outgoing_messages")
    author = models.ForeignKey("orgs.Membership", on_delete=models.SET_NULL, null=True, related_name="outgoing_messages")
    conversation = models.ForeignKey(
        "conversations.Conversation", on_delete=models.SET_NULL, null=True, blank=True, related_name="outgoing_messages"
    )
    kind = models.CharField(max_length=10, choices=OutgoingKind.choices)
    # Queued by a rule (an auto-reply), so it has no author by design; a member's message whose
    # author has since been removed also has none, and is then not sent (``outgoing_sender_problem``).
    automatic = models.BooleanField(default=False)

    # {"from": [name, address], "to": [[name, address]], "cc": [...], "bcc": [...], "subject": str,
    #  "text": str, "html": str | None, "in_reply_to": str | None, "references": [str],
    #  "attachments": [{"filename": str, "content_type": str, "size": int, "blob": str}]}
    envelope_sealed = models.BinaryField(null=True)
    envelope: Sealed[dict[str, Any]] = Sealed("json")
    # The MIME message exactly as it is sent (and appended to the Sent folder), built once at
    # creation so that every attempt sends the same bytes with the same Message-ID.
    raw_blob = models.CharField(max_length=64)
    message_id_index = models.CharField(max_length=64, db_index=True)

    status = models.CharField(max_length=20, choices=OutgoingStatus.choices, default=OutgoingStatus.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    sending_started_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    sent_copy = models.CharField(max_length=10, choices=SentCopy.choices, default=SentCopy.PENDING)
    # The conversation message made from the Sent copy, once there is one.
    message = models.ForeignKey("conversations.Message", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["organization", "author", "-created_at"]),
            models.Index(fields=["status", "next_attempt_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.pk}"

    def key_scope(self) -> str:
        return org_scope(self.organization_id)

    @property
    def can_retry(self) -> bool:
        return self.status == OutgoingStatus.FAILED_PERMANENT


class Draft(models.Model):
    """A message being written, saved as the member types (and kept when sending fails).

    Everything the member wrote is one sealed JSON value, as typed (addresses are kept as text
    even when they cannot be read yet, so nothing typed is lost): ``{"to", "cc", "bcc",
    "subject", "text", "attachments": [{"filename", "content_type", "size", "blob"}]}``; the
    attachments themselves are encrypted blobs. Only its author ever sees a draft.
    """

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    organization = models.ForeignKey("orgs.Organization", on_delete=models.CASCADE, related_name="+")
    author = models.ForeignKey("orgs.Membership", on_delete=models.CASCADE, related_name="drafts")
    conversation = models.ForeignKey("conversations.Conversation", on_delete=models.CASCADE, null=True, blank=True, related_name="drafts")
    kind = models.CharField(max_length=10, choices=OutgoingKind.choices)
    mailbox = models.ForeignKey("mailboxes.Mailbox", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    content_sealed = models.BinaryField(null=True)
    content: Sealed[dict[str, Any]] = Sealed("json")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["author", "-updated_at"], name="draft_author_updated")]

    def __str__(self) -> str:
        return f"Draft {self.pk}"

    def key_scope(self) -> str:
        return org_scope(self.organization_id)
