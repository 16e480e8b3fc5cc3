"""The assigned and closed triggers: rules run after the change was committed."""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from postroom.conversations.signals import conversation_event
from postroom.rules import engine
from postroom.rules.models import Trigger


@receiver(conversation_event, dispatch_uid="rules.conversation_changed")
def _conversation_changed(sender: Any, *, conversation_id: Any, organization_id: int, kind: str, **_kwargs: Any) -> None:
    if kind not in (Trigger.ASSIGNED, Trigger.CLOSED):
        return
    engine.conversation_changed(
        conversation_id=conversation_id, organization_id=organization_id, kind=kind, depth=engine.current_depth() + 1
    )
