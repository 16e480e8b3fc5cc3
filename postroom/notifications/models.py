"""In-app notifications (the bell) and each member's email-digest choice.

A notification says who did what to which conversation, by ids: it holds no content, so the
row needs no sealing and the digest email built from it carries none either. Replies and
comments in a followed conversation fold into one unread notification per conversation
(``count``), so a busy thread is one line, not fifty.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from postroom.core.ids import uuid7


class NotificationKind(models.TextChoices):
    MENTION = "mention", "mentioned you"
    ASSIGNED = "assigned", "assigned you"
    REPLY = "reply", "new message"
    COMMENT = "comment", "new comment"


# Kinds that fold into one unread notification per conversation.
FOLDED_KINDS = frozenset({NotificationKind.REPLY, NotificationKind.COMMENT})


class Notification(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    organization = models.ForeignKey("orgs.Organization", on_delete=models.CASCADE, related_name="+")
    recipient = models.ForeignKey("orgs.Membership", on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=12, choices=NotificationKind.choices)
    conversation = models.ForeignKey("conversations.Conversation", on_delete=models.CASCADE, related_name="+")
    actor = models.ForeignKey("orgs.Membership", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    comment = models.ForeignKey("comments.Comment", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    count = models.PositiveIntegerField(default=1)
    # When it last happened (a folded notification moves up when it grows).
    created_at = models.DateTimeField(default=timezone.now)
    read_at = models.DateTimeField(null=True, blank=True)
    # Listed in an email digest (each notification is in at most one).
    emailed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["recipient", "-created_at"], name="notification_recipient_time"),
            models.Index(fields=["recipient", "read_at"], name="notification_recipient_read"),
        ]


class DigestFrequency(models.TextChoices):
    OFF = "off", "Off"
    HOURLY = "hourly", "Hourly"
    DAILY = "daily", "Daily"


class NotificationPreference(models.Model):
    """A member's notification settings in one organization (a missing row means the defaults)."""

    membership = models.OneToOneField("orgs.Membership", on_delete=models.CASCADE, related_name="notification_preference")
    digest = models.CharField(max_length=8, choices=DigestFrequency.choices, default=DigestFrequency.OFF)
    # When the last digest went out (claimed with a conditional UPDATE, so two sync services
    # never send the same member two digests).
    digest_sent_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
