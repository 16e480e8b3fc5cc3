"""A mailbox becomes a team mailbox (everything it receives from then on is shared with the team)
or a personal one again, from the mailbox list: by its owner or an admin, audited."""

from __future__ import annotations

import pytest
from django.urls import reverse

from postroom.audit.models import AuditEvent
from postroom.conftest import Cast
from postroom.mailboxes.models import Mailbox
from postroom.mailboxes.tests.factories import make_mailbox
from postroom.orgs import actions
from postroom.testing.factories import TeamFactory

pytestmark = pytest.mark.django_db


def team_url(mailbox: Mailbox, slug: str = "acme") -> str:
    return reverse("mailboxes:team", args=[slug, mailbox.pk])


def test_the_owner_makes_a_mailbox_a_team_mailbox_and_personal_again(cast: Cast, client_as) -> None:  # type: ignore[no-untyped-def]
    mailbox = make_mailbox(cast.bob_membership, address="support@acme.test")
    team = actions.team_create(actor=cast.alice_membership, name="Support")
    bob = client_as(cast.bob)
    refused = bob.post(team_url(mailbox), {"team": team.pk}, follow=True)
    assert "The mailbox&#x27;s owner must be in the team Support first." in refused.content.decode()
    mailbox.refresh_from_db()
    assert mailbox.team is None
    actions.team_member_add(actor=cast.alice_membership, team=team, membership=cast.bob_membership)
    assert bob.post(team_url(mailbox), {"team": team.pk}).status_code == 302
    mailbox.refresh_from_db()
    assert mailbox.team == team
    listing = bob.get(reverse("mailboxes:list", args=["acme"])).content.decode()
    assert f'<option value="{team.pk}" selected>Team Support</option>' in listing
    bob.post(team_url(mailbox), {"team": ""})
    mailbox.refresh_from_db()
    assert mailbox.team is None
    assert [event.details["team_id"] for event in AuditEvent.objects.filter(action="mailbox.team_set").order_by("pk")] == [team.pk, None]


def test_r21_someone_elses_mailbox_or_another_organizations_team_is_404(cast: Cast, client_as) -> None:  # type: ignore[no-untyped-def]
    mailbox = make_mailbox(cast.bob_membership, address="support@acme.test")
    team = actions.team_create(actor=cast.alice_membership, name="Support")
    actions.team_member_add(actor=cast.alice_membership, team=team, membership=cast.bob_membership)
    foreign_team = TeamFactory(organization=cast.org_b)
    bob = client_as(cast.bob)
    assert bob.post(team_url(mailbox), {"team": foreign_team.pk}).status_code == 404
    assert bob.post(team_url(mailbox), {"team": "x"}).status_code == 404
    alices = make_mailbox(cast.alice_membership, address="alice@acme.test")
    assert bob.post(team_url(alices), {"team": team.pk}).status_code == 404
    assert client_as(cast.charlie).post(team_url(mailbox), {"team": team.pk}).status_code == 404
    assert client_as(cast.charlie).post(team_url(mailbox, "beta"), {"team": team.pk}).status_code == 404
    assert Mailbox.objects.filter(team__isnull=False).count() == 0
    # An admin may set any mailbox of the organization.
    assert client_as(cast.carol).post(team_url(mailbox), {"team": team.pk}).status_code == 302
    mailbox.refresh_from_db()
    assert mailbox.team == team
