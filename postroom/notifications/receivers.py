"""Notifications from conversation events (sent after the commit, ids only).

- ``assigned`` (details ``membership_id``): the assignee is notified;
- ``message_added`` (details ``message_ids``: the new messages that joined the conversation's
  share): its followers and assignees are notified.

A failure here is logged (ids only) and swallowed: the event's sender (a member's request, the
sync engine) has committed its change already and must not fail because a notification could
not be written.
"""

from __future__ import annotations

import logging
from typing import Any

from postroom.conversations.signals import conversation_event
from postroom.notifications import actions

logger = logging.getLogger(__name__)


def on_conversation_event(
    sender: Any, *, conversation_id: Any, organization_id: Any, kind: str, actor_id: int | None, details: dict[str, Any], **kwargs: Any
) -> None:
    try:
        if kind == "assigned" and details.get("membership_id"):
            actions.notify_assigned(conversation_id=conversation_id, assignee_id=int(details["membership_id"]), actor_id=actor_id)
        elif kind == "message_added" and details.get("message_ids"):
            actions.notify_messages_added(conversation_id=conversation_id, message_ids=list(details["message_ids"]))
    except Exception:
        logger.exception("notifications for a %s event of conversation %s failed", kind, conversation_id)


def connect() -> None:
    conversation_event.connect(on_conversation_event, dispatch_uid="postroom.notifications")
