"""Every change to organizations, memberships, teams and invitations.

Attacker: a member who tries to raise their own role, grant more than they have, remove or
demote the owners, act with a role that was just taken away, or accept an invitation meant for
someone else. Defences: each action locks the organization row (membership changes happen one
at a time per organization, so two owners demoting each other cannot leave it without one),
re-reads the actor's role under that lock, checks ``postroom.orgs.policy``, changes only the
fields it must, and writes the audit event in the same transaction; mail goes out only after
commit. Invitation tokens are 256-bit, stored as HMACs, single use, bound to one verified
address and expire after 7 days.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify

from postroom.accounts.models import User
from postroom.audit.actions import audit_record
from postroom.audit.models import Result
from postroom.conversations.access import access_refresh, access_refresh_for_membership
from postroom.core.tasks import queue_system_mail
from postroom.core.tokens import new_token, token_hash
from postroom.orgs.models import Invitation, InvitationStatus, Membership, Organization, Team, TeamMembership
from postroom.orgs.policy import Permission, Role, can_grant, role_allows
from postroom.orgs.selectors import INVITATION_PURPOSE, InvitationInvalidError, invitation_address_verified, invitation_by_token

INVITATION_LIFETIME = timedelta(days=7)
ROLE_VALUES = frozenset(role.value for role in Role)


def require(actor: Membership, permission: Permission) -> None:
    if not role_allows(actor.role, permission):
        raise PermissionDenied(f"Your role ({actor.role}) does not allow this.")


def _locked_actor(actor: Membership, permission: Permission | None = None) -> Membership:
    """Lock the organization and re-read the actor's membership: the role checked is the current one."""
    Organization.objects.select_for_update().filter(pk=actor.organization_id).first()
    current = Membership.objects.select_related("organization", "user").filter(pk=actor.pk).first()
    if current is None:
        raise PermissionDenied("You are no longer a member of this organization.")
    if permission is not None:
        require(current, permission)
    return current


def _same_organization(actor: Membership, *objects: Team | Membership | Invitation) -> None:
    if any(obj.organization_id != actor.organization_id for obj in objects):
        raise PermissionDenied("Not part of this organization.")


def _one_line(text: str) -> str:
    return " ".join(text.split())


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
    actor = _locked_actor(actor, Permission.MANAGE_SETTINGS)
    organization = actor.organization
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
    actor = _locked_actor(actor, Permission.MANAGE_MEMBERS)
    if role not in ROLE_VALUES:
        raise ValidationError({"role": "Unknown role."})
    _same_organization(actor, membership)
    target = Membership.objects.select_related("user", "organization").get(pk=membership.pk)
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
        audit_record(
            action="member.role_changed", actor=actor.user, organization=actor.organization, request=request,
            target=target, target_label=target.user.email, details={"from": previous, "to": role},
        )
    return target


@transaction.atomic
def membership_remove(*, actor: Membership, membership: Membership, request: HttpRequest | None = None) -> None:
    """Remove ``membership``, or leave the organization when it is the actor's own."""
    actor = _locked_actor(actor)
    _same_organization(actor, membership)
    target = Membership.objects.select_related("user", "organization").get(pk=membership.pk)
    leaving = target.pk == actor.pk
    if not leaving:
        require(actor, Permission.MANAGE_MEMBERS)
        if target.role == Role.OWNER:
            require(actor, Permission.MANAGE_OWNERS)
    if target.role == Role.OWNER and _owner_count(target.organization_id) <= 1:
        raise ValidationError("The last owner cannot leave; make someone else an owner first.")
    audit_record(
        action="member.left" if leaving else "member.removed", actor=actor.user, organization=actor.organization, request=request,
        target=target, target_label=target.user.email, details={"role": target.role},
    )
    target.delete()


# --- teams -----------------------------------------------------------------------------------------
def _team_name(actor: Membership, name: str, *, renaming: Team | None = None) -> str:
    name = name.strip()
    if not name:
        raise ValidationError({"name": "Give the team a name."})
    if len(name) > 80:
        raise ValidationError({"name": "Use at most 80 characters."})
    clashes = Team.objects.filter(organization_id=actor.organization_id, name__iexact=name)
    if renaming is not None:
        clashes = clashes.exclude(pk=renaming.pk)
    if clashes.exists():
        raise ValidationError({"name": "A team with this name already exists."})
    return name


@transaction.atomic
def team_create(*, actor: Membership, name: str, request: HttpRequest | None = None) -> Team:
    actor = _locked_actor(actor, Permission.MANAGE_TEAMS)
    name = _team_name(actor, name)
    team = Team.objects.create(organization_id=actor.organization_id, name=name)
    audit_record(action="team.created", actor=actor.user, organization=actor.organization, request=request, target=team, target_label=name)
    return team


@transaction.atomic
def team_rename(*, actor: Membership, team: Team, name: str, request: HttpRequest | None = None) -> Team:
    actor = _locked_actor(actor, Permission.MANAGE_TEAMS)
    _same_organization(actor, team)
    name = _team_name(actor, name, renaming=team)
    if name != team.name:
        previous, team.name = team.name, name
        team.save(update_fields=["name"])
        audit_record(action="team.renamed", actor=actor.user, organization=actor.organization, request=request, target=team, target_label=name, details={"from": previous})
    return team


@transaction.atomic
def team_delete(*, actor: Membership, team: Team, request: HttpRequest | None = None) -> None:
    actor = _locked_actor(actor, Permission.MANAGE_TEAMS)
    _same_organization(actor, team)
    audit_record(action="team.deleted", actor=actor.user, organization=actor.organization, request=request, target=team, target_label=team.name)
    conversation_ids = list(team.conversation_shares.values_list("conversation_id", flat=True))
    team.delete()
    access_refresh(conversation_ids)


@transaction.atomic
def team_member_add(
    *, actor: Membership, team: Team, membership: Membership, observer: bool = False, request: HttpRequest | None = None
) -> TeamMembership:
    """Add a member to a team: active (notified of the team's conversations) or an observer (sees
    them, is not notified). Adding someone already in the team changes how they take part."""
    actor = _locked_actor(actor, Permission.MANAGE_TEAMS)
    _same_organization(actor, team, membership)
    link, created = TeamMembership.objects.get_or_create(team=team, membership=membership, defaults={"observer": observer})
    if created:
        audit_record(
            action="team.member_added", actor=actor.user, organization=actor.organization, request=request,
            target=team, target_label=membership.user.email, details={"team": team.name, "observer": observer},
        )
        access_refresh_for_membership(membership)
    elif link.observer != observer:
        link.observer = observer
        link.save(update_fields=["observer"])
        audit_record(
            action="team.member_observer_set",
            actor=actor.user,
            organization=actor.organization,
            request=request,
            target=team,
            target_label=membership.user.email,
            details={"team": team.name, "observer": observer},
        )
    return link


@transaction.atomic
def team_member_remove(*, actor: Membership, team: Team, membership: Membership, request: HttpRequest | None = None) -> None:
    actor = _locked_actor(actor, Permission.MANAGE_TEAMS)
    _same_organization(actor, team, membership)
    deleted, _ = TeamMembership.objects.filter(team=team, membership=membership).delete()
    if deleted:
        audit_record(
            action="team.member_removed", actor=actor.user, organization=actor.organization, request=request,
            target=team, target_label=membership.user.email, details={"team": team.name},
        )
        access_refresh_for_membership(membership)


# --- invitations -----------------------------------------------------------------------------------
@transaction.atomic
def invitation_create(*, actor: Membership, email: str, role: str, request: HttpRequest | None = None) -> tuple[Invitation, str]:
    """Create an invitation and queue its mail; returns the invitation and the one-time token.

    The answer does not depend on whether the address has a Postroom account (R5); only
    membership of this organization, which the inviter can see anyway, is refused.
    """
    actor = _locked_actor(actor, Permission.INVITE)
    if role not in ROLE_VALUES:
        raise ValidationError({"role": "Unknown role."})
    if not can_grant(actor.role, role):
        raise PermissionDenied("You cannot invite someone with a role above your own.")
    email = User.objects.normalize_email(email.strip()).lower()
    try:
        validate_email(email)
    except ValidationError:
        raise ValidationError({"email": "Enter a valid email address."}) from None
    if Membership.objects.filter(organization_id=actor.organization_id, user__email__iexact=email).exists():
        raise ValidationError({"email": "This person is already a member."})
    now = timezone.now()
    # A new invitation replaces an open one for the same address: only the newest link works.
    for replaced in Invitation.objects.filter(organization_id=actor.organization_id, email=email, accepted_at=None, revoked_at=None, expires_at__gt=now):
        replaced.revoked_at = now
        replaced.save(update_fields=["revoked_at"])
        audit_record(
            action="invitation.revoked", actor=actor.user, organization=actor.organization, request=request,
            target=replaced, target_label=email, details={"reason": "replaced by a new invitation"},
        )
    token = new_token()
    invitation = Invitation.objects.create(
        organization_id=actor.organization_id, email=email, role=role, token_hash=token_hash(INVITATION_PURPOSE, token),
        invited_by=actor.user, expires_at=now + INVITATION_LIFETIME,
    )
    audit_record(action="invitation.created", actor=actor.user, organization=actor.organization, request=request, target=invitation, target_label=email, details={"role": role})
    inviter = _one_line(actor.user.display_name)
    organization_name = _one_line(actor.organization.name)
    link = settings.PUBLIC_URL + reverse("invitation_accept", kwargs={"token": token})
    queue_system_mail(
        to=[email],
        subject=f"[Postroom] {inviter} invited you to {organization_name}",
        text=(
            f"{inviter} ({actor.user.email}) invited you to join {organization_name} on Postroom as {role}.\n\n"
            f"Accept the invitation (valid for 7 days, for {email} only):\n{link}\n\n"
            "If you did not expect this, ignore this message."
        ),
    )
    return invitation, token


@transaction.atomic
def invitation_revoke(*, actor: Membership, invitation: Invitation, request: HttpRequest | None = None) -> None:
    actor = _locked_actor(actor, Permission.INVITE)
    _same_organization(actor, invitation)
    invitation = Invitation.objects.get(pk=invitation.pk)
    if invitation.status in (InvitationStatus.ACCEPTED, InvitationStatus.REVOKED):
        raise ValidationError(f"This invitation was already {invitation.status}.")
    invitation.revoked_at = timezone.now()
    invitation.save(update_fields=["revoked_at"])
    audit_record(action="invitation.revoked", actor=actor.user, organization=actor.organization, request=request, target=invitation, target_label=invitation.email)


def invitation_accept(*, user: User, token: str, request: HttpRequest | None = None) -> Membership:
    """Accept as ``user``, who must have verified the invited address. Raises InvitationInvalidError."""
    with transaction.atomic():
        invitation = invitation_by_token(token=token)
        Organization.objects.select_for_update().filter(pk=invitation.organization_id).first()
        invitation = Invitation.objects.select_related("organization").get(pk=invitation.pk)
        if invitation.status != InvitationStatus.PENDING:
            raise InvitationInvalidError
        if invitation_address_verified(invitation=invitation, user=user):
            invitation.accepted_at = timezone.now()
            invitation.save(update_fields=["accepted_at"])
            audit_record(action="invitation.accepted", actor=user, organization=invitation.organization, request=request, target=invitation, target_label=invitation.email)
            membership, created = Membership.objects.get_or_create(organization=invitation.organization, user=user, defaults={"role": invitation.role})
            if created:
                audit_record(
                    action="member.added", actor=user, organization=invitation.organization, request=request,
                    target=membership, target_label=user.email, details={"role": membership.role, "via": "invitation"},
                )
                access_refresh_for_membership(membership)  # conversations shared with the whole organization
            return membership
    # Recorded outside the transaction above, which would otherwise roll the record back.
    audit_record(
        action="invitation.accept_refused", actor=user, organization=invitation.organization, request=request,
        target=invitation, target_label=invitation.email, result=Result.DENIED, details={"reason": "address not verified by this account"},
    )
    raise InvitationInvalidError
