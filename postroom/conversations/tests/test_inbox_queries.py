"""The number of SQL queries of the inbox pages does not grow with the data (issue #4): a list
with 30 conversations costs what it costs with 3, a conversation with 20 messages what it costs
with 2. Each conversation has an assignee and a label and each message an attachment, so a
missing prefetch shows up as a difference."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from postroom.accounts.api_tokens import api_token_create
from postroom.conftest import Cast
from postroom.conversations import actions
from postroom.conversations.models import Label, Message
from postroom.conversations.tests.conftest import TeamInbox
from postroom.testing.queries import round_trips, trips_of

pytestmark = pytest.mark.django_db


def queries(client: Client, url: str) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, url
    return [query["sql"] for query in captured.captured_queries]


def add_conversations(cast: Cast, team_inbox: TeamInbox, label: Label, start: int, stop: int) -> None:
    base = timezone.now() - timedelta(days=2)
    for number in range(start, stop):
        message = team_inbox.deliver(subject=f"Conversation {number}", date=base + timedelta(minutes=number),
                                     attachments=(("invoice.pdf", "application/pdf", b"%PDF"),))  # fmt: skip
        actions.conversation_assign(actor=cast.alice_membership, conversation=message.conversation, assignee=cast.bob_membership)
        actions.conversation_label(actor=cast.alice_membership, conversation=message.conversation, label=label)


@pytest.fixture
def label(cast: Cast) -> Label:
    return actions.label_create(actor=cast.alice_membership, name="Billing", personal=False)


@pytest.mark.parametrize(
    "view", ["inbox", "team", "all", "assigned", "tasks", "label", "api inbox", "api team", "api label", "api all unread"]
)
def test_a_list_costs_the_same_queries_with_3_and_30_conversations(  # type: ignore[no-untyped-def]
    cast: Cast, client_as, team_inbox: TeamInbox, label: Label, view: str
) -> None:
    api = "/api/v1/orgs/acme/conversations"
    urls: dict[str, Any] = {
        "inbox": reverse("conversations:list", args=["acme"]),
        "team": reverse("conversations:team", args=["acme", team_inbox.team.pk]),
        "all": reverse("conversations:view_all", args=["acme"]),
        "assigned": reverse("conversations:view_assigned", args=["acme"]),
        "tasks": reverse("conversations:view_tasks", args=["acme"]),
        "label": reverse("conversations:label", args=["acme", label.pk]),
        "api inbox": api,
        "api team": f"{api}?view=team&team_id={team_inbox.team.pk}",
        "api label": f"{api}?view=label&label_id={label.pk}",
        "api all unread": f"{api}?view=all&unread=true",
    }
    url = urls[view]
    add_conversations(cast, team_inbox, label, 0, 3)
    if view.startswith("api"):  # a script with a personal API token, as the API is used
        token = api_token_create(user=cast.bob, name="Script", scope="read", expires_at=None).token
        bob = Client(headers={"Authorization": f"Bearer {token}"})
    else:
        bob = client_as(cast.bob)
    bob.get(url)  # the first request loads keys and touches the session
    few = queries(bob, url)
    add_conversations(cast, team_inbox, label, 3, 30)
    many = queries(bob, url)
    assert "Conversation 29" in bob.get(url).content.decode()
    assert len(many) == len(few), "\n".join(many)


def test_the_conversation_page_costs_the_same_queries_with_2_and_20_messages(  # type: ignore[no-untyped-def]
    cast: Cast, client_as, team_inbox: TeamInbox, label: Label
) -> None:
    base = timezone.now() - timedelta(days=2)
    first = team_inbox.deliver(subject="Long thread", date=base, attachments=(("a.txt", "text/plain", b"a"),))
    conversation = first.conversation
    actions.conversation_assign(actor=cast.alice_membership, conversation=conversation, assignee=cast.bob_membership)
    actions.conversation_label(actor=cast.alice_membership, conversation=conversation, label=label)

    def reply(number: int) -> None:
        team_inbox.deliver(subject="Re: Long thread", in_reply_to="<m1@customer.example>", date=base + timedelta(minutes=number),
                           attachments=((f"part-{number}.txt", "text/plain", b"x"),), html=f"<p>Reply {number}</p>")  # fmt: skip

    reply(1)
    url = reverse("conversations:detail", args=["acme", conversation.pk])
    bob = client_as(cast.bob)
    bob.get(url)
    few = queries(bob, url)
    for number in range(2, 20):
        reply(number)
        actions.conversation_close(actor=cast.alice_membership, conversation=conversation)
        actions.conversation_reopen(actor=cast.alice_membership, conversation=conversation)
    assert Message.objects.filter(conversation=conversation).count() == 20
    many = queries(bob, url)
    assert "part-19.txt" in bob.get(url).content.decode()
    assert len(many) == len(few), "\n".join(many)


@pytest.mark.postgres
def test_the_pages_send_their_independent_reads_together(  # type: ignore[no-untyped-def]
    cast: Cast, client_as, team_inbox: TeamInbox, label: Label
) -> None:
    """On PostgreSQL a list page's rows' details, labels, members and sidebar go in one round
    trip (six queries), and the conversation page's thread, directory, timeline, links and
    sidebar in one (eight): ``core.rows.Reads``."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite answers in process: there is no round trip to save")
    conversation = team_inbox.deliver(subject="Round trips").conversation
    actions.conversation_label(actor=cast.alice_membership, conversation=conversation, label=label)
    bob = client_as(cast.bob)
    pages = {
        "list": reverse("conversations:team", args=["acme", team_inbox.team.pk]),
        "conversation": reverse("conversations:detail", args=["acme", conversation.pk]),
    }
    trips = {}
    for name, url in pages.items():
        bob.get(url)
        with round_trips() as seen:
            response = bob.get(url)
        assert response.status_code == 200
        assert "Round trips" in response.content.decode()
        trips[name] = (len(seen), trips_of(seen))
    assert trips["list"][1] == trips["list"][0] - 5, trips
    assert trips["conversation"][1] == trips["conversation"][0] - 7, trips
