"""Writes done on behalf of a member: reading, archiving and trashing conversations, the team
inbox's actions (share, assign, close, snooze, label, spam), and the audit trail of downloads.

A member changes only their own copies of the messages they can see (the conversations
selectors decide, so a conversation they cannot see is a 404): a teammate's mailbox is never
touched. The change is made to the local copies in one transaction with its audit event; after
the commit one task per copy carries it to the IMAP server (``postroom.sync.tasks``), so a slow
or unreachable server never holds a transaction or a request, and a failed attempt is retried
without undoing what the member sees.

- Read/unread sets ``\\Seen`` on every copy of the member's.
- Archive moves the member's copies in INBOX to the Archive folder (sent mail stays in Sent).
- Trash moves the member's copies in every other folder to Trash.
A moved copy is marked gone at once (the message left that folder); the copy in the target
folder is stored by the next sync, linked to the same message. A mailbox whose server has no
Archive (or Trash) folder keeps its copies where they are.

Team actions: any member who can see a conversation may assign, close, snooze, label, archive
or move it, as in Missive and Front; each is recorded on the conversation's timeline and sent as
a ``conversation_event`` after the commit. Sharing changes who can read mail, so share and
unshare are also audited; unsharing is for the member who shared, a member whose mailbox holds
the conversation, or an admin. A conversation that reaches someone only through a share is
trashed or marked as spam for everyone (its team state); a private one moves on the server.

Audit details never carry content (file names, subjects): the audit table is not encrypted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from postroom.audit.actions import audit_record
from postroom.conversations import access, selectors
from postroom.conversations.models import (
    Assignment,
    Attachment,
    Conversation,
    ConversationLabel,
    ConversationMember,
    ConversationShare,
    ConversationStatus,
    Label,
    Message,
    MessageCopy,
    Place,
    TimelineEvent,
)
from postroom.conversations.signals import conversation_event
from postroom.mailboxes.models import Folder, FolderRole
from postroom.orgs.models import Membership, Team
from postroom.orgs.policy import Permission, role_allows
from postroom.sync.tasks import CopyChange, copy_propagate


def _own_copies(actor: Membership, conversation: Conversation) -> QuerySet[MessageCopy]:
    """The actor's copies, still on the server, of the messages of a conversation they can see
    (404 otherwise)."""
    visible = selectors.conversation_get(actor=actor, conversation_id=str(conversation.pk))
    return MessageCopy.objects.filter(
        message__conversation=visible, message__organization_id=actor.organization_id, mailbox__owner=actor, gone_at__isnull=True
    )


def _propagate_after_commit(copy_ids: list[int], change: str) -> None:
    def enqueue() -> None:
        for copy_id in copy_ids:
            copy_propagate.enqueue(copy_id, change)

    transaction.on_commit(enqueue)


def _audit(actor: Membership, conversation: Conversation, action: str, copies: int, request: HttpRequest | None) -> None:
    audit_record(
        action=action, actor=actor.user, organization=actor.organization, request=request,
        target=conversation, details={"copies": copies},
    )  # fmt: skip


def conversation_mark_read(*, actor: Membership, conversation: Conversation, read: bool, request: HttpRequest | None = None) -> int:
    """Mark the actor's copies read or unread; the number of copies changed."""
    with transaction.atomic():
        copies = _own_copies(actor, conversation).exclude(seen=read)
        copy_ids = list(copies.select_for_update(of=("self",)).values_list("id", flat=True))
        MessageCopy.objects.filter(id__in=copy_ids).update(seen=read, seen_pending=read)
        ConversationMember.objects.filter(conversation=conversation, membership=actor).update(unread=not read, copies_unread=not read)
        _audit(actor, conversation, "conversation.marked_read" if read else "conversation.marked_unread", len(copy_ids), request)
        _propagate_after_commit(copy_ids, CopyChange.SEEN if read else CopyChange.UNSEEN)
    return len(copy_ids)


def _move(actor: Membership, conversation: Conversation, copies: QuerySet[MessageCopy], *, role: str, change: str, action: str,
          request: HttpRequest | None) -> int:  # fmt: skip
    # Only where the server has the target folder: a copy marked gone that then stays where it
    # is would never be fetched again (sync fetches only UIDs above the highest it saw).
    movable = copies.filter(Exists(Folder.objects.filter(mailbox_id=OuterRef("mailbox_id"), role=role)))
    with transaction.atomic():
        copy_ids = list(movable.select_for_update(of=("self",)).values_list("id", flat=True))
        MessageCopy.objects.filter(id__in=copy_ids).update(gone_at=timezone.now())
        _audit(actor, conversation, action, len(copy_ids), request)
        _propagate_after_commit(copy_ids, change)
    return len(copy_ids)


def _set_place(actor: Membership, conversation: Conversation, place: str) -> None:
    ConversationMember.objects.filter(conversation=conversation, membership=actor).update(place=place, snoozed_until=None)


def conversation_archive(*, actor: Membership, conversation: Conversation, request: HttpRequest | None = None) -> int:
    """Done, for the actor: out of their inbox, and their copies in INBOX moved to the Archive
    folder on the server; the number of copies moved."""
    copies = _own_copies(actor, conversation).filter(folder__role=FolderRole.INBOX)
    with transaction.atomic():
        moved = _move(
            actor, conversation, copies, role=FolderRole.ARCHIVE, change=CopyChange.ARCHIVE, action="conversation.archived", request=request
        )
        _set_place(actor, conversation, Place.ARCHIVE)
        _publish(conversation, "archived", actor)
    return moved


def conversation_move_to_inbox(*, actor: Membership, conversation: Conversation, request: HttpRequest | None = None) -> int:
    """Back into the actor's inbox (undoes archive, trash and spam for them); their archived,
    trashed or junk copies go back to INBOX on the server. The number of copies moved."""
    copies = _own_copies(actor, conversation).filter(folder__role__in=[FolderRole.ARCHIVE, FolderRole.TRASH, FolderRole.JUNK])
    with transaction.atomic():
        moved = _move(
            actor,
            conversation,
            copies,
            role=FolderRole.INBOX,
            change=CopyChange.INBOX,
            action="conversation.moved_to_inbox",
            request=request,
        )
        _set_place(actor, conversation, Place.INBOX)
        if conversation.status in (ConversationStatus.TRASH, ConversationStatus.SPAM):
            _set_status(actor, conversation, ConversationStatus.OPEN, "restored")
        _publish(conversation, "moved_to_inbox", actor)
    return moved


def _bin(
    actor: Membership, conversation: Conversation, *, place: str, role: str, change: str, action: str, request: HttpRequest | None
) -> int:
    row = selectors.conversation_member_row(actor=actor, conversation=conversation)
    copies = _own_copies(actor, conversation).exclude(folder__role=role)
    with transaction.atomic():
        moved = _move(actor, conversation, copies, role=role, change=change, action=action, request=request)
        _set_place(actor, conversation, place)
        if row.via_share:
            _set_status(actor, conversation, ConversationStatus.TRASH if place == Place.TRASH else ConversationStatus.SPAM, place)
        _publish(conversation, place, actor)
    return moved


def conversation_trash(*, actor: Membership, conversation: Conversation, request: HttpRequest | None = None) -> int:
    """Move to Trash: the actor's copies in every folder but Trash go to Trash on the server, and
    a shared conversation leaves every inbox (the team's Trash); the number of copies moved."""
    return _bin(
        actor,
        conversation,
        place=Place.TRASH,
        role=FolderRole.TRASH,
        change=CopyChange.TRASH,
        action="conversation.trashed",
        request=request,
    )


def conversation_mark_spam(*, actor: Membership, conversation: Conversation, request: HttpRequest | None = None) -> int:
    """As trash, into Spam (the server's Junk folder)."""
    return _bin(
        actor,
        conversation,
        place=Place.SPAM,
        role=FolderRole.JUNK,
        change=CopyChange.JUNK,
        action="conversation.marked_spam",
        request=request,
    )


def attachment_download_record(*, actor: Membership, attachment: Attachment, request: HttpRequest) -> None:
    audit_record(
        action="message.attachment_downloaded", actor=actor.user, organization=actor.organization, request=request,
        target=attachment, details={"message_id": str(attachment.message_id), "size": attachment.size},
    )  # fmt: skip


def raw_message_download_record(*, actor: Membership, message: Message, request: HttpRequest) -> None:
    audit_record(
        action="message.raw_downloaded", actor=actor.user, organization=actor.organization, request=request,
        target=message, details={"quarantine_reason": message.quarantine_reason},
    )  # fmt: skip


# The team inbox -----------------------------------------------------------------------------------


def _publish(conversation: Conversation, kind: str, actor: Membership | None, **details: Any) -> None:
    conversation_id, organization_id = conversation.pk, conversation.organization_id
    actor_id = actor.pk if actor is not None else None

    def send() -> None:
        conversation_event.send(
            sender=Conversation,
            conversation_id=conversation_id,
            organization_id=organization_id,
            kind=kind,
            actor_id=actor_id,
            details=details,
        )

    transaction.on_commit(send)


def timeline_record(*, conversation: Conversation, actor: Membership | None, kind: str, **details: Any) -> TimelineEvent:
    """Record an event on the conversation's timeline (ids only in ``details``, never content)."""
    return TimelineEvent.objects.create(
        organization_id=conversation.organization_id, conversation=conversation, actor=actor, kind=kind, details=details
    )


def _set_status(actor: Membership | None, conversation: Conversation, status: str, kind: str) -> bool:
    changed = Conversation.objects.filter(pk=conversation.pk).exclude(status=status).update(status=status, status_changed_at=timezone.now())
    if changed:
        conversation.status = status
        timeline_record(conversation=conversation, actor=actor, kind=kind)
    return bool(changed)


def _same_organization(actor: Membership, *objects: Team | Membership | Label | None) -> None:
    for item in objects:
        if item is not None and item.organization_id != actor.organization_id:
            raise PermissionDenied("not in this organization")


def _share_messages_of(actor: Membership, conversation: Conversation) -> None:
    """What the sharer can read of the conversation becomes readable to the share."""
    selectors.messages_visible(actor=actor).filter(conversation=conversation, shared=False).update(shared=True)


def _follow(conversation: Conversation, memberships: list[Membership] | list[int]) -> None:
    ids = [item.pk if isinstance(item, Membership) else item for item in memberships]
    ConversationMember.objects.filter(conversation=conversation, membership_id__in=ids).update(following=True)


def conversation_share(
    *, actor: Membership, conversation: Conversation, team: Team | None = None, member: Membership | None = None,
    organization: bool = False, request: HttpRequest | None = None,
) -> bool:  # fmt: skip
    """Share with a team (into its inbox), a named member, or the whole organization; False when
    it already was."""
    if sum((team is not None, member is not None, organization)) != 1:
        raise ValidationError("Share with one team, one member or the organization.")
    conversation = selectors.conversation_get(actor=actor, conversation_id=conversation.pk)
    _same_organization(actor, team, member)
    with transaction.atomic():
        if organization:
            created = bool(
                Conversation.objects.filter(pk=conversation.pk, shared_with_organization=False).update(shared_with_organization=True)
            )
        else:
            _share, created = ConversationShare.objects.get_or_create(
                conversation=conversation, team=team, membership=member, defaults={"created_by": actor}
            )
        if not created:
            return False
        _share_messages_of(actor, conversation)
        access.access_refresh([conversation.pk])
        _follow(conversation, [actor])
        target = {"team_id": team.pk} if team else {"membership_id": member.pk} if member else {"organization": True}
        timeline_record(conversation=conversation, actor=actor, kind="shared", **target)
        audit_record(
            action="conversation.shared",
            actor=actor.user,
            organization=actor.organization,
            request=request,
            target=conversation,
            details=target,
        )
        _publish(conversation, "shared", actor, **target)
    return True


def _may_unshare(actor: Membership, conversation: Conversation, share: ConversationShare | None) -> bool:
    if role_allows(actor.role, Permission.MANAGE_TEAMS):
        return True
    if share is not None and share.created_by_id == actor.pk:
        return True
    return MessageCopy.objects.filter(message__conversation=conversation, mailbox__owner=actor, gone_at__isnull=True).exists()


def conversation_unshare(
    *, actor: Membership, conversation: Conversation, team: Team | None = None, member: Membership | None = None,
    organization: bool = False, request: HttpRequest | None = None,
) -> bool:  # fmt: skip
    """Withdraw one share; False when there was none. Messages stop being shared once nothing
    shares the conversation any more, so sharing it again later asks again."""
    if sum((team is not None, member is not None, organization)) != 1:
        raise ValidationError("Unshare one team, one member or the organization.")
    conversation = selectors.conversation_get(actor=actor, conversation_id=conversation.pk)
    _same_organization(actor, team, member)
    share = None if organization else ConversationShare.objects.filter(conversation=conversation, team=team, membership=member).first()
    if (not organization and share is None) or (organization and not conversation.shared_with_organization):
        return False
    if not _may_unshare(actor, conversation, share):
        raise PermissionDenied("Only the member who shared it, a member whose mailbox holds it, or an admin can unshare it.")
    with transaction.atomic():
        if share is None:
            Conversation.objects.filter(pk=conversation.pk).update(shared_with_organization=False)
        else:
            share.delete()
        if not ConversationShare.objects.filter(conversation=conversation).exists() and not (
            Conversation.objects.filter(pk=conversation.pk, shared_with_organization=True).exists()
        ):
            Message.objects.filter(conversation=conversation, shared=True).update(shared=False)
        access.access_refresh([conversation.pk])
        target = {"team_id": team.pk} if team else {"membership_id": member.pk} if member else {"organization": True}
        timeline_record(conversation=conversation, actor=actor, kind="unshared", **target)
        audit_record(
            action="conversation.unshared",
            actor=actor.user,
            organization=actor.organization,
            request=request,
            target=conversation,
            details=target,
        )
        _publish(conversation, "unshared", actor, **target)
    return True


def conversation_assign(*, actor: Membership, conversation: Conversation, assignee: Membership, request: HttpRequest | None = None) -> bool:
    """Assign (one of possibly several assignees): it moves into the assignee's inbox, unread,
    and is shared with them if they could not see it. False when they already were."""
    conversation = selectors.conversation_get(actor=actor, conversation_id=conversation.pk)
    _same_organization(actor, assignee)
    with transaction.atomic():
        _assignment, created = Assignment.objects.get_or_create(
            conversation=conversation, membership=assignee, defaults={"assigned_by": actor}
        )
        if not created:
            return False
        if not ConversationMember.objects.filter(conversation=conversation, membership=assignee, via_share=True).exists():
            ConversationShare.objects.get_or_create(conversation=conversation, membership=assignee, defaults={"created_by": actor})
            _share_messages_of(actor, conversation)
            access.access_refresh([conversation.pk])
        ConversationMember.objects.filter(conversation=conversation, membership=assignee).update(
            place=Place.INBOX, following=True, snoozed_until=None, unread=assignee.pk != actor.pk
        )
        if conversation.status == ConversationStatus.CLOSED:
            _set_status(actor, conversation, ConversationStatus.OPEN, "reopened")
        timeline_record(conversation=conversation, actor=actor, kind="assigned", membership_id=assignee.pk)
        _publish(conversation, "assigned", actor, membership_id=assignee.pk)
    return True


def conversation_unassign(
    *, actor: Membership, conversation: Conversation, assignee: Membership, request: HttpRequest | None = None
) -> bool:
    conversation = selectors.conversation_get(actor=actor, conversation_id=conversation.pk)
    _same_organization(actor, assignee)
    with transaction.atomic():
        deleted, _ = Assignment.objects.filter(conversation=conversation, membership=assignee).delete()
        if not deleted:
            return False
        timeline_record(conversation=conversation, actor=actor, kind="unassigned", membership_id=assignee.pk)
        _publish(conversation, "unassigned", actor, membership_id=assignee.pk)
    return True


def conversation_close(*, actor: Membership, conversation: Conversation, request: HttpRequest | None = None) -> bool:
    """Close for the team: out of the team inbox and everyone's inbox. A private conversation
    has no team, so closing it archives it for the actor."""
    conversation = selectors.conversation_get(actor=actor, conversation_id=conversation.pk)
    if not conversation.is_shared:
        conversation_archive(actor=actor, conversation=conversation, request=request)
        return True
    with transaction.atomic():
        if not _set_status(actor, conversation, ConversationStatus.CLOSED, "closed"):
            return False
        ConversationMember.objects.filter(conversation=conversation, place=Place.INBOX).update(place=Place.ARCHIVE)
        _publish(conversation, "closed", actor)
    return True


def conversation_reopen(*, actor: Membership, conversation: Conversation, request: HttpRequest | None = None) -> bool:
    """Open again: back in the team inbox, and in the inboxes of its assignees."""
    conversation = selectors.conversation_get(actor=actor, conversation_id=conversation.pk)
    with transaction.atomic():
        if not _set_status(actor, conversation, ConversationStatus.OPEN, "reopened"):
            return False
        assignees = Assignment.objects.filter(conversation=conversation).values("membership_id")
        ConversationMember.objects.filter(conversation=conversation, membership_id__in=assignees).update(place=Place.INBOX)
        _publish(conversation, "reopened", actor)
    return True


def conversation_snooze(*, actor: Membership, conversation: Conversation, until: datetime, request: HttpRequest | None = None) -> None:
    """Out of the actor's inbox until ``until``; it comes back on its own (``snoozes_wake``), or
    sooner when a new message arrives."""
    conversation = selectors.conversation_get(actor=actor, conversation_id=conversation.pk)
    if until <= timezone.now():
        raise ValidationError("Snooze until a time in the future.")
    with transaction.atomic():
        ConversationMember.objects.filter(conversation=conversation, membership=actor).update(snoozed_until=until, place=Place.INBOX)
        timeline_record(conversation=conversation, actor=actor, kind="snoozed", until=until.isoformat())
        _publish(conversation, "snoozed", actor)


def conversation_unsnooze(*, actor: Membership, conversation: Conversation, request: HttpRequest | None = None) -> None:
    conversation = selectors.conversation_get(actor=actor, conversation_id=conversation.pk)
    with transaction.atomic():
        ConversationMember.objects.filter(conversation=conversation, membership=actor).update(snoozed_until=None)
        timeline_record(conversation=conversation, actor=actor, kind="unsnoozed")
        _publish(conversation, "unsnoozed", actor)


def snoozes_wake(*, now: datetime | None = None) -> int:
    """Snoozed conversations whose time has come go back to the top of their members' inboxes,
    unread (run every minute by the sync service); the number woken."""
    now = now or timezone.now()
    woken = 0
    with transaction.atomic():
        rows = list(ConversationMember.objects.select_for_update().filter(snoozed_until__lte=now).select_related("conversation"))
        for row in rows:
            ConversationMember.objects.filter(pk=row.pk).update(snoozed_until=None, place=Place.INBOX, unread=True)
            timeline_record(conversation=row.conversation, actor=None, kind="snooze_ended", membership_id=row.membership_id)
            _publish(row.conversation, "snooze_ended", None, membership_id=row.membership_id)
            woken += 1
    return woken


def conversation_follow(*, actor: Membership, conversation: Conversation, following: bool) -> None:
    conversation = selectors.conversation_get(actor=actor, conversation_id=conversation.pk)
    ConversationMember.objects.filter(conversation=conversation, membership=actor).update(following=following)


def _may_use_label(actor: Membership, label: Label) -> None:
    if label.organization_id != actor.organization_id or (label.owner_id is not None and label.owner_id != actor.pk):
        raise PermissionDenied("not your label")


def conversation_label(*, actor: Membership, conversation: Conversation, label: Label, request: HttpRequest | None = None) -> bool:
    conversation = selectors.conversation_get(actor=actor, conversation_id=conversation.pk)
    _may_use_label(actor, label)
    with transaction.atomic():
        _row, created = ConversationLabel.objects.get_or_create(conversation=conversation, label=label, defaults={"added_by": actor})
        if created:
            # A personal label is nobody else's business: only organization labels go on the timeline.
            if label.owner_id is None:
                timeline_record(conversation=conversation, actor=actor, kind="labelled", label_id=str(label.pk))
            _publish(conversation, "labelled", actor, label_id=str(label.pk))
    return created


def conversation_unlabel(*, actor: Membership, conversation: Conversation, label: Label, request: HttpRequest | None = None) -> bool:
    conversation = selectors.conversation_get(actor=actor, conversation_id=conversation.pk)
    _may_use_label(actor, label)
    with transaction.atomic():
        deleted, _ = ConversationLabel.objects.filter(conversation=conversation, label=label).delete()
        if deleted:
            if label.owner_id is None:
                timeline_record(conversation=conversation, actor=actor, kind="unlabelled", label_id=str(label.pk))
            _publish(conversation, "unlabelled", actor, label_id=str(label.pk))
    return bool(deleted)


LABEL_COLORS = ("#6b7280", "#dc2626", "#ea580c", "#ca8a04", "#16a34a", "#0891b2", "#2563eb", "#7c3aed", "#db2777")


def _label_name(name: str) -> str:
    cleaned = " ".join(name.split())
    if not cleaned or len(cleaned) > 60:
        raise ValidationError("A label name has 1 to 60 characters.")
    return cleaned


def label_create(
    *, actor: Membership, name: str, personal: bool, color: str = LABEL_COLORS[0], request: HttpRequest | None = None
) -> Label:
    """A personal label (anyone) or an organization label (admins)."""
    if not personal and not role_allows(actor.role, Permission.MANAGE_TEAMS):
        raise PermissionDenied("Only admins create organization labels.")
    if color not in LABEL_COLORS:
        raise ValidationError("Pick one of the label colours.")
    name = _label_name(name)
    owner = actor if personal else None
    if Label.objects.filter(organization_id=actor.organization_id, owner=owner, name__iexact=name).exists():
        raise ValidationError("There is already a label with that name.")
    label = Label.objects.create(organization_id=actor.organization_id, owner=owner, name=name, color=color)
    if not personal:
        audit_record(action="label.created", actor=actor.user, organization=actor.organization, request=request, target=label)
    return label


def _may_manage_label(actor: Membership, label: Label) -> None:
    _may_use_label(actor, label)
    if label.owner_id is None and not role_allows(actor.role, Permission.MANAGE_TEAMS):
        raise PermissionDenied("Only admins change organization labels.")


def label_update(*, actor: Membership, label: Label, name: str, color: str, request: HttpRequest | None = None) -> Label:
    _may_manage_label(actor, label)
    if color not in LABEL_COLORS:
        raise ValidationError("Pick one of the label colours.")
    name = _label_name(name)
    clashes = Label.objects.filter(organization_id=label.organization_id, owner_id=label.owner_id, name__iexact=name).exclude(pk=label.pk)
    if clashes.exists():
        raise ValidationError("There is already a label with that name.")
    label.name, label.color = name, color
    label.save(update_fields=["name", "color"])
    return label


def label_delete(*, actor: Membership, label: Label, request: HttpRequest | None = None) -> None:
    _may_manage_label(actor, label)
    if label.owner_id is None:
        audit_record(action="label.deleted", actor=actor.user, organization=actor.organization, request=request, target=label)
    label.delete()
