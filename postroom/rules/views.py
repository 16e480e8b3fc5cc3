"""The rules pages: the two lists (yours, and the organization's for admins) with their order,
the form with its conditions and actions builder, the preview and the run and delivery log.

The builder works without script (our CSP allows none inline): a fixed number of condition and
action rows, blank rows ignored; the rows are turned into the rule's definition here and checked
by ``rules.actions`` like an API body, so a page and the API cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from postroom.conversations.models import Label
from postroom.mailboxes.models import Mailbox
from postroom.orgs.models import Membership, Team
from postroom.orgs.selectors import membership_get
from postroom.responses.models import Scope as ResponseScope
from postroom.responses.selectors import responses_by_name
from postroom.rules import actions, selectors
from postroom.rules.definition import TEXT_FIELDS, rule_books
from postroom.rules.models import Match, Rule, Trigger

CONDITION_ROWS = 5
ACTION_ROWS = 5
CONDITION_FIELDS = [
    ("", "—"), ("from", "From"), ("to", "To"), ("cc", "Cc"), ("subject", "Subject"), ("body", "Body"), ("mailbox", "Mailbox is"),
    ("team", "Team is"), ("label", "Has label"), ("has_attachment", "Has an attachment (yes/no)"),
    ("weekday", "Weekday (0=Mon … 6=Sun, comma-separated, UTC)"), ("time", "Time of day (HH:MM-HH:MM, UTC)"),
    ("contact_book", "Sender is in a contact book"),
]  # fmt: skip
OPERATORS = [("contains", "contains"), ("glob", "matches (glob: * and ?)"), ("regex", "matches (regular expression, RE2)")]
ACTION_KINDS = [
    ("", "—"), ("assign", "Assign to"), ("label", "Add label"), ("unlabel", "Remove label"), ("share_team", "Share with team"),
    ("move_to_team", "Move to team inbox"), ("close", "Close"), ("archive", "Archive (personal rules)"),
    ("snooze", "Snooze (hours)"), ("spam", "Mark as spam"), ("webhook", "Call a webhook (URL; organization rules)"),
    ("auto_reply", "Auto-reply with a response (incoming mail)"), ("comment", "Add a comment (text)"),
]  # fmt: skip


@dataclass
class Choices:
    mailboxes: list[tuple[str, str]]
    teams: list[tuple[str, str]]
    labels: list[tuple[str, str]]
    members: list[tuple[str, str]]
    books: list[tuple[str, str]]
    responses: list[tuple[str, str]]


def _choices(actor: Membership, organization: bool) -> Choices:
    mailboxes = Mailbox.objects.filter(organization_id=actor.organization_id)
    mailboxes = mailboxes.filter(team__isnull=False) if organization else mailboxes.filter(owner=actor, team__isnull=True)
    teams = Team.objects.filter(organization_id=actor.organization_id)
    if not organization:
        teams = teams.filter(team_memberships__membership=actor)
    labels = Label.objects.filter(organization_id=actor.organization_id, owner__isnull=True)
    if not organization:
        labels = labels | Label.objects.filter(organization_id=actor.organization_id, owner=actor)
    members = Membership.objects.filter(organization_id=actor.organization_id).select_related("user").order_by("user__email")
    books = rule_books(organization_id=actor.organization_id, owner=None if organization else actor)
    responses = [
        response for response in responses_by_name(actor=actor)
        if not organization or response.scope in (ResponseScope.ORGANIZATION, ResponseScope.TEAM)
    ]  # fmt: skip
    return Choices(
        mailboxes=[(f"mailbox:{mailbox.pk}", mailbox.email_address) for mailbox in mailboxes.order_by("email_address")],
        teams=[(f"team:{team.pk}", team.name) for team in teams.order_by("name")],
        labels=[(f"label:{label.pk}", label.name) for label in labels.order_by("name")],
        members=[(f"member:{member.pk}", member.user.email) for member in members],
        books=[("book:any", "Any contact book" if organization else "Any contact book I can see")]
        + [(f"book:{book.pk}", book.name) for book in books.order_by("name")],
        responses=[(f"response:{response.pk}", f"{response.name} ({response.get_scope_display().lower()})") for response in responses],
    )


def _target(value: str, prefix: str) -> str:
    kind, _, ident = value.partition(":")
    if kind != prefix or not ident:
        raise ValidationError(f"Choose a {prefix} for this row.")
    return ident


def _definition_from(data: QueryDict) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The builder's rows as a definition (checked afterwards by the actions)."""
    conditions: list[dict[str, Any]] = []
    for index in range(CONDITION_ROWS):
        field = data.get(f"condition-{index}-field", "")
        value = data.get(f"condition-{index}-value", "").strip()
        target = data.get(f"condition-{index}-target", "")
        if not field:
            continue
        if field in TEXT_FIELDS:
            conditions.append({"field": field, "op": data.get(f"condition-{index}-op", "contains"), "value": value})
        elif field in ("mailbox", "team", "label"):
            conditions.append({"field": field, "value": _target(target, field)})
        elif field == "contact_book":
            conditions.append({"field": field, "value": _target(target, "book")})
        elif field == "has_attachment":
            conditions.append({"field": field, "value": value.lower() not in ("no", "false", "0")})
        elif field == "weekday":
            try:
                conditions.append({"field": field, "value": [int(day) for day in value.replace(" ", "").split(",") if day]})
            except ValueError:
                raise ValidationError("Weekdays: numbers from 0 (Monday) to 6 (Sunday), separated by commas.") from None
        elif field == "time":
            start, _, until = value.partition("-")
            conditions.append({"field": field, "value": {"from": start.strip(), "until": until.strip()}})
        else:
            raise ValidationError("Unknown condition.")
    rule_actions: list[dict[str, Any]] = []
    for index in range(ACTION_ROWS):
        kind = data.get(f"action-{index}-kind", "")
        target = data.get(f"action-{index}-target", "")
        value = data.get(f"action-{index}-value", "").strip()
        if not kind:
            continue
        if kind == "assign":
            rule_actions.append({"kind": kind, "membership_id": _target(target, "member")})
        elif kind in ("label", "unlabel"):
            rule_actions.append({"kind": kind, "label_id": _target(target, "label")})
        elif kind in ("share_team", "move_to_team"):
            rule_actions.append({"kind": kind, "team_id": _target(target, "team")})
        elif kind == "snooze":
            rule_actions.append({"kind": kind, "hours": int(value) if value.isdigit() else 0})
        elif kind == "webhook":
            rule_actions.append({"kind": kind, "url": value})
        elif kind == "auto_reply":
            rule_actions.append({"kind": kind, "response_id": _target(target, "response")})
        elif kind == "comment":
            rule_actions.append({"kind": kind, "text": value})
        else:
            rule_actions.append({"kind": kind})
    return conditions, rule_actions


def _rows(rule: Rule | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The builder's rows for a stored rule (plus blank ones)."""
    definition = (rule.definition if rule else None) or {}
    conditions = []
    for condition in definition.get("conditions", []):
        field, value = condition["field"], condition["value"]
        row = {"field": field, "op": condition.get("op", "contains"), "value": "", "target": ""}
        if field in TEXT_FIELDS:
            row["value"] = value
        elif field in ("mailbox", "team", "label"):
            row["target"] = f"{field}:{value}"
        elif field == "contact_book":
            row["target"] = f"book:{value}"
        elif field == "has_attachment":
            row["value"] = "yes" if value else "no"
        elif field == "weekday":
            row["value"] = ",".join(str(day) for day in value)
        elif field == "time":
            row["value"] = f"{value['from']}-{value['until']}"
        conditions.append(row)
    rule_actions = []
    for action in definition.get("actions", []):
        kind = action["kind"]
        target = (
            f"member:{action['membership_id']}" if "membership_id" in action else f"label:{action['label_id']}" if "label_id" in action
            else f"team:{action['team_id']}" if "team_id" in action
            else f"response:{action['response_id']}" if "response_id" in action else ""
        )  # fmt: skip
        value = action.get("hours", action.get("url", action.get("text", "")))
        rule_actions.append({"kind": kind, "target": target, "value": str(value)})
    blank_condition = {"field": "", "op": "contains", "value": "", "target": ""}
    blank_action = {"kind": "", "target": "", "value": ""}
    return (
        (conditions + [dict(blank_condition) for _ in range(CONDITION_ROWS)])[:CONDITION_ROWS],
        (rule_actions + [dict(blank_action) for _ in range(ACTION_ROWS)])[:ACTION_ROWS],
    )


@login_required
@require_GET
def rule_list(request: HttpRequest, slug: str) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    manages = selectors.manages_organization_rules(actor)
    return render(request, "rules/list.html", {
        "organization": actor.organization, "actor": actor, "nav": "rules", "manages": manages,
        "own_rules": list(selectors.rules_of_scope(actor=actor, organization=False)),
        "organization_rules": list(selectors.rules_of_scope(actor=actor, organization=True)) if manages else [],
    })  # fmt: skip


def _rule_fields(data: QueryDict) -> dict[str, Any]:
    """What the rule form posts, as ``rule_create``/``rule_update`` take it (ValidationError for a
    definition that cannot be read)."""
    conditions, rule_actions = _definition_from(data)
    return {
        "name": data.get("name", ""), "trigger": data.get("trigger", ""), "match": data.get("match", Match.ALL),
        "conditions": conditions, "actions": rule_actions,
        "stop_processing": data.get("stop_processing") == "on", "enabled": data.get("enabled") == "on",
    }  # fmt: skip


def _form_page(request: HttpRequest, actor: Membership, *, rule: Rule | None, organization: bool, status: int = 200) -> HttpResponse:
    data = request.POST if request.method == "POST" else None
    condition_rows, action_rows = _rows(rule)
    if data is not None:  # a refused form comes back as it was typed
        condition_rows = [
            {key: data.get(f"condition-{index}-{key}", "") for key in ("field", "op", "value", "target")} for index in range(CONDITION_ROWS)
        ]
        action_rows = [{key: data.get(f"action-{index}-{key}", "") for key in ("kind", "target", "value")} for index in range(ACTION_ROWS)]
    has_webhook = any(row["kind"] == "webhook" for row in action_rows)
    return render(request, "rules/form.html", {
        "organization": actor.organization, "actor": actor, "nav": "rules", "rule": rule, "organization_rule": organization,
        "choices": _choices(actor, organization), "condition_rows": condition_rows, "action_rows": action_rows,
        "condition_fields": CONDITION_FIELDS, "operators": OPERATORS, "action_kinds": ACTION_KINDS, "triggers": Trigger.choices,
        "matches": Match.choices, "name": data.get("name", "") if data is not None else (rule.name if rule else ""),
        "trigger": data.get("trigger") if data is not None else (rule.trigger if rule else Trigger.INCOMING),
        "match": data.get("match") if data is not None else (rule.match if rule else Match.ALL),
        "stop_processing": (data.get("stop_processing") == "on") if data is not None else bool(rule and rule.stop_processing),
        "enabled": (data.get("enabled") == "on") if data is not None else (rule.enabled if rule else True),
        "signing_key": rule.signing_key if rule is not None and organization and has_webhook else "",
    }, status=status)  # fmt: skip


def _errors(error: ValidationError) -> list[str]:
    if hasattr(error, "error_dict"):
        return [message for messages_ in error.message_dict.values() for message in messages_]
    return list(error.messages)


@login_required
@require_http_methods(["GET", "POST"])
def rule_create(request: HttpRequest, slug: str) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    organization = (request.POST if request.method == "POST" else request.GET).get("scope") == "organization"
    if organization and not selectors.manages_organization_rules(actor):
        raise PermissionDenied("Only admins manage the organization's rules.")
    if request.method == "POST":
        try:
            rule = actions.rule_create(actor=actor, organization=organization, request=request, **_rule_fields(request.POST))
        except ValidationError as error:
            for message in _errors(error):
                messages.error(request, message)
            return _form_page(request, actor, rule=None, organization=organization, status=422)
        messages.success(request, "Rule created.")
        return redirect("rules:edit", slug, rule.pk)
    return _form_page(request, actor, rule=None, organization=organization)


@login_required
@require_http_methods(["GET", "POST"])
def rule_edit(request: HttpRequest, slug: str, rule_id: Any) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    rule = selectors.rule_get(actor=actor, rule_id=rule_id)
    organization = rule.owner_id is None
    if request.method == "POST":
        try:
            rule = actions.rule_update(actor=actor, rule=rule, request=request, **_rule_fields(request.POST))
        except ValidationError as error:
            for message in _errors(error):
                messages.error(request, message)
            return _form_page(request, actor, rule=rule, organization=organization, status=422)
        messages.success(request, "Rule saved.")
        return redirect("rules:edit", slug, rule.pk)
    return _form_page(request, actor, rule=rule, organization=organization)


@login_required
@require_POST
def rule_move(request: HttpRequest, slug: str, rule_id: Any) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    rule = selectors.rule_get(actor=actor, rule_id=rule_id)
    actions.rule_move(actor=actor, rule=rule, offset=-1 if request.POST.get("direction") == "up" else 1, request=request)
    return redirect("rules:list", slug)


@login_required
@require_POST
def rule_delete(request: HttpRequest, slug: str, rule_id: Any) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    actions.rule_delete(actor=actor, rule=selectors.rule_get(actor=actor, rule_id=rule_id), request=request)
    messages.success(request, "Rule deleted.")
    return redirect("rules:list", slug)


@login_required
@require_GET
def rule_preview(request: HttpRequest, slug: str, rule_id: Any) -> HttpResponse:
    """Read-only: the preview changes nothing, so it is a GET."""
    actor = membership_get(user=request.user, slug=slug)
    rule = selectors.rule_get(actor=actor, rule_id=rule_id)
    looked_at = len(selectors.preview_candidates(actor=actor, organization=rule.owner_id is None))
    return render(request, "rules/preview.html", {
        "organization": actor.organization, "actor": actor, "nav": "rules", "rule": rule, "looked_at": looked_at,
        "matched": actions.rule_preview(actor=actor, rule=rule),
    })  # fmt: skip


@login_required
@require_GET
def rule_log(request: HttpRequest, slug: str, rule_id: Any) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    rule = selectors.rule_get(actor=actor, rule_id=rule_id)
    return render(request, "rules/log.html", {
        "organization": actor.organization, "actor": actor, "nav": "rules", "rule": rule,
        "runs": selectors.rule_runs(actor=actor, rule=rule)[:100], "deliveries": selectors.rule_deliveries(actor=actor, rule=rule)[:100],
    })  # fmt: skip
