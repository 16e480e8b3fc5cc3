"""Reads for the outbox, always scoped to the acting membership.

Attacker: a member (or an outsider) who guesses the id of a mailbox, conversation or outgoing
message in another organization, or of a teammate's. Every query starts from the actor: only
mailboxes the actor owns, conversations of the actor's organization that reached one of those
mailboxes, and messages the actor wrote. Missing and foreign give the same 404.
"""

from __future__ import annotations

from uuid import UUID

from django.db.models import QuerySet
from django.http import Http404

from postroom.conversations.models import Conversation
from postroom.mailboxes.models import Mailbox
from postroom.orgs.models import Membership
from postroom.outbox.models import OutgoingMessage


def sending_mailboxes(*, actor: Membership) -> QuerySet[Mailbox]:
    return Mailbox.objects.filter(organization_id=actor.organization_id, owner=actor).order_by("name")


def sending_mailbox_get(*, actor: Membership, mailbox_id: UUID | str) -> Mailbox:
    mailbox = sending_mailboxes(actor=actor).filter(pk=mailbox_id).first()
    if mailbox is None:
        raise Http404
    return mailbox


def conversation_get(*, actor: Membership, conversation_id: UUID) -> Conversation:
    """A conversation the actor can answer: in their organization, with a copy in a mailbox of theirs."""
    conversation = (
        Conversation.objects.filter(pk=conversation_id, organization_id=actor.organization_id, messages__copies__mailbox__owner=actor)
        .distinct()
        .first()
    )
    if conversation is None:
        raise Http404
    return conversation


def outgoing_messages(*, actor: Membership, conversation: Conversation | None = None) -> QuerySet[OutgoingMessage]:
    messages = OutgoingMessage.objects.filter(organization_id=actor.organization_id, author=actor).select_related("mailbox")
    if conversation is not None:
        messages = messages.filter(conversation=conversation)
    return messages.order_by("-created_at")


def outgoing_get(*, actor: Membership, outgoing_id: UUID) -> OutgoingMessage:
    outgoing = outgoing_messages(actor=actor).filter(pk=outgoing_id).first()
    if outgoing is None:
        raise Http404
    return outgoing
