"""API for the organization's audit log (owners and admins), newest first, in cursor pages
(``postroom.api.pagination``): pages stay stable while new events arrive, and a cursor only
ever selects within the actor's own organization."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from django.http import HttpRequest
from ninja import Query, Router, Schema

from postroom.api.errors import ERRORS
from postroom.api.pagination import Page, PageParams, paginate
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


class AuditPage(Page[AuditEventOut]):
    """One page of audit events, newest first."""


def _event_out(event: AuditEvent) -> AuditEventOut:
    return AuditEventOut(
        id=event.pk, created_at=event.created_at, actor=event.actor_label, action=event.action, result=Result(event.result),
        target_type=event.target_type, target_id=event.target_id, target_label=event.target_label,
        ip_address=event.ip_address, details=event.details,
    )


@router.get("/orgs/{slug}/audit", response={200: AuditPage, **ERRORS}, summary="The audit log, newest first")
def audit_list(
    request: HttpRequest,
    slug: str,
    page: Query[PageParams],
    action: Query[str] = "",
    person: Query[str] = "",
    result: Query[Result | None] = None,
    since: Query[date | None] = None,
    until: Query[date | None] = None,
) -> AuditPage:
    actor = membership_get(user=request.user, slug=slug, permission=Permission.VIEW_AUDIT_LOG)
    events = audit_events(actor=actor, action=action, person=person, result=result.value if result else "", since=since, until=until)
    paged = paginate(events, order=("-id",), params=page, key="audit")
    return AuditPage(items=[_event_out(event) for event in paged.items], next=paged.next)
