"""The list rows and sidebar entries written in Python (``conversations.markup``): every value
from mail or from members is escaped (R28), and they carry what ``inbox.js`` and the live
updates read."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from postroom.conftest import Cast
from postroom.conversations import actions
from postroom.conversations.tests.conftest import TeamInbox
from postroom.orgs.actions import team_create, team_member_add

pytestmark = pytest.mark.django_db

HOSTILE = "\"'><script>alert(1)</script><b onmouseover=x>&amp;"
ESCAPED = "&quot;&#x27;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;b onmouseover=x&gt;&amp;amp;"
# A display name in a From header cannot hold a bare double quote.
HOSTILE_NAME = "'><script>alert(1)</script><b onmouseover=x>&amp;"
ESCAPED_NAME = "&#x27;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;b onmouseover=x&gt;&amp;amp;"


def test_r28_every_value_of_a_row_is_escaped(cast: Cast, client_as, team_inbox: TeamInbox) -> None:  # type: ignore[no-untyped-def]
    message = team_inbox.deliver(
        subject=f"Subject {HOSTILE}", sender=f'"Sender {HOSTILE_NAME}" <dana@customer.example>', text=f"Snippet {HOSTILE}\n"
    )
    label = actions.label_create(actor=cast.alice_membership, name=f"Label {HOSTILE}", personal=True)
    actions.conversation_label(actor=cast.alice_membership, conversation=message.conversation, label=label)
    cast.bob.name = f"Bob {HOSTILE}"
    cast.bob.save(update_fields=["name"])
    actions.conversation_assign(actor=cast.alice_membership, conversation=message.conversation, assignee=cast.bob_membership)
    html = client_as(cast.alice).get(reverse("conversations:list", args=["acme"]), {"list": HOSTILE}).content.decode()
    row = html.split(f'id="row-{message.conversation_id}"')[1].split("</li>")[0]
    for shown in ("Subject", "Snippet", "Label", "Assigned to Bob"):
        assert f"{shown} {ESCAPED}" in row, shown
    assert f'<span class="row-sender-name">Sender {ESCAPED_NAME}</span>' in row
    assert f'title="Assigned to Bob {ESCAPED}"' in row  # inside an attribute too
    assert "<script" not in row
    assert "<b " not in row


def test_a_row_carries_what_the_page_script_reads(cast: Cast, client_as, team_inbox: TeamInbox) -> None:  # type: ignore[no-untyped-def]
    message = team_inbox.deliver(subject="Lost parcel")
    team = team_inbox.team.pk
    html = client_as(cast.bob).get(reverse("conversations:team", args=["acme", team])).content.decode()
    row = html.split(f'id="row-{message.conversation_id}"')[1].split("</li>")[0]
    detail = reverse("conversations:detail", args=["acme", message.conversation_id])
    assert f'data-row data-url="{detail}"' in row
    assert f'href="{detail}?list=team%3A{team}" data-row-link' in row
    assert f'value="{message.conversation_id}" form="bulk-form" data-row-check' in row
    assert re.search(
        r'<span class="row-actions" hidden data-row-actions>.*data-row-action="archive".*data-row-action="read".*data-row-action="trash"',
        row,
        re.S,
    )


def test_r28_a_team_name_in_the_sidebar_is_escaped(cast: Cast, client_as, team_inbox: TeamInbox) -> None:  # type: ignore[no-untyped-def]
    team = team_create(actor=cast.alice_membership, name=f"Team {HOSTILE}")
    team_member_add(actor=cast.alice_membership, team=team, membership=cast.alice_membership)
    team_inbox.deliver(subject="Unread")
    html = client_as(cast.alice).get(reverse("conversations:team", args=["acme", team.pk])).content.decode()
    entry = html.split(f'data-nav-key="team:{team.pk}"')[1].split("</a>")[0]
    assert f'<span class="nav-text">Team {ESCAPED}</span>' in entry
    assert "<script" not in entry
    current = html.split(f'data-nav-key="team:{team.pk}"')[0].rsplit("<a ", 1)[1]
    assert 'aria-current="page"' in current
    inbox = html.split('data-nav-key="inbox"')[1].split("</a>")[0]
    assert '<span class="count">1<span class="visually-hidden"> unread</span></span>' in inbox
