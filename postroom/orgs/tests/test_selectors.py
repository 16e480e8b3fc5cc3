"""Selectors of memberships that other apps' page blocks rely on."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.test.utils import CaptureQueriesContext

from postroom.conftest import Cast
from postroom.orgs.selectors import membership_of_viewer

pytestmark = pytest.mark.django_db


def test_the_viewers_membership_reuses_the_one_the_page_holds_only_when_it_is_theirs(cast: Cast) -> None:
    with CaptureQueriesContext(connection) as captured:
        assert membership_of_viewer(user=cast.alice, organization_id=cast.org_a.pk, known=cast.alice_membership) is cast.alice_membership
    assert len(captured) == 0
    # Someone else's membership, or one of another organization, is never taken for the viewer's.
    assert membership_of_viewer(user=cast.alice, organization_id=cast.org_a.pk, known=cast.bob_membership) == cast.alice_membership
    assert membership_of_viewer(user=cast.alice, organization_id=cast.org_b.pk, known=cast.alice_membership) is None
    assert membership_of_viewer(user=cast.charlie, organization_id=cast.org_a.pk, known=cast.alice_membership) is None
    assert membership_of_viewer(user=AnonymousUser(), organization_id=cast.org_a.pk, known=cast.alice_membership) is None


def test_member_names_match_organization_members(cast: Cast) -> None:
    """The bulk bar's constant query lists ``organization_members`` in its order, named as ``User.display_name`` names them."""
    from postroom.orgs.selectors import member_names_read, organization_members

    cast.carol.name = ""
    cast.carol.save(update_fields=["name"])
    for actor in (cast.alice_membership, cast.bob_membership, cast.charlie_membership):
        expected = [(member.pk, member.user.display_name) for member in organization_members(actor=actor)]
        assert [(member.pk, member.display_name) for member in member_names_read(actor=actor).alone()] == expected
    assert [member.display_name for member in member_names_read(actor=cast.bob_membership).alone()] == ["Alice Owner", "Bob Member", "carol"]
