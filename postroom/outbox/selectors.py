"""Reads for the outbox, always scoped to the acting membership.

Attacker: a member (or an outsider) who guesses the id of a mailbox, conversation, draft or
outgoing message in another organization, or of a teammate's. Every query starts from the actor:
only mailboxes the actor may send from (their own, and their teams' team mailboxes: see
``sending_mailboxes``), conversations the actor can see (``conversations.selectors``: their
own mail, or shared with them), and messages and drafts the actor wrote. Missing and foreign give
the same 404.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.db import connection
from django.db.models import Q, QuerySet
from django.http import Http404

from postroom.conversations import selectors as conversation_selectors
from postroom.conversations.models import Conversation
from postroom.core.rows import rows_joined, rows_of
from postroom.mailboxes.models import Mailbox
from postroom.orgs.models import Membership, TeamMembership
from postroom.outbox.models import Draft, OutgoingMessage


def sending_mailboxes(*, actor: Membership) -> QuerySet[Mailbox]:
    """The mailboxes the actor may send from: their own, and the team mailboxes of the teams they
    are a full member of. An observer of a team reads its conversations but does not speak for
    it; a teammate outside the team, and anyone in another organization, gets nothing (404)."""
    speaking_for = TeamMembership.objects.filter(membership=actor, observer=False, team__organization_id=actor.organization_id).values(
        "team_id"
    )
    return Mailbox.objects.filter(Q(owner=actor) | Q(team_id__in=speaking_for), organization_id=actor.organization_id).order_by("name")


def sending_mailbox_get(*, actor: Membership, mailbox_id: UUID | str) -> Mailbox:
    mailbox = sending_mailboxes(actor=actor).filter(pk=mailbox_id).first()
    if mailbox is None:
        raise Http404
    return mailbox


def conversation_get(*, actor: Membership, conversation_id: UUID | str) -> Conversation:
    """A conversation the actor can answer: one they can see (their own mail, or shared with
    them); they answer it from a mailbox of their own."""
    return conversation_selectors.conversation_get(actor=actor, conversation_id=conversation_id)


def outgoing_messages(*, actor: Membership, conversation: Conversation | None = None) -> QuerySet[OutgoingMessage]:
    messages = OutgoingMessage.objects.filter(organization_id=actor.organization_id, author=actor).select_related("mailbox")
    if conversation is not None:
        messages = messages.filter(conversation=conversation)
    return messages.order_by("-created_at")


def conversation_outgoing(*, actor: Membership, conversation: Conversation) -> list[OutgoingMessage]:
    """``outgoing_messages`` of one conversation (with their mailboxes, newest first), from a
    constant text: every conversation page shows them (``test_conversation_outgoing_matches_the_orm``)."""
    parameters = {"organization": actor.organization_id, "author": actor.pk, "conversation": _uuid_parameter(conversation.pk)}
    return rows_joined(OutgoingMessage, [("mailbox", Mailbox)], _CONVERSATION_OUTGOING_SQL, parameters)


_CONVERSATION_OUTGOING_SQL = """
SELECT o.*, b.* FROM outbox_outgoingmessage o INNER JOIN mailboxes_mailbox b ON b.id = o.mailbox_id
WHERE o.organization_id = %(organization)s AND o.author_id = %(author)s AND o.conversation_id = %(conversation)s
ORDER BY o.created_at DESC
"""


def _uuid_parameter(value: UUID) -> Any:
    return Conversation._meta.pk.get_db_prep_value(value, connection)


def outgoing_get(*, actor: Membership, outgoing_id: UUID) -> OutgoingMessage:
    outgoing = outgoing_messages(actor=actor).filter(pk=outgoing_id).first()
    if outgoing is None:
        raise Http404
    return outgoing


def drafts_of(*, actor: Membership) -> QuerySet[Draft]:
    """The actor's drafts, most recently edited first (others' drafts are never listed)."""
    return Draft.objects.filter(organization_id=actor.organization_id, author=actor).order_by("-updated_at")


def draft_get(*, actor: Membership, draft_id: UUID | str) -> Draft:
    try:
        draft_uuid = draft_id if isinstance(draft_id, UUID) else UUID(str(draft_id))
    except ValueError:
        raise Http404 from None
    draft = drafts_of(actor=actor).filter(pk=draft_uuid).select_related("conversation", "mailbox").first()
    if draft is None:
        raise Http404
    return draft


# ``drafts_of`` for one conversation, latest first, as a constant text with parameters (SECURITY.md
# R58): the conversation page asks it on every view and Django's building and compiling of the
# query cost more than running it (issue #4); ``test_the_conversation_draft_is_the_latest_of_its_author``.
_CONVERSATION_DRAFT_SQL = """
SELECT * FROM outbox_draft WHERE organization_id = %(organization)s AND author_id = %(author)s AND conversation_id = %(conversation)s
ORDER BY updated_at DESC LIMIT 1
"""


def draft_of_conversation(*, actor: Membership, conversation: Conversation) -> Draft | None:
    """The actor's latest draft in a conversation, which its page opens in the composer."""
    field = Draft._meta.get_field("conversation").target_field
    parameters = {
        "organization": actor.organization_id, "author": actor.pk, "conversation": field.get_db_prep_value(conversation.pk, connection),
    }  # fmt: skip
    return next(iter(rows_of(Draft, _CONVERSATION_DRAFT_SQL, parameters)), None)
