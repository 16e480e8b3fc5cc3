"""Reads of organization data, always scoped to the acting user's memberships.

Missing and forbidden give the same answer (404) so that ids and slugs reveal nothing.
"""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from django.db.models import Count, QuerySet
from django.http import Http404

from postroom.accounts.models import User
from postroom.orgs.models import Invitation, Membership, Organization, Team
from postroom.orgs.policy import Permission, role_allows


def membership_get(*, user: User | AnonymousUser, slug: str, permission: Permission | None = None) -> Membership:
    if not user.is_authenticated:
        raise Http404
    membership = Membership.objects.select_related("organization", "user").filter(user=user, organization__slug=slug).first()
    if membership is None or (permission is not None and not role_allows(membership.role, permission)):
        raise Http404
    return membership


def memberships_of(*, user: User | AnonymousUser) -> QuerySet[Membership]:
    if not isinstance(user, User):
        return Membership.objects.none()
    return Membership.objects.filter(user=user).select_related("organization").order_by("organization__name")


def organization_members(*, actor: Membership) -> QuerySet[Membership]:
    return Membership.objects.filter(organization_id=actor.organization_id).select_related("user").order_by("user__email")


def member_get(*, actor: Membership, membership_id: int) -> Membership:
    membership = Membership.objects.select_related("user", "organization").filter(organization_id=actor.organization_id, pk=membership_id).first()
    if membership is None:
        raise Http404
    return membership


def organization_teams(*, actor: Membership) -> QuerySet[Team]:
    return Team.objects.filter(organization_id=actor.organization_id).annotate(member_count=Count("team_memberships"))


def team_get(*, actor: Membership, team_id: int) -> Team:
    team = Team.objects.filter(organization_id=actor.organization_id, pk=team_id).first()
    if team is None:
        raise Http404
    return team


def organization_invitations(*, actor: Membership) -> QuerySet[Invitation]:
    return Invitation.objects.filter(organization_id=actor.organization_id).select_related("invited_by")


def invitation_get(*, actor: Membership, invitation_id: int) -> Invitation:
    invitation = Invitation.objects.filter(organization_id=actor.organization_id, pk=invitation_id).first()
    if invitation is None:
        raise Http404
    return invitation


def organization_exists() -> bool:
    return Organization.objects.exists()
