"""Notifications as the bell and the notifications page show them: who did what, where.

The conversation's subject is shown in the app (the member can read the conversation) and is
auto-escaped like every subject (SECURITY.md R28); it never goes into the digest email.
"""

from __future__ import annotations

from dataclasses import dataclass

from postroom.notifications.models import Notification, NotificationKind


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
    count = notification.count
    if notification.kind == NotificationKind.MENTION:
        return f"{who or 'Someone'} mentioned you"
    if notification.kind == NotificationKind.ASSIGNED:
        return f"{who or 'Someone'} assigned you"
    if notification.kind == NotificationKind.REPLY:
        return "New message" if count == 1 else f"{count} new messages"
    text = "New comment" if count == 1 else f"{count} new comments"
    return f"{text} from {who}" if who and count == 1 else text


def shown_notifications(notifications: list[Notification]) -> list[ShownNotification]:
    return [
        ShownNotification(notification, summary(notification), notification.conversation.subject or "(no subject)")
        for notification in notifications
    ]
