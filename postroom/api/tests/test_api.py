"""The REST API's endpoints with the cast: behaviour, status codes, and every answer checked
against the OpenAPI document (see helpers.ApiClient)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import time_machine
from allauth.mfa.models import Authenticator
from django.utils import timezone

from postroom.api.tests.helpers import ApiClient
from postroom.audit.actions import audit_record
from postroom.audit.models import AuditEvent
from postroom.conftest import Cast
from postroom.orgs import actions
from postroom.orgs.models import Invitation, Membership, Organization, Team, TeamMembership
from postroom.orgs.policy import Role
from postroom.testing.factories import TeamFactory

pytestmark = pytest.mark.django_db


def test_me_lists_the_persons_organizations_and_second_factor(cast: Cast) -> None:
    response = ApiClient(cast.carol).get("/me")
    assert response.status_code == 200
    body = response.json()
    assert body["email"] == "carol@acme.test"
    assert body["has_2fa"] is False
    assert body["organizations"] == [{"slug": "acme", "name": "Acme Support", "role": "admin", "require_two_factor": False}]
    Authenticator.objects.create(user=cast.carol, type=Authenticator.Type.WEBAUTHN, data={})
    assert ApiClient(cast.carol).get("/me").json()["has_2fa"] is True


def test_members_list_shows_role_and_2fa_to_every_member(cast: Cast) -> None:
    Authenticator.objects.create(user=cast.alice, type=Authenticator.Type.TOTP, data={})
    # Recovery codes alone are not a second factor.
    Authenticator.objects.create(user=cast.bob, type=Authenticator.Type.RECOVERY_CODES, data={})
    response = ApiClient(cast.bob).get("/orgs/acme/members")
    assert response.status_code == 200
    rows = {row["email"]: row for row in response.json()["items"]}
    assert set(rows) == {"alice@acme.test", "bob@acme.test", "carol@acme.test"}
    assert (rows["alice@acme.test"]["role"], rows["alice@acme.test"]["has_2fa"]) == ("owner", True)
    assert (rows["bob@acme.test"]["role"], rows["bob@acme.test"]["has_2fa"]) == ("member", False)
    assert rows["carol@acme.test"]["id"] == cast.carol_membership.pk


def test_member_detail(cast: Cast) -> None:
    response = ApiClient(cast.bob).get(f"/orgs/acme/members/{cast.carol_membership.pk}")
    assert response.status_code == 200
    assert response.json()["role"] == "admin"


def test_r24_owner_changes_a_role_and_it_is_audited(cast: Cast) -> None:
    response = ApiClient(cast.alice).patch(f"/orgs/acme/members/{cast.bob_membership.pk}", {"role": "admin"})
    assert response.status_code == 200
    assert response.json()["role"] == "admin"
    cast.bob_membership.refresh_from_db()
    assert cast.bob_membership.role == Role.ADMIN
    event = AuditEvent.objects.get(action="member.role_changed")
    assert (event.actor_id, event.details) == (cast.alice.pk, {"from": "member", "to": "admin"})


@pytest.mark.parametrize(
    ("who", "target", "role"),
    [
        ("bob", "bob", "owner"),  # a member raising their own role
        ("bob", "carol", "member"),  # a member touching someone else
        ("carol", "carol", "owner"),  # an admin raising their own role
        ("carol", "bob", "owner"),  # an admin granting above their own role
        ("carol", "alice", "member"),  # an admin demoting an owner
        ("alice", "alice", "admin"),  # the (last) owner demoting herself
    ],
)
def test_r24_role_changes_that_are_refused_with_403(cast: Cast, who: str, target: str, role: str) -> None:
    before = dict(Membership.objects.values_list("pk", "role"))
    target_membership = getattr(cast, f"{target}_membership")
    response = ApiClient(getattr(cast, who)).patch(f"/orgs/acme/members/{target_membership.pk}", {"role": role})
    assert response.status_code == 403
    assert response.json()["detail"]
    assert dict(Membership.objects.values_list("pk", "role")) == before


def test_unknown_role_is_a_422_with_the_field_named(cast: Cast) -> None:
    response = ApiClient(cast.alice).patch(f"/orgs/acme/members/{cast.bob_membership.pk}", {"role": "superuser"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "role"


def test_r24_of_two_owners_one_may_demote_the_other_and_the_last_one_stays(cast: Cast) -> None:
    """With two owners, one may demote the other; then the remaining one is the last and stays."""
    actions.membership_change_role(actor=cast.alice_membership, membership=cast.carol_membership, role=Role.OWNER)
    assert ApiClient(cast.carol).patch(f"/orgs/acme/members/{cast.alice_membership.pk}", {"role": "member"}).status_code == 200
    response = ApiClient(cast.alice).patch(f"/orgs/acme/members/{cast.carol_membership.pk}", {"role": "member"})
    assert response.status_code == 403  # Alice is a member now: the role is read on every request
    assert Membership.objects.get(pk=cast.carol_membership.pk).role == Role.OWNER


def test_r24_removing_members_and_the_last_owner_leaving(cast: Cast) -> None:
    assert ApiClient(cast.carol).delete(f"/orgs/acme/members/{cast.alice_membership.pk}").status_code == 403
    response = ApiClient(cast.alice).delete(f"/orgs/acme/members/{cast.alice_membership.pk}")
    assert response.status_code == 422
    assert "last owner" in response.json()["detail"]
    assert ApiClient(cast.bob).delete(f"/orgs/acme/members/{cast.carol_membership.pk}").status_code == 403
    assert ApiClient(cast.carol).delete(f"/orgs/acme/members/{cast.bob_membership.pk}").status_code == 204
    assert not Membership.objects.filter(pk=cast.bob_membership.pk).exists()
    assert ApiClient(cast.carol).delete(f"/orgs/acme/members/{cast.carol_membership.pk}").status_code == 204  # leaving
    assert list(Membership.objects.filter(organization=cast.org_a).values_list("user__email", flat=True)) == ["alice@acme.test"]


def test_teams_create_rename_members_delete(cast: Cast) -> None:
    carol = ApiClient(cast.carol)
    created = carol.post("/orgs/acme/teams", {"name": "Support"})
    assert created.status_code == 201
    team_id = created.json()["id"]
    assert created.json() == {
        "id": team_id,
        "name": "Support",
        "member_count": 0,
        "created_at": created.json()["created_at"],
        "members": [],
    }
    assert carol.post("/orgs/acme/teams", {"name": "support"}).status_code == 422  # names are unique, ignoring case
    assert carol.post("/orgs/acme/teams", {"name": "   "}).status_code == 422
    assert carol.post("/orgs/acme/teams", {}).status_code == 422

    added = carol.post(f"/orgs/acme/teams/{team_id}/members", {"membership_id": cast.bob_membership.pk})
    assert added.status_code == 201
    assert [member["email"] for member in added.json()["members"]] == ["bob@acme.test"]
    assert added.json()["member_count"] == 1
    renamed = carol.patch(f"/orgs/acme/teams/{team_id}", {"name": "Customer care"})
    assert (renamed.status_code, renamed.json()["name"]) == (200, "Customer care")

    listed = ApiClient(cast.bob).get("/orgs/acme/teams")
    assert [(team["name"], team["member_count"]) for team in listed.json()["items"]] == [("Customer care", 1)]
    assert ApiClient(cast.bob).get(f"/orgs/acme/teams/{team_id}").status_code == 200

    assert carol.delete(f"/orgs/acme/teams/{team_id}/members/{cast.bob_membership.pk}").status_code == 204
    assert not TeamMembership.objects.exists()
    assert carol.delete(f"/orgs/acme/teams/{team_id}").status_code == 204
    assert not Team.objects.exists()


def test_a_member_cannot_manage_teams(cast: Cast) -> None:
    team = TeamFactory(organization=cast.org_a, name="Sales")
    bob = ApiClient(cast.bob)
    assert bob.post("/orgs/acme/teams", {"name": "Mine"}).status_code == 403
    assert bob.patch(f"/orgs/acme/teams/{team.pk}", {"name": "Mine"}).status_code == 403
    assert bob.post(f"/orgs/acme/teams/{team.pk}/members", {"membership_id": cast.bob_membership.pk}).status_code == 403
    assert bob.delete(f"/orgs/acme/teams/{team.pk}").status_code == 403
    assert list(Team.objects.values_list("name", flat=True)) == ["Sales"]
    assert not TeamMembership.objects.exists()


def test_invitations_create_list_revoke(cast: Cast, mailoutbox: list, django_capture_on_commit_callbacks) -> None:
    carol = ApiClient(cast.carol)
    with django_capture_on_commit_callbacks(execute=True):
        created = carol.post("/orgs/acme/invitations", {"email": "Dana@Example.test", "role": "admin"})
    assert created.status_code == 201
    body = created.json()
    assert (body["email"], body["role"], body["status"], body["invited_by"]) == ("dana@example.test", "admin", "pending", "carol@acme.test")
    assert "token" not in body
    assert "token_hash" not in body
    assert len(mailoutbox) == 1
    assert mailoutbox[0].to == ["dana@example.test"]

    assert [row["email"] for row in carol.get("/orgs/acme/invitations").json()["items"]] == ["dana@example.test"]
    assert carol.delete(f"/orgs/acme/invitations/{body['id']}").status_code == 204
    assert carol.get("/orgs/acme/invitations").json()["items"][0]["status"] == "revoked"
    again = carol.delete(f"/orgs/acme/invitations/{body['id']}")
    assert again.status_code == 422
    assert "already revoked" in again.json()["detail"]


def test_invitation_input_is_validated(cast: Cast) -> None:
    alice = ApiClient(cast.alice)
    assert alice.post("/orgs/acme/invitations", {"email": "not an address"}).json()["errors"][0]["field"] == "email"
    assert alice.post("/orgs/acme/invitations", {"email": "bob@acme.test"}).status_code == 422  # already a member
    assert alice.post("/orgs/acme/invitations", {"email": "x@example.test", "role": "emperor"}).status_code == 422
    assert ApiClient(cast.carol).post("/orgs/acme/invitations", {"email": "x@example.test", "role": "owner"}).status_code == 403
    assert ApiClient(cast.bob).post("/orgs/acme/invitations", {"email": "x@example.test"}).status_code == 403
    assert ApiClient(cast.bob).get("/orgs/acme/invitations").status_code == 403
    assert not Invitation.objects.exists()


def test_audit_log_pages_with_a_cursor(cast: Cast) -> None:
    for number in range(7):
        audit_record(action=f"test.event{number}", actor=cast.alice, organization=cast.org_a)
    audit_record(action="test.other_org", actor=cast.charlie, organization=cast.org_b)
    alice = ApiClient(cast.alice)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = {"limit": 3, "action": "test."} | ({"cursor": cursor} if cursor else {})
        page = alice.get("/orgs/acme/audit", **query).json()
        seen += [item["action"] for item in page["items"]]
        pages += 1
        cursor = page["next"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == [f"test.event{number}" for number in reversed(range(7))]


def test_audit_log_filters_and_refusals(cast: Cast) -> None:
    audit_record(action="member.removed", actor=cast.alice, organization=cast.org_a, target_label="bob@acme.test")
    audit_record(action="invitation.accept_refused", actor=cast.bob, organization=cast.org_a, result="denied")
    alice = ApiClient(cast.alice)
    assert [e["action"] for e in alice.get("/orgs/acme/audit", result="denied").json()["items"]] == ["invitation.accept_refused"]
    assert [e["action"] for e in alice.get("/orgs/acme/audit", person="bob@").json()["items"]] == [
        "invitation.accept_refused",
        "member.removed",
    ]
    today = timezone.now().date()
    assert len(alice.get("/orgs/acme/audit", until=str(today - timedelta(days=1))).json()["items"]) == 0
    assert alice.get("/orgs/acme/audit", cursor="abc").status_code == 422
    assert alice.get("/orgs/acme/audit", limit=1000).status_code == 422
    assert alice.get("/orgs/acme/audit", since="yesterday").status_code == 422
    assert ApiClient(cast.bob).get("/orgs/acme/audit").status_code == 403


def test_r24_expired_invitations_show_as_expired(cast: Cast) -> None:
    actions.invitation_create(actor=cast.alice_membership, email="late@example.test", role=Role.MEMBER)
    with time_machine.travel(timezone.now() + timedelta(days=7, seconds=1)):
        assert ApiClient(cast.alice).get("/orgs/acme/invitations").json()["items"][0]["status"] == "expired"


def test_r59_unsupported_methods_answer_405_in_json(cast: Cast) -> None:
    alice = ApiClient(cast.alice)
    for method, path in [
        ("PUT", "/orgs/acme/members"),
        ("POST", "/me"),
        ("PATCH", "/orgs/acme/audit"),
        ("PUT", f"/orgs/acme/members/{cast.bob_membership.pk}"),
    ]:
        response = alice.request(method, path)
        assert response.status_code == 405, (method, path)
        assert response.json()["detail"]


def test_r20_api_needs_a_session(cast: Cast) -> None:
    anonymous = ApiClient()
    assert anonymous.get("/me").status_code == 401
    assert anonymous.get("/orgs/acme/members").status_code == 401
    assert anonymous.post("/orgs/acme/teams", {"name": "x"}).status_code == 401
    assert not Team.objects.exists()


def test_r52_unsafe_methods_need_the_csrf_token(cast: Cast) -> None:
    without_token = ApiClient(cast.alice, csrf=False)
    response = without_token.post("/orgs/acme/teams", {"name": "Forged"})
    assert response.status_code == 403
    response = without_token.patch(f"/orgs/acme/members/{cast.bob_membership.pk}", {"role": "admin"})
    assert response.status_code == 403
    assert not Team.objects.exists()
    assert Membership.objects.get(pk=cast.bob_membership.pk).role == Role.MEMBER
    assert without_token.get("/orgs/acme/members").status_code == 200  # safe methods need no token


def test_openapi_document_is_served_to_signed_in_people_only(cast: Cast) -> None:
    from django.test import Client

    assert Client().get("/api/v1/openapi.json").status_code == 401
    client = Client()
    client.force_login(cast.bob, backend="allauth.account.auth_backends.AuthenticationBackend")
    document = client.get("/api/v1/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    assert "/api/v1/orgs/{slug}/audit" in document["paths"]


def test_the_organization_and_its_settings(cast: Cast) -> None:
    response = ApiClient(cast.bob).get("/orgs/acme")
    assert response.json() == {"slug": "acme", "name": "Acme Support", "role": "member", "require_two_factor": False}
    assert ApiClient(cast.bob).patch("/orgs/acme", {"name": "Mine"}).status_code == 403
    assert ApiClient(cast.charlie).get("/orgs/acme").status_code == 404
    carol = ApiClient(cast.carol)
    assert carol.patch("/orgs/acme", {"name": "Acme Care"}).json()["name"] == "Acme Care"
    assert carol.patch("/orgs/acme", {"name": ""}).status_code == 422
    assert carol.patch("/orgs/acme", {"require_two_factor": True}).json() == {
        "slug": "acme", "name": "Acme Care", "role": "admin", "require_two_factor": True,
    }
    # Carol has no second factor: from now on her session's API requests are refused, in JSON.
    refused = carol.get("/orgs/acme")
    assert refused.status_code == 403
    assert "two-factor" in refused.json()["detail"]
    event = AuditEvent.objects.filter(action="org.settings_changed").first()
    assert event is not None
    assert event.details == {"require_two_factor": True}


@pytest.mark.parametrize("body", [[], 5, "name", None, [{"name": "x"}]])
def test_a_body_that_is_not_an_object_is_refused(cast: Cast, body: object) -> None:
    response = ApiClient(cast.carol).request("PATCH", "/orgs/acme", json.dumps(body) if body is None else body)
    assert response.status_code in {400, 422}, response.content
    assert Organization.objects.get(pk=cast.org_a.pk).name == "Acme Support"


def test_a_body_that_is_not_json_is_a_400_that_says_so(cast: Cast) -> None:
    api = ApiClient(cast.carol)
    response = api.client.generic("POST", "/api/v1/orgs/acme/teams", b"{not json", content_type="application/json", headers=api.headers)
    assert response.status_code == 400
    assert response.json() == {"detail": "The request body is not valid JSON."}


def test_unknown_api_paths_answer_json(cast: Cast) -> None:
    response = ApiClient(cast.alice).client.get("/api/v1/no/such/thing")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["detail"]
