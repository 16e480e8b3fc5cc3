"""The conversation page's header, menus, details and thread written in Python
(``conversations.page_markup``) and the few queries that feed them: every value from mail or from
members is escaped (R28), the URLs are the ones ``reverse`` gives, and the constant queries name
the same people, teams and labels as the ORM selectors they replace."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from postroom.conftest import Cast
from postroom.conversations import actions, page_markup, selectors
from postroom.conversations.models import Label, TimelineEvent
from postroom.conversations.tests.conftest import TeamInbox
from postroom.conversations.tests.test_markup import ESCAPED, ESCAPED_NAME, HOSTILE, HOSTILE_NAME
from postroom.core.rows import rows_of
from postroom.orgs.actions import team_create
from postroom.orgs.selectors import organization_members, organization_teams

pytestmark = pytest.mark.django_db


def test_every_action_url_is_the_reversed_one(cast: Cast, team_inbox: TeamInbox) -> None:
    conversation = team_inbox.deliver().conversation
    urls = page_markup.conversation_urls("acme", conversation.pk)
    assert set(urls) == {"detail", *page_markup.ACTION_PATHS}
    for name, url in urls.items():
        assert url == reverse(f"conversations:{name}", args=["acme", conversation.pk]), name


def test_r28_every_value_of_the_conversation_page_is_escaped(cast: Cast, client_as, team_inbox: TeamInbox) -> None:  # type: ignore[no-untyped-def]
    message = team_inbox.deliver(
        subject=f"Subject {HOSTILE}",
        sender=f'"Sender {HOSTILE_NAME}" <dana@customer.example>',
        cc=f'"Copy {HOSTILE_NAME}" <copy@customer.example>',
        text=f"Body {HOSTILE}\n",
        attachments=(("R&D 'notes'.txt", "text/plain", b"hello"),),
    )
    conversation = message.conversation
    alice = cast.alice_membership
    label = actions.label_create(actor=alice, name=f"Label {HOSTILE}", personal=True)
    actions.conversation_label(actor=alice, conversation=conversation, label=label)
    cast.bob.name = f"Bob {HOSTILE}"
    cast.bob.save(update_fields=["name"])
    actions.conversation_assign(actor=alice, conversation=conversation, assignee=cast.bob_membership)
    team = team_create(actor=alice, name=f"Team {HOSTILE}")
    actions.conversation_share(actor=alice, conversation=conversation, team=team)
    actions.conversation_share(actor=alice, conversation=conversation, member=cast.carol_membership)
    actions.conversation_snooze(actor=alice, conversation=conversation, until=timezone.now() + timedelta(days=1))
    html = client_as(cast.alice).get(reverse("conversations:detail", args=["acme", conversation.pk]), {"list": HOSTILE}).content.decode()
    page = html.split('id="conversation-header"')[1]
    for shown in ("Label", "Bob", "Team"):
        assert f"{shown} {ESCAPED}" in page, shown
    assert f"<h1>Subject {ESCAPED}</h1>" in page
    assert f'title="Unassign Bob {ESCAPED}"' in page  # inside an attribute too
    assert f'title="Remove the label Label {ESCAPED}"' in page
    assert f'data-filter-text="Label {ESCAPED}"' in page
    assert f"Sender {ESCAPED_NAME}" in page
    assert f"Copy {ESCAPED_NAME}" in page
    assert f"Body {ESCAPED}" in page
    assert "<span>R&amp;D _notes_.txt</span>" in page  # the sanitised file name, escaped
    assert "Snoozed until <time datetime=" in page
    assert "<script>alert" not in html
    assert "<b onmouseover" not in html


def test_the_header_offers_what_the_conversation_state_allows(cast: Cast, client_as, team_inbox: TeamInbox) -> None:  # type: ignore[no-untyped-def]
    conversation = team_inbox.deliver().conversation
    url = reverse("conversations:detail", args=["acme", conversation.pk])

    def header() -> str:
        return client_as(cast.bob).get(url).content.decode().split('id="conversation-header"')[1].split("</header>")[0]

    shown = header()
    assert 'data-action="archive"' in shown
    assert 'data-action="close"' in shown
    assert 'data-action="trash"' in shown
    assert 'data-action="reopen"' not in shown
    assert 'data-action="inbox"' not in shown
    assert 'data-action="read"' in shown  # unread until the page posts "read"
    actions.conversation_close(actor=cast.bob_membership, conversation=conversation)
    shown = header()
    assert 'data-action="reopen"' in shown
    assert "Closed</span>" in shown
    actions.conversation_trash(actor=cast.bob_membership, conversation=conversation)
    shown = header()
    assert 'title="Restore"' in shown
    assert "In the trash" in shown
    assert 'data-action="trash"' not in shown
    assert 'data-action="spam"' not in shown


def test_a_quarantined_message_offers_its_raw_source_only(cast: Cast, client_as, team_inbox: TeamInbox) -> None:  # type: ignore[no-untyped-def]
    message = team_inbox.deliver(text="Hidden text\n")
    message.quarantine_reason = "too_large"
    message.save(update_fields=["quarantine_reason"])
    html = client_as(cast.bob).get(reverse("conversations:detail", args=["acme", message.conversation_id])).content.decode()
    article = html.split(f'id="message-{message.pk}"')[1].split("</article>")[0]
    raw = reverse("conversations:raw", args=["acme", message.pk])
    assert "could not be shown safely (too_large)" in article
    assert f'<a href="{raw}">Download its raw source</a>' in article
    assert "Hidden text" not in article


def test_page_links_match_the_selectors(cast: Cast, team_inbox: TeamInbox) -> None:
    alice, bob = cast.alice_membership, cast.bob_membership
    conversation = team_inbox.deliver().conversation
    other = team_inbox.deliver(subject="Other", message_id="<other@customer.example>").conversation
    billing = actions.label_create(actor=alice, name="Billing", personal=False)
    urgent = actions.label_create(actor=alice, name="Alice's own", personal=True)  # Bob must not see it
    mine = actions.label_create(actor=bob, name="Bob's own", personal=True)
    for label, actor in ((billing, alice), (urgent, alice), (mine, bob)):
        actions.conversation_label(actor=actor, conversation=conversation, label=label)
    actions.conversation_label(actor=alice, conversation=other, label=billing)
    actions.conversation_assign(actor=alice, conversation=conversation, assignee=bob)
    actions.conversation_assign(actor=alice, conversation=conversation, assignee=alice)
    actions.conversation_assign(actor=alice, conversation=other, assignee=cast.carol_membership)
    sales = team_create(actor=alice, name="Sales")
    actions.conversation_share(actor=alice, conversation=conversation, team=sales)
    actions.conversation_share(actor=alice, conversation=conversation, member=cast.carol_membership)

    links = selectors.links_read(conversation=conversation).alone()
    assert sorted(links.assignee_ids) == sorted(member.pk for member in selectors.conversation_assignees(conversation=conversation))
    assert links.assignee_ids == [bob.pk, alice.pk]  # in the order they were assigned
    visible = list(selectors.labels_visible(actor=bob))
    named = [label for label in visible if label.pk in set(links.label_ids)]
    assert named == selectors.conversation_labels(actor=bob, conversation=conversation)
    assert [label.name for label in named] == ["Billing", "Bob's own"]
    expected = [(share.pk, share.team_id, share.membership_id) for share in selectors.conversation_shares(conversation=conversation)]
    assert sorted(links.shares) == sorted(expected)
    assert links.shares == sorted(links.shares)  # in the order they were made
    assert {team_id for _, team_id, _ in links.shares} >= {sales.pk, team_inbox.team.pk}


def test_timeline_names_from_the_page_lists_match_the_selector(cast: Cast, team_inbox: TeamInbox) -> None:
    alice, bob = cast.alice_membership, cast.bob_membership
    conversation = team_inbox.deliver().conversation
    hidden = actions.label_create(actor=alice, name="Alice's own", personal=True)
    shown = actions.label_create(actor=alice, name="Everyone's", personal=False)
    sales = team_create(actor=alice, name="Sales")
    details = [
        {"membership_id": bob.pk}, {"membership_id": 999_999}, {"membership_id": cast.charlie_membership.pk},
        {"team_id": sales.pk}, {"label_id": str(hidden.pk)}, {"label_id": str(shown.pk)},
        {"changes": [{"kind": "assign", "membership_id": alice.pk}, {"kind": "label", "label_id": str(shown.pk)}]},
    ]  # fmt: skip
    for detail in details:
        TimelineEvent.objects.create(
            organization=alice.organization, conversation=conversation, actor=alice, kind="assigned", details=detail
        )
    events = list(selectors.conversation_timeline(conversation=conversation))
    among = selectors.timeline_names_among(
        events=events, members=list(organization_members(actor=bob)), teams=list(organization_teams(actor=bob)),
        labels=list(selectors.labels_visible(actor=bob)),
    )  # fmt: skip
    expected = selectors.timeline_names(actor=bob, events=events)
    assert {kind: sorted(map(str, names)) for kind, names in among.items()} == {
        kind: sorted(map(str, names)) for kind, names in expected.items()
    }
    assert set(among["members"]) == {alice.pk, bob.pk}  # not the other organization's, not a former member
    assert set(among["labels"]) == {str(shown.pk)}


def test_thread_messages_are_the_visible_ones(cast: Cast, team_inbox: TeamInbox) -> None:
    """The page's constant query returns what ``conversation_messages`` (``messages_visible``)
    does, in its order: a teammate's private reply threaded in is theirs alone, a copy gone from
    the server no longer counts for its owner, and a message without a sending time sorts as the ORM sorts it."""
    from postroom.conversations.models import MessageCopy
    from postroom.mailboxes.tests.factories import make_mailbox

    carols = make_mailbox(cast.carol_membership, address="carol@acme.test")
    base = timezone.now() - timedelta(days=1)
    conversations = []
    for number in range(4):
        first = team_inbox.deliver(subject=f"Thread {number}", date=base + timedelta(minutes=number))
        conversations.append(first.conversation)
        first_id = f"<m{team_inbox.uid}@customer.example>"
        team_inbox.deliver(carols, subject=f"Re: Thread {number}", in_reply_to=first_id, message_id=f"<carol-{number}@acme.test>",
                           date=base + timedelta(minutes=number, seconds=30), attachments=(("secret.pdf", "application/pdf", b"%PDF"),))  # fmt: skip
        reply = team_inbox.deliver(subject=f"Re: Thread {number}", in_reply_to=first_id, date=base + timedelta(minutes=number, seconds=45))
        if number == 1:
            MessageCopy.objects.filter(message=reply).update(gone_at=timezone.now())
        if number == 2:
            type(reply).objects.filter(pk=reply.pk).update(sent_at=None)
    checked = 0
    seen = {member.pk: [len(selectors.conversation_page(actor=member, conversation=c, with_sidebar=False).messages) for c in conversations]
            for member in (cast.bob_membership, cast.carol_membership)}  # fmt: skip
    assert seen == {cast.bob_membership.pk: [2, 2, 2, 2], cast.carol_membership.pk: [1, 1, 1, 1]}
    for member in (cast.alice_membership, cast.bob_membership, cast.carol_membership, cast.charlie_membership):
        for conversation in conversations:
            expected = list(selectors.conversation_messages(actor=member, conversation=conversation))
            found = selectors.conversation_page(actor=member, conversation=conversation, with_sidebar=False).messages
            assert [message.pk for message in found] == [message.pk for message in expected]
            assert [[a.pk for a in m.attachments.all()] for m in found] == [[a.pk for a in m.attachments.all()] for m in expected]
            checked += len(found)
    assert checked > 10


def test_page_directory_matches_the_selectors(cast: Cast, team_inbox: TeamInbox) -> None:
    """The members, teams and labels of the page's constant queries are the selectors' own, in
    their order: the organization's alone, and no one else's personal label."""
    alice, bob = cast.alice_membership, cast.bob_membership
    team_create(actor=alice, name="Sales")
    team_create(actor=cast.charlie_membership, name="Other organization")
    actions.label_create(actor=alice, name="Billing", personal=False)
    actions.label_create(actor=alice, name="Alice's own", personal=True)
    actions.label_create(actor=bob, name="Bob's own", personal=True)
    actions.label_create(actor=cast.charlie_membership, name="Beta", personal=False)
    directory = selectors.directory_read(actor=bob).alone()
    expected = list(organization_members(actor=bob))
    assert [(m.pk, m.role, m.user.pk, m.user.email, m.user.display_name) for m in directory.members] == [
        (m.pk, m.role, m.user.pk, m.user.email, m.user.display_name) for m in expected
    ]
    assert [team.pk for team in directory.teams] == [team.pk for team in organization_teams(actor=bob)]
    assert directory.labels == list(selectors.labels_visible(actor=bob)) == selectors.labels_list(actor=bob)
    assert [label.name for label in directory.labels] == ["Billing", "Bob's own"]


def test_timeline_among_the_members_is_the_selectors_timeline(cast: Cast, team_inbox: TeamInbox) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    alice, bob = cast.alice_membership, cast.bob_membership
    conversation = team_inbox.deliver().conversation
    actions.conversation_assign(actor=alice, conversation=conversation, assignee=bob)
    actions.conversation_close(actor=bob, conversation=conversation)
    actions.conversation_reopen(actor=alice, conversation=conversation)
    members = selectors.directory_read(actor=bob).alone().members
    with CaptureQueriesContext(connection) as captured:
        events = selectors.timeline_with_actors(selectors.timeline_read(conversation=conversation).alone(), members)
        names = [event.actor.user.display_name if event.actor else None for event in events]
    assert len(captured) == 1  # the actors come from ``members``
    expected = list(selectors.conversation_timeline(conversation=conversation))
    assert [(event.pk, event.kind) for event in events] == [(event.pk, event.kind) for event in expected]
    assert names == [event.actor.user.display_name if event.actor else None for event in expected]
    assert len(events) >= 3


# ``core.rows.rows_of``, which the page's constant queries build their instances with (here for the fixtures).
def _values(instance: object) -> dict[str, object]:
    return {field.attname: getattr(instance, field.attname) for field in type(instance)._meta.concrete_fields}  # type: ignore[attr-defined]


def test_rows_are_the_orms_instances(cast: Cast, team_inbox: TeamInbox) -> None:
    alice = cast.alice_membership
    conversation = team_inbox.deliver().conversation
    actions.label_create(actor=alice, name="Billing", personal=False)
    actions.label_create(actor=alice, name="Alice's own", personal=True)
    actions.conversation_assign(actor=alice, conversation=conversation, assignee=cast.bob_membership)
    actions.conversation_close(actor=alice, conversation=conversation)
    labels = rows_of(
        Label,
        "SELECT * FROM conversations_label WHERE organization_id = %(organization)s ORDER BY name",
        {"organization": alice.organization_id},
    )
    expected = list(Label.objects.filter(organization_id=alice.organization_id).order_by("name"))
    assert [_values(label) for label in labels] == [_values(label) for label in expected]
    assert all(not label._state.adding for label in labels)
    sql = "SELECT e.*, 7 AS extra FROM conversations_timelineevent e WHERE e.organization_id = %(organization)s ORDER BY e.created_at, e.id"
    events = rows_of(TimelineEvent, sql, {"organization": alice.organization_id})
    expected_events = list(TimelineEvent.objects.filter(organization_id=alice.organization_id).order_by("created_at", "id"))
    assert len(events) >= 2
    assert [_values(event) for event in events] == [_values(event) for event in expected_events]
    assert {event.__dict__["extra"] for event in events} == {7}  # a column that is not the model's
