"""Reads of conversations, messages and attachments, scoped to the member asking.

A member sees a conversation when one of its messages has a copy (still on the server) in a
mailbox the member owns, and within it only such messages: teammates' mailboxes stay private
until the team inbox (issue #4) shares them on purpose. Missing, foreign and forbidden all
answer 404, so ids reveal nothing about other members' or organizations' mail.
"""

from __future__ import annotations

import uuid

from django.db.models import Exists, OuterRef, QuerySet
from django.http import Http404

from postroom.conversations.models import Attachment, Conversation, Message, MessageCopy
from postroom.orgs.models import Membership


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise Http404 from None


def _own_copy(actor: Membership, message_field: str = "pk") -> Exists:
    return Exists(MessageCopy.objects.filter(message_id=OuterRef(message_field), mailbox__owner=actor, gone_at__isnull=True))


def messages_visible(*, actor: Membership) -> QuerySet[Message]:
    return Message.objects.filter(organization_id=actor.organization_id).filter(_own_copy(actor))


def conversations_visible(*, actor: Membership) -> QuerySet[Conversation]:
    visible = messages_visible(actor=actor).filter(conversation_id=OuterRef("pk"))
    return Conversation.objects.filter(organization_id=actor.organization_id).filter(Exists(visible)).order_by("-last_message_at")


def conversation_get(*, actor: Membership, conversation_id: str) -> Conversation:
    conversation = conversations_visible(actor=actor).filter(pk=_uuid(conversation_id)).first()
    if conversation is None:
        raise Http404
    return conversation


def conversation_messages(*, actor: Membership, conversation: Conversation) -> QuerySet[Message]:
    return messages_visible(actor=actor).filter(conversation=conversation).prefetch_related("attachments").order_by("sent_at", "created_at")


def conversation_has_unread(*, actor: Membership, conversation: Conversation) -> bool:
    """Whether one of the actor's copies of the conversation's messages is unread."""
    return MessageCopy.objects.filter(
        message__conversation=conversation, mailbox__owner=actor, gone_at__isnull=True, seen=False
    ).exists()


def message_get(*, actor: Membership, message_id: str) -> Message:
    message = messages_visible(actor=actor).filter(pk=_uuid(message_id)).first()
    if message is None:
        raise Http404
    return message


def attachment_get(*, actor: Membership, attachment_id: str) -> Attachment:
    attachment = (
        Attachment.objects.filter(organization_id=actor.organization_id, pk=_uuid(attachment_id))
        .filter(_own_copy(actor, "message_id"))
        .select_related("message")
        .first()
    )
    if attachment is None:
        raise Http404
    return attachment
