"""The audit log: append-only through the application, hash-chained so edits are detectable.

Threat: an insider with database access edits or deletes rows to hide what they did. Defences:
the model refuses updates and deletes; on PostgreSQL a trigger refuses them too; each row carries
the SHA-256 of its content and of the previous row's hash, so ``postroom audit verify`` reports
the first row that was changed, removed or inserted out of order.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.conf import settings
from django.db import models


class AppendOnlyError(Exception):
    pass


class AuditQuerySet(models.QuerySet["AuditEvent"]):
    def update(self, **kwargs: Any) -> int:
        raise AppendOnlyError("audit events cannot be changed")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("audit events cannot be deleted")


class Result(models.TextChoices):
    SUCCESS = "success"
    FAILURE = "failure"
    DENIED = "denied"


class AuditEvent(models.Model):
    created_at = models.DateTimeField(db_index=True)
    organization = models.ForeignKey("orgs.Organization", null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    # Kept as text as well so the row stays readable after the user or organization is gone.
    actor_label = models.CharField(max_length=254, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    result = models.CharField(max_length=16, choices=Result.choices, default=Result.SUCCESS)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=254, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=256, blank=True)
    details = models.JSONField(default=dict, blank=True)
    previous_hash = models.CharField(max_length=64)
    entry_hash = models.CharField(max_length=64, unique=True)

    objects = AuditQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["organization", "-id"])]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.action} {self.result}"

    def canonical(self) -> bytes:
        fields = {
            "created_at": self.created_at.isoformat(),
            "organization": self.organization_id,
            "actor": self.actor_id,
            "actor_label": self.actor_label,
            "action": self.action,
            "result": self.result,
            "target_type": self.target_type,
            "target_id": self.target_id,
            "target_label": self.target_label,
            "ip_address": self.ip_address,
            "user_agent": self.user_agent,
            "details": self.details,
            "previous_hash": self.previous_hash,
        }
        return json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str).encode()

    def compute_hash(self) -> str:
        return hashlib.sha256(self.canonical()).hexdigest()

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise AppendOnlyError("audit events cannot be changed")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("audit events cannot be deleted")


class AuditChainHead(models.Model):
    """A single row, locked while appending, so the chain has one order on every database."""

    last_hash = models.CharField(max_length=64)
