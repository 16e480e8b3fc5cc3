"""The cast's mailboxes (Alice's and Bob's own, the Support team's mailbox) and a rule builder."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from postroom.conftest import Cast
from postroom.conversations.ingest import message_ingest
from postroom.conversations.models import Label, Message
from postroom.conversations.tests.conftest import build_raw, inbox_of
from postroom.mailboxes.models import Mailbox
from postroom.mailboxes.tests.factories import make_mailbox
from postroom.orgs.models import Membership, Team, TeamMembership
from postroom.rules import actions
from postroom.rules.models import Rule


@dataclass
class Place:
    cast: Cast
    support: Team
    support_mailbox: Mailbox
    alice_mailbox: Mailbox
    bob_mailbox: Mailbox
    billing: Label  # an organization label
    uid: int = 0

    def deliver(self, mailbox: Mailbox, **fields: Any) -> Message:
        self.uid += 1
        fields.setdefault("message_id", f"<m{self.uid}@customer.example>")
        fields.setdefault("subject", f"Question number {self.uid}")  # distinct: no threading by subject
        raw = build_raw(**fields)
        return message_ingest(mailbox=mailbox, folder=inbox_of(mailbox), uidvalidity=7, uid=self.uid, raw=raw).message


@pytest.fixture
def place(cast: Cast) -> Place:
    support = Team.objects.create(organization=cast.org_a, name="Support")
    TeamMembership.objects.create(team=support, membership=cast.bob_membership)
    TeamMembership.objects.create(team=support, membership=cast.carol_membership)
    support_mailbox = make_mailbox(cast.carol_membership, address="support@acme.test", team=support)
    return Place(
        cast=cast, support=support, support_mailbox=support_mailbox,
        alice_mailbox=make_mailbox(cast.alice_membership, address="alice@acme.test"),
        bob_mailbox=make_mailbox(cast.bob_membership, address="bob@acme.test"),
        billing=Label.objects.create(organization=cast.org_a, name="Billing"),
    )  # fmt: skip


@pytest.fixture
def make_rule() -> Callable[..., Rule]:
    def make(actor: Membership, *, organization: bool = False, name: str = "A rule", trigger: str = "incoming",
             conditions: list[Any] | None = None, actions_: list[Any] | None = None, **fields: Any) -> Rule:  # fmt: skip
        return actions.rule_create(
            actor=actor, organization=organization, name=name, trigger=trigger, conditions=conditions or [],
            actions=actions_ or [{"kind": "close"}], **fields,
        )  # fmt: skip

    return make
