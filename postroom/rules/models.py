"""Rules: when something happens to a conversation (a message arrives or is sent, it is assigned
or closed) and the conditions hold, do the actions.

A rule belongs to the organization (``owner`` empty: managed by admins, run on the mail of team
mailboxes and team inboxes) or to one member (run on that member's own mail). Its conditions and
actions name addresses, words and URLs: content, so they are sealed (``definition``); the rule's
name is a label like a team's or a label's and stays plain, as do its trigger and position.
Run logs and webhook deliveries carry ids, statuses and timings only.
"""

from __future__ import annotations

from typing import Any

from django.db import models

from postroom.core.ids import uuid7
from postroom.core.keys import org_scope
from postroom.core.sealed import Sealed


class Trigger(models.TextChoices):
    INCOMING = "incoming", "A message arrives"
    OUTGOING = "outgoing", "A message is sent"
    ASSIGNED = "assigned", "A conversation is assigned"
    CLOSED = "closed", "A conversation is closed"


class Match(models.TextChoices):
    ALL = "all", "All conditions hold"
    ANY = "any", "Any condition holds"


class Rule(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    organization = models.ForeignKey("orgs.Organization", on_delete=models.CASCADE, related_name="+")
    # Empty for an organization rule.
    owner = models.ForeignKey("orgs.Membership", on_delete=models.CASCADE, null=True, blank=True, related_name="rules")
    # Who last saved it: an organization rule runs only while this member is still an admin.
    updated_by = models.ForeignKey("orgs.Membership", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    name = models.CharField(max_length=80)
    trigger = models.CharField(max_length=12, choices=Trigger.choices)
    match = models.CharField(max_length=4, choices=Match.choices, default=Match.ALL)
    # {"conditions": [{"field", "op", "value"}...], "actions": [{"kind", ...}...]}: see rules.definition.
    definition_sealed = models.BinaryField(null=True)
    definition: Sealed[dict[str, Any]] = Sealed("json")
    # The key webhooks are signed with (HMAC-SHA256), shown to admins on the rule's page only.
    signing_key_sealed = models.BinaryField(null=True)
    signing_key: Sealed[str] = Sealed()
    position = models.PositiveIntegerField(default=0)
    enabled = models.BooleanField(default=True)
    stop_processing = models.BooleanField(default=False)
    # Set when a run found that the rule's owner may no longer do what it asks (fixed text, no content).
    flagged_reason = models.CharField(max_length=200, blank=True)
    flagged_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["position", "created_at"]
        indexes = [models.Index(fields=["organization", "trigger", "enabled"], name="rule_org_trigger")]

    def key_scope(self) -> str:
        return org_scope(self.organization_id)

    def __str__(self) -> str:
        return self.name

    @property
    def is_organization_rule(self) -> bool:
        return self.owner_id is None


class RunOutcome(models.TextChoices):
    APPLIED = "applied"
    REFUSED = "refused"  # the authorisation re-check failed: nothing was done


class RuleRun(models.Model):
    """One run of a rule that changed something or was refused: ids and action kinds only."""

    rule = models.ForeignKey(Rule, on_delete=models.CASCADE, related_name="runs")
    conversation = models.ForeignKey("conversations.Conversation", on_delete=models.CASCADE, related_name="+")
    message = models.ForeignKey("conversations.Message", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    trigger = models.CharField(max_length=12, choices=Trigger.choices)
    outcome = models.CharField(max_length=8, choices=RunOutcome.choices)
    changes = models.JSONField(default=list, blank=True)  # [{"kind": "label", "label_id": ...}]
    reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["rule", "-created_at"], name="rule_run_recent")]


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"
    DELIVERED = "delivered"
    RETRYING = "retrying"
    FAILED = "failed"


class WebhookDelivery(models.Model):
    """One webhook call of a rule and its attempts. The payload holds ids only."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    rule = models.ForeignKey(Rule, on_delete=models.CASCADE, related_name="deliveries")
    payload = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_duration_ms = models.PositiveIntegerField(null=True, blank=True)
    # ``FetchError.reason`` (fixed text) or "answered <status>": never what the server sent.
    last_error = models.CharField(max_length=120, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["rule", "-created_at"], name="delivery_recent")]


class AutoReplySent(models.Model):
    """That a rule auto-replied to a sender on a day (at most once per sender per day, RFC 3834).
    The sender is a blind index: this table holds no address."""

    rule = models.ForeignKey(Rule, on_delete=models.CASCADE, related_name="+")
    sender_index = models.CharField(max_length=64)
    day = models.DateField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["rule", "sender_index", "day"], name="auto_reply_once_a_day")]
