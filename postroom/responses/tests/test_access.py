"""Who sees and who manages which response, on the pages and in the API (R21, R22).

Cast: Alice owns Acme, Carol is an admin (in the Sales team), Bob a member (in Support),
Charlie owns Beta. Everything of Acme is missing (404) for Charlie, and Beta's for Alice.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from postroom.api.tests.helpers import ApiClient
from postroom.conftest import Cast
from postroom.orgs.models import TeamMembership
from postroom.responses import selectors
from postroom.responses.models import Response, Scope
from postroom.responses.tests.conftest import Responses

pytestmark = pytest.mark.django_db


def visible_names(membership: Any) -> set[str]:
    return {response.name or "" for response in selectors.responses_visible_to(actor=membership)}


def test_who_sees_what(cast: Cast, responses: Responses) -> None:
    assert visible_names(cast.bob_membership) == {"Welcome", "Refund", "Bob's own"}
    # Admins and owners see every team's (they manage teams), never another member's personal ones.
    assert visible_names(cast.alice_membership) == {"Welcome", "Refund", "Pricing", "Alice's own"}
    assert visible_names(cast.carol_membership) == {"Welcome", "Refund", "Pricing"}
    assert visible_names(cast.charlie_membership) == {"Beta welcome"}


def test_a_personal_response_is_invisible_to_a_teammate(cast: Cast, responses: Responses, client_as: Any) -> None:
    url = reverse("responses:edit", args=["acme", responses.alice_personal.pk])
    assert client_as(cast.alice).get(url).status_code == 200
    for user in (cast.bob, cast.carol):
        assert client_as(user).get(url).status_code == 404
        assert client_as(user).post(reverse("responses:delete", args=["acme", responses.alice_personal.pk])).status_code == 404
        assert ApiClient(user).get(f"/orgs/acme/responses/{responses.alice_personal.pk}").status_code == 404
        assert ApiClient(user).post(f"/orgs/acme/responses/{responses.alice_personal.pk}/render", {}).status_code == 404
    assert "Alice&#x27;s own" not in client_as(cast.bob).get(reverse("responses:list", args=["acme"])).content.decode()
    assert Response.objects.filter(pk=responses.alice_personal.pk).exists()


def test_a_teams_response_is_invisible_to_members_of_other_teams(cast: Cast, responses: Responses, client_as: Any) -> None:
    url = reverse("responses:edit", args=["acme", responses.sales_team.pk])
    assert client_as(cast.bob).get(url).status_code == 404
    assert client_as(cast.bob).post(url, {"name": "Hijacked", "scope": "team", "team": responses.sales.pk}).status_code == 404
    assert ApiClient(cast.bob).patch(f"/orgs/acme/responses/{responses.sales_team.pk}", {"name": "Hijacked"}).status_code == 404
    assert ApiClient(cast.bob).delete(f"/orgs/acme/responses/{responses.sales_team.pk}").status_code == 404
    listed = ApiClient(cast.bob).get("/orgs/acme/responses").json()["items"]
    assert {item["name"] for item in listed} == {"Welcome", "Refund", "Bob's own"}
    assert Response.objects.get(pk=responses.sales_team.pk).name == "Pricing"


def test_everything_is_missing_for_the_other_organization(cast: Cast, responses: Responses, client_as: Any) -> None:
    charlie = ApiClient(cast.charlie)
    for response in (responses.organization, responses.support_team, responses.alice_personal):
        assert client_as(cast.charlie).get(reverse("responses:edit", args=["acme", response.pk])).status_code == 404
        assert client_as(cast.charlie).get(reverse("responses:edit", args=["beta", response.pk])).status_code == 404
        assert charlie.get(f"/orgs/beta/responses/{response.pk}").status_code == 404
        assert charlie.get(f"/orgs/acme/responses/{response.pk}").status_code == 404
        assert charlie.delete(f"/orgs/beta/responses/{response.pk}").status_code == 404
        assert charlie.post(f"/orgs/beta/responses/{response.pk}/render", {}).status_code == 404
    assert client_as(cast.charlie).get(reverse("responses:list", args=["acme"])).status_code == 404
    assert charlie.get("/orgs/acme/responses").status_code == 404
    # And Beta's response is missing for Acme's owner, with Acme's slug.
    assert ApiClient(cast.alice).get(f"/orgs/acme/responses/{responses.charlie_organization.pk}").status_code == 404
    assert Response.objects.count() == 6


def test_a_member_cannot_create_or_edit_organization_responses(cast: Cast, responses: Responses, client_as: Any) -> None:
    bob = ApiClient(cast.bob)
    assert bob.post("/orgs/acme/responses", {"name": "Mine", "scope": "organization"}).status_code == 403
    assert bob.patch(f"/orgs/acme/responses/{responses.organization.pk}", {"name": "Changed"}).status_code == 403
    assert bob.delete(f"/orgs/acme/responses/{responses.organization.pk}").status_code == 403
    page = client_as(cast.bob)
    assert page.get(reverse("responses:edit", args=["acme", responses.organization.pk])).status_code == 200  # to read it
    assert (
        page.post(
            reverse("responses:edit", args=["acme", responses.organization.pk]), {"name": "Changed", "scope": "organization"}
        ).status_code
        == 403
    )
    assert page.post(reverse("responses:delete", args=["acme", responses.organization.pk])).status_code == 403
    # A member cannot promote a personal response to the organization either.
    assert bob.patch(f"/orgs/acme/responses/{responses.bob_personal.pk}", {"scope": "organization"}).status_code == 403
    assert Response.objects.get(pk=responses.organization.pk).name == "Welcome"
    assert Response.objects.get(pk=responses.bob_personal.pk).scope == Scope.PERSONAL
    assert not Response.objects.filter(organization=cast.org_a, scope=Scope.ORGANIZATION).exclude(pk=responses.organization.pk).exists()
    # Admins can.
    assert ApiClient(cast.carol).patch(f"/orgs/acme/responses/{responses.organization.pk}", {"name": "Hello"}).status_code == 200


def test_team_responses_are_managed_by_the_teams_members(cast: Cast, responses: Responses) -> None:
    bob = ApiClient(cast.bob)
    assert bob.patch(f"/orgs/acme/responses/{responses.support_team.pk}", {"name": "Refunds"}).status_code == 200
    # Sales is a team Bob is not in: writing for it is refused.
    assert bob.post("/orgs/acme/responses", {"name": "X", "scope": "team", "team_id": responses.sales.pk}).status_code == 403
    # An observer of a team reads its responses but does not change them.
    TeamMembership.objects.filter(team=responses.support, membership=cast.bob_membership).update(observer=True)
    assert bob.get(f"/orgs/acme/responses/{responses.support_team.pk}").json()["can_manage"] is False
    assert bob.patch(f"/orgs/acme/responses/{responses.support_team.pk}", {"name": "Again"}).status_code == 403
    # Another organization's team id is not accepted.
    other_team = cast.org_b.teams.create(name="Beta team")
    refused = ApiClient(cast.carol).post("/orgs/acme/responses", {"name": "X", "scope": "team", "team_id": other_team.pk})
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "team_id"


def test_a_personal_response_is_managed_only_by_its_owner_even_against_the_owner_role(cast: Cast, responses: Responses) -> None:
    assert ApiClient(cast.alice).delete(f"/orgs/acme/responses/{responses.bob_personal.pk}").status_code == 404
    assert ApiClient(cast.bob).delete(f"/orgs/acme/responses/{responses.bob_personal.pk}").status_code == 204
    assert not Response.objects.filter(pk=responses.bob_personal.pk).exists()
