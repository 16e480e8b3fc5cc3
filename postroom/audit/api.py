"""API for the organization's audit log (owners and admins), newest first, with cursor pagination.

The cursor is the id of the last event of the previous page: pages stay stable while new
events arrive, and a cursor only ever selects within the actor's own organization.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from ninja import Query, Router, Schema

from postroom.api.errors import ERRORS
from postroom.audit.models import AuditEvent, Result
from postroom.audit.selectors import audit_events
from postroom.orgs.policy import Permission
from postroom.orgs.selectors import membership_get

router = Router(tags=["audit"])


class AuditEventOut(Schema):
    id: int
    created_at: datetime
    actor: str
    action: str
    result: Result
    target_type: str
    target_id: str
    target_label: str
    ip_address: str | None
    details: dict[str, Any]


class AuditPage(Schema):
    items: list[AuditEventOut]
    next_cursor: str | None


def _event_out(event: AuditEvent) -> AuditEventOut:
    return AuditEventOut(
        id=event.pk, created_at=event.created_at, actor=event.actor_label, action=event.action, result=Result(event.result),
        target_type=event.target_type, target_id=event.target_id, target_label=event.target_label,
        ip_address=event.ip_address, details=event.details,
    )


def _cursor(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or len(value) > 19:
        raise ValidationError({"cursor": "Use the next_cursor of a previous page."})
    return int(value)


@router.get("/orgs/{slug}/audit", response={200: AuditPage, **ERRORS}, summary="The audit log, newest first")
def audit_list(
    request: HttpRequest,
    slug: str,
    action: Query[str] = "",
    person: Query[str] = "",
    result: Query[Result | None] = None,
    since: Query[date | None] = None,
    until: Query[date | None] = None,
    cursor: Query[str | None] = None,
    limit: Query[int] = 50,
) -> AuditPage:
    actor = membership_get(user=request.user, slug=slug, permission=Permission.VIEW_AUDIT_LOG)
    if not 1 <= limit <= 200:
        raise ValidationError({"limit": "Use a limit from 1 to 200."})
    events = list(
        audit_events(
            actor=actor, action=action, person=person, result=result.value if result else "", since=since, until=until,
            before_id=_cursor(cursor),
        )[: limit + 1]
    )
    more = len(events) > limit
    events = events[:limit]
    return AuditPage(items=[_event_out(event) for event in events], next_cursor=str(events[-1].pk) if more else None)
