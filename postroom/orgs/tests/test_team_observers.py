"""Team members are active (notified) or observers (see the team's conversations, not notified):
admins switch it on the team page, and the change is audited."""

from __future__ import annotations

import pytest
from django.urls import reverse

from postroom.audit.models import AuditEvent
from postroom.conftest import Cast
from postroom.orgs import actions
from postroom.orgs.models import TeamMembership

pytestmark = pytest.mark.django_db


def test_an_admin_adds_an_observer_and_switches_members_between_active_and_observer(cast: Cast, client_as) -> None:  # type: ignore[no-untyped-def]
    team = actions.team_create(actor=cast.alice_membership, name="Support")
    update = reverse("orgs:team_update", args=["acme", team.pk])
    carol = client_as(cast.carol)
    assert carol.post(update, {"operation": "add", "membership": cast.bob_membership.pk, "observer": "on"}).status_code == 302
    link = TeamMembership.objects.get(team=team, membership=cast.bob_membership)
    assert link.observer
    page = carol.get(reverse("orgs:team", args=["acme", team.pk])).content.decode()
    assert "Observer</span>" in page
    assert "Make active" in page
    carol.post(update, {"operation": "active", "membership": cast.bob_membership.pk})
    link.refresh_from_db()
    assert not link.observer
    carol.post(update, {"operation": "observer", "membership": cast.bob_membership.pk})
    link.refresh_from_db()
    assert link.observer
    changes = AuditEvent.objects.filter(action="team.member_observer_set").order_by("pk")
    assert [event.details["observer"] for event in changes] == [False, True]


def test_only_admins_switch_and_never_for_someone_outside_the_team(cast: Cast, client_as) -> None:  # type: ignore[no-untyped-def]
    team = actions.team_create(actor=cast.alice_membership, name="Support")
    actions.team_member_add(actor=cast.alice_membership, team=team, membership=cast.bob_membership)
    update = reverse("orgs:team_update", args=["acme", team.pk])
    assert client_as(cast.bob).post(update, {"operation": "observer", "membership": cast.bob_membership.pk}).status_code == 403
    assert not TeamMembership.objects.get(team=team, membership=cast.bob_membership).observer
    response = client_as(cast.alice).post(update, {"operation": "observer", "membership": cast.carol_membership.pk}, follow=True)
    assert "Carol Admin is not in this team." in response.content.decode()
    assert not TeamMembership.objects.filter(team=team, membership=cast.carol_membership).exists()
    assert client_as(cast.alice).post(update, {"operation": "observer", "membership": cast.charlie_membership.pk}).status_code == 404
