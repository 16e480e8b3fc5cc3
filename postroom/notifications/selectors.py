"""Reads of a member's notifications: their own only, and only about conversations they can
still see (a notification about a conversation that was unshared from them disappears with it).
Someone else's notification, or one in another organization, is a 404."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import connection
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


# The bell, on every page (issue #4): the signed-in person's unread notifications across their
# organizations, about conversations the recipient still sees (``_can_see_conversation``), newest
# first, with what the bell shows of each; and their number when the newest few fill the bell.
# Constant texts with parameters (SECURITY.md R58) instead of a query of five joined tables that
# the ORM built and compiled on every page; ``test_the_bell_matches_the_orm`` compares them with
# the ORM's filter.
_BELL_SQL = """
SELECT n.id, n.kind, n.count, n.created_at, n.conversation_id, c.organization_id, c.subject_sealed, o.slug, o.name, u.email, u.name
FROM notifications_notification n
INNER JOIN orgs_membership r ON r.id = n.recipient_id
INNER JOIN conversations_conversation c ON c.id = n.conversation_id
INNER JOIN orgs_organization o ON o.id = n.organization_id
LEFT OUTER JOIN orgs_membership a ON a.id = n.actor_id
LEFT OUTER JOIN accounts_user u ON u.id = a.user_id
WHERE r.user_id = %(user)s AND n.read_at IS NULL
  AND EXISTS (SELECT 1 FROM conversations_conversationmember m WHERE m.conversation_id = n.conversation_id AND m.membership_id = n.recipient_id)
ORDER BY n.created_at DESC, n.id DESC
LIMIT %(limit)s
"""
_BELL_COUNT_SQL = """
SELECT COUNT(*)
FROM notifications_notification n INNER JOIN orgs_membership r ON r.id = n.recipient_id
WHERE r.user_id = %(user)s AND n.read_at IS NULL
  AND EXISTS (SELECT 1 FROM conversations_conversationmember m WHERE m.conversation_id = n.conversation_id AND m.membership_id = n.recipient_id)
"""


@dataclass(frozen=True)
class BellRow:
    """An unread notification as the bell reads it (the subject still sealed; no actor: ``actor_email`` None)."""

    id: uuid.UUID
    kind: str
    count: int
    created_at: datetime
    conversation_id: uuid.UUID
    organization_id: int
    subject_sealed: bytes | None
    organization_slug: str
    organization_name: str
    actor_email: str | None
    actor_name: str | None


def unread_for_user(*, user: User, limit: int = 8) -> tuple[int, list[BellRow]]:
    """The bell: unread notifications across the user's organizations (count, newest few).
    It is on every page: the count costs a query of its own only when the newest few fill ``limit``."""
    with connection.cursor() as cursor:
        cursor.execute(_BELL_SQL, {"user": user.pk, "limit": limit})
        latest = [_bell_row(found) for found in cursor.fetchall()]
        if len(latest) < limit:
            return len(latest), latest
        cursor.execute(_BELL_COUNT_SQL, {"user": user.pk})
        (count,) = cursor.fetchone()
    return int(count), latest


def _bell_row(found: tuple[Any, ...]) -> BellRow:
    pk, kind, count, created_at, conversation_id, organization_id, subject_sealed, slug, name, actor_email, actor_name = found
    if not isinstance(created_at, datetime):  # SQLite hands back naive UTC text
        created_at = datetime.fromisoformat(str(created_at))
    return BellRow(
        id=pk if isinstance(pk, uuid.UUID) else uuid.UUID(str(pk)), kind=kind, count=int(count),
        created_at=created_at if created_at.tzinfo is not None else created_at.replace(tzinfo=UTC),
        conversation_id=conversation_id if isinstance(conversation_id, uuid.UUID) else uuid.UUID(str(conversation_id)),
        organization_id=organization_id, subject_sealed=None if subject_sealed is None else bytes(subject_sealed),
        organization_slug=slug, organization_name=name, actor_email=actor_email, actor_name=actor_name,
    )  # fmt: skip


def preference_of(*, actor: Membership) -> NotificationPreference:
    """The member's settings (an unsaved default when they never changed them)."""
    return NotificationPreference.objects.filter(membership=actor).first() or NotificationPreference(
        membership=actor, digest=DigestFrequency.OFF
    )
