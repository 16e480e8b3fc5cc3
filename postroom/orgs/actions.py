"""Every change to organizations, memberships, teams and invitations.

Each action checks permission for the acting membership, changes only the fields it must,
writes the audit event in the same transaction, and sends mail only after commit.
"""

from __future__ import annotations

from datetime import timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify

from postroom.accounts.models import User
from postroom.audit.actions import audit_record
from postroom.core.tasks import queue_system_mail
from postroom.core.tokens import new_token, token_hash
from postroom.orgs.models import Invitation, Membership, Organization, Team, TeamMembership
from postroom.orgs.policy import Permission, Role, can_grant, role_allows

INVITATION_LIFETIME = timedelta(days=7)
INVITATION_PURPOSE = "invitation"


def require(actor: Membership, permission: Permission) -> None:
    if not role_allows(actor.role, permission):
        raise PermissionDenied(f"Your role ({actor.role}) does not allow this.")


def _unique_slug(name: str) -> str:
    base = slugify(name)[:50] or "org"
    slug, number = base, 2
    while Organization.objects.filter(slug=slug).exists():
        slug, number = f"{base}-{number}", number + 1
    return slug


# --- organizations -------------------------------------------------------------------------------
@transaction.atomic
def organization_create(*, owner: User, name: str, request: HttpRequest | None = None) -> Organization:
    name = name.strip()
    if not name:
        raise ValidationError({"name": "Give the organization a name."})
    organization = Organization.objects.create(name=name, slug=_unique_slug(name))
    membership = Membership.objects.create(organization=organization, user=owner, role=Role.OWNER)
    audit_record(action="org.created", actor=owner, organization=organization, request=request, target=organization, target_label=name)
    audit_record(action="member.added", actor=owner, organization=organization, request=request, target=membership, target_label=owner.email, details={"role": Role.OWNER})
    return organization


@transaction.atomic
def organization_update_settings(
    *, actor: Membership, name: str, require_two_factor: bool, request: HttpRequest | None = None
) -> Organization:
    require(actor, Permission.MANAGE_SETTINGS)
    organization = Organization.objects.select_for_update().get(pk=actor.organization_id)
    changed: dict[str, object] = {}
    if name.strip() and name.strip() != organization.name:
        organization.name = name.strip()
        changed["name"] = organization.name
    if require_two_factor != organization.require_two_factor:
        organization.require_two_factor = require_two_factor
        changed["require_two_factor"] = require_two_factor
    if changed:
        organization.save(update_fields=list(changed))
        audit_record(action="org.settings_changed", actor=actor.user, organization=organization, request=request, target=organization, details=changed)
    return organization


# --- memberships -----------------------------------------------------------------------------------
def _owner_count(organization_id: int) -> int:
    return Membership.objects.filter(organization_id=organization_id, role=Role.OWNER).count()


@transaction.atomic
def membership_change_role(*, actor: Membership, membership: Membership, role: str, request: HttpRequest | None = None) -> Membership:
    require(actor, Permission.MANAGE_MEMBERS)
    if role not in Role.__members__.values():
        raise ValidationError({"role": "Unknown role."})
    target = Membership.objects.select_for_update().get(pk=membership.pk, organization_id=actor.organization_id)
    if target.pk == actor.pk:
        raise PermissionDenied("You cannot change your own role.")
    # Only owners touch owners, and nobody grants more than they have.
    if target.role == Role.OWNER or role == Role.OWNER:
        require(actor, Permission.MANAGE_OWNERS)
    if not can_grant(actor.role, role):
        raise PermissionDenied("You cannot grant a role above your own.")
    if target.role == Role.OWNER and role != Role.OWNER and _owner_count(actor.organization_id) <= 1:
        raise ValidationError("An organization needs at least one owner.")
    if target.role != role:
        previous, target.role = target.role, role
        target.save(update_fields=["role"])
        audit_record(action="member.role_changed", actor=actor.user, organization=target.organization, request=request, target=target, target_label=target.user.email, details={"from": previous, "to": role})
    return target


@transaction.atomic
def membership_remove(*, actor: Membership, membership: Membership, request: HttpRequest | None = None) -> None:
    target = Membership.objects.select_for_update().select_related("user", "organization").get(pk=membership.pk, organization_id=actor.organization_id)
    leaving = target.pk == actor.pk
    if not leaving:
        require(actor, Permission.MANAGE_MEMBERS)
        if target.role == Role.OWNER:
            require(actor, Permission.MANAGE_OWNERS)
    if target.role == Role.OWNER and _owner_count(target.organization_id) <= 1:
        raise ValidationError("The last owner cannot leave; make someone else an owner first.")
    audit_record(action="member.left" if leaving else "member.removed", actor=actor.user, organization=target.organization, request=request, target=target, target_label=target.user.email, details={"role": target.role})
    target.delete()


# --- teams -----------------------------------------------------------------------------------------
@transaction.atomic
def team_create(*, actor: Membership, name: str, request: HttpRequest | None = None) -> Team:
    require(actor, Permission.MANAGE_TEAMS)
    name = name.strip()
    if not name:
        raise ValidationError({"name": "Give the team a name."})
    if Team.objects.filter(organization_id=actor.organization_id, name__iexact=name).exists():
        raise ValidationError({"name": "A team with this name already exists."})
    team = Team.objects.create(organization_id=actor.organization_id, name=name)
    audit_record(action="team.created", actor=actor.user, organization=actor.organization, request=request, target=team, target_label=name)
    return team


@transaction.atomic
def team_rename(*, actor: Membership, team: Team, name: str, request: HttpRequest | None = None) -> Team:
    require(actor, Permission.MANAGE_TEAMS)
    name = name.strip()
    if not name:
        raise ValidationError({"name": "Give the team a name."})
    if Team.objects.filter(organization_id=actor.organization_id, name__iexact=name).exclude(pk=team.pk).exists():
        raise ValidationError({"name": "A team with this name already exists."})
    previous, team.name = team.name, name
    team.save(update_fields=["name"])
    audit_record(action="team.renamed", actor=actor.user, organization=actor.organization, request=request, target=team, target_label=name, details={"from": previous})
    return team


@transaction.atomic
def team_delete(*, actor: Membership, team: Team, request: HttpRequest | None = None) -> None:
    require(actor, Permission.MANAGE_TEAMS)
    audit_record(action="team.deleted", actor=actor.user, organization=actor.organization, request=request, target=team, target_label=team.name)
    team.delete()


@transaction.atomic
def team_member_add(*, actor: Membership, team: Team, membership: Membership, request: HttpRequest | None = None) -> TeamMembership:
    require(actor, Permission.MANAGE_TEAMS)
    if membership.organization_id != team.organization_id or team.organization_id != actor.organization_id:
        raise PermissionDenied("Not in this organization.")
    link, created = TeamMembership.objects.get_or_create(team=team, membership=membership)
    if created:
        audit_record(action="team.member_added", actor=actor.user, organization=actor.organization, request=request, target=team, target_label=membership.user.email)
    return link


@transaction.atomic
def team_member_remove(*, actor: Membership, team: Team, membership: Membership, request: HttpRequest | None = None) -> None:
    require(actor, Permission.MANAGE_TEAMS)
    deleted, _ = TeamMembership.objects.filter(team=team, membership=membership, team__organization_id=actor.organization_id).delete()
    if deleted:
        audit_record(action="team.member_removed", actor=actor.user, organization=actor.organization, request=request, target=team, target_label=membership.user.email)


# --- invitations -----------------------------------------------------------------------------------
@transaction.atomic
def invitation_create(*, actor: Membership, email: str, role: str, request: HttpRequest | None = None) -> tuple[Invitation, str]:
    """Create an invitation and queue its mail; returns the invitation and the one-time token."""
    require(actor, Permission.INVITE)
    if role not in Role.__members__.values():
        raise ValidationError({"role": "Unknown role."})
    if not can_grant(actor.role, role):
        raise PermissionDenied("You cannot invite someone with a role above your own.")
    email = User.objects.normalize_email(email.strip()).lower()
    if Membership.objects.filter(organization_id=actor.organization_id, user__email__iexact=email).exists():
        raise ValidationError({"email": "This person is already a member."})
    now = timezone.now()
    # A new invitation replaces an open one for the same address.
    Invitation.objects.filter(organization_id=actor.organization_id, email=email, accepted_at=None, revoked_at=None).update(revoked_at=now)
    token = new_token()
    invitation = Invitation.objects.create(
        organization_id=actor.organization_id, email=email, role=role, token_hash=token_hash(INVITATION_PURPOSE, token),
        invited_by=actor.user, expires_at=now + INVITATION_LIFETIME,
    )
    audit_record(action="invitation.created", actor=actor.user, organization=actor.organization, request=request, target=invitation, target_label=email, details={"role": role})
    from django.conf import settings

    link = settings.PUBLIC_URL + reverse("invitation_accept", kwargs={"token": token})
    queue_system_mail(
        to=[email],
        subject=f"[Postroom] {actor.user.display_name} invited you to {actor.organization.name}",
        text=(
            f"{actor.user.display_name} ({actor.user.email}) invited you to join {actor.organization.name} on Postroom "
            f"as {role}.\n\nAccept the invitation (valid for 7 days, for {email} only):\n{link}\n\n"
            "If you did not expect this, ignore this message."
        ),
    )
    return invitation, token


@transaction.atomic
def invitation_revoke(*, actor: Membership, invitation: Invitation, request: HttpRequest | None = None) -> None:
    require(actor, Permission.INVITE)
    updated = Invitation.objects.filter(pk=invitation.pk, organization_id=actor.organization_id, accepted_at=None, revoked_at=None).update(revoked_at=timezone.now())
    if updated:
        audit_record(action="invitation.revoked", actor=actor.user, organization=actor.organization, request=request, target=invitation, target_label=invitation.email)


class InvitationInvalidError(Exception):
    """The same answer for unknown, used, revoked, expired and wrong-address invitations."""


def invitation_find(*, token: str) -> Invitation:
    invitation = Invitation.objects.select_related("organization").filter(token_hash=token_hash(INVITATION_PURPOSE, token)).first()
    if invitation is None or invitation.accepted_at or invitation.revoked_at or invitation.expires_at <= timezone.now():
        raise InvitationInvalidError
    return invitation


@transaction.atomic
def invitation_accept(*, user: User, token: str, request: HttpRequest | None = None) -> Membership:
    """Accept as ``user``, whose verified primary address must be the invited one."""
    from allauth.account.models import EmailAddress

    invitation = invitation_find(token=token)
    invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
    if invitation.accepted_at or invitation.revoked_at:
        raise InvitationInvalidError
    if user.email.lower() != invitation.email or not EmailAddress.objects.filter(user=user, email__iexact=invitation.email, verified=True).exists():
        audit_record(action="invitation.accept_refused", actor=user, organization=invitation.organization, request=request, target=invitation, result="denied", details={"reason": "address mismatch"})
        raise InvitationInvalidError
    invitation.accepted_at = timezone.now()
    invitation.save(update_fields=["accepted_at"])
    membership, _ = Membership.objects.get_or_create(organization=invitation.organization, user=user, defaults={"role": invitation.role})
    audit_record(action="invitation.accepted", actor=user, organization=invitation.organization, request=request, target=invitation, target_label=invitation.email)
    audit_record(action="member.added", actor=user, organization=invitation.organization, request=request, target=membership, target_label=user.email, details={"role": membership.role, "via": "invitation"})
    return membership
