"""Notifications as the bell and the notifications page show them: who did what, where.

The conversation's subject is shown in the app (the member can read the conversation) and is
auto-escaped like every subject (SECURITY.md R28); it never goes into the digest email.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from postroom.accounts.models import User
from postroom.conversations.models import Conversation
from postroom.core.keys import org_scope
from postroom.notifications.models import Notification, NotificationKind
from postroom.notifications.selectors import BellRow


@dataclass
class ShownNotification:
    notification: Notification
    summary: str  # "Bob Member mentioned you", "3 new messages", …
    subject: str

    @property
    def pk(self) -> object:
        return self.notification.pk


def summary(notification: Notification) -> str:
    who = notification.actor.user.display_name if notification.actor is not None else ""
    return summary_of(notification.kind, notification.count, who)


def summary_of(kind: str, count: int, who: str) -> str:
    """The line a notification shows ("Bob Member mentioned you", "3 new messages"); ``who`` is the actor's name, "" for none."""
    if kind == NotificationKind.MENTION:
        return f"{who or 'Someone'} mentioned you"
    if kind == NotificationKind.ASSIGNED:
        return f"{who or 'Someone'} assigned you"
    if kind == NotificationKind.REPLY:
        return "New message" if count == 1 else f"{count} new messages"
    text = "New comment" if count == 1 else f"{count} new comments"
    return f"{text} from {who}" if who and count == 1 else text


def shown_notifications(notifications: list[Notification]) -> list[ShownNotification]:
    return [
        ShownNotification(notification, summary(notification), notification.conversation.subject or "(no subject)")
        for notification in notifications
    ]


@dataclass(frozen=True)
class BellItem:
    """An unread notification as the bell shows it."""

    pk: object
    summary: str
    subject: str
    created_at: datetime
    organization_slug: str
    organization_name: str


def bell_items(rows: list[BellRow]) -> list[BellItem]:
    """The bell's rows (``selectors.unread_for_user``), their subjects opened."""
    items = []
    for row in rows:
        subject = Conversation.subject.open_stored(model=Conversation, scope=org_scope(row.organization_id), row=row.conversation_id,
                                                   stored=row.subject_sealed)  # fmt: skip
        who = User(email=row.actor_email, name=row.actor_name or "").display_name if row.actor_email is not None else ""
        items.append(BellItem(row.id, summary_of(row.kind, row.count, who), subject or "(no subject)", row.created_at,
                              row.organization_slug, row.organization_name))  # fmt: skip
    return items
