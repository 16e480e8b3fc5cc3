from __future__ import annotations

from django.db import models


class DataKey(models.Model):
    """One version of a scope's data key, stored wrapped by a master key (see core.crypto).

    ``scope`` is a string such as ``org:<id>`` or ``system``; per-member scopes for erasure are
    a new prefix, not a new table.
    """

    scope = models.CharField(max_length=80)
    version = models.PositiveIntegerField()
    wrapped_key = models.BinaryField()
    master_key_id = models.CharField(max_length=16)
    encryptions = models.BigIntegerField(default=0)
    is_current = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["scope", "version"], name="datakey_scope_version_unique"),
            models.UniqueConstraint(
                fields=["scope"], condition=models.Q(is_current=True), name="datakey_one_current_per_scope"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.scope} v{self.version}"


class SetupToken(models.Model):
    """The one-time token that protects the first-run setup page; stored only as a hash."""

    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
