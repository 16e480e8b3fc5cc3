"""Writes done on behalf of a member: reading, archiving and trashing conversations, and the
audit trail of downloads.

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

Audit details never carry content (file names, subjects): the audit table is not encrypted.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from postroom.audit.actions import audit_record
from postroom.conversations import selectors
from postroom.conversations.models import Attachment, Conversation, Message, MessageCopy
from postroom.mailboxes.models import Folder, FolderRole
from postroom.orgs.models import Membership
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


def conversation_archive(*, actor: Membership, conversation: Conversation, request: HttpRequest | None = None) -> int:
    """Move the actor's copies in INBOX to the Archive folder; the number of copies moved."""
    copies = _own_copies(actor, conversation).filter(folder__role=FolderRole.INBOX)
    return _move(actor, conversation, copies, role=FolderRole.ARCHIVE, change=CopyChange.ARCHIVE, action="conversation.archived", request=request)


def conversation_trash(*, actor: Membership, conversation: Conversation, request: HttpRequest | None = None) -> int:
    """Move the actor's copies in every folder but Trash to Trash; the number of copies moved."""
    copies = _own_copies(actor, conversation).exclude(folder__role=FolderRole.TRASH)
    return _move(actor, conversation, copies, role=FolderRole.TRASH, change=CopyChange.TRASH, action="conversation.trashed", request=request)


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
