"""Reads of a member's notifications: their own only, and only about conversations they can
still see (a notification about a conversation that was unshared from them disappears with it).
Someone else's notification, or one in another organization, is a 404."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import Http404

from postroom.accounts.models import User
from postroom.conversations.models import ConversationMember
from postroom.notifications.models import DigestFrequency, Notification, NotificationPreference
from postroom.orgs.models import Membership


def _can_see_conversation(membership_field: str = "recipient_id") -> Exists:
    return Exists(ConversationMember.objects.filter(conversation_id=OuterRef("conversation_id"), membership_id=OuterRef(membership_field)))


def notifications_visible(*, actor: Membership) -> QuerySet[Notification]:
    return Notification.objects.filter(recipient=actor, organization_id=actor.organization_id).filter(_can_see_conversation())


def notification_page(
    *, actor: Membership, unread_only: bool = False, limit: int = 50, after: tuple[datetime, Any] | None = None
) -> list[Notification]:
    """Newest first; ``after`` is the (created_at, id) of the last one of the previous page."""
    rows = notifications_visible(actor=actor)
    if unread_only:
        rows = rows.filter(read_at__isnull=True)
    if after is not None:
        created_at, notification_id = after
        rows = rows.filter(Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=notification_id))
    return list(rows.select_related("actor__user", "conversation", "comment").order_by("-created_at", "-id")[:limit])


def notification_get(*, actor: Membership, notification_id: Any) -> Notification:
    try:
        pk = notification_id if isinstance(notification_id, uuid.UUID) else uuid.UUID(str(notification_id))
    except ValueError:
        raise Http404 from None
    notification = notifications_visible(actor=actor).filter(pk=pk).select_related("conversation").first()
    if notification is None:
        raise Http404
    return notification


def unread_count(*, actor: Membership) -> int:
    return notifications_visible(actor=actor).filter(read_at__isnull=True).count()


def unread_count_of(*, membership_id: int) -> int:
    return Notification.objects.filter(recipient_id=membership_id, read_at__isnull=True).filter(_can_see_conversation()).count()


def unread_for_user(*, user: User, limit: int = 8) -> tuple[int, list[Notification]]:
    """The bell: unread notifications across the user's organizations (count, newest few).
    It is on every page: the count costs a query of its own only when the newest few fill ``limit``."""
    rows = (
        Notification.objects.filter(recipient__user=user, read_at__isnull=True)
        .filter(_can_see_conversation())
        .select_related("actor__user", "conversation", "organization")
        .order_by("-created_at", "-id")
    )
    latest = list(rows[:limit])
    return (len(latest) if len(latest) < limit else rows.count()), latest


def preference_of(*, actor: Membership) -> NotificationPreference:
    """The member's settings (an unsaved default when they never changed them)."""
    return NotificationPreference.objects.filter(membership=actor).first() or NotificationPreference(
        membership=actor, digest=DigestFrequency.OFF
    )
