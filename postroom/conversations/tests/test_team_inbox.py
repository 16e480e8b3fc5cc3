"""Who sees what in the team inbox: shares, team mailboxes, assignment, per-member places, and
the team's state (close, reopen, snooze), with the cast of two organizations."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.utils import timezone

from postroom.conftest import Cast
from postroom.conversations import actions, selectors
from postroom.conversations.ingest import message_ingest
from postroom.conversations.models import (
    Conversation,
    ConversationMember,
    ConversationStatus,
    Label,
    Message,
    MessageCopy,
    Place,
    TimelineEvent,
)
from postroom.conversations.selectors import View, ViewFilter
from postroom.conversations.tests.conftest import build_raw, inbox_of
from postroom.mailboxes.models import Folder, FolderRole, Mailbox
from postroom.mailboxes.tests.factories import make_mailbox
from postroom.orgs import actions as org_actions
from postroom.orgs.models import Team

pytestmark = pytest.mark.django_db


def ingest(mailbox: Mailbox, uid: int, raw: bytes, folder: Folder | None = None) -> Message:
    return message_ingest(mailbox=mailbox, folder=folder or inbox_of(mailbox), uidvalidity=7, uid=uid, raw=raw).message


def folder_of(mailbox: Mailbox, role: str) -> Folder:
    return Folder.objects.get_or_create(mailbox=mailbox, name=role.title(), defaults={"role": role, "uidvalidity": 7})[0]


def sees(membership, conversation: Conversation) -> bool:  # type: ignore[no-untyped-def]
    try:
        selectors.conversation_get(actor=membership, conversation_id=conversation.pk)
    except Http404:
        return False
    return True


def visible_messages(membership, conversation: Conversation) -> set:  # type: ignore[no-untyped-def]
    return set(selectors.conversation_messages(actor=membership, conversation=conversation).values_list("pk", flat=True))


def in_view(membership, view: str, **kwargs) -> list:  # type: ignore[no-untyped-def]
    return [row.conversation_id for row in selectors.view_page(actor=membership, selected=ViewFilter(view, **kwargs))]


@pytest.fixture
def support(cast: Cast) -> Team:
    team = org_actions.team_create(actor=cast.alice_membership, name="Support")
    org_actions.team_member_add(actor=cast.alice_membership, team=team, membership=cast.bob_membership)
    return team


@pytest.fixture
def alices(alice_mailbox: Mailbox) -> Message:
    return ingest(alice_mailbox, 1, build_raw())


def test_a_private_conversation_is_its_owners_alone(cast: Cast, alices: Message) -> None:
    conversation = alices.conversation
    assert sees(cast.alice_membership, conversation)
    assert not sees(cast.bob_membership, conversation)
    assert not sees(cast.carol_membership, conversation)  # an admin reads no private mail either
    assert not sees(cast.charlie_membership, conversation)
    assert in_view(cast.alice_membership, View.INBOX) == [conversation.pk]
    assert not Conversation.objects.get(pk=conversation.pk).is_shared


def test_sharing_with_a_team_shows_it_to_the_team_only(cast: Cast, alices: Message, support: Team) -> None:
    conversation = alices.conversation
    assert actions.conversation_share(actor=cast.alice_membership, conversation=conversation, team=support)
    assert sees(cast.bob_membership, conversation)
    assert visible_messages(cast.bob_membership, conversation) == {alices.pk}
    assert not sees(cast.carol_membership, conversation)
    assert not sees(cast.charlie_membership, conversation)
    assert in_view(cast.bob_membership, View.TEAM, team=support) == [conversation.pk]
    assert in_view(cast.bob_membership, View.INBOX) == []  # the team's, not yet Bob's own
    assert Conversation.objects.get(pk=conversation.pk).is_shared
    kinds = list(TimelineEvent.objects.filter(conversation=conversation).values_list("kind", flat=True))
    assert kinds == ["shared"]
    # Sharing twice changes nothing.
    assert not actions.conversation_share(actor=cast.alice_membership, conversation=conversation, team=support)


def test_a_private_message_threaded_into_a_shared_conversation_stays_private(cast: Cast, alices: Message, support: Team) -> None:
    actions.conversation_share(actor=cast.alice_membership, conversation=alices.conversation, team=support)
    carol_mailbox = make_mailbox(cast.carol_membership, address="carol@acme.test")
    carols = ingest(
        carol_mailbox, 1, build_raw(message_id="<carol@customer.example>", in_reply_to="<first@customer.example>", to="carol@acme.test")
    )
    assert carols.conversation_id == alices.conversation_id
    assert not carols.shared
    assert visible_messages(cast.bob_membership, alices.conversation) == {alices.pk}
    assert visible_messages(cast.alice_membership, alices.conversation) == {alices.pk}
    assert visible_messages(cast.carol_membership, alices.conversation) == {carols.pk}


def test_a_reply_through_a_team_members_mailbox_joins_the_share(cast: Cast, alices: Message, support: Team, bob_mailbox: Mailbox) -> None:
    actions.conversation_share(actor=cast.alice_membership, conversation=alices.conversation, team=support)
    ConversationMember.objects.filter(membership=cast.alice_membership).update(unread=False)
    bobs = ingest(
        bob_mailbox, 1, build_raw(message_id="<second@customer.example>", in_reply_to="<first@customer.example>", to="bob@acme.test")
    )
    bobs.refresh_from_db()
    assert bobs.shared
    assert visible_messages(cast.alice_membership, alices.conversation) == {alices.pk, bobs.pk}
    assert ConversationMember.objects.get(membership=cast.alice_membership).unread


def test_leaving_the_team_ends_access(cast: Cast, alices: Message, support: Team) -> None:
    actions.conversation_share(actor=cast.alice_membership, conversation=alices.conversation, team=support)
    org_actions.team_member_remove(actor=cast.alice_membership, team=support, membership=cast.bob_membership)
    assert not sees(cast.bob_membership, alices.conversation)
    org_actions.team_member_add(actor=cast.alice_membership, team=support, membership=cast.bob_membership, observer=True)
    assert sees(cast.bob_membership, alices.conversation)  # observers see the team's conversations
    org_actions.team_delete(actor=cast.alice_membership, team=support)
    assert not sees(cast.bob_membership, alices.conversation)


def test_sharing_with_the_organization_reaches_every_member_and_no_one_else(cast: Cast, alices: Message) -> None:
    actions.conversation_share(actor=cast.alice_membership, conversation=alices.conversation, organization=True)
    assert sees(cast.bob_membership, alices.conversation)
    assert sees(cast.carol_membership, alices.conversation)
    assert not sees(cast.charlie_membership, alices.conversation)


def test_sharing_outside_the_organization_is_refused(cast: Cast, alices: Message) -> None:
    with pytest.raises(PermissionDenied):
        actions.conversation_share(actor=cast.alice_membership, conversation=alices.conversation, member=cast.charlie_membership)
    assert not sees(cast.charlie_membership, alices.conversation)
    with pytest.raises(Http404):  # nobody shares what they cannot see
        actions.conversation_share(actor=cast.bob_membership, conversation=alices.conversation, member=cast.bob_membership)


def test_unsharing_is_for_the_sharer_a_holder_or_an_admin(cast: Cast, alices: Message, support: Team) -> None:
    conversation = alices.conversation
    actions.conversation_share(actor=cast.alice_membership, conversation=conversation, team=support)
    with pytest.raises(PermissionDenied):
        actions.conversation_unshare(actor=cast.bob_membership, conversation=conversation, team=support)
    with pytest.raises(Http404):  # Carol is an admin but cannot see it
        actions.conversation_unshare(actor=cast.carol_membership, conversation=conversation, team=support)
    assert actions.conversation_unshare(actor=cast.alice_membership, conversation=conversation, team=support)
    assert not sees(cast.bob_membership, conversation)
    assert not Message.objects.filter(conversation=conversation, shared=True).exists()
    assert not Conversation.objects.get(pk=conversation.pk).is_shared


def test_assigning_a_private_conversation_shares_it_into_the_assignees_inbox(cast: Cast, alices: Message) -> None:
    conversation = alices.conversation
    assert actions.conversation_assign(actor=cast.alice_membership, conversation=conversation, assignee=cast.bob_membership)
    row = ConversationMember.objects.get(conversation=conversation, membership=cast.bob_membership)
    assert (row.place, row.unread, row.following, row.via_share) == (Place.INBOX, True, True, True)
    assert in_view(cast.bob_membership, View.INBOX) == [conversation.pk]
    assert in_view(cast.bob_membership, View.ASSIGNED) == [conversation.pk]
    assert visible_messages(cast.bob_membership, conversation) == {alices.pk}
    assert not actions.conversation_assign(actor=cast.alice_membership, conversation=conversation, assignee=cast.bob_membership)
    with pytest.raises(PermissionDenied):
        actions.conversation_assign(actor=cast.alice_membership, conversation=conversation, assignee=cast.charlie_membership)
    assert actions.conversation_unassign(actor=cast.bob_membership, conversation=conversation, assignee=cast.bob_membership)
    assert in_view(cast.bob_membership, View.ASSIGNED) == []


def test_closing_empties_the_inboxes_and_a_new_message_reopens_into_the_assignees(
    cast: Cast, alices: Message, support: Team, alice_mailbox: Mailbox
) -> None:
    conversation = alices.conversation
    actions.conversation_share(actor=cast.alice_membership, conversation=conversation, team=support)
    actions.conversation_assign(actor=cast.alice_membership, conversation=conversation, assignee=cast.bob_membership)
    assert actions.conversation_close(actor=cast.bob_membership, conversation=conversation)
    assert in_view(cast.bob_membership, View.INBOX) == []
    assert in_view(cast.bob_membership, View.TEAM, team=support) == []
    assert in_view(cast.bob_membership, View.CLOSED) == [conversation.pk]
    ingest(alice_mailbox, 2, build_raw(message_id="<again@customer.example>", in_reply_to="<first@customer.example>"))
    conversation.refresh_from_db()
    assert conversation.status == ConversationStatus.OPEN
    assert in_view(cast.bob_membership, View.INBOX) == [conversation.pk]
    assert in_view(cast.bob_membership, View.TEAM, team=support) == [conversation.pk]
    kinds = list(TimelineEvent.objects.filter(conversation=conversation).values_list("kind", flat=True))
    assert kinds == ["shared", "assigned", "closed", "reopened"]


def test_a_team_mailbox_shares_what_it_receives(cast: Cast, support: Team) -> None:
    shared_box = make_mailbox(cast.alice_membership, address="support@acme.test")
    shared_box.team = support
    shared_box.save(update_fields=["team"])
    message = ingest(shared_box, 1, build_raw(to="support@acme.test"))
    message.refresh_from_db()
    assert message.shared
    assert sees(cast.bob_membership, message.conversation)
    assert in_view(cast.bob_membership, View.TEAM, team=support) == [message.conversation_id]
    assert not sees(cast.carol_membership, message.conversation)


def test_a_move_in_another_client_moves_the_conversation_and_new_mail_brings_it_back(
    cast: Cast, alices: Message, alice_mailbox: Mailbox
) -> None:
    from postroom.conversations import arrival

    copy = MessageCopy.objects.get(message=alices)
    MessageCopy.objects.filter(pk=copy.pk).update(gone_at=timezone.now())
    ingest(alice_mailbox, 1, build_raw(), folder=folder_of(alice_mailbox, FolderRole.ARCHIVE))
    arrival.copies_changed([copy.pk])
    row = ConversationMember.objects.get(membership=cast.alice_membership)
    assert row.place == Place.ARCHIVE
    assert in_view(cast.alice_membership, View.CLOSED) == [alices.conversation_id]
    ingest(alice_mailbox, 2, build_raw(message_id="<new@customer.example>", in_reply_to="<first@customer.example>"))
    row.refresh_from_db()
    assert (row.place, row.unread) == (Place.INBOX, True)


def test_snoozing_hides_until_the_time_comes(cast: Cast, alices: Message) -> None:
    conversation = alices.conversation
    with pytest.raises(ValidationError):
        actions.conversation_snooze(actor=cast.alice_membership, conversation=conversation, until=timezone.now() - timedelta(minutes=1))
    actions.conversation_mark_read(actor=cast.alice_membership, conversation=conversation, read=True)
    actions.conversation_snooze(actor=cast.alice_membership, conversation=conversation, until=timezone.now() + timedelta(hours=1))
    assert in_view(cast.alice_membership, View.INBOX) == []
    assert in_view(cast.alice_membership, View.SNOOZED) == [conversation.pk]
    assert actions.snoozes_wake() == 0
    assert actions.snoozes_wake(now=timezone.now() + timedelta(hours=2)) == 1
    row = ConversationMember.objects.get(membership=cast.alice_membership)
    assert (row.snoozed_until, row.unread, row.place) == (None, True, Place.INBOX)
    assert in_view(cast.alice_membership, View.INBOX) == [conversation.pk]


def test_trash_of_a_shared_conversation_is_the_teams(cast: Cast, alices: Message, support: Team) -> None:
    conversation = alices.conversation
    actions.conversation_share(actor=cast.alice_membership, conversation=conversation, team=support)
    actions.conversation_trash(actor=cast.bob_membership, conversation=conversation)
    assert Conversation.objects.get(pk=conversation.pk).status == ConversationStatus.TRASH
    assert in_view(cast.alice_membership, View.INBOX) == []
    assert in_view(cast.alice_membership, View.TRASH) == [conversation.pk]
    actions.conversation_move_to_inbox(actor=cast.alice_membership, conversation=conversation)
    assert Conversation.objects.get(pk=conversation.pk).status == ConversationStatus.OPEN
    assert in_view(cast.alice_membership, View.INBOX) == [conversation.pk]


def test_labels_personal_and_organization(cast: Cast, alices: Message, support: Team) -> None:
    conversation = alices.conversation
    actions.conversation_share(actor=cast.alice_membership, conversation=conversation, team=support)
    with pytest.raises(PermissionDenied):
        actions.label_create(actor=cast.bob_membership, name="Billing", personal=False)
    billing = actions.label_create(actor=cast.carol_membership, name="Billing", personal=False)
    mine = actions.label_create(actor=cast.bob_membership, name="Later", personal=True)
    with pytest.raises(ValidationError):
        actions.label_create(actor=cast.alice_membership, name="billing", personal=False)
    actions.conversation_label(actor=cast.bob_membership, conversation=conversation, label=billing)
    actions.conversation_label(actor=cast.bob_membership, conversation=conversation, label=mine)
    with pytest.raises(PermissionDenied):
        actions.conversation_label(actor=cast.alice_membership, conversation=conversation, label=mine)
    assert [label.name for label in selectors.conversation_labels(actor=cast.alice_membership, conversation=conversation)] == ["Billing"]
    assert in_view(cast.bob_membership, View.LABEL, label=mine) == [conversation.pk]
    with pytest.raises(Http404):
        selectors.label_get(actor=cast.alice_membership, label_id=mine.pk)
    # Only organization labels go on the shared timeline.
    assert list(TimelineEvent.objects.filter(conversation=conversation, kind="labelled").values_list("details__label_id", flat=True)) == [
        str(billing.pk)
    ]
    assert not Label.objects.filter(organization=cast.org_b).exists()


def test_a_merge_keeps_the_team_state(cast: Cast, alice_mailbox: Mailbox, support: Team) -> None:
    reply = ingest(alice_mailbox, 1, build_raw(message_id="<reply@customer.example>", in_reply_to="<root@customer.example>", subject="x"))
    other = ingest(alice_mailbox, 2, build_raw(message_id="<other@customer.example>", in_reply_to="<root@customer.example>", subject="y"))
    actions.conversation_share(actor=cast.alice_membership, conversation=reply.conversation, team=support)
    actions.conversation_assign(actor=cast.alice_membership, conversation=other.conversation, assignee=cast.bob_membership)
    # The root arrives last and proves both are one thread.
    root = ingest(alice_mailbox, 3, build_raw(message_id="<root@customer.example>", subject="x"))
    merged = Conversation.objects.get(pk=root.conversation_id)
    assert Conversation.objects.filter(organization=cast.org_a).count() == 1
    assert sees(cast.bob_membership, merged)
    assert [m.pk for m in selectors.conversation_assignees(conversation=merged)] == [cast.bob_membership.pk]
    assert merged.is_shared
