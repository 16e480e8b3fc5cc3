"""Responses in every scope for the shared cast: Bob is in Support, Carol (admin) in Sales."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast as cast_to

import pytest

from postroom.conftest import Cast
from postroom.orgs.models import Team, TeamMembership

# Re-exported so that the send test finds the outbox fixtures (mailbox, queue, run_due).
from postroom.outbox.tests.conftest import conversation, mailbox, run_due  # noqa: F401
from postroom.responses import actions
from postroom.responses.models import Response, Scope
from postroom.testing.factories import TeamFactory


@dataclass
class Responses:
    support: Team
    sales: Team
    organization: Response
    support_team: Response
    sales_team: Response
    alice_personal: Response
    bob_personal: Response
    charlie_organization: Response


def make(actor, scope: str, name: str, *, team: Team | None = None, subject: str = "", body: str = "<p>Hello</p>") -> Response:  # type: ignore[no-untyped-def]
    return actions.response_create(
        actor=actor, scope=scope, team=team, content=actions.ResponseContent(name=name, subject=subject, body=body)
    )


@pytest.fixture
def responses(cast: Cast) -> Responses:
    support = cast_to(Team, TeamFactory(organization=cast.org_a, name="Support"))
    sales = cast_to(Team, TeamFactory(organization=cast.org_a, name="Sales"))
    TeamMembership.objects.create(team=support, membership=cast.bob_membership)
    TeamMembership.objects.create(team=sales, membership=cast.carol_membership)
    return Responses(
        support=support,
        sales=sales,
        organization=make(cast.carol_membership, Scope.ORGANIZATION, "Welcome", subject="Welcome to {{ organization_name }}"),
        support_team=make(
            cast.bob_membership,
            Scope.TEAM,
            "Refund",
            team=support,
            body="<p>Hi {{ recipient_first_name }}, order {{ input:Order number }}.</p>",
        ),
        sales_team=make(cast.carol_membership, Scope.TEAM, "Pricing", team=sales),
        alice_personal=make(cast.alice_membership, Scope.PERSONAL, "Alice's own"),
        bob_personal=make(cast.bob_membership, Scope.PERSONAL, "Bob's own"),
        charlie_organization=make(cast.charlie_membership, Scope.ORGANIZATION, "Beta welcome"),
    )
