"""The team inbox pages through the Django client: who reaches what (R21), what each action view
changes, htmx partials against full pages, and errors that say what went wrong."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from postroom.audit.models import AuditEvent
from postroom.conftest import Cast
from postroom.conversations import actions, selectors
from postroom.conversations.models import (
    Assignment,
    Conversation,
    ConversationLabel,
    ConversationMember,
    ConversationShare,
    ConversationStatus,
    Label,
    Message,
    Place,
    TimelineEvent,
)
from postroom.conversations.tests.conftest import TeamInbox
from postroom.orgs.actions import team_create, team_member_add
from postroom.orgs.models import Team
from postroom.testing.factories import TeamFactory

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
# Every action view, with a body that would be accepted if the caller could see the conversation.
ACTIONS = {
    "read": {"state": "unread"},
    "archive": {},
    "move_to_inbox": {},
    "trash": {},
    "spam": {},
    "close": {},
    "reopen": {},
    "snooze": {"preset": "tomorrow"},
    "unsnooze": {},
    "follow": {"following": "0"},
    "assign": {},  # member filled in per test
    "unassign": {},
    "label_add": {},  # label filled in per test
    "label_remove": {},
    "share": {"organization": "on"},
    "unshare": {"organization": "on"},
    "change": {"change": "trash"},
}


def url(name: str, conversation: Conversation | Message, slug: str = "acme") -> str:
    conversation_id = conversation.conversation_id if isinstance(conversation, Message) else conversation.pk
    return reverse(f"conversations:{name}", args=[slug, conversation_id])


def state(conversation_id: Any) -> dict[str, Any]:
    """Everything an action could change about a conversation."""
    return {
        "conversation": list(
            Conversation.objects.filter(pk=conversation_id).values_list("status", "shared_with_organization", "is_shared")
        ),
        "members": sorted(
            ConversationMember.objects.filter(conversation_id=conversation_id).values_list(
                "membership_id", "place", "unread", "snoozed_until", "following"
            )
        ),
        "assignments": sorted(Assignment.objects.filter(conversation_id=conversation_id).values_list("membership_id", flat=True)),
        "labels": sorted(
            str(pk) for pk in ConversationLabel.objects.filter(conversation_id=conversation_id).values_list("label_id", flat=True)
        ),
        "shares": sorted(ConversationShare.objects.filter(conversation_id=conversation_id).values_list("team_id", "membership_id")),
        "timeline": TimelineEvent.objects.filter(conversation_id=conversation_id).count(),
        "messages_shared": sorted(Message.objects.filter(conversation_id=conversation_id).values_list("shared", flat=True)),
    }


def body_for(name: str, cast: Cast, label: Label) -> dict[str, Any]:
    body: dict[str, Any] = dict(ACTIONS[name])
    if name in ("assign", "unassign"):
        body["member"] = cast.bob_membership.pk
    if name in ("label_add", "label_remove"):
        body["label"] = str(label.pk)
    return body


def row(conversation: Conversation | Message, member: Any) -> ConversationMember:
    conversation_id = conversation.conversation_id if isinstance(conversation, Message) else conversation.pk
    return ConversationMember.objects.get(conversation_id=conversation_id, membership=member)


@pytest.fixture
def urgent(cast: Cast) -> Label:
    return actions.label_create(actor=cast.alice_membership, name="Urgent", personal=False, color="#dc2626")


# --- Who reaches what ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(ACTIONS))
def test_r21_an_outsider_gets_404_for_every_action_and_nothing_changes(  # type: ignore[no-untyped-def]
    cast: Cast, client_as, team_inbox: TeamInbox, urgent: Label, name: str
) -> None:
    message = team_inbox.deliver()
    before = state(message.conversation_id)
    charlie = client_as(cast.charlie)
    for slug in ("acme", "beta"):
        assert charlie.post(url(name, message, slug), body_for(name, cast, urgent)).status_code == 404
        assert charlie.post(url(name, message, slug), body_for(name, cast, urgent), **HTMX).status_code == 404
    assert state(message.conversation_id) == before


@pytest.mark.parametrize("name", list(ACTIONS))
def test_r21_a_member_without_access_to_a_private_conversation_gets_404_and_nothing_changes(  # type: ignore[no-untyped-def]
    cast: Cast, client_as, team_inbox: TeamInbox, urgent: Label, name: str
) -> None:
    message = team_inbox.deliver(team_inbox.private_mailbox, subject="Private matter")
    before = state(message.conversation_id)
    bob = client_as(cast.bob)
    assert bob.post(url(name, message), body_for(name, cast, urgent)).status_code == 404
    assert bob.get(url("detail", message)).status_code == 404
    assert state(message.conversation_id) == before


def test_r52_action_urls_refuse_get(cast: Cast, client_as, team_inbox: TeamInbox) -> None:  # type: ignore[no-untyped-def]
    message = team_inbox.deliver()
    before = state(message.conversation_id)
    alice = client_as(cast.alice)
    for name in ACTIONS:
        assert alice.get(url(name, message)).status_code == 405, name
    assert state(message.conversation_id) == before


def test_a_teammate_sees_the_team_conversation_and_a_non_member_of_the_team_does_not(  # type: ignore[no-untyped-def]
    cast: Cast, client_as, team_inbox: TeamInbox
) -> None:
    message = team_inbox.deliver(subject="Where is my parcel?")
    team_url = reverse("conversations:team", args=["acme", team_inbox.team.pk])
    bob = client_as(cast.bob)
    assert "Where is my parcel?" in bob.get(team_url).content.decode()
    assert bob.get(url("detail", message)).status_code == 200
    carol = client_as(cast.carol)
    assert carol.get(url("detail", message)).status_code == 404
    assert carol.get(team_url).status_code == 404  # not her team
    assert "Where is my parcel?" not in carol.get(reverse("conversations:view_all", args=["acme"])).content.decode()


def test_r21_ids_of_another_organization_in_the_form_are_404_and_change_nothing(  # type: ignore[no-untyped-def]
    cast: Cast, client_as, team_inbox: TeamInbox
) -> None:
    message = team_inbox.deliver()
    foreign_label = actions.label_create(actor=cast.charlie_membership, name="Theirs", personal=False)
    foreign_team = TeamFactory(organization=cast.org_b)
    bobs_personal = actions.label_create(actor=cast.bob_membership, name="Mine", personal=True)
    before = state(message.conversation_id)
    alice = client_as(cast.alice)
    for name, body in (
        ("assign", {"member": cast.charlie_membership.pk}),
        ("label_add", {"label": str(foreign_label.pk)}),
        ("label_add", {"label": str(bobs_personal.pk)}),
        ("share", {"team": foreign_team.pk}),
        ("share", {"member": cast.charlie_membership.pk}),
        ("assign", {"member": "not-a-number"}),
        ("label_add", {"label": "not-a-uuid"}),
    ):
        assert alice.post(url(name, message), body).status_code == 404, (name, body)
    assert state(message.conversation_id) == before


# --- Each action through its view -----------------------------------------------------------------------------
def test_reading_and_unreading(cast: Cast, client_as, team_inbox: TeamInbox) -> None:  # type: ignore[no-untyped-def]
    message = team_inbox.deliver()
    bob = client_as(cast.bob)
    assert row(message, cast.bob_membership).unread
    assert bob.post(url("read", message), {"state": "read"}).status_code == 302
    assert not row(message, cast.bob_membership).unread
    assert bob.post(url("read", message), {"state": "unread"}).status_code == 302
    assert row(message, cast.bob_membership).unread
    assert row(message, cast.alice_membership).unread  # Alice's own state is hers
    assert bob.post(url("read", message), {"state": "sideways"}).status_code == 400


def test_opening_a_conversation_changes_nothing_and_the_page_posts_read_itself(  # type: ignore[no-untyped-def]
    cast: Cast, client_as, team_inbox: TeamInbox
) -> None:
    message = team_inbox.deliver()
    page = client_as(cast.bob).get(url("detail", message)).content.decode()
    assert row(message, cast.bob_membership).unread
    assert f'hx-post="{url("read", message)}"' in page
    assert 'hx-trigger="load delay:500ms"' in page


def test_archive_move_to_inbox_trash_spam_and_restore(cast: Cast, client_as, team_inbox: TeamInbox) -> None:  # type: ignore[no-untyped-def]
    message = team_inbox.deliver()
    alice = client_as(cast.alice)
    alice.post(url("archive", message))
    assert row(message, cast.alice_membership).place == Place.ARCHIVE
    alice.post(url("move_to_inbox", message))
    assert row(message, cast.alice_membership).place == Place.INBOX
    alice.post(url("trash", message))
    assert row(message, cast.alice_membership).place == Place.TRASH
    assert Conversation.objects.get(pk=message.conversation_id).status == ConversationStatus.TRASH  # for the team too
    alice.post(url("move_to_inbox", message))
    assert Conversation.objects.get(pk=message.conversation_id).status == ConversationStatus.OPEN
    alice.post(url("spam", message))
    assert row(message, cast.alice_membership).place == Place.SPAM
    spam_page = alice.get(reverse("conversations:view_spam", args=["acme"])).content.decode()
    assert url("detail", message) in spam_page


def test_close_and_reopen_for_the_team(cast: Cast, client_as, team_inbox: TeamInbox) -> None:  # type: ignore[no-untyped-def]
    message = team_inbox.deliver()
    bob = client_as(cast.bob)
    bob.post(url("close", message))
    assert Conversation.objects.get(pk=message.conversation_id).status == ConversationStatus.CLOSED
    team_page = bob.get(reverse("conversations:team", args=["acme", team_inbox.team.pk])).content.decode()
    assert url("detail", message) not in team_page
    closed_page = bob.get(reverse("conversations:view_closed", args=["acme"])).content.decode()
    assert url("detail", message) in closed_page
    bob.post(url("reopen", message))
    assert Conversation.objects.get(pk=message.conversation_id).status == ConversationStatus.OPEN
    kinds = list(TimelineEvent.objects.filter(conversation_id=message.conversation_id).values_list("kind", flat=True))
    assert kinds[-2:] == ["closed", "reopened"]
    detail = bob.get(url("detail", message)).content.decode()
    assert "<strong>Bob Member</strong> closed this conversation" in detail


def test_snooze_with_a_preset_a_custom_time_and_a_time_in_the_past(cast: Cast, client_as, team_inbox: TeamInbox) -> None:  # type: ignore[no-untyped-def]
    message = team_inbox.deliver()
    alice = client_as(cast.alice)
    alice.post(url("snooze", message), {"preset": "tomorrow", "offset": "-60"})
    until = row(message, cast.alice_membership).snoozed_until
    assert until is not None
    local = until.astimezone(timezone.get_fixed_timezone(60))
    assert (local.hour, local.minute) == (9, 0)
    assert local.date() == (timezone.now().astimezone(timezone.get_fixed_timezone(60)) + timedelta(days=1)).date()
    snoozed = alice.get(reverse("conversations:view_snoozed", args=["acme"])).content.decode()
    assert url("detail", message) in snoozed
    assert url("detail", message) not in alice.get(reverse("conversations:list", args=["acme"])).content.decode()
    alice.post(url("unsnooze", message))
    assert row(message, cast.alice_membership).snoozed_until is None

    later = (timezone.now() + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M")
    alice.post(url("snooze", message), {"until": later, "offset": "0"})
    assert row(message, cast.alice_membership).snoozed_until is not None

    alice.post(url("unsnooze", message))
    past = (timezone.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    response = alice.post(url("snooze", message), {"until": past}, **HTMX)
    assert response.status_code == 422
    assert response["HX-Retarget"] == "#toasts"
    assert "Snooze until a time in the future." in response.content.decode()
    plain = alice.post(url("snooze", message), {"until": past}, follow=True)
    assert "Snooze until a time in the future." in plain.content.decode()
    nothing = alice.post(url("snooze", message), {}, **HTMX)
    assert nothing.status_code == 422
    assert "Choose a preset or a date and time." in nothing.content.decode()
    assert row(message, cast.alice_membership).snoozed_until is None


def test_follow_and_unfollow(cast: Cast, client_as, team_inbox: TeamInbox) -> None:  # type: ignore[no-untyped-def]
    message = team_inbox.deliver()
    bob = client_as(cast.bob)
    bob.post(url("follow", message), {"following": "1"})
    assert row(message, cast.bob_membership).following
    bob.post(url("follow", message), {"following": "0"})
    assert not row(message, cast.bob_membership).following


def test_assign_and_unassign_with_the_timeline(cast: Cast, client_as, team_inbox: TeamInbox) -> None:  # type: ignore[no-untyped-def]
    message = team_inbox.deliver(team_inbox.private_mailbox, subject="Needs Carol")
    alice = client_as(cast.alice)
    assert alice.post(url("assign", message), {"member": cast.carol_membership.pk}).status_code == 302
    assert list(Assignment.objects.filter(conversation_id=message.conversation_id).values_list("membership_id", flat=True)) == [
        cast.carol_membership.pk
    ]
    carol_row = row(message, cast.carol_membership)  # assigning shared it with her, into her inbox
    assert (carol_row.place, carol_row.unread) == (Place.INBOX, True)
    assert url("detail", message) in client_as(cast.carol).get(reverse("conversations:view_assigned", args=["acme"])).content.decode()
    alice.post(url("unassign", message), {"member": cast.carol_membership.pk})
    assert not Assignment.objects.filter(conversation_id=message.conversation_id).exists()
    page = alice.get(url("detail", message)).content.decode()
    assert "<strong>Alice Owner</strong> assigned <strong>Carol Admin</strong>" in page
    assert "<strong>Alice Owner</strong> unassigned <strong>Carol Admin</strong>" in page


def test_labels_on_a_conversation(cast: Cast, client_as, team_inbox: TeamInbox, urgent: Label) -> None:  # type: ignore[no-untyped-def]
    message = team_inbox.deliver()
    bob = client_as(cast.bob)
    bob.post(url("label_add", message), {"label": str(urgent.pk)})
    assert ConversationLabel.objects.filter(conversation_id=message.conversation_id, label=urgent).exists()
    label_view = bob.get(reverse("conversations:label", args=["acme", urgent.pk])).content.decode()
    assert url("detail", message) in label_view
    bob.post(url("label_remove", message), {"label": str(urgent.pk)})
    assert not ConversationLabel.objects.filter(conversation_id=message.conversation_id).exists()
    # A personal label is Bob's alone, and its use is not on the shared timeline.
    mine = actions.label_create(actor=cast.bob_membership, name="Bobs own pile", personal=True)
    events = TimelineEvent.objects.filter(conversation_id=message.conversation_id).count()
    bob.post(url("label_add", message), {"label": str(mine.pk)})
    assert TimelineEvent.objects.filter(conversation_id=message.conversation_id).count() == events
    assert "Bobs own pile" not in client_as(cast.alice).get(url("detail", message)).content.decode()


def test_share_and_unshare_are_audited(cast: Cast, client_as, team_inbox: TeamInbox) -> None:  # type: ignore[no-untyped-def]
    message = team_inbox.deliver(team_inbox.private_mailbox, subject="Contract")
    sales = team_create(actor=cast.alice_membership, name="Sales")
    alice = client_as(cast.alice)
    assert client_as(cast.carol).get(url("detail", message)).status_code == 404
    alice.post(url("share", message), {"member": cast.carol_membership.pk})
    assert client_as(cast.carol).get(url("detail", message)).status_code == 200
    alice.post(url("share", message), {"team": sales.pk})
    alice.post(url("share", message), {"organization": "on"})
    assert Conversation.objects.get(pk=message.conversation_id).shared_with_organization
    assert client_as(cast.bob).get(url("detail", message)).status_code == 200
    shared = AuditEvent.objects.filter(action="conversation.shared", target_id=str(message.conversation_id))
    assert sorted(str(event.details) for event in shared) == sorted(
        [str({"membership_id": cast.carol_membership.pk}), str({"team_id": sales.pk}), str({"organization": True})]
    )
    for body in ({"organization": "on"}, {"team": sales.pk}, {"member": cast.carol_membership.pk}):
        alice.post(url("unshare", message), body)
    assert client_as(cast.bob).get(url("detail", message)).status_code == 404
    assert client_as(cast.carol).get(url("detail", message)).status_code == 404
    assert AuditEvent.objects.filter(action="conversation.unshared", target_id=str(message.conversation_id)).count() == 3
    both = alice.post(url("share", message), {"organization": "on", "team": sales.pk}, **HTMX)
    assert both.status_code == 422
    assert "Choose one team, one member or the whole organization." in both.content.decode()


def test_r22_only_the_sharer_an_owner_of_a_copy_or_an_admin_unshares(cast: Cast, client_as, team_inbox: TeamInbox) -> None:  # type: ignore[no-untyped-def]
    message = team_inbox.deliver(team_inbox.private_mailbox)
    actions.conversation_share(actor=cast.alice_membership, conversation=message.conversation, member=cast.bob_membership)
    actions.conversation_share(actor=cast.alice_membership, conversation=message.conversation, organization=True)
    before = state(message.conversation_id)
    bob = client_as(cast.bob)
    assert bob.post(url("unshare", message), {"organization": "on"}).status_code == 403
    refused = bob.post(url("unshare", message), {"organization": "on"}, **HTMX)
    assert refused.status_code == 403
    assert "Only the member who shared it" in refused.content.decode()
    assert state(message.conversation_id) == before
    assert client_as(cast.carol).post(url("unshare", message), {"organization": "on"}).status_code == 302  # an admin


def test_unsharing_ones_own_access_goes_back_to_the_list(cast: Cast, client_as, team_inbox: TeamInbox) -> None:  # type: ignore[no-untyped-def]
    message = team_inbox.deliver(team_inbox.private_mailbox)
    actions.conversation_share(actor=cast.alice_membership, conversation=message.conversation, organization=True)
    carol = client_as(cast.carol)  # an admin may unshare; the organization share was her only access
    response = carol.post(url("unshare", message), {"organization": "on"}, **HTMX)
    assert response.status_code == 204
    assert response["HX-Redirect"] == reverse("conversations:list", args=["acme"])
    assert carol.get(url("detail", message)).status_code == 404


# --- htmx partials and full pages --------------------------------------------------------------------------------
def test_an_action_from_the_conversation_page_answers_the_changed_parts(cast: Cast, client_as, team_inbox: TeamInbox) -> None:  # type: ignore[no-untyped-def]
    message = team_inbox.deliver()
    bob = client_as(cast.bob)
    response = bob.post(url("assign", message), {"member": cast.bob_membership.pk, "from": "inbox"}, **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" not in html
    for part in ('id="conversation-header" hx-swap-oob="true"', 'id="conversation-details" hx-swap-oob="true"',
                 'id="thread-tail" hx-swap-oob="true"', 'id="inbox-nav"', 'hx-swap-oob="beforeend:#toasts"'):  # fmt: skip
        assert part in html, part
    assert "<strong>Bob Member</strong> assigned themselves" in html
    assert "Assigned to Bob Member." in html
    plain = bob.post(url("assign", message), {"member": cast.alice_membership.pk})
    assert plain.status_code == 302
    assert plain["Location"] == url("detail", message)
    quiet = bob.post(url("read", message), {"state": "read", "quiet": "1"}, **HTMX).content.decode()
    assert "#toasts" not in quiet


def test_an_action_from_a_list_redraws_its_row_or_removes_it(cast: Cast, client_as, team_inbox: TeamInbox, urgent: Label) -> None:  # type: ignore[no-untyped-def]
    message = team_inbox.deliver(subject="Lost parcel")
    alice = client_as(cast.alice)
    labelled = alice.post(url("label_add", message), {"label": str(urgent.pk), "list": "inbox"}, **HTMX).content.decode()
    assert f'id="row-{message.conversation_id}"' in labelled
    assert "label-chip" in labelled
    assert 'id="inbox-nav" data-nav-url' in labelled
    archived = alice.post(url("archive", message), {"list": "inbox"}, **HTMX).content.decode()
    assert f'id="row-{message.conversation_id}"' not in archived  # it left the inbox: the row goes
    assert "Archived." in archived
    still = alice.post(url("read", message), {"state": "unread", "list": "all"}, **HTMX).content.decode()
    assert f'id="row-{message.conversation_id}"' in still
    foreign_team = TeamFactory(organization=cast.org_b)
    before = state(message.conversation_id)
    assert alice.post(url("read", message), {"state": "read", "list": f"team:{foreign_team.pk}"}, **HTMX).status_code == 404
    assert state(message.conversation_id) == before


def test_lists_and_the_conversation_page_answer_htmx_with_partials(cast: Cast, client_as, team_inbox: TeamInbox) -> None:  # type: ignore[no-untyped-def]
    message = team_inbox.deliver()
    alice = client_as(cast.alice)
    full = alice.get(reverse("conversations:list", args=["acme"])).content.decode()
    assert "<html" in full
    assert 'id="inbox-nav"' in full
    partial = alice.get(reverse("conversations:list", args=["acme"]), **HTMX).content.decode()
    assert "<html" not in partial
    assert 'id="list-region"' in partial
    detail = alice.get(url("detail", message), **HTMX).content.decode()
    assert "<html" not in detail
    assert 'id="conversation-details" hx-swap-oob="true"' in detail
    nav = alice.get(reverse("conversations:nav", args=["acme"])).content.decode()
    assert 'id="inbox-nav"' in nav
    assert "<html" not in nav


def test_the_sidebar_counts_unread_conversations_per_view(cast: Cast, client_as, team_inbox: TeamInbox) -> None:  # type: ignore[no-untyped-def]
    first = team_inbox.deliver(subject="One")
    team_inbox.deliver(subject="Two")
    actions.conversation_assign(actor=cast.alice_membership, conversation=first.conversation, assignee=cast.bob_membership)
    bob = client_as(cast.bob)
    html = bob.get(reverse("conversations:list", args=["acme"])).content.decode()
    team_entry = html.split(f'data-nav-key="team:{team_inbox.team.pk}"')[1].split("</a>")[0]
    assert '<span class="count">2<span class="visually-hidden"> unread</span>' in team_entry
    assigned_entry = html.split('data-nav-key="assigned"')[1].split("</a>")[0]
    assert '<span class="count">1<span class="visually-hidden"> open</span>' in assigned_entry


def test_a_sidebar_count_past_the_limit_reads_limit_plus(  # type: ignore[no-untyped-def]
    cast: Cast, client_as, team_inbox: TeamInbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counts stop at ``COUNT_LIMIT`` + 1 rows (so they cost the same at any size) and say so."""
    monkeypatch.setattr(selectors, "COUNT_LIMIT", 2)
    for subject in ("One", "Two", "Three"):
        team_inbox.deliver(subject=subject)
    bob = client_as(cast.bob)
    html = bob.get(reverse("conversations:list", args=["acme"])).content.decode()
    team_entry = html.split(f'data-nav-key="team:{team_inbox.team.pk}"')[1].split("</a>")[0]
    assert '<span class="count">2+<span class="visually-hidden"> unread</span>' in team_entry
    monkeypatch.setattr(selectors, "COUNT_LIMIT", 3)
    html = bob.get(reverse("conversations:list", args=["acme"])).content.decode()
    team_entry = html.split(f'data-nav-key="team:{team_inbox.team.pk}"')[1].split("</a>")[0]
    assert '<span class="count">3<span class="visually-hidden"> unread</span>' in team_entry


def test_tasks_filter_by_assignee(cast: Cast, client_as, team_inbox: TeamInbox) -> None:  # type: ignore[no-untyped-def]
    for_bob = team_inbox.deliver(subject="For Bob")
    for_alice = team_inbox.deliver(subject="For Alice")
    actions.conversation_assign(actor=cast.alice_membership, conversation=for_bob.conversation, assignee=cast.bob_membership)
    actions.conversation_assign(actor=cast.alice_membership, conversation=for_alice.conversation, assignee=cast.alice_membership)
    alice = client_as(cast.alice)
    tasks = reverse("conversations:view_tasks", args=["acme"])
    everyone = alice.get(tasks).content.decode()
    assert "For Bob" in everyone
    assert "For Alice" in everyone
    only_bob = alice.get(f"{tasks}?assignee={cast.bob_membership.pk}").content.decode()
    assert "For Bob" in only_bob
    assert "For Alice" not in only_bob
    assert "Tasks: Bob Member" in only_bob
    assert alice.get(f"{tasks}?assignee={cast.charlie_membership.pk}").status_code == 404


def test_pages_of_a_list_follow_the_cursor(cast: Cast, client_as, team_inbox: TeamInbox, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from postroom.conversations import views

    monkeypatch.setattr(views, "PAGE_SIZE", 2)
    start = timezone.now() - timedelta(days=1)
    for number in range(5):
        team_inbox.deliver(subject=f"Conversation {number}", date=start + timedelta(minutes=number))
    alice = client_as(cast.alice)
    first = alice.get(reverse("conversations:list", args=["acme"]))
    shown = [number for number in range(5) if f"Conversation {number}<" in first.content.decode()]
    assert shown == [3, 4]
    next_url = first.context["next_url"]
    assert "before=" in next_url
    assert "before_id=" in next_url
    second = alice.get(next_url, **HTMX).content.decode()
    assert "<html" not in second
    assert [number for number in range(5) if f"Conversation {number}<" in second] == [1, 2]
    assert "Load more" in second
    for broken in ("?before=yesterday&before_id=x", "?before=2026-01-01T00:00:00&before_id=00000000-0000-7000-8000-000000000001"):
        response = alice.get(reverse("conversations:list", args=["acme"]) + broken)
        assert response.status_code == 400
        assert "This page link is broken" in response.content.decode()


def test_a_teammates_private_message_stays_out_of_the_list_row(cast: Cast, client_as, team_inbox: TeamInbox) -> None:  # type: ignore[no-untyped-def]
    from postroom.mailboxes.tests.factories import make_mailbox

    message = team_inbox.deliver(subject="Renewal", text="Can we renew?\n")
    carols = make_mailbox(cast.carol_membership, address="carol@acme.test")
    team_inbox.deliver(carols, subject="Re: Renewal", sender="Carol Admin <carol@acme.test>", in_reply_to="<m1@customer.example>",
                       text="Internal: give them 50% off, do not tell anyone.\n", message_id="<carol-1@acme.test>",
                       date=timezone.now())  # fmt: skip
    assert Message.objects.filter(conversation_id=message.conversation_id).count() == 2  # threaded together
    bob_list = client_as(cast.bob).get(reverse("conversations:team", args=["acme", team_inbox.team.pk])).content.decode()
    assert "Can we renew?" in bob_list
    assert "50% off" not in bob_list
    assert '<span class="row-sender-name">Dana Customer</span>' in bob_list  # not Carol, who wrote last
    assert "50% off" not in client_as(cast.bob).get(url("detail", message)).content.decode()
    assert "50% off" in client_as(cast.carol).get(url("detail", message)).content.decode()


# --- Bulk ---------------------------------------------------------------------------------------------------------
def test_bulk_archive_and_label_and_all_or_nothing(cast: Cast, client_as, team_inbox: TeamInbox, urgent: Label) -> None:  # type: ignore[no-untyped-def]
    one, two = team_inbox.deliver(subject="One"), team_inbox.deliver(subject="Two")
    private = team_inbox.deliver(team_inbox.private_mailbox, subject="Alice only")
    bulk = reverse("conversations:bulk", args=["acme"])
    bob = client_as(cast.bob)
    before = [state(message.conversation_id) for message in (one, two, private)]
    refused = bob.post(bulk, {"operation": "archive", "list": "inbox",
                              "conversation": [one.conversation_id, private.conversation_id]})  # fmt: skip
    assert refused.status_code == 404
    assert [state(message.conversation_id) for message in (one, two, private)] == before
    response = bob.post(bulk, {"operation": "label", "label": str(urgent.pk), "list": f"team:{team_inbox.team.pk}",
                               "conversation": [one.conversation_id, two.conversation_id]}, **HTMX)  # fmt: skip
    assert response.status_code == 200
    assert "2 conversations updated." in response.content.decode()
    assert ConversationLabel.objects.filter(label=urgent).count() == 2
    plain = bob.post(bulk, {"operation": "close", "list": "inbox", "conversation": [one.conversation_id]})
    assert plain.status_code == 302
    assert Conversation.objects.get(pk=one.conversation_id).status == ConversationStatus.CLOSED
    nothing = bob.post(bulk, {"operation": "archive", "list": "inbox"}, **HTMX)
    assert nothing.status_code == 422
    assert "Select at least one conversation first." in nothing.content.decode()


# --- Labels page -----------------------------------------------------------------------------------------------------
def test_labels_page_personal_for_everyone_organization_labels_for_admins(cast: Cast, client_as) -> None:  # type: ignore[no-untyped-def]
    labels = reverse("conversations:labels", args=["acme"])
    bob = client_as(cast.bob)
    assert bob.get(labels).status_code == 200
    assert bob.post(labels, {"name": "Later", "color": "#16a34a", "personal": "on"}).status_code == 302
    assert Label.objects.get(name="Later").owner == cast.bob_membership
    assert bob.post(labels, {"name": "Company", "color": "#16a34a"}).status_code == 403
    assert not Label.objects.filter(name="Company").exists()
    carol = client_as(cast.carol)
    assert carol.post(labels, {"name": "Company", "color": "#2563eb"}).status_code == 302
    company = Label.objects.get(name="Company")
    assert company.owner is None
    duplicate = carol.post(labels, {"name": "company", "color": "#2563eb"})
    assert duplicate.status_code == 422
    assert "There is already a label with that name." in duplicate.content.decode()
    bad_colour = carol.post(labels, {"name": "Pinkish", "color": "#ff00ff"})
    assert bad_colour.status_code == 422
    update = reverse("conversations:label_update", args=["acme", company.pk])
    assert bob.post(update, {"name": "Hijacked", "color": "#2563eb"}).status_code == 403
    assert carol.post(update, {"name": "Customers", "color": "#db2777"}).status_code == 302
    company.refresh_from_db()
    assert (company.name, company.color) == ("Customers", "#db2777")
    later = Label.objects.get(name="Later")
    assert carol.post(reverse("conversations:label_delete", args=["acme", later.pk])).status_code == 404  # Bob's own
    assert client_as(cast.charlie).post(reverse("conversations:label_delete", args=["acme", company.pk])).status_code == 404
    assert carol.post(reverse("conversations:label_delete", args=["acme", company.pk])).status_code == 302
    assert not Label.objects.filter(pk=company.pk).exists()
    assert AuditEvent.objects.filter(action__in=["label.created", "label.deleted"]).count() == 2


def test_renaming_a_label_to_a_taken_name_is_a_clear_error(cast: Cast, client_as) -> None:  # type: ignore[no-untyped-def]
    first = actions.label_create(actor=cast.bob_membership, name="First", personal=True)
    actions.label_create(actor=cast.bob_membership, name="Second", personal=True)
    response = client_as(cast.bob).post(
        reverse("conversations:label_update", args=["acme", first.pk]), {"name": "second", "color": "#6b7280"}, follow=True
    )
    assert "There is already a label with that name." in response.content.decode()
    first.refresh_from_db()
    assert first.name == "First"


def test_pages_show_to_a_member_without_javascript(cast: Cast, client_as, team_inbox: TeamInbox) -> None:  # type: ignore[no-untyped-def]
    """Every control of the conversation page is a form that posts, with its CSRF token."""
    message = team_inbox.deliver()
    html = client_as(cast.alice).get(url("detail", message)).content.decode()
    for name in ("archive", "close", "snooze", "assign", "share", "trash", "spam", "read", "follow"):
        assert f'action="{url(name, message)}"' in html, name
    assert html.count('name="csrfmiddlewaretoken"') >= 10


def test_an_unknown_view_segment_is_not_a_conversation(cast: Cast, client_as) -> None:  # type: ignore[no-untyped-def]
    alice: Client = client_as(cast.alice)
    for view in ("assigned", "mentions", "tasks", "sent", "snoozed", "closed", "all", "spam", "trash"):
        assert alice.get(reverse(f"conversations:view_{view}", args=["acme"])).status_code == 200, view
    assert alice.get(reverse("conversations:label", args=["acme", "not-a-label"])).status_code == 404
    assert alice.get(reverse("conversations:team", args=["acme", 999999])).status_code == 404


@pytest.mark.parametrize("limit", [2, 99])
def test_sidebar_counts_match_the_views(  # type: ignore[no-untyped-def]
    cast: Cast, team_inbox: TeamInbox, monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    """The sidebar's one query counts what each view lists (``view_rows``; unread only in the
    inboxes), capped at ``COUNT_LIMIT + 1``, for conversations in every state, for each member."""
    from postroom.conversations.selectors import View, ViewFilter

    monkeypatch.setattr(selectors, "COUNT_LIMIT", limit)
    alice, bob = cast.alice_membership, cast.bob_membership
    sales = team_create(actor=alice, name="sales")  # sorts after "Support" by code point, before it in most collations
    team_member_add(actor=alice, team=sales, membership=bob)
    delivered = [team_inbox.deliver(subject=f"Number {number}").conversation for number in range(9)]
    private = team_inbox.deliver(mailbox=team_inbox.private_mailbox, subject="Private").conversation
    actions.conversation_assign(actor=alice, conversation=delivered[0], assignee=bob)
    actions.conversation_assign(actor=alice, conversation=delivered[1], assignee=bob)
    actions.conversation_assign(actor=alice, conversation=delivered[2], assignee=alice)
    actions.conversation_close(actor=alice, conversation=delivered[1])
    actions.conversation_trash(actor=bob, conversation=delivered[3])
    actions.conversation_mark_spam(actor=alice, conversation=delivered[4])
    actions.conversation_snooze(actor=bob, conversation=delivered[5], until=timezone.now() + timedelta(days=1))
    actions.conversation_mark_read(actor=bob, conversation=delivered[6], read=True)
    actions.conversation_archive(actor=alice, conversation=delivered[7])
    actions.conversation_share(actor=alice, conversation=delivered[8], team=sales)
    ConversationMember.objects.filter(conversation__in=[delivered[0], delivered[3], delivered[6], private]).update(
        mentioned_at=timezone.now()
    )
    ConversationMember.objects.filter(conversation=delivered[2]).update(snoozed_until=timezone.now() - timedelta(hours=1))
    for member in (alice, bob, cast.charlie_membership):
        teams = list(Team.objects.filter(team_memberships__membership=member).order_by("name"))
        expected = {}
        for view in (View.INBOX, View.ASSIGNED, View.MENTIONS, View.TASKS):
            rows = selectors.view_rows(actor=member, selected=ViewFilter(view))
            expected[view] = min(rows.filter(unread=True).count() if view in (View.INBOX, View.MENTIONS) else rows.count(), limit + 1)
        for team in teams:
            rows = selectors.view_rows(actor=member, selected=ViewFilter(View.TEAM, team=team)).filter(unread=True)
            expected[f"team:{team.pk}"] = min(rows.count(), limit + 1)
        expected["drafts"] = 0
        sidebar = selectors.sidebar_get(actor=member)
        assert sidebar.counts == expected, member
        assert [team.pk for team in sidebar.teams] == [team.pk for team in teams]
        assert [team.name for team in sidebar.teams] == [team.name for team in teams]
    assert selectors.sidebar_get(actor=alice).counts[View.INBOX] > 0
    assert selectors.sidebar_get(actor=bob).counts[View.ASSIGNED] == 1


def test_list_rows_count_only_visible_messages(cast: Cast, team_inbox: TeamInbox) -> None:
    """Each row's latest message, message count and attachment mark come from the messages the
    member sees (``messages_visible``): a teammate's private reply threaded in counts for them
    only; also across more conversations than one summary query takes."""
    from postroom.conversations.selectors import View, ViewFilter
    from postroom.mailboxes.tests.factories import make_mailbox

    carols = make_mailbox(cast.carol_membership, address="carol@acme.test")
    base = timezone.now() - timedelta(days=1)
    for number in range(selectors._BATCH + 4):
        team_inbox.deliver(subject=f"Thread {number}", date=base + timedelta(minutes=number))
        first_id = f"<m{team_inbox.uid}@customer.example>"
        if number % 3 == 0:
            team_inbox.deliver(carols, subject=f"Re: Thread {number}", in_reply_to=first_id,
                               message_id=f"<carol-{number}@acme.test>", date=base + timedelta(minutes=number, seconds=30),
                               attachments=(("secret.pdf", "application/pdf", b"%PDF"),))  # fmt: skip
        if number % 4 == 0:
            team_inbox.deliver(subject=f"Re: Thread {number}", in_reply_to=first_id,
                               date=base + timedelta(minutes=number, seconds=45), attachments=(("a.txt", "text/plain", b"a"),))  # fmt: skip
    checked = 0
    for member in (cast.alice_membership, cast.bob_membership, cast.carol_membership):
        page = selectors.view_page(actor=member, selected=ViewFilter(View.ALL), limit=200)
        for row in page:
            visible = list(selectors.messages_visible(actor=member).filter(conversation_id=row.conversation_id))
            latest = max(visible, key=lambda message: (message.sent_at is not None, message.sent_at, message.created_at))
            assert row.last_message is not None
            assert row.last_message.id == latest.pk
            assert row.last_message.direction == latest.direction
            assert row.last_message.addresses_sealed == bytes(latest.addresses_sealed)
            assert row.last_message.snippet_sealed == (bytes(latest.snippet_sealed) if latest.snippet_sealed is not None else None)
            assert row.visible_messages == len(visible)
            assert row.with_attachments == any(message.has_attachments for message in visible)
            checked += 1
    assert checked > 2 * selectors._BATCH
    counts = {row.visible_messages for row in selectors.view_page(actor=cast.bob_membership, selected=ViewFilter(View.ALL), limit=200)}
    assert counts == {1, 2}
