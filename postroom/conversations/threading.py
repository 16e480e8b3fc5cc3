"""Which conversation a new message belongs to.

The rules, in order (all within one organization; Message-IDs are compared as blind indexes):

1. Parents: the first of In-Reply-To, then References from the nearest ancestor backwards,
   that names a message already stored gives the conversation.
2. Children: messages stored earlier that point at this message's Message-ID (it arrived after
   its replies, as happens when a first import runs newest first or folders sync in any order).
   Their conversation is used when there is no parent; when parent and children sit in
   different conversations those conversations are merged into the parent's, since this message
   proves they are one thread.
3. Subject fallback, for clients that drop the reference headers: a conversation with the same
   normalised subject (reply and forward prefixes in several languages and ``[list]`` tags
   removed, case and whitespace folded; an empty subject never matches), whose last message is
   within ``SUBJECT_WINDOW`` of this one, and which shares at least one participant address
   with this message that is not one of the organization's own mailboxes (every message to a
   shared support address "shares" that address, which would merge unrelated requests).
   Automated mail (auto-replies, bulk and list mail) never threads by subject: notifications
   reuse one subject for unrelated events.
4. Otherwise a new conversation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db.models import F

from postroom.conversations import merging
from postroom.conversations.models import Conversation, Message, MessageReference
from postroom.mailboxes.models import Mailbox

SUBJECT_WINDOW = timedelta(days=7)
# Candidates examined for the subject fallback: the most recent ones with the subject.
_SUBJECT_CANDIDATES = 5
_PARTICIPANT_SAMPLE = 20

# Re:, Fwd:, and their common translations, optionally counted ("Re[2]:", "AW(3):").
_PREFIX = re.compile(
    r"^\s*(?:(?:re|fw|fwd|aw|wg|sv|vs|antw|tr|rif|r|ref|odp|res|enc|doorst|vl|bls|ynt)\s*(?:\[\d+\]|\(\d+\))?\s*[:：]|\[[^\]]{0,80}\])\s*",
    re.IGNORECASE,
)


def normalised_subject(subject: str) -> str:
    """The subject without reply/forward prefixes and list tags, case- and space-folded."""
    text = subject
    while True:
        stripped = _PREFIX.sub("", text, count=1)
        if stripped == text:
            break
        text = stripped
    return " ".join(text.casefold().split())


def conversation_by_references(organization_id: Any, reference_indexes: Iterable[str]) -> Conversation | None:
    """Rule 1: ``reference_indexes`` nearest ancestor first."""
    ordered = [index for index in dict.fromkeys(reference_indexes) if index]
    if not ordered:
        return None
    found = dict(
        Message.objects.filter(organization_id=organization_id, message_id_index__in=ordered).values_list(
            "message_id_index", "conversation_id"
        )
    )
    for index in ordered:
        if index in found:
            return Conversation.objects.get(pk=found[index])
    return None


def conversations_of_children(organization_id: Any, message_id_index: str) -> list[Conversation]:
    """Rule 2: conversations holding messages that reference ``message_id_index``, oldest first."""
    if not message_id_index:
        return []
    conversation_ids = (
        MessageReference.objects.filter(organization_id=organization_id, message_id_index=message_id_index)
        .values_list("message__conversation_id", flat=True)
        .distinct()
    )
    return list(Conversation.objects.filter(pk__in=list(conversation_ids)).order_by("created_at"))


def conversation_by_subject(organization_id: Any, subject_index: str, when: datetime, participants: set[str]) -> Conversation | None:
    """Rule 3. ``participants`` are lower-cased addresses, the organization's own removed."""
    if not subject_index or not participants:
        return None
    candidates = Conversation.objects.filter(
        organization_id=organization_id,
        subject_index=subject_index,
        last_message_at__gte=when - SUBJECT_WINDOW,
        last_message_at__lte=when + SUBJECT_WINDOW,
    ).order_by("-last_message_at")[:_SUBJECT_CANDIDATES]
    for candidate in candidates:
        for message in candidate.messages.order_by("-created_at")[:_PARTICIPANT_SAMPLE]:
            if participants & message_participants(message.addresses or {}):
                return candidate
    return None


def message_participants(addresses: dict[str, list[list[str]]]) -> set[str]:
    return {pair[1].lower() for role in ("from", "to", "cc", "reply_to") for pair in addresses.get(role, []) if len(pair) == 2 and pair[1]}


def organization_addresses(organization_id: Any) -> set[str]:
    return {address.lower() for address in Mailbox.objects.filter(organization_id=organization_id).values_list("email_address", flat=True)}


def merge_into(target: Conversation, others: Iterable[Conversation]) -> None:
    """Move every message of ``others`` into ``target`` and delete them (inside the caller's transaction)."""
    for other in others:
        if other.pk == target.pk:
            continue
        moved = Message.objects.filter(conversation=other).update(conversation=target)
        Conversation.objects.filter(pk=target.pk).update(message_count=F("message_count") + moved)
        if other.last_message_at > target.last_message_at:
            Conversation.objects.filter(pk=target.pk, last_message_at__lt=other.last_message_at).update(
                last_message_at=other.last_message_at
            )
        merging.conversation_state_carry(source=other, target=target)
        other.delete()
    target.refresh_from_db()
