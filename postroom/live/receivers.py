"""What goes onto the live bus: conversation events, and session changes that must end streams.

``conversations.signals.conversation_event`` (sent after the commit, ids only) becomes a bus
event for everyone who can see the conversation, narrowed when the change concerns one member:

- ``details["audience"]``, a list of membership ids, restricts delivery to those members (among
  those who can see the conversation). Notifications use it (``kind="notification"``).
- A personal label is its owner's business alone: ``labelled``/``unlabelled`` of a personal
  label go to its owner only.

Control events, published after the commit, make the web processes re-check a user's open
streams at once instead of at the next periodic check: a session row deleted (logout, a session
ended from the session list, a new session key after a sign-in step), a change of the password,
the security stamp (second factor, email, "sign out other sessions") or ``is_active``, and a
membership removed.

Publishing never breaks the change that caused it: a failure is logged (no content) and dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.models import Session
from django.db import transaction
from django.db.models.signals import post_delete, post_save

from postroom.accounts.models import User
from postroom.conversations.models import Label
from postroom.conversations.signals import conversation_event
from postroom.live.bus import publish
from postroom.live.events import Event, control_event
from postroom.live.events import conversation_event as live_event
from postroom.orgs.models import Membership

logger = logging.getLogger(__name__)

_LABEL_KINDS = frozenset({"labelled", "unlabelled"})
_SESSION_FIELDS = frozenset({"password", "security_stamp", "is_active"})


def _safely(build: Callable[[], Event | None]) -> None:
    try:
        event = build()
        if event is not None:
            publish(event)
    except Exception as error:
        logger.warning("live: an event was not published (%s)", type(error).__name__)


def _audience(kind: str, details: dict[str, Any]) -> list[int] | None:
    if "audience" in details:
        return [int(item) for item in details["audience"]]
    if kind in _LABEL_KINDS and details.get("label_id"):
        owner_id = Label.objects.filter(pk=details["label_id"]).values_list("owner_id", flat=True).first()
        if owner_id is not None:
            return [owner_id]
    return None


def on_conversation_event(
    sender: Any, *, conversation_id: Any, organization_id: Any, kind: str, details: dict[str, Any] | None = None, **kwargs: Any
) -> None:
    _safely(
        lambda: live_event(
            organization_id=organization_id, conversation_id=conversation_id, kind=kind, audience=_audience(kind, details or {})
        )
    )


def _after_commit(user_id: int | None) -> None:
    if user_id is not None:
        transaction.on_commit(lambda: _safely(lambda: control_event(user_id)))


def on_session_deleted(sender: Any, instance: Session, **kwargs: Any) -> None:
    user_id = instance.get_decoded().get(SESSION_KEY)
    if user_id is not None and str(user_id).isdigit():
        _after_commit(int(user_id))


def on_user_saved(sender: Any, instance: User, created: bool, update_fields: Any = None, **kwargs: Any) -> None:
    if not created and (update_fields is None or _SESSION_FIELDS & set(update_fields)):
        _after_commit(instance.pk)


def on_membership_deleted(sender: Any, instance: Membership, **kwargs: Any) -> None:
    _after_commit(instance.user_id)


def connect_receivers() -> None:
    conversation_event.connect(on_conversation_event, dispatch_uid="postroom.live.conversation_event")
    post_delete.connect(on_session_deleted, sender=Session, dispatch_uid="postroom.live.session_deleted")
    post_save.connect(on_user_saved, sender=User, dispatch_uid="postroom.live.user_saved")
    post_delete.connect(on_membership_deleted, sender=Membership, dispatch_uid="postroom.live.membership_deleted")
