"""SECURITY.md R22: one policy table drives pages and API alike, and generates the documentation.

The matrix below runs every organization action as each role of the cast (owner, admin,
member) and as an outsider, through the page and through the API, and asserts the status
and whether the database changed. What is expected comes from ``POLICY`` itself: change the
table and this test follows; change a view without the table and it fails.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse

from postroom.accounts.models import User
from postroom.api.tests.helpers import ApiClient
from postroom.audit.models import AuditEvent
from postroom.conftest import Cast
from postroom.contacts.models import ContactBook
from postroom.orgs import actions
from postroom.orgs.management.commands.permissions_doc import DOC_PATH
from postroom.orgs.models import Invitation, Membership, Organization, Team, TeamMembership
from postroom.orgs.policy import POLICY, Permission, Role, permissions_markdown
from postroom.responses.actions import ResponseContent, response_create
from postroom.responses.models import Response, Scope
from postroom.testing.factories import MembershipFactory, TeamFactory

pytestmark = pytest.mark.django_db


@dataclass
class Scene:
    cast: Cast
    eve: Membership  # a plain member every manage action targets
    team: Team
    invitation: Invitation

    def actor(self, who: str) -> User:
        return {"owner": self.cast.alice, "admin": self.cast.carol, "member": self.cast.bob, "outsider": self.cast.charlie}[who]


@pytest.fixture
def scene(cast: Cast) -> Scene:
    eve = MembershipFactory(organization=cast.org_a, user__email="eve@acme.test", role=Role.MEMBER)
    team = TeamFactory(organization=cast.org_a, name="Ops")
    invitation, _token = actions.invitation_create(actor=cast.alice_membership, email="pending@example.test", role=Role.MEMBER)
    return Scene(cast=cast, eve=eve, team=team, invitation=invitation)


Request = Callable[[Scene], tuple[str, str, dict[str, Any] | None]]


@dataclass(frozen=True)
class Case:
    name: str
    permission: Permission
    page: Request | None
    api: Request | None
    took_effect: Callable[[Scene], bool] | None  # None: a read

    def __str__(self) -> str:
        return self.name


def _eve_role(scene: Scene) -> str:
    return Membership.objects.get(pk=scene.eve.pk).role


def _organization_response(scene: Scene) -> Response:
    """The organization's one response (made by its owner the first time it is asked for)."""
    existing = Response.objects.filter(organization=scene.cast.org_a, scope=Scope.ORGANIZATION).first()
    return existing or response_create(
        actor=scene.cast.alice_membership, scope=Scope.ORGANIZATION, content=ResponseContent(name="Greeting", body="<p>Hi</p>")
    )


CASES = [
    Case(
        "list members", Permission.VIEW_MEMBERS,
        lambda s: ("GET", reverse("orgs:members", args=["acme"]), None),
        lambda s: ("GET", "/orgs/acme/members", None), None,
    ),
    Case(
        "see a team", Permission.VIEW_MEMBERS,
        lambda s: ("GET", reverse("orgs:team", args=["acme", s.team.pk]), None),
        lambda s: ("GET", f"/orgs/acme/teams/{s.team.pk}", None), None,
    ),
    Case(
        "make a member admin", Permission.MANAGE_MEMBERS,
        lambda s: ("POST", reverse("orgs:member_role", args=["acme", s.eve.pk]), {"role": "admin"}),
        lambda s: ("PATCH", f"/orgs/acme/members/{s.eve.pk}", {"role": "admin"}),
        lambda s: _eve_role(s) == Role.ADMIN,
    ),
    Case(
        "make a member owner", Permission.MANAGE_OWNERS,
        lambda s: ("POST", reverse("orgs:member_role", args=["acme", s.eve.pk]), {"role": "owner"}),
        lambda s: ("PATCH", f"/orgs/acme/members/{s.eve.pk}", {"role": "owner"}),
        lambda s: _eve_role(s) == Role.OWNER,
    ),
    Case(
        "remove a member", Permission.MANAGE_MEMBERS,
        lambda s: ("POST", reverse("orgs:member_remove", args=["acme", s.eve.pk]), {}),
        lambda s: ("DELETE", f"/orgs/acme/members/{s.eve.pk}", None),
        lambda s: not Membership.objects.filter(pk=s.eve.pk).exists(),
    ),
    Case(
        "create a team", Permission.MANAGE_TEAMS,
        lambda s: ("POST", reverse("orgs:teams", args=["acme"]), {"name": "Night shift"}),
        lambda s: ("POST", "/orgs/acme/teams", {"name": "Night shift"}),
        lambda s: Team.objects.filter(name="Night shift", organization=s.cast.org_a).exists(),
    ),
    Case(
        "rename a team", Permission.MANAGE_TEAMS,
        lambda s: ("POST", reverse("orgs:team_update", args=["acme", s.team.pk]), {"operation": "rename", "name": "Renamed"}),
        lambda s: ("PATCH", f"/orgs/acme/teams/{s.team.pk}", {"name": "Renamed"}),
        lambda s: Team.objects.get(pk=s.team.pk).name == "Renamed",
    ),
    Case(
        "add a team member", Permission.MANAGE_TEAMS,
        lambda s: ("POST", reverse("orgs:team_update", args=["acme", s.team.pk]), {"operation": "add", "membership": s.eve.pk}),
        lambda s: ("POST", f"/orgs/acme/teams/{s.team.pk}/members", {"membership_id": s.eve.pk}),
        lambda s: TeamMembership.objects.filter(team=s.team, membership=s.eve).exists(),
    ),
    Case(
        "delete a team", Permission.MANAGE_TEAMS,
        lambda s: ("POST", reverse("orgs:team_update", args=["acme", s.team.pk]), {"operation": "delete"}),
        lambda s: ("DELETE", f"/orgs/acme/teams/{s.team.pk}", None),
        lambda s: not Team.objects.filter(pk=s.team.pk).exists(),
    ),
    Case(
        "list invitations", Permission.INVITE,
        lambda s: ("GET", reverse("orgs:invitations", args=["acme"]), None),
        lambda s: ("GET", "/orgs/acme/invitations", None), None,
    ),
    Case(
        "invite someone", Permission.INVITE,
        lambda s: ("POST", reverse("orgs:invitations", args=["acme"]), {"email": "new@example.test", "role": "member"}),
        lambda s: ("POST", "/orgs/acme/invitations", {"email": "new@example.test", "role": "member"}),
        lambda s: Invitation.objects.filter(email="new@example.test").exists(),
    ),
    Case(
        "revoke an invitation", Permission.INVITE,
        lambda s: ("POST", reverse("orgs:invitation_revoke", args=["acme", s.invitation.pk]), {}),
        lambda s: ("DELETE", f"/orgs/acme/invitations/{s.invitation.pk}", None),
        lambda s: Invitation.objects.get(pk=s.invitation.pk).revoked_at is not None,
    ),
    Case(
        "read the audit log", Permission.VIEW_AUDIT_LOG,
        lambda s: ("GET", reverse("audit:log", args=["acme"]), None),
        lambda s: ("GET", "/orgs/acme/audit", None), None,
    ),
    Case(
        "export the audit log", Permission.VIEW_AUDIT_LOG,
        lambda s: ("POST", reverse("audit:export", args=["acme"]), {}),
        None,
        lambda s: AuditEvent.objects.filter(action="audit.exported").exists(),
    ),
    Case(
        "require two-factor authentication", Permission.MANAGE_SETTINGS,
        lambda s: ("POST", reverse("orgs:settings", args=["acme"]), {"name": "Acme Support", "require_two_factor": "on"}),
        None,
        lambda s: Organization.objects.get(pk=s.cast.org_a.pk).require_two_factor,
    ),
    Case(
        "create an organization contact book", Permission.MANAGE_ORGANIZATION_CONTACTS,
        lambda s: ("POST", reverse("contacts:books", args=["acme"]), {"name": "Everyone", "kind": "organization"}),
        lambda s: ("POST", "/orgs/acme/contact-books", {"name": "Everyone", "kind": "organization"}),
        lambda s: ContactBook.objects.filter(name="Everyone", kind="organization", organization=s.cast.org_a).exists(),
    ),
    Case(
        "create an organization response", Permission.MANAGE_ORGANIZATION_RESPONSES,
        lambda s: ("POST", reverse("responses:new", args=["acme"]), {"name": "Greeting", "scope": "organization"}),
        lambda s: ("POST", "/orgs/acme/responses", {"name": "Greeting", "scope": "organization"}),
        lambda s: Response.objects.filter(organization=s.cast.org_a, scope=Scope.ORGANIZATION).exists(),
    ),
    Case(
        "change an organization response", Permission.MANAGE_ORGANIZATION_RESPONSES,
        lambda s: ("POST", reverse("responses:edit", args=["acme", _organization_response(s).pk]), {"name": "Changed", "scope": "organization"}),
        lambda s: ("PATCH", f"/orgs/acme/responses/{_organization_response(s).pk}", {"name": "Changed"}),
        lambda s: _organization_response(s).name == "Changed",
    ),
    Case(
        "delete an organization response", Permission.MANAGE_ORGANIZATION_RESPONSES,
        lambda s: ("POST", reverse("responses:delete", args=["acme", _organization_response(s).pk]), {}),
        lambda s: ("DELETE", f"/orgs/acme/responses/{_organization_response(s).pk}", None),
        lambda s: not Response.objects.filter(organization=s.cast.org_a).exists(),
    ),
]
WHO = ["owner", "admin", "member", "outsider"]


def _expected_allowed(case: Case, who: str) -> bool:
    return who != "outsider" and Role(who) in POLICY[case.permission]


def _assert_outcome(case: Case, who: str, scene: Scene, status: int, allowed_statuses: set[int]) -> None:
    if who == "outsider":
        assert status == 404, f"{case} as an outsider: {status}"
    elif _expected_allowed(case, who):
        assert status in allowed_statuses, f"{case} as {who}: {status}"
    else:
        assert status == 403, f"{case} as {who}: {status}"
    if case.took_effect is not None:
        assert case.took_effect(scene) == _expected_allowed(case, who), f"{case} as {who}: the database says otherwise"


@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize("case", [case for case in CASES if case.page], ids=str)
def test_r22_role_matrix_on_pages(scene: Scene, case: Case, who: str) -> None:
    assert case.page is not None
    method, url, data = case.page(scene)
    client = Client()
    client.force_login(scene.actor(who), backend="allauth.account.auth_backends.AuthenticationBackend")
    response = client.get(url) if method == "GET" else client.post(url, data or {})
    _assert_outcome(case, who, scene, response.status_code, {200, 302})


@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize("case", [case for case in CASES if case.api], ids=str)
def test_r22_role_matrix_on_the_api(scene: Scene, case: Case, who: str) -> None:
    assert case.api is not None
    method, path, body = case.api(scene)
    response = ApiClient(scene.actor(who)).request(method, path, body)
    _assert_outcome(case, who, scene, response.status_code, {200, 201, 204})


def test_r22_every_permission_is_exercised_by_the_matrix() -> None:
    assert {case.permission for case in CASES} == set(Permission)


def test_r22_permissions_doc_is_generated_from_the_policy_table() -> None:
    committed = DOC_PATH.read_text(encoding="utf-8")
    assert committed == permissions_markdown(), "run `postroom manage permissions_doc` and commit docs/permissions.md"
    call_command("permissions_doc", "--check")
    for permission, roles in POLICY.items():
        row = next(line for line in committed.splitlines() if line.startswith(f"| `{permission.value}` |"))
        assert row.count("| yes ") == len(roles)


def test_r22_permissions_doc_check_fails_when_the_page_drifts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(POLICY, Permission.VIEW_AUDIT_LOG, frozenset({Role.OWNER, Role.ADMIN, Role.MEMBER}))
    with pytest.raises(CommandError, match="out of date"):
        call_command("permissions_doc", "--check")
