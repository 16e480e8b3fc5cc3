"""The event log of the database bus (``live.bus.DatabaseBus``): ids and kinds only, never content.

A row lives for ``RETENTION`` (a few minutes), long enough for a reconnecting page to resume
where it stopped (``Last-Event-ID``), and is deleted by whichever process publishes next.
"""

from __future__ import annotations

from django.db import models


class LiveEvent(models.Model):
    id = models.BigAutoField(primary_key=True)
    # Both empty for a control event (``user_id`` set: re-check that user's open streams now).
    organization_id = models.BigIntegerField(null=True, blank=True)
    conversation_id = models.UUIDField(null=True, blank=True)
    kind = models.CharField(max_length=40)
    # Membership ids that may receive the event (among those who can see the conversation);
    # null for everyone who can see it.
    audience = models.JSONField(null=True, blank=True)
    user_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.pk} {self.kind}"
