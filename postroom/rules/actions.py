"""Writes of rules: create, change, reorder, delete, preview (which changes nothing).

A member writes their own personal rules; admins write the organization's. Every id a rule names
is checked against what its owner may use (``definition.authorisation_problem``), so a rule
cannot reach another organization's mailboxes, teams, labels or members, nor what its owner
may not touch; the same check runs again at every run. Audit rows carry ids only: conditions
and actions are content (sealed).
"""

from __future__ import annotations

import secrets
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Max
from django.http import HttpRequest

from postroom.audit.actions import audit_record
from postroom.conversations.models import Conversation
from postroom.orgs.models import Membership
from postroom.rules import selectors
from postroom.rules.definition import authorisation_problem, definition_clean
from postroom.rules.engine import rule_preview as _preview
from postroom.rules.models import Match, Rule, Trigger


def _clean_name(name: str) -> str:
    cleaned = " ".join((name or "").split())
    if not cleaned or len(cleaned) > 80:
        raise ValidationError({"name": "A rule's name has 1 to 80 characters."})
    return cleaned


def _check(actor: Membership, *, organization: bool) -> None:
    if organization and not selectors.manages_organization_rules(actor):
        raise PermissionDenied("Only admins manage the organization's rules.")


def _validated(actor: Membership, *, organization: bool, trigger: str, match: str, conditions: Any, actions: Any) -> dict[str, Any]:
    if trigger not in Trigger.values:
        raise ValidationError({"trigger": f"Choose one of {', '.join(Trigger.values)}."})
    if match not in Match.values:
        raise ValidationError({"match": "Choose all or any."})
    definition = definition_clean(conditions, actions, personal=not organization)
    if trigger != Trigger.INCOMING and any(action["kind"] == "auto_reply" for action in definition["actions"]):
        raise ValidationError({"definition": "An automatic reply answers a message that arrives: choose that trigger."})
    owner = None if organization else actor
    problem = authorisation_problem(organization_id=actor.organization_id, owner=owner, editor=actor, definition=definition)
    if problem:
        raise ValidationError({"definition": problem})
    return definition


def rule_create(
    *, actor: Membership, organization: bool, name: str, trigger: str, match: str = Match.ALL, conditions: Any, actions: Any,
    stop_processing: bool = False, enabled: bool = True, request: HttpRequest | None = None,
) -> Rule:  # fmt: skip
    """A personal rule (any member) or an organization rule (admins), placed last."""
    _check(actor, organization=organization)
    definition = _validated(actor, organization=organization, trigger=trigger, match=match, conditions=conditions, actions=actions)
    owner = None if organization else actor
    with transaction.atomic():
        siblings = selectors.rules_of_scope(actor=actor, organization=organization)
        last = siblings.aggregate(last=Max("position"))["last"]
        rule = Rule(
            organization_id=actor.organization_id, owner=owner, updated_by=actor, name=_clean_name(name), trigger=trigger,
            match=match, position=0 if last is None else last + 1, stop_processing=stop_processing, enabled=enabled,
        )  # fmt: skip
        rule.definition = definition
        rule.signing_key = secrets.token_urlsafe(32)
        rule.save()
        audit_record(action="rule.created", actor=actor.user, organization=actor.organization, request=request, target=rule,
                     details={"organization_rule": organization})  # fmt: skip
    return rule


def rule_update(
    *, actor: Membership, rule: Rule, name: str | None = None, trigger: str | None = None, match: str | None = None,
    conditions: Any = None, actions: Any = None, stop_processing: bool | None = None, enabled: bool | None = None,
    request: HttpRequest | None = None,
) -> Rule:  # fmt: skip
    """Change what is given; saving clears the flag (the check runs again here) and, for an
    organization rule, makes the actor the admin it runs under."""
    rule = selectors.rule_get(actor=actor, rule_id=rule.pk)
    organization = rule.owner_id is None
    _check(actor, organization=organization)
    current = rule.definition or {}
    definition = _validated(
        actor, organization=organization, trigger=trigger or rule.trigger, match=match or rule.match,
        conditions=current.get("conditions", []) if conditions is None else conditions,
        actions=current.get("actions", []) if actions is None else actions,
    )  # fmt: skip
    with transaction.atomic():
        if name is not None:
            rule.name = _clean_name(name)
        rule.trigger = trigger or rule.trigger
        rule.match = match or rule.match
        if stop_processing is not None:
            rule.stop_processing = stop_processing
        if enabled is not None:
            rule.enabled = enabled
        rule.definition = definition
        rule.updated_by = actor
        rule.flagged_reason, rule.flagged_at = "", None
        rule.save(update_fields=["name", "trigger", "match", "stop_processing", "enabled", "definition_sealed", "updated_by",
                                 "flagged_reason", "flagged_at", "updated_at"])  # fmt: skip
        audit_record(action="rule.changed", actor=actor.user, organization=actor.organization, request=request, target=rule)
    return rule


def rule_delete(*, actor: Membership, rule: Rule, request: HttpRequest | None = None) -> None:
    rule = selectors.rule_get(actor=actor, rule_id=rule.pk)
    _check(actor, organization=rule.owner_id is None)
    with transaction.atomic():
        audit_record(action="rule.deleted", actor=actor.user, organization=actor.organization, request=request, target=rule)
        rule.delete()


def rules_reorder(*, actor: Membership, organization: bool, rule_ids: list[Any], request: HttpRequest | None = None) -> list[Rule]:
    """Set the order of one list (the actor's own, or the organization's): ``rule_ids`` must name
    each of its rules exactly once."""
    _check(actor, organization=organization)
    with transaction.atomic():
        rules = {str(rule.pk): rule for rule in selectors.rules_of_scope(actor=actor, organization=organization).select_for_update()}
        wanted = [str(rule_id) for rule_id in rule_ids]
        if sorted(wanted) != sorted(rules):
            raise ValidationError({"rule_ids": "Name every rule of the list exactly once."})
        for position, rule_id in enumerate(wanted):
            if rules[rule_id].position != position:
                Rule.objects.filter(pk=rule_id).update(position=position)
                rules[rule_id].position = position
        audit_record(action="rules.reordered", actor=actor.user, organization=actor.organization, request=request,
                     details={"organization_rules": organization})  # fmt: skip
    return [rules[rule_id] for rule_id in wanted]


def rule_move(*, actor: Membership, rule: Rule, offset: int, request: HttpRequest | None = None) -> None:
    """One step up (-1) or down (+1) in its list (the buttons of the rules page)."""
    rule = selectors.rule_get(actor=actor, rule_id=rule.pk)
    organization = rule.owner_id is None
    ids = [str(pk) for pk in selectors.rules_of_scope(actor=actor, organization=organization).values_list("pk", flat=True)]
    index = ids.index(str(rule.pk))
    target = index + offset
    if 0 <= target < len(ids):
        ids[index], ids[target] = ids[target], ids[index]
        rules_reorder(actor=actor, organization=organization, rule_ids=ids, request=request)


def rule_preview(*, actor: Membership, rule: Rule) -> list[Conversation]:
    """Which of the last 100 conversations the actor can see (in team inboxes, for an
    organization rule) the rule would match now. Nothing is changed, nothing is logged."""
    rule = selectors.rule_get(actor=actor, rule_id=rule.pk)
    candidates = selectors.preview_candidates(actor=actor, organization=rule.owner_id is None)
    return _preview(rule=rule, conversations=candidates, viewer=actor)
