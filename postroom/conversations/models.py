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


class ConversationStatus(models.TextChoices):
    """Where a conversation stands for everyone who can see it (the team's state, not a member's)."""

    OPEN = "open"
    CLOSED = "closed"
    TRASH = "trash"
    SPAM = "spam"


class Conversation(OrgScoped):
    subject_sealed = models.BinaryField(null=True)
    subject: Sealed[str] = Sealed()
    # Normalised subject (no Re:/Fwd:) as a blind index, for the subject fallback of threading.
    subject_index = models.CharField(max_length=64, blank=True, db_index=True)
    last_message_at = models.DateTimeField(db_index=True)
    message_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    # Team state of a shared conversation; a private one is always open (its member's own place
    # is in ConversationMember).
    status = models.CharField(max_length=8, choices=ConversationStatus.choices, default=ConversationStatus.OPEN)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    shared_with_organization = models.BooleanField(default=False)
    # Whether anything shares it (the organization, a team or a named member): kept by
    # conversations.access, so lists can mark shared conversations without a join.
    is_shared = models.BooleanField(default=False)

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
    # Seen by everyone who can see the conversation through a share. A message only in a
    # member's private mailbox stays visible to that member alone, even when a subject or a
    # reference threads it into a conversation that others can see (conversations.access).
    shared = models.BooleanField(default=False)
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


class ConversationShare(models.Model):
    """One grant of a conversation: to a team (it then sits in that team's inbox) or to a named
    member. Sharing with the whole organization is ``Conversation.shared_with_organization``."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="shares")
    team = models.ForeignKey("orgs.Team", on_delete=models.CASCADE, null=True, blank=True, related_name="conversation_shares")
    membership = models.ForeignKey("orgs.Membership", on_delete=models.CASCADE, null=True, blank=True, related_name="conversation_shares")
    created_by = models.ForeignKey("orgs.Membership", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(team__isnull=False, membership__isnull=True) | models.Q(team__isnull=True, membership__isnull=False),
                name="share_team_or_member",
            ),
            models.UniqueConstraint(fields=["conversation", "team"], condition=models.Q(team__isnull=False), name="share_unique_team"),
            models.UniqueConstraint(
                fields=["conversation", "membership"], condition=models.Q(membership__isnull=False), name="share_unique_member"
            ),
        ]


class Place(models.TextChoices):
    """Where a conversation sits for one member."""

    INBOX = "inbox"
    ARCHIVE = "archive"
    TRASH = "trash"
    SPAM = "spam"
    # Visible (e.g. in a team inbox) but not in the member's own inbox.
    NONE = "none"


class ConversationMember(models.Model):
    """A member who can see a conversation, why, and where it sits for them.

    A row exists exactly while the member can see the conversation: ``conversations.access``
    keeps the rows in step with their sources (copies in the member's mailboxes, shares), and
    every selector reads visibility from here, so one indexed join answers "may I see it" and
    every list is a range scan of (membership, place, last activity).
    """

    # No index of their own: the unique constraint's (conversation, membership) serves lookups by
    # conversation, and the indexes below, which start with the membership, those by member. A
    # single-column index only cost writes, and PostgreSQL chose it over the pair for the
    # sidebar's "is this member's" lookups (bench/README.md, "Every page's own reads").
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="members", db_index=False)
    membership = models.ForeignKey("orgs.Membership", on_delete=models.CASCADE, related_name="conversation_rows", db_index=False)
    organization = models.ForeignKey("orgs.Organization", on_delete=models.CASCADE, related_name="+")
    via_mailbox = models.BooleanField(default=False)  # a message of it sits in one of the member's mailboxes
    via_share = models.BooleanField(default=False)  # shared with the organization, a team of theirs, or them
    place = models.CharField(max_length=8, choices=Place.choices, default=Place.INBOX)
    # What the member's own server copies say (inbox/archive/trash/spam, "" without copies): the
    # place follows it when it changes, so a move in another mail client shows here, while a
    # place chosen in Postroom stays until the server's state changes again.
    copies_place = models.CharField(max_length=8, blank=True)
    copies_unread = models.BooleanField(default=False)
    unread = models.BooleanField(default=True)
    snoozed_until = models.DateTimeField(null=True, blank=True)
    # Notified of new messages and comments (assignees, participants, mentioned members).
    following = models.BooleanField(default=False)
    mentioned_at = models.DateTimeField(null=True, blank=True)
    last_activity_at = models.DateTimeField()  # the conversation's last_message_at, for ordering
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["conversation", "membership"], name="conversation_member_unique")]
        indexes = [
            models.Index(fields=["membership", "place", "-last_activity_at"], name="member_place_activity"),
            models.Index(fields=["membership", "-last_activity_at"], name="member_activity"),
            # The unread counts of the sidebar (inbox, mentions, team inboxes) read unread rows
            # only: a few per member, however much mail has been read.
            models.Index(fields=["membership", "-last_activity_at"], condition=models.Q(unread=True), name="member_unread"),
            # The Mentions count and list: mentioned rows only. Without it a member with many
            # unread rows and no mention had every unread row read to count none.
            models.Index(
                fields=["membership", "-last_activity_at"], condition=models.Q(mentioned_at__isnull=False), name="member_mentioned"
            ),
        ]


class Assignment(models.Model):
    # Indexed by the unique constraint (conversation first) and the index below (membership first).
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="assignments", db_index=False)
    membership = models.ForeignKey("orgs.Membership", on_delete=models.CASCADE, related_name="assignments", db_index=False)
    assigned_by = models.ForeignKey("orgs.Membership", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["conversation", "membership"], name="assignment_unique")]
        indexes = [models.Index(fields=["membership", "conversation"])]


class Label(models.Model):
    """An organization label (``owner`` empty, managed by admins) or a member's personal one."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    organization = models.ForeignKey("orgs.Organization", on_delete=models.CASCADE, related_name="labels")
    owner = models.ForeignKey("orgs.Membership", on_delete=models.CASCADE, null=True, blank=True, related_name="labels")
    name = models.CharField(max_length=60)
    color = models.CharField(max_length=7, default="#6b7280")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], condition=models.Q(owner__isnull=True), name="label_unique_org"),
            models.UniqueConstraint(fields=["owner", "name"], condition=models.Q(owner__isnull=False), name="label_unique_personal"),
        ]

    def __str__(self) -> str:
        return self.name


class ConversationLabel(models.Model):
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="label_rows")
    label = models.ForeignKey(Label, on_delete=models.CASCADE, related_name="conversation_rows")
    added_by = models.ForeignKey("orgs.Membership", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["conversation", "label"], name="conversation_label_unique")]


class TimelineEvent(models.Model):
    """Who did what to a conversation, shown in its timeline. ``details`` names people, teams and
    labels by id, never content."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    organization = models.ForeignKey("orgs.Organization", on_delete=models.CASCADE, related_name="+")
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="timeline")
    actor = models.ForeignKey("orgs.Membership", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    kind = models.CharField(max_length=40)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["conversation", "created_at"])]
