"""Responses (canned replies): a named subject and HTML body, with attachments, that a member
inserts into a message, with variables filled in at that moment (``postroom.responses.variables``).

A response belongs to one member (personal), one team, or the whole organization; who sees and
who manages which is ``postroom.responses.selectors`` / ``actions``. Everything a member wrote
(name, subject, body, attachment names) is sealed under the organization's key; attachment
contents are encrypted blobs. The scope columns stay plain: they decide access.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from postroom.core.ids import uuid7
from postroom.core.keys import org_scope
from postroom.core.sealed import Sealed


class Scope(models.TextChoices):
    PERSONAL = "personal", "Personal"
    TEAM = "team", "Team"
    ORGANIZATION = "organization", "Organization"


class Response(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    organization = models.ForeignKey("orgs.Organization", on_delete=models.CASCADE, related_name="+")
    scope = models.CharField(max_length=12, choices=Scope.choices)
    # Set for a personal response only: the member it belongs to.
    owner = models.ForeignKey("orgs.Membership", on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    # Set for a team response only.
    team = models.ForeignKey("orgs.Team", on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    name_sealed = models.BinaryField(null=True)
    name: Sealed[str] = Sealed("text")
    subject_sealed = models.BinaryField(null=True)
    subject: Sealed[str] = Sealed("text")
    # Sanitised HTML (postroom.responses.sanitize), sanitised again whenever it is rendered.
    body_sealed = models.BinaryField(null=True)
    body: Sealed[str] = Sealed("text")
    created_by = models.ForeignKey("orgs.Membership", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["organization", "scope", "created_at"])]
        constraints = [
            models.CheckConstraint(
                name="response_scope_matches_owner_and_team",
                condition=(
                    Q(scope="personal", owner__isnull=False, team__isnull=True)
                    | Q(scope="team", owner__isnull=True, team__isnull=False)
                    | Q(scope="organization", owner__isnull=True, team__isnull=True)
                ),
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_scope_display()} response {self.pk}"

    def key_scope(self) -> str:
        return org_scope(self.organization_id)


class ResponseAttachment(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    organization = models.ForeignKey("orgs.Organization", on_delete=models.CASCADE, related_name="+")
    response = models.ForeignKey(Response, on_delete=models.CASCADE, related_name="attachments")
    filename_sealed = models.BinaryField(null=True)
    filename: Sealed[str] = Sealed("text")
    content_type = models.CharField(max_length=100)
    size = models.PositiveIntegerField()
    blob = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"Response attachment {self.pk}"

    def key_scope(self) -> str:
        return org_scope(self.organization_id)
