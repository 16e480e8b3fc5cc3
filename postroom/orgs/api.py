"""API for the signed-in person, organizations' members, teams and invitations.

Same shape as the pages: parse (typed schemas) → access (selectors: 404 outside one's
organizations, 403 when the role does not allow) → action → typed answer. Input schemas list
the fields a client may write and ignore any other (organization, is_staff, password, …);
output schemas are built field by field, so hashes and tokens can never slip into an answer.
"""

from __future__ import annotations

from datetime import datetime

from django.http import Http404, HttpRequest
from ninja import Field, Query, Router, Schema, Status

from postroom.accounts.models import User
from postroom.api.errors import ERRORS
from postroom.api.pagination import Page, PageParams, paginate
from postroom.api.schemas import Input
from postroom.orgs import actions, selectors
from postroom.orgs.models import Invitation, InvitationStatus, Membership, Team, TeamMembership
from postroom.orgs.policy import Permission, Role

router = Router(tags=["organizations"])



class OrganizationOut(Schema):
    slug: str
    name: str
    role: Role
    require_two_factor: bool


class OrganizationPatch(Input):
    name: str | None = Field(None, min_length=1, max_length=120, description="Leave out to keep the name.")
    require_two_factor: bool | None = Field(None, description="Leave out to keep the setting.")


class MeOut(Schema):
    id: int
    email: str
    name: str
    has_2fa: bool
    organizations: list[OrganizationOut]


class MemberOut(Schema):
    id: int = Field(description="The membership id, used in the member URLs.")
    email: str
    name: str
    role: Role
    has_2fa: bool
    joined_at: datetime


class MemberPage(Page[MemberOut]):
    """One page of members, by email address."""


class MemberPatch(Input):
    role: Role


class TeamOut(Schema):
    id: int
    name: str
    member_count: int
    created_at: datetime


class TeamPage(Page[TeamOut]):
    """One page of teams, by name."""


class TeamMemberOut(Schema):
    id: int = Field(description="The membership id.")
    email: str
    name: str


class TeamDetailOut(TeamOut):
    members: list[TeamMemberOut]


class TeamIn(Input):
    name: str = Field(min_length=1, max_length=80)


class TeamMemberIn(Input):
    membership_id: int


class InvitationOut(Schema):
    id: int
    email: str
    role: Role
    status: InvitationStatus
    invited_by: str | None
    created_at: datetime
    expires_at: datetime


class InvitationPage(Page[InvitationOut]):
    """One page of invitations, newest first."""


class InvitationIn(Input):
    email: str = Field(min_length=3, max_length=254)
    role: Role = Role.MEMBER


def _member_out(membership: Membership) -> MemberOut:
    return MemberOut(
        id=membership.pk, email=membership.user.email, name=membership.user.display_name, role=Role(membership.role),
        has_2fa=bool(getattr(membership, "has_two_factor", False)), joined_at=membership.created_at,
    )


def _team_out(team: Team) -> TeamOut:
    return TeamOut(id=team.pk, name=team.name, member_count=getattr(team, "member_count", 0), created_at=team.created_at)


def _team_member_out(link: TeamMembership) -> TeamMemberOut:
    return TeamMemberOut(id=link.membership_id, email=link.membership.user.email, name=link.membership.user.display_name)


def _team_detail_out(actor: Membership, team: Team) -> TeamDetailOut:
    team = selectors.team_get(actor=actor, team_id=team.pk)  # fresh member count
    members = [_team_member_out(link) for link in selectors.team_members(actor=actor, team=team)]
    return TeamDetailOut(**_team_out(team).model_dump(), members=members)


def _invitation_out(invitation: Invitation) -> InvitationOut:
    return InvitationOut(
        id=invitation.pk, email=invitation.email, role=Role(invitation.role), status=invitation.status,
        invited_by=invitation.invited_by.email if invitation.invited_by else None,
        created_at=invitation.created_at, expires_at=invitation.expires_at,
    )


# --- the signed-in person --------------------------------------------------------------------------
@router.get("/me", response={200: MeOut, **ERRORS}, summary="The signed-in person and their organizations")
def me(request: HttpRequest) -> MeOut:
    user = request.user
    if not isinstance(user, User):  # SessionAuth lets only signed-in users through
        raise Http404
    return MeOut(
        id=user.pk, email=user.email, name=user.display_name, has_2fa=selectors.user_has_two_factor(user=user),
        organizations=[
            OrganizationOut(slug=m.organization.slug, name=m.organization.name, role=Role(m.role), require_two_factor=m.organization.require_two_factor)
            for m in selectors.memberships_of(user=user)
        ],
    )


# --- the organization ------------------------------------------------------------------------------
def _organization_out(membership: Membership) -> OrganizationOut:
    organization = membership.organization
    return OrganizationOut(slug=organization.slug, name=organization.name, role=Role(membership.role), require_two_factor=organization.require_two_factor)


@router.get("/orgs/{slug}", response={200: OrganizationOut, **ERRORS}, summary="The organization, with your role in it")
def organization_detail(request: HttpRequest, slug: str) -> OrganizationOut:
    return _organization_out(selectors.membership_get(user=request.user, slug=slug))


@router.patch("/orgs/{slug}", response={200: OrganizationOut, **ERRORS}, summary="Rename the organization or change its two-factor requirement")
def organization_update(request: HttpRequest, slug: str, payload: OrganizationPatch) -> OrganizationOut:
    actor = selectors.membership_get(user=request.user, slug=slug, permission=Permission.MANAGE_SETTINGS)
    organization = actor.organization
    actions.organization_update_settings(
        actor=actor, name=payload.name if payload.name is not None else organization.name,
        require_two_factor=payload.require_two_factor if payload.require_two_factor is not None else organization.require_two_factor,
        request=request,
    )
    return _organization_out(selectors.membership_get(user=request.user, slug=slug))


# --- members ---------------------------------------------------------------------------------------
@router.get("/orgs/{slug}/members", response={200: MemberPage, **ERRORS}, summary="List members, by email address")
def member_list(request: HttpRequest, slug: str, page: Query[PageParams]) -> MemberPage:
    actor = selectors.membership_get(user=request.user, slug=slug, permission=Permission.VIEW_MEMBERS)
    paged = paginate(selectors.organization_members(actor=actor), order=("user__email", "id"), params=page, key="members")
    return MemberPage(items=[_member_out(membership) for membership in paged.items], next=paged.next)


@router.get("/orgs/{slug}/members/{int:membership_id}", response={200: MemberOut, **ERRORS}, summary="One member")
def member_detail(request: HttpRequest, slug: str, membership_id: int) -> MemberOut:
    actor = selectors.membership_get(user=request.user, slug=slug, permission=Permission.VIEW_MEMBERS)
    return _member_out(selectors.member_get(actor=actor, membership_id=membership_id))


@router.patch("/orgs/{slug}/members/{int:membership_id}", response={200: MemberOut, **ERRORS}, summary="Change a member's role")
def member_update(request: HttpRequest, slug: str, membership_id: int, payload: MemberPatch) -> MemberOut:
    actor = selectors.membership_get(user=request.user, slug=slug, permission=Permission.MANAGE_MEMBERS)
    target = selectors.member_get(actor=actor, membership_id=membership_id)
    actions.membership_change_role(actor=actor, membership=target, role=payload.role.value, request=request)
    return _member_out(selectors.member_get(actor=actor, membership_id=membership_id))


@router.delete("/orgs/{slug}/members/{int:membership_id}", response={204: None, **ERRORS}, summary="Remove a member, or leave")
def member_remove(request: HttpRequest, slug: str, membership_id: int) -> Status[None]:
    actor = selectors.membership_get(user=request.user, slug=slug)
    target = selectors.member_get(actor=actor, membership_id=membership_id)
    actions.membership_remove(actor=actor, membership=target, request=request)
    return Status(204, None)


# --- teams -----------------------------------------------------------------------------------------
@router.get("/orgs/{slug}/teams", response={200: TeamPage, **ERRORS}, summary="List teams, by name")
def team_list(request: HttpRequest, slug: str, page: Query[PageParams]) -> TeamPage:
    actor = selectors.membership_get(user=request.user, slug=slug, permission=Permission.VIEW_MEMBERS)
    paged = paginate(selectors.organization_teams(actor=actor), order=("name", "id"), params=page, key="teams")
    return TeamPage(items=[_team_out(team) for team in paged.items], next=paged.next)


@router.post("/orgs/{slug}/teams", response={201: TeamDetailOut, **ERRORS}, summary="Create a team")
def team_create(request: HttpRequest, slug: str, payload: TeamIn) -> Status[TeamDetailOut]:
    actor = selectors.membership_get(user=request.user, slug=slug, permission=Permission.MANAGE_TEAMS)
    team = actions.team_create(actor=actor, name=payload.name, request=request)
    return Status(201, _team_detail_out(actor, team))


@router.get("/orgs/{slug}/teams/{int:team_id}", response={200: TeamDetailOut, **ERRORS}, summary="One team with its members")
def team_detail(request: HttpRequest, slug: str, team_id: int) -> TeamDetailOut:
    actor = selectors.membership_get(user=request.user, slug=slug, permission=Permission.VIEW_MEMBERS)
    return _team_detail_out(actor, selectors.team_get(actor=actor, team_id=team_id))


@router.patch("/orgs/{slug}/teams/{int:team_id}", response={200: TeamDetailOut, **ERRORS}, summary="Rename a team")
def team_update(request: HttpRequest, slug: str, team_id: int, payload: TeamIn) -> TeamDetailOut:
    actor = selectors.membership_get(user=request.user, slug=slug, permission=Permission.MANAGE_TEAMS)
    team = selectors.team_get(actor=actor, team_id=team_id)
    actions.team_rename(actor=actor, team=team, name=payload.name, request=request)
    return _team_detail_out(actor, team)


@router.delete("/orgs/{slug}/teams/{int:team_id}", response={204: None, **ERRORS}, summary="Delete a team")
def team_delete(request: HttpRequest, slug: str, team_id: int) -> Status[None]:
    actor = selectors.membership_get(user=request.user, slug=slug, permission=Permission.MANAGE_TEAMS)
    actions.team_delete(actor=actor, team=selectors.team_get(actor=actor, team_id=team_id), request=request)
    return Status(204, None)


@router.post("/orgs/{slug}/teams/{int:team_id}/members", response={201: TeamDetailOut, **ERRORS}, summary="Add a member to a team")
def team_member_add(request: HttpRequest, slug: str, team_id: int, payload: TeamMemberIn) -> Status[TeamDetailOut]:
    actor = selectors.membership_get(user=request.user, slug=slug, permission=Permission.MANAGE_TEAMS)
    team = selectors.team_get(actor=actor, team_id=team_id)
    member = selectors.member_get(actor=actor, membership_id=payload.membership_id)
    actions.team_member_add(actor=actor, team=team, membership=member, request=request)
    return Status(201, _team_detail_out(actor, team))


@router.delete(
    "/orgs/{slug}/teams/{int:team_id}/members/{int:membership_id}", response={204: None, **ERRORS}, summary="Remove a member from a team"
)
def team_member_remove(request: HttpRequest, slug: str, team_id: int, membership_id: int) -> Status[None]:
    actor = selectors.membership_get(user=request.user, slug=slug, permission=Permission.MANAGE_TEAMS)
    team = selectors.team_get(actor=actor, team_id=team_id)
    member = selectors.member_get(actor=actor, membership_id=membership_id)
    actions.team_member_remove(actor=actor, team=team, membership=member, request=request)
    return Status(204, None)


# --- invitations -----------------------------------------------------------------------------------
@router.get("/orgs/{slug}/invitations", response={200: InvitationPage, **ERRORS}, summary="List invitations, newest first")
def invitation_list(request: HttpRequest, slug: str, page: Query[PageParams]) -> InvitationPage:
    actor = selectors.membership_get(user=request.user, slug=slug, permission=Permission.INVITE)
    paged = paginate(selectors.organization_invitations(actor=actor), order=("-created_at", "-id"), params=page, key="invitations")
    return InvitationPage(items=[_invitation_out(invitation) for invitation in paged.items], next=paged.next)


@router.post("/orgs/{slug}/invitations", response={201: InvitationOut, **ERRORS}, summary="Invite someone by email")
def invitation_create(request: HttpRequest, slug: str, payload: InvitationIn) -> Status[InvitationOut]:
    actor = selectors.membership_get(user=request.user, slug=slug, permission=Permission.INVITE)
    invitation, _token = actions.invitation_create(actor=actor, email=payload.email, role=payload.role.value, request=request)
    return Status(201, _invitation_out(invitation))


@router.delete("/orgs/{slug}/invitations/{int:invitation_id}", response={204: None, **ERRORS}, summary="Revoke an invitation")
def invitation_revoke(request: HttpRequest, slug: str, invitation_id: int) -> Status[None]:
    actor = selectors.membership_get(user=request.user, slug=slug, permission=Permission.INVITE)
    actions.invitation_revoke(actor=actor, invitation=selectors.invitation_get(actor=actor, invitation_id=invitation_id), request=request)
    return Status(204, None)
