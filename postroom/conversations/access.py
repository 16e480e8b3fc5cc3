"""Who can see a conversation, kept in ``ConversationMember`` rows.

Threat model: a member of an organization reads another member's private mail, or a member
removed from a team keeps reading that team's conversations. Defences:

- One source of truth for reads: every selector joins ``ConversationMember``; a row exists
  exactly while one of its sources does, and this module is the only writer of that set.
- Sources, recomputed from the database, never accumulated: a live server copy of one of the
  conversation's messages in a mailbox the member owns (``via_mailbox``), or a share: the whole
  organization, a team the member belongs to (observers included), the member by name, or a
  share the member made (``via_share``). A refresh deletes the rows whose sources are gone in the same transaction.
- Messages inside a visible conversation are filtered again (``conversations.selectors``): a
  member who sees the conversation only through their mailbox sees only their own copies, and a
  message becomes visible to the share only when it is ``shared`` (it came through a team mailbox,
  through the mailbox of someone already in the share, or someone shared it on purpose). A
  teammate's private reply that a subject or a reference threads into a shared conversation
  therefore stays private.

Refreshes run after every change of a source: stored, moved or expunged copies (ingest and
sync), shares, team membership, organization membership, mailbox removal.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from itertools import islice
from typing import Any

from django.db import transaction
from django.db.models import Q

from postroom.conversations.models import Conversation, ConversationMember, ConversationShare, MessageCopy, Place
from postroom.core.bulk import instances_insert, model_instance
from postroom.mailboxes.models import FolderRole
from postroom.orgs.models import Membership, TeamMembership

_CHUNK = 500
# What a member's own copies say about where the conversation sits for them, strongest first.
_COPY_PLACES = ((FolderRole.INBOX, Place.INBOX), (FolderRole.TRASH, Place.TRASH), (FolderRole.JUNK, Place.SPAM))
_UNREAD_IGNORED_ROLES = frozenset({FolderRole.TRASH, FolderRole.JUNK, FolderRole.SENT, FolderRole.DRAFTS})


def _chunks(values: Iterable[Any], size: int = _CHUNK) -> Iterable[list[Any]]:
    iterator = iter(values)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _copies_place(roles: set[str]) -> str:
    for role, place in _COPY_PLACES:
        if role in roles:
            return place
    return Place.ARCHIVE


def _mailbox_sources(conversation_ids: list[Any]) -> dict[tuple[Any, int], tuple[str, bool]]:
    """(conversation, membership) → (place, unread) from the members' live copies."""
    roles: dict[tuple[Any, int], set[str]] = defaultdict(set)
    unread: dict[tuple[Any, int], bool] = defaultdict(bool)
    rows = MessageCopy.objects.filter(message__conversation_id__in=conversation_ids, gone_at__isnull=True).values_list(
        "message__conversation_id", "mailbox__owner_id", "folder__role", "seen"
    )
    for conversation_id, owner_id, role, seen in rows:
        key = (conversation_id, owner_id)
        roles[key].add(role)
        if not seen and role not in _UNREAD_IGNORED_ROLES:
            unread[key] = True
    return {key: (_copies_place(folder_roles), unread[key]) for key, folder_roles in roles.items()}


def _share_sources(conversations: list[Conversation]) -> set[tuple[Any, int]]:
    """(conversation, membership) pairs granted by the organization, team and named shares."""
    pairs: set[tuple[Any, int]] = set()
    by_id = {conversation.pk: conversation for conversation in conversations}
    organization_wide = [conversation for conversation in conversations if conversation.shared_with_organization]
    if organization_wide:
        organization_ids = {conversation.organization_id for conversation in organization_wide}
        members: dict[int, list[int]] = defaultdict(list)
        for membership_id, organization_id in Membership.objects.filter(organization_id__in=organization_ids).values_list(
            "id", "organization_id"
        ):
            members[organization_id].append(membership_id)
        for conversation in organization_wide:
            pairs.update((conversation.pk, membership_id) for membership_id in members[conversation.organization_id])
    shares = list(
        ConversationShare.objects.filter(conversation_id__in=list(by_id)).values_list(
            "conversation_id", "team_id", "membership_id", "created_by_id"
        )
    )
    team_ids = {team_id for _conversation_id, team_id, _membership_id, _sharer in shares if team_id is not None}
    team_members: dict[int, list[int]] = defaultdict(list)
    for team_id, membership_id in TeamMembership.objects.filter(team_id__in=team_ids).values_list("team_id", "membership_id"):
        team_members[team_id].append(membership_id)
    for conversation_id, team_id, membership_id, sharer_id in shares:
        # Whoever shares is in the share: they see the replies that come through it.
        if sharer_id is not None:
            pairs.add((conversation_id, sharer_id))
        if team_id is not None:
            pairs.update((conversation_id, member) for member in team_members[team_id])
        else:
            pairs.add((conversation_id, membership_id))
    # A share never reaches outside the conversation's organization, whatever a row says.
    allowed = set(
        Membership.objects.filter(
            organization_id__in={conversation.organization_id for conversation in conversations},
            id__in={membership_id for _conversation_id, membership_id in pairs},
        ).values_list("id", "organization_id")
    )
    return {
        (conversation_id, membership_id)
        for conversation_id, membership_id in pairs
        if (membership_id, by_id[conversation_id].organization_id) in allowed
    }


def access_refresh(conversation_ids: Iterable[Any]) -> None:
    """Bring the ``ConversationMember`` rows of these conversations in step with their sources."""
    for chunk in _chunks(dict.fromkeys(conversation_ids)):
        with transaction.atomic():
            _refresh_chunk(chunk)


def _refresh_chunk(conversation_ids: list[Any]) -> None:
    conversations = list(Conversation.objects.filter(pk__in=conversation_ids))
    if not conversations:
        return
    by_id = {conversation.pk: conversation for conversation in conversations}
    mailbox = _mailbox_sources(list(by_id))
    shared = _share_sources(conversations)
    existing = {(row.conversation_id, row.membership_id): row for row in ConversationMember.objects.filter(conversation_id__in=list(by_id))}

    to_create: list[ConversationMember] = []
    to_update: list[ConversationMember] = []
    for key in mailbox.keys() | shared:
        conversation = by_id[key[0]]
        copies_place, copies_unread = mailbox.get(key, ("", False))
        row = existing.get(key)
        if row is None:
            to_create.append(
                model_instance(
                    ConversationMember,
                    {
                        "conversation_id": key[0],
                        "membership_id": key[1],
                        "organization_id": conversation.organization_id,
                        "via_mailbox": key in mailbox,
                        "via_share": key in shared,
                        "place": copies_place or Place.NONE,
                        "copies_place": copies_place,
                        "copies_unread": copies_unread,
                        "unread": copies_unread if key in mailbox else True,
                        "last_activity_at": conversation.last_message_at,
                    },
                )
            )
            continue
        changed = _apply_sources(
            row, via_mailbox=key in mailbox, via_share=key in shared, copies_place=copies_place, copies_unread=copies_unread
        )
        if row.last_activity_at != conversation.last_message_at:
            row.last_activity_at = conversation.last_message_at
            changed = True
        if changed:
            to_update.append(row)

    gone = [row.pk for key, row in existing.items() if key not in mailbox and key not in shared]
    if gone:
        ConversationMember.objects.filter(pk__in=gone).delete()
    if to_create:
        instances_insert(to_create, ignore_conflicts=True)
    if to_update:
        fields = ["via_mailbox", "via_share", "place", "copies_place", "copies_unread", "unread", "last_activity_at"]
        ConversationMember.objects.bulk_update(to_update, fields)
    _refresh_is_shared(conversations)


def _apply_sources(row: ConversationMember, *, via_mailbox: bool, via_share: bool, copies_place: str, copies_unread: bool) -> bool:
    before = (row.via_mailbox, row.via_share, row.place, row.copies_place, row.copies_unread, row.unread)
    row.via_mailbox, row.via_share = via_mailbox, via_share
    # The server's state wins when it changes (a move or a read in another mail client);
    # otherwise the member's choice in Postroom stands.
    if copies_place != row.copies_place:
        if copies_place:
            row.place = copies_place
        elif row.place != Place.INBOX:
            row.place = Place.NONE
        row.copies_place = copies_place
    if copies_unread != row.copies_unread:
        row.unread = copies_unread or (row.unread and via_share)
        row.copies_unread = copies_unread
    return before != (row.via_mailbox, row.via_share, row.place, row.copies_place, row.copies_unread, row.unread)


def _refresh_is_shared(conversations: list[Conversation]) -> None:
    ids = [conversation.pk for conversation in conversations]
    with_shares = set(ConversationShare.objects.filter(conversation_id__in=ids).values_list("conversation_id", flat=True))
    flipped: dict[bool, list[Any]] = {True: [], False: []}
    for conversation in conversations:
        is_shared = conversation.shared_with_organization or conversation.pk in with_shares
        if is_shared != conversation.is_shared:
            flipped[is_shared].append(conversation.pk)
            conversation.is_shared = is_shared
    for is_shared, flipped_ids in flipped.items():
        if flipped_ids:
            Conversation.objects.filter(pk__in=flipped_ids).update(is_shared=is_shared)


def access_refresh_for_membership(membership: Membership) -> None:
    """After a member joined or left a team, or the organization: every conversation whose
    visibility for them may have changed."""
    share_ids = ConversationShare.objects.filter(Q(team__team_memberships__membership=membership) | Q(membership=membership)).values_list(
        "conversation_id", flat=True
    )
    organization_ids = Conversation.objects.filter(organization_id=membership.organization_id, shared_with_organization=True).values_list(
        "pk", flat=True
    )
    current = ConversationMember.objects.filter(membership=membership).values_list("conversation_id", flat=True)
    access_refresh(set(share_ids) | set(organization_ids) | set(current))


def access_refresh_for_team(team_id: int) -> None:
    """After a team's membership changed: every conversation shared with the team."""
    access_refresh(ConversationShare.objects.filter(team_id=team_id).values_list("conversation_id", flat=True))


def conversation_ids_of_copies(copy_ids: Iterable[int]) -> set[Any]:
    ids: set[Any] = set()
    for chunk in _chunks(copy_ids):
        ids.update(MessageCopy.objects.filter(pk__in=chunk).values_list("message__conversation_id", flat=True))
    return ids
