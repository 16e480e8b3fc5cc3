"""Conversations for the cast: Alice's private one, and one shared with the Support team
(Alice and Bob active, Carol an observer). Charlie (organization B) sees neither."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from typing import cast as cast_to

import pytest

from postroom.comments import actions
from postroom.comments.models import Comment
from postroom.conftest import Cast
from postroom.conversations import actions as conversation_actions
from postroom.conversations.ingest import message_ingest
from postroom.conversations.models import Conversation
from postroom.conversations.tests.conftest import build_raw, inbox_of
from postroom.mailboxes.models import Mailbox
from postroom.mailboxes.tests.factories import make_mailbox
from postroom.orgs.models import Membership, Team, TeamMembership
from postroom.testing.factories import TeamFactory


@dataclass
class Scene:
    cast: Cast
    mailbox: Mailbox  # Alice's
    private: Conversation  # only Alice sees it
    shared: Conversation  # shared with Support
    support: Team
    sales: Team


def ingest_into(mailbox: Mailbox, uid: int, **fields: Any) -> Conversation:
    raw = build_raw(**fields)
    return message_ingest(mailbox=mailbox, folder=inbox_of(mailbox), uidvalidity=7, uid=uid, raw=raw).message.conversation


@pytest.fixture
def scene(cast: Cast, django_capture_on_commit_callbacks: Any) -> Scene:
    mailbox = make_mailbox(cast.alice_membership, address="alice@acme.test")
    private = ingest_into(mailbox, 1, subject="Private matter", message_id="<private@customer.example>")
    shared = ingest_into(mailbox, 2, subject="Shared order question", message_id="<shared@customer.example>")
    support = cast_to(Team, TeamFactory(organization=cast.org_a, name="Support"))
    sales = cast_to(Team, TeamFactory(organization=cast.org_a, name="Sales"))
    TeamMembership.objects.create(team=support, membership=cast.alice_membership)
    TeamMembership.objects.create(team=support, membership=cast.bob_membership)
    TeamMembership.objects.create(team=support, membership=cast.carol_membership, observer=True)
    TeamMembership.objects.create(team=sales, membership=cast.carol_membership)
    TeamMembership.objects.create(team=sales, membership=cast.bob_membership, observer=True)
    with django_capture_on_commit_callbacks(execute=True):
        conversation_actions.conversation_share(actor=cast.alice_membership, conversation=shared, team=support)
    return Scene(cast=cast, mailbox=mailbox, private=private, shared=shared, support=support, sales=sales)


@pytest.fixture
def comment_as(django_capture_on_commit_callbacks: Any) -> Callable[..., Comment]:
    """``comment_as(member, conversation, body)``: comment through the action, after-commit work run."""

    def make(member: Membership, conversation: Conversation, body: str, **options: Any) -> Comment:
        with django_capture_on_commit_callbacks(execute=True):
            return actions.comment_create(actor=member, conversation=conversation, body=body, **options)

    return make


def mention(member: Membership) -> str:
    return f"@[{member.user.display_name}](member:{member.pk})"


def team_mention(team: Team) -> str:
    return f"@[{team.name}](team:{team.pk})"
