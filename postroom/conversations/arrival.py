"""What a conversation does when mail arrives or its server copies change.

Called inside the transaction that stores the copies (``conversations.ingest``) or records a
change found on the server (``sync.engine``), so the conversation becomes visible, with the
right people and in the right places, at the same moment as the message itself.

For a new message (then the incoming and outgoing rules run, see ``rules.engine``):
- through a team mailbox, the conversation is shared with that team;
- in a shared conversation, it is shared when it came through the mailbox of someone who is in
  the share (a teammate's reply, a team mailbox); a message only in an outsider's private
  mailbox stays private to them (see ``conversations.access``);
- a shared message makes the conversation unread for everyone in the share but its author,
  brings it back into the inbox of its assignees and followers (waking a snooze), and reopens a
  closed conversation when it is inbound: into the assignees' inboxes, or the team inbox when
  nobody is assigned.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from postroom.contacts import actions as contacts_actions
from postroom.conversations import access
from postroom.conversations.models import (
    Assignment,
    Conversation,
    ConversationMember,
    ConversationShare,
    ConversationStatus,
    Direction,
    Message,
    MessageCopy,
    Place,
    TimelineEvent,
)
from postroom.conversations.signals import conversation_event
from postroom.live.bus import publishing_held
from postroom.mailboxes.models import Mailbox


def copies_stored(*, copies: Iterable[MessageCopy], new_message_ids: Iterable[Any], new_messages: Iterable[Message] = ()) -> None:
    """New server copies were stored; ``new_message_ids`` are the messages they created (some or
    all of them in hand as ``new_messages``, with their addresses)."""
    copies = list(copies)
    if not copies:
        return
    new_ids = set(new_message_ids)
    new_messages = list(new_messages)
    mailbox_ids = {copy.mailbox_id for copy in copies}
    mailboxes = {mailbox.pk: mailbox for mailbox in Mailbox.objects.filter(pk__in=mailbox_ids).only("id", "owner_id", "team_id")}
    # The new messages in hand are as stored (just inserted); the others are read.
    wanted = {copy.message_id for copy in copies}
    messages: dict[Any, Message] = {message.pk: message for message in new_messages if message.pk in new_ids and message.pk in wanted}
    to_read = wanted - messages.keys()
    if to_read:
        messages.update((message.pk, message) for message in Message.objects.filter(pk__in=to_read).only(
            "id", "conversation_id", "direction", "shared", "organization_id"))  # fmt: skip

    # Team mailboxes share what they receive.
    for copy in copies:
        team_id = mailboxes[copy.mailbox_id].team_id
        if team_id is not None:
            ConversationShare.objects.get_or_create(conversation_id=messages[copy.message_id].conversation_id, team_id=team_id)
    conversation_ids = {message.conversation_id for message in messages.values()}
    access.access_refresh(conversation_ids)  # also marks the newly shared conversations

    # Which new messages join the share.
    in_share = set(
        ConversationMember.objects.filter(conversation_id__in=conversation_ids, via_share=True).values_list(
            "conversation_id", "membership_id"
        )
    )
    newly_shared: list[Message] = []
    for copy in copies:
        message = messages[copy.message_id]
        if message.shared:
            continue
        mailbox = mailboxes[copy.mailbox_id]
        if mailbox.team_id is not None or (message.conversation_id, mailbox.owner_id) in in_share:
            message.shared = True
            newly_shared.append(message)
    if newly_shared:
        Message.objects.filter(pk__in=[message.pk for message in newly_shared]).update(shared=True)

    arrived: dict[Any, list[str]] = {conversation_id: [] for conversation_id in conversation_ids}
    for message in newly_shared:
        if message.pk in new_ids:
            authors = {mailboxes[copy.mailbox_id].owner_id for copy in copies if copy.message_id == message.pk}
            _shared_message_arrived(message, authors if message.direction == Direction.OUTBOUND else set())
            arrived[message.conversation_id].append(str(message.pk))
    _run_rules(copies, messages, mailboxes, new_ids)
    # message_ids: the new messages that reached the conversation's share (notifications).
    _publish_after_commit(
        messages, "message_added", {conversation_id: {"message_ids": arrived[conversation_id]} for conversation_id in conversation_ids}
    )

    # Contacts: index who took part in each new message, and add the recipients of mail a member
    # sent from their own mailbox to their contacts (see ``contacts.actions``).
    senders = {
        copy.message_id: mailboxes[copy.mailbox_id].owner_id
        for copy in copies
        if copy.message_id in new_ids
        and messages[copy.message_id].direction == Direction.OUTBOUND
        and mailboxes[copy.mailbox_id].team_id is None
    }
    contacts_actions.messages_stored(new_message_ids=new_ids, authors=senders, loaded=new_messages)


def _run_rules(copies: list[MessageCopy], messages: dict[Any, Message], mailboxes: dict[Any, Mailbox], new_ids: set[Any]) -> None:
    """Incoming and outgoing rules, on new messages only, in this transaction: what they do is in
    place when the conversation becomes visible (``rules.engine``)."""
    from postroom.rules.engine import messages_arrived  # rules act through conversations.actions, which imports this module

    new_messages = [message for message in messages.values() if message.pk in new_ids]
    if new_messages:
        messages_arrived(organization_id=new_messages[0].organization_id, messages=new_messages, copies=copies, mailboxes=mailboxes)


def _shared_message_arrived(message: Message, authors: set[int]) -> None:
    conversation_id = message.conversation_id
    now = timezone.now()
    reopened = False
    if message.direction == Direction.INBOUND:
        reopened = bool(
            Conversation.objects.filter(pk=conversation_id, status=ConversationStatus.CLOSED).update(
                status=ConversationStatus.OPEN, status_changed_at=now
            )
        )
        if reopened:
            TimelineEvent.objects.create(
                organization_id=message.organization_id, conversation_id=conversation_id, actor=None, kind="reopened",
                details={"by": "new_message"},
            )  # fmt: skip
    rows = ConversationMember.objects.filter(conversation_id=conversation_id, via_share=True).exclude(membership_id__in=authors)
    rows.update(unread=True)
    assignees = Assignment.objects.filter(conversation_id=conversation_id).values("membership_id")
    rows.filter(Q(following=True) | Q(membership_id__in=assignees)).update(place=Place.INBOX, snoozed_until=None)


def copies_changed(copy_ids: Iterable[int]) -> None:
    """Copies were moved, expunged or re-flagged on the server (or by a member's action)."""
    conversation_ids = access.conversation_ids_of_copies(copy_ids)
    if conversation_ids:
        access.access_refresh(conversation_ids)


def _publish_after_commit(messages: dict[Any, Message], kind: str, details_by_conversation: dict[Any, dict[str, Any]]) -> None:
    """One ``conversation_event`` per conversation, after the commit. A batch of mail names many
    conversations: their events are sent in one transaction (each in a savepoint of its own, so
    a receiver's failed write spoils only its event), so that the database bus's rows cost one
    commit, not one each (and the live bus's rows one transaction, ``live.bus.publishing_held``)."""
    organization_of = {message.conversation_id: message.organization_id for message in messages.values()}
    events = [(conversation_id, organization_of[conversation_id], details) for conversation_id, details in details_by_conversation.items()]

    def send() -> None:
        # The live bus's rows are written together once the receivers' changes are committed.
        with publishing_held(), transaction.atomic():
            for conversation_id, organization_id, details in events:
                with transaction.atomic():
                    conversation_event.send(
                        sender=Conversation, conversation_id=conversation_id, organization_id=organization_id, kind=kind, actor_id=None,
                        details=details,
                    )  # fmt: skip

    if events:
        transaction.on_commit(send)
