"""Reads of organization data, always scoped to the acting user's membership.

Attacker: a signed-in user who guesses another organization's slug or the id of a member, team
or invitation there (IDOR). Defences: every query starts from the actor's own membership, read
fresh from the database on each request, and filters by its organization; missing and foreign
objects give the same answer (404), so ids and slugs reveal nothing. A member whose role lacks a
permission gets 403 instead: they already know the organization exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Exists, OuterRef, QuerySet
from django.http import Http404

from postroom.accounts.models import User
from postroom.core.rows import Fetched, Read
from postroom.core.tokens import token_hash
from postroom.orgs import viewer
from postroom.orgs.models import Invitation, InvitationStatus, Membership, Organization, Team, TeamMembership
from postroom.orgs.policy import Permission, role_allows
from postroom.orgs.viewer import SECOND_FACTOR_TYPES


def membership_get(*, user: User | AnonymousUser, slug: str, permission: Permission | None = None) -> Membership:
    """The user's membership of the organization ``slug``: 404 if none, 403 if the role lacks ``permission``."""
    if not user.is_authenticated:
        raise Http404
    membership = next((membership for membership in viewer.memberships(user) if membership.organization.slug == slug), None)
    if membership is None:
        raise Http404
    if permission is not None and not role_allows(membership.role, permission):
        raise PermissionDenied(f"Your role ({membership.role}) does not allow this.")
    return membership


def membership_of_viewer(*, user: User | AnonymousUser, organization_id: Any, known: Any = None) -> Membership | None:
    """The user's membership of an organization (with it and the user), or None. ``known``: a
    membership the caller already holds, e.g. the page's ``actor``, used when it is exactly
    that one, so that blocks of a page (comments, composer) do not read it again."""
    if not user.is_authenticated:
        return None
    if isinstance(known, Membership) and known.user_id == user.pk and known.organization_id == organization_id:
        return known
    return next((membership for membership in viewer.memberships(user) if membership.organization_id == organization_id), None)


def memberships_list(*, user: User | AnonymousUser) -> list[Membership]:
    """``memberships_of``'s memberships, as a list: from the request's one read (``viewer``)."""
    return viewer.memberships(user)


def second_factor_missing(*, user: User | AnonymousUser) -> bool:
    """Whether an organization of the user's requires a second factor that the user has not got."""
    return viewer.two_factor_required_and_missing(user)


def memberships_of(*, user: User | AnonymousUser) -> QuerySet[Membership]:
    if not isinstance(user, User):
        return Membership.objects.none()
    return Membership.objects.filter(user=user).select_related("organization").order_by("organization__name")


def _has_two_factor() -> Exists:
    return Exists(Authenticator.objects.filter(user_id=OuterRef("user_id"), type__in=SECOND_FACTOR_TYPES))


def user_has_two_factor(*, user: User) -> bool:
    return Authenticator.objects.filter(user=user, type__in=SECOND_FACTOR_TYPES).exists()


def organization_members(*, actor: Membership) -> QuerySet[Membership]:
    """Members with ``has_two_factor`` (a TOTP or WebAuthn authenticator), by email."""
    return (
        Membership.objects.filter(organization_id=actor.organization_id)
        .select_related("user")
        .annotate(has_two_factor=_has_two_factor())
        .order_by("user__email")
    )


@dataclass(frozen=True)
class MemberName:
    pk: int
    display_name: str  # ``User.display_name``


# The members of the actor's organization by email, with the name a menu shows: a constant text
# (SECURITY.md R58) for the list pages' bulk bar, which needs no more than that on every page
# (issue #4); ``test_member_names_match_organization_members`` compares it with the ORM.
_MEMBER_NAMES_SQL = """
SELECT p.id, u.email, u.name FROM orgs_membership p INNER JOIN accounts_user u ON u.id = p.user_id
WHERE p.organization_id = %(organization)s ORDER BY u.email
"""


def member_names_read(*, actor: Membership) -> Read[list[MemberName]]:
    """``organization_members``'s members, in its order, by id and name only."""

    def build(fetched: list[Fetched]) -> list[MemberName]:
        return [MemberName(pk, User(email=email, name=name).display_name) for pk, email, name in fetched[0][1]]

    return Read(((_MEMBER_NAMES_SQL, {"organization": actor.organization_id}),), build)


def member_get(*, actor: Membership, membership_id: int) -> Membership:
    membership = (
        Membership.objects.select_related("user", "organization")
        .annotate(has_two_factor=_has_two_factor())
        .filter(organization_id=actor.organization_id, pk=membership_id)
        .first()
    )
    if membership is None:
        raise Http404
    return membership


def organization_teams(*, actor: Membership) -> QuerySet[Team]:
    return Team.objects.filter(organization_id=actor.organization_id).annotate(member_count=Count("team_memberships")).order_by("name")


def team_get(*, actor: Membership, team_id: int) -> Team:
    team = organization_teams(actor=actor).filter(pk=team_id).first()
    if team is None:
        raise Http404
    return team


def team_members(*, actor: Membership, team: Team) -> QuerySet[TeamMembership]:
    return (
        TeamMembership.objects.filter(team=team, team__organization_id=actor.organization_id)
        .select_related("membership__user")
        .order_by("membership__user__email")
    )


def organization_invitations(*, actor: Membership) -> QuerySet[Invitation]:
    return Invitation.objects.filter(organization_id=actor.organization_id).select_related("invited_by")


def invitation_get(*, actor: Membership, invitation_id: int) -> Invitation:
    invitation = organization_invitations(actor=actor).filter(pk=invitation_id).first()
    if invitation is None:
        raise Http404
    return invitation


INVITATION_PURPOSE = "invitation"


class InvitationInvalidError(Exception):
    """The one answer for unknown, used, revoked, expired and wrong-address invitations."""


def invitation_by_token(*, token: str) -> Invitation:
    """The pending invitation whose link carries ``token``; found by the token's HMAC only."""
    invitation = Invitation.objects.select_related("organization").filter(token_hash=token_hash(INVITATION_PURPOSE, token)).first()
    if invitation is None or invitation.status != InvitationStatus.PENDING:
        raise InvitationInvalidError
    return invitation


def invitation_address_verified(*, invitation: Invitation, user: User | AnonymousUser) -> bool:
    """Whether ``user`` has proved (verified) the very address the invitation was sent to."""
    if not isinstance(user, User):
        return False
    return EmailAddress.objects.filter(user=user, email__iexact=invitation.email, verified=True).exists()


def organization_exists() -> bool:
    return Organization.objects.exists()
