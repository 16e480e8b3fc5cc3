"""The list pages' constant queries (``selectors._PAGE_SQL`` and the page's labels, assignees and
messages) against the ORM's ``view_rows`` and models: the same rows in the same order for every
view, for several members, first pages and later ones, with conversations in every state."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from postroom.conftest import Cast
from postroom.conversations import actions, selectors
from postroom.conversations.ingest import message_ingest
from postroom.conversations.models import Assignment, ConversationLabel, ConversationMember
from postroom.conversations.selectors import View, ViewFilter
from postroom.conversations.tests.conftest import TeamInbox, build_raw
from postroom.mailboxes.models import Folder
from postroom.mailboxes.tests.factories import make_mailbox
from postroom.orgs.actions import team_create, team_member_add
from postroom.orgs.models import Membership

pytestmark = pytest.mark.django_db


def _seed(cast: Cast, team_inbox: TeamInbox) -> dict[str, Any]:
    """Conversations in every state a view tells apart, seen by Alice, Bob and Carol in different ways."""
    alice, bob, carol = cast.alice_membership, cast.bob_membership, cast.carol_membership
    sales = team_create(actor=alice, name="sales")
    team_member_add(actor=alice, team=sales, membership=bob)
    base = timezone.now() - timedelta(days=3)
    delivered = [
        team_inbox.deliver(subject=f"Number {number}", date=base + timedelta(minutes=number)).conversation for number in range(16)
    ]
    private = team_inbox.deliver(mailbox=team_inbox.private_mailbox, subject="Private", date=base).conversation
    carols = make_mailbox(carol, address="carol@acme.test")
    carol_own = team_inbox.deliver(mailbox=carols, subject="Carol's own", date=base + timedelta(hours=1)).conversation
    sent = Folder.objects.create(mailbox=team_inbox.mailbox, name="Sent", role="sent", uidvalidity=7)
    raw = build_raw(subject="Re: Number 2", sender="Alice <alice@acme.test>", in_reply_to="<m3@customer.example>",
                    message_id="<sent-1@acme.test>", date=base + timedelta(hours=2))  # fmt: skip
    message_ingest(mailbox=team_inbox.mailbox, folder=sent, uidvalidity=7, uid=1, raw=raw)
    actions.conversation_assign(actor=alice, conversation=delivered[0], assignee=bob)
    actions.conversation_assign(actor=alice, conversation=delivered[0], assignee=alice)
    actions.conversation_assign(actor=alice, conversation=delivered[1], assignee=bob)
    actions.conversation_assign(actor=alice, conversation=delivered[2], assignee=alice)
    actions.conversation_assign(actor=alice, conversation=delivered[9], assignee=bob)
    actions.conversation_close(actor=alice, conversation=delivered[1])
    actions.conversation_trash(actor=bob, conversation=delivered[3])
    actions.conversation_mark_spam(actor=alice, conversation=delivered[4])
    actions.conversation_snooze(actor=bob, conversation=delivered[5], until=timezone.now() + timedelta(days=1))
    actions.conversation_mark_read(actor=bob, conversation=delivered[6], read=True)
    actions.conversation_archive(actor=alice, conversation=delivered[7])
    actions.conversation_share(actor=alice, conversation=delivered[8], team=sales)
    actions.conversation_share(actor=alice, conversation=private, member=carol)
    billing = actions.label_create(actor=alice, name="Billing", personal=False)
    later = actions.label_create(actor=bob, name="Later", personal=True)
    mine = actions.label_create(actor=alice, name="Alice only", personal=True)
    for conversation in (delivered[0], delivered[3], delivered[10], delivered[11], private):
        actions.conversation_label(actor=alice, conversation=conversation, label=billing)
    for conversation in (delivered[0], delivered[10], delivered[12]):
        actions.conversation_label(actor=bob, conversation=conversation, label=later)
    actions.conversation_label(actor=alice, conversation=delivered[10], label=mine)
    ConversationMember.objects.filter(conversation__in=[delivered[0], delivered[3], delivered[13], private]).update(
        mentioned_at=timezone.now()
    )
    ConversationMember.objects.filter(conversation=delivered[2]).update(snoozed_until=timezone.now() - timedelta(hours=1))
    # Equal times: the order (and a cursor) falls back to the conversation id.
    same = base + timedelta(minutes=30)
    ConversationMember.objects.filter(conversation__in=delivered[11:15]).update(last_activity_at=same)
    return {"sales": sales, "labels": [billing, later, mine], "carol_own": carol_own}


def _filters(cast: Cast, team_inbox: TeamInbox, seeded: dict[str, Any]) -> list[ViewFilter]:
    plain = [View.INBOX, View.ASSIGNED, View.MENTIONS, View.TASKS, View.SENT, View.CLOSED, View.SNOOZED, View.TRASH, View.SPAM,
             View.ALL]  # fmt: skip
    return [
        *(ViewFilter(view) for view in plain),
        ViewFilter(View.TEAM, team=team_inbox.team),
        ViewFilter(View.TEAM, team=seeded["sales"]),
        ViewFilter(View.TASKS, assignee=cast.bob_membership),
        ViewFilter(View.TASKS, assignee=cast.alice_membership),
        *(ViewFilter(View.LABEL, label=label) for label in seeded["labels"]),
    ]


def _members(cast: Cast) -> list[Membership]:
    return [cast.alice_membership, cast.bob_membership, cast.carol_membership, cast.charlie_membership]


def test_page_rows_match_the_orm(cast: Cast, team_inbox: TeamInbox) -> None:
    """Every view's constant text gives ``view_rows``'s rows, whole and page by page (3 a page,
    each after the last row of the one before, across rows with equal times)."""
    seeded = _seed(cast, team_inbox)
    compared = 0
    for member in _members(cast):
        for selected in _filters(cast, team_inbox, seeded):
            everything = selectors._page_rows_orm(actor=member, selected=selected, limit=1000)
            assert selectors._page_rows_sql(actor=member, selected=selected, limit=1000, before=None) == everything, (member, selected)
            assert [row.conversation_id for row in everything] == list(
                selectors.view_rows(actor=member, selected=selected).values_list("conversation_id", flat=True)
            )
            before = None
            walked = []
            while True:
                page = selectors._page_rows_sql(actor=member, selected=selected, limit=3, before=before)
                assert page == selectors._page_rows_orm(actor=member, selected=selected, limit=3, before=before), (member, selected)
                walked += page
                if len(page) < 3:
                    break
                before = (page[-1].last_activity_at, page[-1].conversation_id)
            assert walked == everything
            compared += len(everything)
    assert compared > 100
    # Each kind of view lists something for someone, so no comparison above was of two empty lists only.
    for selected in _filters(cast, team_inbox, seeded):
        assert any(selectors._page_rows_orm(actor=member, selected=selected, limit=1) for member in _members(cast)), selected


def test_page_labels_and_assignees_match_the_orm(cast: Cast, team_inbox: TeamInbox) -> None:
    """A page's labels are those the member sees (``labels_visible``), by name; its assignees
    are every assignee, first assigned first, named as ``User.display_name`` names them."""
    seeded = _seed(cast, team_inbox)
    cast.alice.name = ""
    cast.alice.save(update_fields=["name"])
    for member in _members(cast):
        page = selectors.view_page(actor=member, selected=ViewFilter(View.ALL), limit=200)
        page += selectors.view_page(actor=member, selected=ViewFilter(View.TRASH), limit=200)
        assert page or member == cast.charlie_membership  # Charlie is of the other organization
        visible = selectors.labels_visible(actor=member)
        for row in page:
            labels = ConversationLabel.objects.filter(conversation_id=row.conversation_id, label__in=visible)
            expected = [(label.label_id, label.label.name, label.label.color, label.label.owner_id)
                        for label in labels.select_related("label").order_by("label__name", "label_id")]  # fmt: skip
            assert [(label.id, label.name, label.color, label.owner_id) for label in row.labels] == expected
            assignments = Assignment.objects.filter(conversation_id=row.conversation_id).order_by("created_at", "pk")
            expected_people = [(assignment.membership_id, assignment.membership.user.email, assignment.membership.user.display_name)
                               for assignment in assignments.select_related("membership__user")]  # fmt: skip
            assert [(person.membership_id, person.email, person.display_name) for person in row.assignees] == expected_people
    bobs = {row.conversation_id: row for row in selectors.view_page(actor=cast.bob_membership, selected=ViewFilter(View.ALL), limit=200)}
    labelled = [row for row in bobs.values() if len(row.labels) == 2]
    assert labelled
    assert all([label.name for label in row.labels] == ["Billing", "Later"] for row in labelled)
    assert any(len(row.assignees) == 2 and row.assignees[1].display_name == "alice" for row in bobs.values())
    assert seeded["carol_own"].pk not in bobs


def test_a_row_redrawn_by_id_is_the_rows_of_its_page(cast: Cast, team_inbox: TeamInbox) -> None:
    """After an action a row is re-read by id (``conversation_ids``, through the ORM): the same as on its page."""
    seeded = _seed(cast, team_inbox)
    for member in _members(cast):
        for selected in _filters(cast, team_inbox, seeded):
            for row in selectors.view_page(actor=member, selected=selected, limit=200):
                assert selectors.view_page(actor=member, selected=selected, conversation_ids=[row.conversation_id]) == [row]


def test_conversation_row_matches_the_orm(cast: Cast, team_inbox: TeamInbox) -> None:
    """``conversation_row_get``'s constant text: the member's row with its conversation, as the
    ORM reads them, for every conversation and member; 404 where the ORM finds nothing."""
    from django.http import Http404

    from postroom.conversations.models import Conversation

    _seed(cast, team_inbox)

    def values(instance: Any) -> list[Any]:
        return [getattr(instance, field.attname) for field in type(instance)._meta.concrete_fields]

    compared = refused = 0
    for member in _members(cast):
        for conversation in Conversation.objects.all():
            expected = ConversationMember.objects.filter(
                conversation=conversation, membership=member, conversation__organization_id=member.organization_id
            ).select_related("conversation").first()  # fmt: skip
            if expected is None:
                with pytest.raises(Http404):
                    selectors.conversation_row_get(actor=member, conversation_id=conversation.pk)
                refused += 1
                continue
            row = selectors.conversation_row_get(actor=member, conversation_id=str(conversation.pk))
            assert values(row) == values(expected)
            assert values(row.conversation) == values(expected.conversation)
            assert row.conversation.subject == expected.conversation.subject  # sealed: opens the same
            compared += 1
    assert compared > 20
    assert refused > 5


def test_thread_attachments_match_the_orm(cast: Cast, team_inbox: TeamInbox) -> None:
    """``conversation_page`` gives each message the attachments the ORM's prefetch would, without
    a query when they are read."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from postroom.conversations.models import Message

    def files(*names: str) -> tuple[tuple[str, str, bytes], ...]:
        return tuple((name, "application/pdf", b"%PDF-1.4 " + name.encode()) for name in names)

    first = team_inbox.deliver(subject="With files", message_id="<files-1@customer.example>", attachments=files("a.pdf", "b.pdf"))
    team_inbox.deliver(subject="Re: With files", message_id="<files-2@customer.example>", in_reply_to="<files-1@customer.example>",
                       attachments=files("c.pdf"))  # fmt: skip
    team_inbox.deliver(mailbox=team_inbox.private_mailbox, subject="Re: With files", message_id="<files-3@customer.example>",
                       in_reply_to="<files-1@customer.example>", attachments=files("private.pdf"))  # fmt: skip
    conversation = first.conversation
    for member in (cast.alice_membership, cast.bob_membership):
        messages = selectors.conversation_page(actor=member, conversation=conversation, with_sidebar=False).messages
        with CaptureQueriesContext(connection) as captured:
            found = {message.pk: [(a.pk, a.filename, a.message is message) for a in message.attachments.all()] for message in messages}
        assert not captured.captured_queries
        expected = {
            message.pk: [(a.pk, a.filename, True) for a in message.attachments.order_by("id")]
            for message in Message.objects.filter(pk__in=list(found))
        }
        assert found == expected
        assert sorted(str(name) for attachments in found.values() for _, name, _ in attachments) == ["a.pdf", "b.pdf", "c.pdf", "private.pdf"]
