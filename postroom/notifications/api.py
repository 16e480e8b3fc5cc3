"""API for the caller's own notifications: list (newest first, paged), mark read, and the
email-digest setting. Another member's notification is a 404, like any object one cannot see."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from ninja import Field, Query, Router, Schema
from pydantic import ConfigDict

from postroom.api.errors import ERRORS
from postroom.notifications import actions, selectors
from postroom.notifications.display import summary
from postroom.notifications.models import DigestFrequency, Notification, NotificationKind
from postroom.orgs.selectors import membership_get

router = Router(tags=["notifications"])


class Input(Schema):
    model_config = ConfigDict(extra="ignore")


class NotificationOut(Schema):
    id: str
    kind: NotificationKind
    summary: str = Field(description='Who did what, e.g. "Bob mentioned you", "3 new messages".')
    conversation_id: str
    comment_id: str | None
    actor_id: int | None = Field(description="The membership that acted; null for mail or a former member.")
    count: int = Field(description="How many replies or comments this notification stands for.")
    created_at: datetime
    read_at: datetime | None


class NotificationPage(Schema):
    items: list[NotificationOut]
    next: str | None = Field(description="Pass as ?cursor= for the next page; null on the last page.")
    unread: int = Field(description="Unread notifications in this organization.")


class NotificationQuery(Schema):
    unread: bool = Field(False, description="Only unread notifications.")
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, max_length=100)


class NotificationPatch(Input):
    read: bool


class MarkedOut(Schema):
    marked: int


class PreferenceOut(Schema):
    digest: DigestFrequency


class PreferenceIn(Input):
    digest: DigestFrequency


def _out(notification: Notification) -> NotificationOut:
    return NotificationOut(
        id=str(notification.pk),
        kind=NotificationKind(notification.kind),
        summary=summary(notification),
        conversation_id=str(notification.conversation_id),
        comment_id=str(notification.comment_id) if notification.comment_id else None,
        actor_id=notification.actor_id,
        count=notification.count,
        created_at=notification.created_at,
        read_at=notification.read_at,
    )


def _cursor(notification: Notification) -> str:
    raw = f"{notification.created_at.isoformat()}|{notification.pk}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _after(cursor: str) -> tuple[datetime, uuid.UUID]:
    """A cursor only says where a page ends; which rows show is decided by the scoped query."""
    try:
        created_at, _, notification_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().partition("|")
        return datetime.fromisoformat(created_at), uuid.UUID(notification_id)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValidationError({"cursor": ["This cursor is not valid; start again without it."]}) from None


@router.get(
    "/orgs/{slug}/notifications", response={200: NotificationPage, **ERRORS}, summary="Your notifications, newest first",
    url_name="notification_list",
)  # fmt: skip
def notification_list(request: HttpRequest, slug: str, query: Query[NotificationQuery]) -> NotificationPage:
    actor = membership_get(user=request.user, slug=slug)
    after = _after(query.cursor) if query.cursor else None
    rows = selectors.notification_page(actor=actor, unread_only=query.unread, limit=query.limit + 1, after=after)
    page = rows[: query.limit]
    return NotificationPage(
        items=[_out(notification) for notification in page],
        next=_cursor(page[-1]) if len(rows) > query.limit else None,
        unread=selectors.unread_count(actor=actor),
    )


@router.post(
    "/orgs/{slug}/notifications/read", response={200: MarkedOut, **ERRORS}, summary="Mark all your notifications read",
    url_name="notification_read_all",
)  # fmt: skip
def notification_read_all(request: HttpRequest, slug: str) -> MarkedOut:
    actor = membership_get(user=request.user, slug=slug)
    return MarkedOut(marked=actions.notifications_mark_all_read(actor=actor))


@router.get(
    "/orgs/{slug}/notifications/settings", response={200: PreferenceOut, **ERRORS}, summary="Your email-digest setting",
    url_name="notification_settings",
)  # fmt: skip
def notification_settings(request: HttpRequest, slug: str) -> PreferenceOut:
    actor = membership_get(user=request.user, slug=slug)
    return PreferenceOut(digest=DigestFrequency(selectors.preference_of(actor=actor).digest))


@router.put(
    "/orgs/{slug}/notifications/settings", response={200: PreferenceOut, **ERRORS}, summary="Change your email-digest setting",
    url_name="notification_settings_update",
)  # fmt: skip
def notification_settings_update(request: HttpRequest, slug: str, payload: PreferenceIn) -> PreferenceOut:
    actor = membership_get(user=request.user, slug=slug)
    return PreferenceOut(digest=DigestFrequency(actions.preference_set(actor=actor, digest=payload.digest).digest))


# After the fixed paths above: /notifications/read and /notifications/settings are not ids.
@router.patch(
    "/orgs/{slug}/notifications/{notification_id}", response={200: NotificationOut, **ERRORS}, summary="Mark a notification read or unread",
    url_name="notification_update",
)  # fmt: skip
def notification_update(request: HttpRequest, slug: str, notification_id: str, payload: NotificationPatch) -> NotificationOut:
    actor = membership_get(user=request.user, slug=slug)
    notification = selectors.notification_get(actor=actor, notification_id=notification_id)
    return _out(actions.notification_mark_read(actor=actor, notification=notification, read=payload.read))
