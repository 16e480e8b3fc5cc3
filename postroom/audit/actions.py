from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import models, transaction
from django.http import HttpRequest
from django.utils import timezone

from postroom.audit.models import AuditChainHead, AuditEvent, Result
from postroom.core.http import client_ip

GENESIS_HASH = "0" * 64


def audit_record(
    *,
    action: str,
    actor: Any = None,
    organization: Any = None,
    request: HttpRequest | None = None,
    result: str = Result.SUCCESS,
    target: models.Model | None = None,
    target_label: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the chain, inside the caller's transaction when there is one."""
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    with transaction.atomic():
        head, _ = AuditChainHead.objects.select_for_update().get_or_create(pk=1, defaults={"last_hash": GENESIS_HASH})
        event = AuditEvent(
            created_at=timezone.now(),
            organization=organization,
            actor=actor,
            actor_label=getattr(actor, "email", "") or "",
            action=action,
            result=result,
            target_type=target._meta.label_lower if target is not None else "",
            target_id=str(target.pk) if target is not None else "",
            target_label=target_label[:254],
            ip_address=client_ip(request) if request is not None else None,
            user_agent=(request.META.get("HTTP_USER_AGENT", "")[:256] if request is not None else ""),
            details=details or {},
            previous_hash=head.last_hash,
        )
        event.entry_hash = event.compute_hash()
        event.save()
        AuditChainHead.objects.filter(pk=1).update(last_hash=event.entry_hash)
    return event


@dataclass(frozen=True)
class ChainReport:
    checked: int
    broken_at: int | None = None
    reason: str = ""

    @property
    def intact(self) -> bool:
        return self.broken_at is None and not self.reason


def audit_verify_chain() -> ChainReport:
    """Walk the chain oldest first and report the first row that does not fit."""
    previous = GENESIS_HASH
    checked = 0
    for event in AuditEvent.objects.order_by("id").iterator(chunk_size=2000):
        if event.previous_hash != previous:
            return ChainReport(checked, event.pk, "a row before it was removed or reordered")
        if event.compute_hash() != event.entry_hash:
            return ChainReport(checked, event.pk, "its content was changed")
        previous = event.entry_hash
        checked += 1
    head = AuditChainHead.objects.filter(pk=1).first()
    if head is not None and head.last_hash != previous:
        return ChainReport(checked, None, "the newest rows were removed")
    return ChainReport(checked)
