"""Internal comments inside a conversation: what the team says about it, never sent anywhere.

A comment belongs to a conversation and is seen by exactly the members who can see that
conversation (its ``ConversationMember`` rows, kept by ``conversations.access``). Its text and
its attachments' names are sealed like mail content (``core.sealed``); attachment contents are
encrypted blobs (``core.blobs``). Mentions are stored as ids of memberships and teams of the
same organization, and shown under their current names.
"""

from __future__ import annotations

from django.db import models

from postroom.conversations.models import OrgScoped
from postroom.core.sealed import Sealed


class Comment(OrgScoped):
    conversation = models.ForeignKey("conversations.Conversation", on_delete=models.CASCADE, related_name="comments")
    # Kept when the author leaves the organization: the comment then shows "Former member".
    author = models.ForeignKey("orgs.Membership", on_delete=models.SET_NULL, null=True, blank=True, related_name="comments")
    # Set for a comment a rule wrote (its "add a comment" action); such a comment has no author.
    rule = models.ForeignKey("rules.Rule", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    # The markdown as written (mention tokens included); None once deleted.
    body_sealed = models.BinaryField(null=True)
    body: Sealed[str] = Sealed()
    created_at = models.DateTimeField(auto_now_add=True)
    edited_at = models.DateTimeField(null=True, blank=True)
    # A deleted comment keeps its place in the thread ("comment deleted") without its content.
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["conversation", "created_at"], name="comment_conversation_time")]


class CommentMention(models.Model):
    """A member or a team mentioned in a comment (exactly one of the two)."""

    comment = models.ForeignKey(Comment, on_delete=models.CASCADE, related_name="mentions")
    membership = models.ForeignKey("orgs.Membership", on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    team = models.ForeignKey("orgs.Team", on_delete=models.CASCADE, null=True, blank=True, related_name="+")

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(team__isnull=False, membership__isnull=True) | models.Q(team__isnull=True, membership__isnull=False),
                name="comment_mention_team_or_member",
            ),
            models.UniqueConstraint(
                fields=["comment", "membership"], condition=models.Q(membership__isnull=False), name="comment_mention_unique_member"
            ),
            models.UniqueConstraint(fields=["comment", "team"], condition=models.Q(team__isnull=False), name="comment_mention_unique_team"),
        ]


class CommentAttachment(OrgScoped):
    comment = models.ForeignKey(Comment, on_delete=models.CASCADE, related_name="attachments")
    filename_sealed = models.BinaryField(null=True)
    filename: Sealed[str] = Sealed()
    content_type = models.CharField(max_length=127)  # as the uploader's browser declared it; served through an allowlist
    size = models.PositiveIntegerField()
    blob = models.CharField(max_length=64)  # encrypted, content-addressed, under the organization's scope
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
