"""Reads of the audit log, scoped to the actor's organization. Callers check VIEW_AUDIT_LOG first."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from django.db.models import Q, QuerySet

from postroom.audit.models import AuditEvent
from postroom.orgs.models import Membership


def audit_events(
    *,
    actor: Membership,
    action: str = "",
    person: str = "",
    result: str = "",
    since: date | None = None,
    until: date | None = None,
) -> QuerySet[AuditEvent]:
    """The organization's events, newest first, filtered."""
    events = AuditEvent.objects.filter(organization_id=actor.organization_id)
    if action:
        events = events.filter(action__startswith=action)
    if person:
        events = events.filter(Q(actor_label__icontains=person) | Q(target_label__icontains=person))
    if result:
        events = events.filter(result=result)
    if since:
        events = events.filter(created_at__gte=datetime.combine(since, time.min, tzinfo=UTC))
    if until:
        events = events.filter(created_at__lt=datetime.combine(until + timedelta(days=1), time.min, tzinfo=UTC))
    return events.order_by("-id")


def audit_action_names(*, actor: Membership) -> list[str]:
    return sorted(set(AuditEvent.objects.filter(organization_id=actor.organization_id).values_list("action", flat=True).distinct()))
