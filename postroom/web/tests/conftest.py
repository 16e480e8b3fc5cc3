from __future__ import annotations

import pytest

from postroom.conftest import Cast
from postroom.orgs.actions import invitation_create
from postroom.testing.factories import TeamFactory
from postroom.web.tests.routes import Route, all_routes


@pytest.fixture
def routes(cast: Cast) -> list[Route]:
    """Every route, with parameters that name real objects of organization A."""
    team = TeamFactory(organization=cast.org_a, name="Support")
    invitation, token = invitation_create(actor=cast.alice_membership, email="dana@acme.test", role="member")
    values = {
        "slug": cast.org_a.slug,
        "membership_id": str(cast.bob_membership.pk),
        "team_id": str(team.pk),
        "invitation_id": str(invitation.pk),
        "token": token,
        "key": "Mg:1tXkqv:not-a-real-key",
        "uidb36": "1",
        "provider_id": "no-such-provider",
    }
    return all_routes(values)
