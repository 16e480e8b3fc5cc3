"""Messages, the conversations they are threaded into, and where each message lives on a server.

One ``Message`` per distinct email in an organization, however many members' mailboxes hold it
(two teammates in CC see the same message); each server copy is a ``MessageCopy`` keyed by
(folder, UIDVALIDITY, UID), which is what makes sync idempotent. Everything that carries content
is sealed (see ``core.sealed``); exact lookups use blind indexes (keyed HMACs per organization).
"""

from __future__ import annotations

from typing import Any

from django.db import models

from postroom.core.ids import uuid7
from postroom.core.keys import org_scope
from postroom.core.sealed import Sealed


class OrgScoped(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    organization = models.ForeignKey("orgs.Organization", on_delete=models.CASCADE, related_name="+")

    class Meta:
        abstract = True

    def key_scope(self) -> str:
        return org_scope(self.organization_id)


class Conversation(OrgScoped):
    subject_sealed = models.BinaryField(null=True)
    subject: Sealed[str] = Sealed()
    # Normalised subject (no Re:/Fwd:) as a blind index, for the subject fallback of threading.
    subject_index = models.CharField(max_length=64, blank=True, db_index=True)
    last_message_at = models.DateTimeField(db_index=True)
    message_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-last_message_at"]
        indexes = [models.Index(fields=["organization", "-last_message_at"])]


class Direction(models.TextChoices):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class Message(OrgScoped):
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    direction = models.CharField(max_length=8, choices=Direction.choices, default=Direction.INBOUND)
    # Blind indexes: the Message-ID header, and the raw content (for messages without one).
    message_id_index = models.CharField(max_length=64, blank=True, db_index=True)
    content_index = models.CharField(max_length=64, db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True, db_index=True)
    size = models.PositiveIntegerField(default=0)
    raw_blob = models.CharField(max_length=64)  # name in core.blobs, under the organization's scope

    subject_sealed = models.BinaryField(null=True)
    subject: Sealed[str] = Sealed()
    # {"from": [[name, address]], "to": [...], "cc": [...], "bcc": [...], "reply_to": [...]}
    addresses_sealed = models.BinaryField(null=True)
    addresses: Sealed[dict[str, Any]] = Sealed("json")
    snippet_sealed = models.BinaryField(null=True)
    snippet: Sealed[str] = Sealed()
    text_body_sealed = models.BinaryField(null=True)
    text_body: Sealed[str] = Sealed()
    # The HTML as received: sanitised when shown (postroom.mime.sanitize), never stored sanitised,
    # so a better sanitiser applies to old mail too.
    html_body_sealed = models.BinaryField(null=True)
    html_body: Sealed[str] = Sealed()

    has_attachments = models.BooleanField(default=False)
    # A message that could not be parsed or broke a limit: kept raw, shown as such.
    quarantine_reason = models.CharField(max_length=40, blank=True)
    # Stored from its header block; the texts, snippet and attachments are still to be parsed
    # (by the body pass, ``conversations.bodies``, or when the message is first opened).
    body_pending = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["sent_at", "created_at"]
        # Every lookup is scoped to one organization: without these, SQLite (which keeps no
        # statistics) walks the organization index, i.e. every message, for each new message.
        indexes = [
            models.Index(fields=["organization", "message_id_index"], name="message_org_message_id"),
            models.Index(fields=["organization", "content_index"], name="message_org_content"),
            models.Index(fields=["created_at"], condition=models.Q(body_pending=True), name="message_body_pending"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "message_id_index"], condition=~models.Q(message_id_index=""), name="message_unique_message_id"
            ),
        ]


class MessageReference(models.Model):
    """Message-IDs a message points at (In-Reply-To and References), as blind indexes."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="reference_rows")
    organization = models.ForeignKey("orgs.Organization", on_delete=models.CASCADE, related_name="+")
    message_id_index = models.CharField(max_length=64)

    class Meta:
        indexes = [models.Index(fields=["organization", "message_id_index"])]


class Attachment(OrgScoped):
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="attachments")
    filename_sealed = models.BinaryField(null=True)
    filename: Sealed[str] = Sealed()
    content_type = models.CharField(max_length=127)
    size = models.PositiveIntegerField()
    blob = models.CharField(max_length=64)  # content is stored once per organization
    content_id = models.CharField(max_length=64, blank=True)  # blind index of the Content-ID, for cid: images
    is_inline = models.BooleanField(default=False)


class MessageCopy(models.Model):
    """A message as it sits in one folder of one mailbox on the server."""

    mailbox = models.ForeignKey("mailboxes.Mailbox", on_delete=models.CASCADE, related_name="copies")
    folder = models.ForeignKey("mailboxes.Folder", on_delete=models.CASCADE, related_name="copies")
    uidvalidity = models.BigIntegerField()
    uid = models.BigIntegerField()
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="copies")
    seen = models.BooleanField(default=False)
    flagged = models.BooleanField(default=False)
    answered = models.BooleanField(default=False)
    # A read/unread choice of a member that the server has not confirmed yet. While it is set,
    # sync keeps ``seen`` as the member chose instead of taking the server's older flag.
    seen_pending = models.BooleanField(null=True, blank=True)
    modseq = models.BigIntegerField(null=True, blank=True)
    # Set when the server no longer has it (expunged or moved away by another client).
    gone_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["folder", "uidvalidity", "uid"], name="copy_unique_uid")]
        indexes = [models.Index(fields=["mailbox", "message"])]
