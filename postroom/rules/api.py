"""API for rules: list, create, read, change, delete, reorder, preview, runs and webhook deliveries.

Same rules as the pages (``rules.selectors`` and ``rules.actions``): a member manages their own
personal rules, admins the organization's; another member's personal rule, a rule of another
organization, and (for members) an organization rule are all 404. Bodies are ``Input`` schemas:
the owner, the organization, the position, the flag and the signing key are never written by
the client (R23), and the signing key is never in an answer: admins read it on the rule's page.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from ninja import Field, Query, Router, Schema, Status

from postroom.api.errors import ERRORS
from postroom.api.pagination import Page, PageParams, paginate
from postroom.api.schemas import Input
from postroom.orgs.selectors import membership_get
from postroom.rules import actions, selectors
from postroom.rules.models import DeliveryStatus, Match, Rule, RuleRun, RunOutcome, Trigger, WebhookDelivery

router = Router(tags=["rules"])

Scope = Literal["mine", "organization"]


class RuleOut(Schema):
    id: uuid.UUID
    name: str
    scope: Scope = Field(description="mine: your personal rule; organization: an organization rule (admins).")
    trigger: Trigger
    match: Match
    conditions: list[dict[str, Any]] = Field(description="See the README (Rules) for the condition shapes.")
    actions: list[dict[str, Any]] = Field(description="See the README (Rules) for the action shapes.")
    position: int
    enabled: bool
    stop_processing: bool
    flagged_reason: str = Field(description="Why the rule was refused at its last run (empty when fine); saving it clears this.")
    flagged_at: datetime | None
    created_at: datetime
    updated_at: datetime


class RulePage(Page[RuleOut]):
    """One page of rules, in the order they run."""


class RuleIn(Input):
    scope: Scope = "mine"
    name: str = Field(max_length=200)
    trigger: Trigger
    match: Match = Match.ALL
    conditions: list[Any] = Field(default_factory=list)
    actions: list[Any]
    stop_processing: bool = False
    enabled: bool = True


class RulePatch(Input):
    name: str | None = Field(default=None, max_length=200)
    trigger: Trigger | None = None
    match: Match | None = None
    conditions: list[Any] | None = None
    actions: list[Any] | None = None
    stop_processing: bool | None = None
    enabled: bool | None = None


class ReorderIn(Input):
    scope: Scope = "mine"
    rule_ids: list[uuid.UUID] = Field(max_length=500)


class RuleList(Schema):
    items: list[RuleOut]


class PreviewItem(Schema):
    id: uuid.UUID
    subject: str
    last_message_at: datetime


class PreviewOut(Schema):
    looked_at: int = Field(description="How many recent conversations were looked at (at most 100).")
    matched: list[PreviewItem]


class RunOut(Schema):
    id: int
    conversation_id: uuid.UUID
    message_id: uuid.UUID | None
    trigger: Trigger
    outcome: RunOutcome
    changes: list[dict[str, Any]]
    reason: str
    created_at: datetime


class RunPage(Page[RunOut]):
    """One page of a rule's runs, newest first."""


class DeliveryOut(Schema):
    id: uuid.UUID
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None
    last_duration_ms: int | None
    last_error: str
    payload: dict[str, Any] = Field(description="What was sent: ids and minimal metadata, never content.")
    created_at: datetime
    last_attempt_at: datetime | None


class DeliveryPage(Page[DeliveryOut]):
    """One page of a rule's webhook deliveries, newest first."""


def rule_out(rule: Rule) -> RuleOut:
    definition = rule.definition or {}
    return RuleOut(
        id=rule.pk, name=rule.name, scope="organization" if rule.owner_id is None else "mine", trigger=Trigger(rule.trigger),
        match=Match(rule.match), conditions=definition.get("conditions", []), actions=definition.get("actions", []),
        position=rule.position, enabled=rule.enabled, stop_processing=rule.stop_processing, flagged_reason=rule.flagged_reason,
        flagged_at=rule.flagged_at, created_at=rule.created_at, updated_at=rule.updated_at,
    )  # fmt: skip


def _run_out(run: RuleRun) -> RunOut:
    return RunOut(
        id=run.pk, conversation_id=run.conversation_id, message_id=run.message_id, trigger=Trigger(run.trigger),
        outcome=RunOutcome(run.outcome), changes=run.changes, reason=run.reason, created_at=run.created_at,
    )  # fmt: skip


def _delivery_out(delivery: WebhookDelivery) -> DeliveryOut:
    return DeliveryOut(
        id=delivery.pk, status=DeliveryStatus(delivery.status), attempts=delivery.attempts, last_status_code=delivery.last_status_code,
        last_duration_ms=delivery.last_duration_ms, last_error=delivery.last_error, payload=delivery.payload,
        created_at=delivery.created_at, last_attempt_at=delivery.last_attempt_at,
    )  # fmt: skip


@router.get("/orgs/{slug}/rules", response={200: RulePage, **ERRORS}, summary="List your personal rules, or the organization's (admins)")
def rule_list(request: HttpRequest, slug: str, page: Query[PageParams], scope: Query[Scope] = "mine") -> RulePage:
    actor = membership_get(user=request.user, slug=slug)
    if scope == "organization" and not selectors.manages_organization_rules(actor):
        raise PermissionDenied("Only admins manage the organization's rules.")
    rules = selectors.rules_of_scope(actor=actor, organization=scope == "organization")
    paged = paginate(rules, order=("position", "id"), params=page, key=f"rules-{scope}")
    return RulePage(items=[rule_out(rule) for rule in paged.items], next=paged.next)


@router.post("/orgs/{slug}/rules", response={201: RuleOut, **ERRORS}, summary="Create a rule (last in its list)")
def rule_create(request: HttpRequest, slug: str, payload: RuleIn) -> Status[RuleOut]:
    actor = membership_get(user=request.user, slug=slug)
    rule = actions.rule_create(
        actor=actor, organization=payload.scope == "organization", name=payload.name, trigger=payload.trigger, match=payload.match,
        conditions=payload.conditions, actions=payload.actions, stop_processing=payload.stop_processing, enabled=payload.enabled,
        request=request,
    )  # fmt: skip
    return Status(201, rule_out(rule))


@router.post("/orgs/{slug}/rules/reorder", response={200: RuleList, **ERRORS}, summary="Set the order of a list of rules")
def rule_reorder(request: HttpRequest, slug: str, payload: ReorderIn) -> RuleList:
    actor = membership_get(user=request.user, slug=slug)
    rules = actions.rules_reorder(actor=actor, organization=payload.scope == "organization", rule_ids=payload.rule_ids, request=request)
    return RuleList(items=[rule_out(rule) for rule in rules])


@router.get("/orgs/{slug}/rules/{uuid:rule_id}", response={200: RuleOut, **ERRORS}, summary="One rule")
def rule_detail(request: HttpRequest, slug: str, rule_id: uuid.UUID) -> RuleOut:
    actor = membership_get(user=request.user, slug=slug)
    return rule_out(selectors.rule_get(actor=actor, rule_id=rule_id))


@router.patch("/orgs/{slug}/rules/{uuid:rule_id}", response={200: RuleOut, **ERRORS}, summary="Change a rule (clears its flag)")
def rule_update(request: HttpRequest, slug: str, rule_id: uuid.UUID, payload: RulePatch) -> RuleOut:
    actor = membership_get(user=request.user, slug=slug)
    rule = selectors.rule_get(actor=actor, rule_id=rule_id)
    rule = actions.rule_update(
        actor=actor, rule=rule, name=payload.name, trigger=payload.trigger, match=payload.match, conditions=payload.conditions,
        actions=payload.actions, stop_processing=payload.stop_processing, enabled=payload.enabled, request=request,
    )  # fmt: skip
    return rule_out(rule)


@router.delete("/orgs/{slug}/rules/{uuid:rule_id}", response={204: None, **ERRORS}, summary="Delete a rule")
def rule_delete(request: HttpRequest, slug: str, rule_id: uuid.UUID) -> Status[None]:
    actor = membership_get(user=request.user, slug=slug)
    actions.rule_delete(actor=actor, rule=selectors.rule_get(actor=actor, rule_id=rule_id), request=request)
    return Status(204, None)


@router.post(
    "/orgs/{slug}/rules/{uuid:rule_id}/preview", response={200: PreviewOut, **ERRORS},
    summary="Which of your last 100 conversations the rule would match now (changes nothing)",
)  # fmt: skip
def rule_preview(request: HttpRequest, slug: str, rule_id: uuid.UUID) -> PreviewOut:
    actor = membership_get(user=request.user, slug=slug)
    rule = selectors.rule_get(actor=actor, rule_id=rule_id)
    looked_at = len(selectors.preview_candidates(actor=actor, organization=rule.owner_id is None))
    matched = actions.rule_preview(actor=actor, rule=rule)
    return PreviewOut(
        looked_at=looked_at,
        matched=[PreviewItem(id=item.pk, subject=item.subject or "", last_message_at=item.last_message_at) for item in matched],
    )


@router.get("/orgs/{slug}/rules/{uuid:rule_id}/runs", response={200: RunPage, **ERRORS}, summary="A rule's runs, newest first")
def rule_runs(request: HttpRequest, slug: str, rule_id: uuid.UUID, page: Query[PageParams]) -> RunPage:
    actor = membership_get(user=request.user, slug=slug)
    runs = selectors.rule_runs(actor=actor, rule=selectors.rule_get(actor=actor, rule_id=rule_id))
    paged = paginate(runs, order=("-created_at", "-id"), params=page, key="rule-runs")
    return RunPage(items=[_run_out(run) for run in paged.items], next=paged.next)


@router.get(
    "/orgs/{slug}/rules/{uuid:rule_id}/deliveries",
    response={200: DeliveryPage, **ERRORS},
    summary="A rule's webhook deliveries, newest first",
)
def rule_deliveries(request: HttpRequest, slug: str, rule_id: uuid.UUID, page: Query[PageParams]) -> DeliveryPage:
    actor = membership_get(user=request.user, slug=slug)
    deliveries = selectors.rule_deliveries(actor=actor, rule=selectors.rule_get(actor=actor, rule_id=rule_id))
    paged = paginate(deliveries, order=("-created_at", "-id"), params=page, key="rule-deliveries")
    return DeliveryPage(items=[_delivery_out(delivery) for delivery in paged.items], next=paged.next)
