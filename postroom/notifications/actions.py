"""Creating notifications, marking them read, and the email digest.

Who is notified (tested in ``notifications/tests``):
- mention: the members a comment mentions, and the *active* members of the teams it mentions
  (team observers see the team's conversations but are never notified of them);
- assigned: the assignee, unless they assigned themselves;
- reply: followers and assignees of a conversation when a new message arrives in it, except its
  author (the member whose Sent folder holds it);
- comment: followers and assignees when a comment is added, except its author and those the
  comment mentions (they get the mention instead).

Nobody is ever notified about a conversation they cannot see at that moment: every recipient
is checked against ``ConversationMember`` (the one source of visibility) inside the transaction
that creates the notification, and lists hide notifications whose conversation the member can
no longer see. After the commit a ``conversation_event`` of kind ``notification`` (details
``membership_id`` and ``unread``) is sent per recipient, for the live-update bus.

The digest (off unless a member turns it on) lists unread notifications that are at least
``DIGEST_GRACE`` old and were in no earlier digest: counts, who did what, and links. It never
carries a subject, a name of a customer, a body or a comment: mail leaves Postroom's control.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from postroom.conversations.models import Assignment, Conversation, ConversationMember, MessageCopy
from postroom.conversations.signals import conversation_event
from postroom.core.tasks import queue_system_mail
from postroom.mailboxes.models import FolderRole
from postroom.notifications import selectors
from postroom.notifications.display import summary
from postroom.notifications.models import (
    FOLDED_KINDS,
    DigestFrequency,
    Notification,
    NotificationKind,
    NotificationPreference,
)
from postroom.orgs.models import Membership, TeamMembership

DIGEST_INTERVALS = {DigestFrequency.HOURLY: timedelta(hours=1), DigestFrequency.DAILY: timedelta(days=1)}
# A notification this fresh is left out of a digest: a member who is in Postroom reads it there.
DIGEST_GRACE = timedelta(minutes=10)
DIGEST_MAX_LINES = 50


def _publish_counts(organization_id: Any, by_recipient: dict[int, Any]) -> None:
    """After the commit, one ``notification`` event per recipient (ids and a count only)."""

    def send() -> None:
        for membership_id, conversation_id in by_recipient.items():
            conversation_event.send(
                sender=Conversation,
                conversation_id=conversation_id,
                organization_id=organization_id,
                kind="notification",
                actor_id=None,
                details={"membership_id": membership_id, "unread": selectors.unread_count_of(membership_id=membership_id)},
            )

    if by_recipient:
        transaction.on_commit(send)


def _who_can_see(conversation_id: Any, membership_ids: Iterable[int]) -> set[int]:
    ids = set(membership_ids)
    if not ids:
        return set()
    return set(
        ConversationMember.objects.filter(conversation_id=conversation_id, membership_id__in=ids).values_list("membership_id", flat=True)
    )


def notify(
    *, conversation: Conversation, kind: str, recipients: Iterable[int], actor_id: int | None, comment_id: Any = None, count: int = 1
) -> set[int]:
    """Notify ``recipients`` (membership ids) who can see the conversation now, never the actor;
    replies and comments fold into the recipient's unread notification of the same kind and
    conversation. The ids notified."""
    wanted = set(recipients) - {actor_id}
    with transaction.atomic():
        visible = _who_can_see(conversation.pk, wanted)
        # Members of the same organization only, whatever a caller passed.
        visible &= set(Membership.objects.filter(organization_id=conversation.organization_id, pk__in=visible).values_list("pk", flat=True))
        now = timezone.now()
        fresh = set(visible)
        if kind in FOLDED_KINDS:
            for membership_id in visible:
                folded = Notification.objects.filter(
                    recipient_id=membership_id, conversation_id=conversation.pk, kind=kind, read_at__isnull=True
                ).update(count=F("count") + count, created_at=now, actor_id=actor_id, comment_id=comment_id, emailed_at=None)
                if folded:
                    fresh.discard(membership_id)
        Notification.objects.bulk_create(
            Notification(
                organization_id=conversation.organization_id, recipient_id=membership_id, kind=kind, conversation_id=conversation.pk,
                actor_id=actor_id, comment_id=comment_id, count=count, created_at=now,
            )
            for membership_id in sorted(fresh)
        )  # fmt: skip
        _publish_counts(conversation.organization_id, dict.fromkeys(visible, conversation.pk))
    return visible


def _followers_and_assignees(conversation_id: Any) -> set[int]:
    followers = ConversationMember.objects.filter(conversation_id=conversation_id, following=True).values_list("membership_id", flat=True)
    assignees = Assignment.objects.filter(conversation_id=conversation_id).values_list("membership_id", flat=True)
    return set(followers) | set(assignees)


def team_active_members(team_ids: Iterable[int]) -> set[int]:
    """Members of these teams who are notified of them (observers are not)."""
    return set(TeamMembership.objects.filter(team_id__in=list(team_ids), observer=False).values_list("membership_id", flat=True))


def notify_comment(*, conversation: Conversation, comment_id: Any, author_id: int | None, mentioned: set[int], new: bool) -> None:
    """Mention notifications for ``mentioned`` (membership ids, teams already expanded to their
    active members) and, for a new comment, comment notifications for the followers."""
    notify(conversation=conversation, kind=NotificationKind.MENTION, recipients=mentioned, actor_id=author_id, comment_id=comment_id)
    if new:
        followers = _followers_and_assignees(conversation.pk) - mentioned
        notify(conversation=conversation, kind=NotificationKind.COMMENT, recipients=followers, actor_id=author_id, comment_id=comment_id)


def notify_assigned(*, conversation_id: Any, assignee_id: int, actor_id: int | None) -> None:
    conversation = Conversation.objects.filter(pk=conversation_id).first()
    if conversation is None:
        return
    notify(conversation=conversation, kind=NotificationKind.ASSIGNED, recipients=[assignee_id], actor_id=actor_id)


def notify_messages_added(*, conversation_id: Any, message_ids: list[Any]) -> None:
    """New messages arrived in a conversation: its followers and assignees hear of the ones they
    can see (shared ones through the share, others through their own mailbox), except their authors."""
    if not message_ids:
        return
    conversation = Conversation.objects.filter(pk=conversation_id).first()
    if conversation is None:
        return
    candidates = _followers_and_assignees(conversation_id)
    if not candidates:
        return
    copies = MessageCopy.objects.filter(message_id__in=message_ids, gone_at__isnull=True)
    authors = {owner_id for owner_id, role in copies.values_list("mailbox__owner_id", "folder__role") if role == FolderRole.SENT}
    shared = list(conversation.messages.filter(pk__in=message_ids, shared=True).values_list("pk", flat=True))
    own: dict[int, set[Any]] = defaultdict(set)
    for owner_id, message_id in copies.values_list("mailbox__owner_id", "message_id"):
        own[owner_id].add(message_id)
    rows = ConversationMember.objects.filter(conversation_id=conversation_id, membership_id__in=candidates - authors)
    seen_by: dict[int, int] = {}
    for membership_id, via_share in rows.values_list("membership_id", "via_share"):
        visible = (set(shared) if via_share else set()) | own.get(membership_id, set())
        if visible:
            seen_by[membership_id] = len(visible)
    by_count: dict[int, list[int]] = defaultdict(list)
    for membership_id, count in seen_by.items():
        by_count[count].append(membership_id)
    for count, recipients in by_count.items():
        notify(conversation=conversation, kind=NotificationKind.REPLY, recipients=recipients, actor_id=None, count=count)


# Reading ----------------------------------------------------------------------------------------


def notification_mark_read(*, actor: Membership, notification: Notification, read: bool = True) -> Notification:
    notification = selectors.notification_get(actor=actor, notification_id=notification.pk)
    with transaction.atomic():
        notification.read_at = timezone.now() if read else None
        notification.save(update_fields=["read_at"])
        _publish_counts(actor.organization_id, {actor.pk: notification.conversation_id})
    return notification


def notifications_mark_all_read(*, actor: Membership, conversation: Conversation | None = None) -> int:
    """Mark every unread notification of the actor read (of one conversation, if given); how many."""
    with transaction.atomic():
        unread = Notification.objects.filter(recipient=actor, read_at__isnull=True)
        if conversation is not None:
            unread = unread.filter(conversation=conversation)
        marked = unread.update(read_at=timezone.now())
        if marked:
            _publish_counts(actor.organization_id, {actor.pk: conversation.pk if conversation is not None else None})
    return marked


# The email digest -------------------------------------------------------------------------------


def preference_set(*, actor: Membership, digest: str) -> NotificationPreference:
    if digest not in DigestFrequency.values:
        raise ValidationError({"digest": ["Choose off, hourly or daily."]})
    preference, _ = NotificationPreference.objects.get_or_create(membership=actor)
    if preference.digest != digest:
        preference.digest = digest
        # The first digest after turning it on comes at the next run, not an interval later.
        preference.digest_sent_at = None
        preference.save(update_fields=["digest", "digest_sent_at", "updated_at"])
    return preference


def _line(notification: Notification) -> str:
    organization_slug = notification.recipient.organization.slug
    link = settings.PUBLIC_URL + reverse("conversations:detail", args=[organization_slug, notification.conversation_id])
    return f"- {summary(notification)}: {link}"


def digest_text(*, membership: Membership, notifications: list[Notification]) -> tuple[str, str]:
    """Subject and text of a digest: counts, who did what, links; no content of any conversation."""
    count = len(notifications)
    organization = membership.organization.name
    subject = f"{count} unread notification{'s' if count != 1 else ''} in {organization}"
    shown = notifications[:DIGEST_MAX_LINES]
    lines = [
        f"Hello {membership.user.display_name},",
        "",
        f"You have {count} unread notification{'s' if count != 1 else ''} in {organization} on Postroom:",
        "",
        *(_line(notification) for notification in shown),
    ]
    if count > len(shown):
        lines.append(f"- and {count - len(shown)} more")
    page = settings.PUBLIC_URL + reverse("notifications:list", args=[membership.organization.slug])
    lines += [
        "",
        f"All your notifications: {page}",
        "",
        "You receive this digest because you turned it on. Turn it off on the notifications page.",
    ]
    return subject, "\n".join(lines) + "\n"


def _due(preference: NotificationPreference, now: datetime) -> Q:
    return Q(digest_sent_at__isnull=True) | Q(digest_sent_at__lte=now - DIGEST_INTERVALS[DigestFrequency(preference.digest)])


def digests_send_due(*, now: datetime | None = None) -> int:
    """Send the digests that are due (run every minute by the sync service); how many were sent.

    Each is claimed with a conditional UPDATE of ``digest_sent_at``, so several sync services
    running at once send each member one digest; the notifications it lists are marked in the
    same transaction, and the mail is queued (sealed) only after the commit."""
    now = now or timezone.now()
    sent = 0
    preferences = NotificationPreference.objects.exclude(digest=DigestFrequency.OFF).select_related(
        "membership__user", "membership__organization"
    )
    for preference in preferences:
        if not preference.membership.user.is_active:
            continue
        with transaction.atomic():
            if not NotificationPreference.objects.filter(_due(preference, now), pk=preference.pk).exists():
                continue
            pending = list(
                selectors.notifications_visible(actor=preference.membership)
                .filter(read_at__isnull=True, emailed_at__isnull=True, created_at__lte=now - DIGEST_GRACE)
                .select_related("actor__user", "recipient__organization")
            )
            if not pending:
                continue
            claimed = NotificationPreference.objects.filter(_due(preference, now), pk=preference.pk).update(digest_sent_at=now)
            if not claimed:
                continue  # another sync service sent it a moment ago
            Notification.objects.filter(pk__in=[notification.pk for notification in pending]).update(emailed_at=now)
            subject, text = digest_text(membership=preference.membership, notifications=pending)
            queue_system_mail(to=[preference.membership.user.email], subject=subject, text=text)
            sent += 1
    return sent
