"""Reads of rules, scoped to the member asking.

A member sees their own personal rules; organization rules are seen by admins (who manage them).
A member never sees another member's personal rules, admins included: a rule says what someone
does with their own mail. Missing, foreign and forbidden all answer 404.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet
from django.http import Http404

from postroom.conversations.models import Conversation
from postroom.conversations.selectors import conversations_visible
from postroom.orgs.models import Membership
from postroom.orgs.policy import Permission, role_allows
from postroom.rules.models import Rule, RuleRun, WebhookDelivery

PREVIEW_SIZE = 100


def manages_organization_rules(actor: Membership) -> bool:
    return role_allows(actor.role, Permission.MANAGE_TEAMS)


def rules_visible(*, actor: Membership) -> QuerySet[Rule]:
    rules = Rule.objects.filter(organization_id=actor.organization_id)
    if manages_organization_rules(actor):
        return rules.filter(owner__isnull=True) | rules.filter(owner=actor)
    return rules.filter(owner=actor)


def rules_of_scope(*, actor: Membership, organization: bool) -> QuerySet[Rule]:
    rules = rules_visible(actor=actor)
    return (rules.filter(owner__isnull=True) if organization else rules.filter(owner=actor)).order_by("position", "created_at")


def rule_get(*, actor: Membership, rule_id: Any) -> Rule:
    try:
        pk = uuid.UUID(str(rule_id))
    except ValueError:
        raise Http404 from None
    rule = rules_visible(actor=actor).filter(pk=pk).select_related("owner", "updated_by").first()
    if rule is None:
        raise Http404
    return rule


def rule_runs(*, actor: Membership, rule: Rule) -> QuerySet[RuleRun]:
    return RuleRun.objects.filter(rule=rule_get(actor=actor, rule_id=rule.pk)).order_by("-created_at", "-id")


def rule_deliveries(*, actor: Membership, rule: Rule) -> QuerySet[WebhookDelivery]:
    return WebhookDelivery.objects.filter(rule=rule_get(actor=actor, rule_id=rule.pk)).order_by("-created_at")


def preview_candidates(*, actor: Membership, organization: bool) -> list[Conversation]:
    """The last conversations a preview looks at: visible to the actor, and for an organization
    rule, in a team inbox."""
    conversations = conversations_visible(actor=actor)
    if organization:
        conversations = conversations.filter(shares__team__isnull=False).distinct()
    return list(conversations.order_by("-last_message_at")[:PREVIEW_SIZE])
