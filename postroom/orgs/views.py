"""Organization admin pages. Shape of every view: parse → access (selectors) → action → render.

Non-members get 404 from ``selectors.membership_get``; a member whose role lacks the permission
gets 403 (PermissionDenied, from the selector or the action). State changes are POST only.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from postroom.orgs import actions, selectors
from postroom.orgs.forms import ROLE_CHOICES, InvitationForm, OrganizationSettingsForm, RoleForm, TeamForm, TeamMemberForm
from postroom.orgs.policy import Permission, Role, can_grant, role_allows

PENDING_INVITATION_SESSION_KEY = "postroom_invitation_token"


def _error_text(error: ValidationError) -> str:
    if hasattr(error, "error_dict"):
        return " ".join(message for field_messages in error.message_dict.values() for message in field_messages)
    return " ".join(error.messages)


def _form_errors(form: RoleForm | TeamForm | TeamMemberForm) -> str:
    return " ".join(str(message) for field_messages in form.errors.values() for message in field_messages)


@login_required
@require_GET
def members(request: HttpRequest, slug: str) -> HttpResponse:
    actor = selectors.membership_get(user=request.user, slug=slug, permission=Permission.VIEW_MEMBERS)
    rows = list(selectors.organization_members(actor=actor))
    can_manage = role_allows(actor.role, Permission.MANAGE_MEMBERS)
    can_manage_owners = role_allows(actor.role, Permission.MANAGE_OWNERS)
    # The controls shown follow the rules the actions enforce: not oneself, owners only by owners.
    editable = {row.pk for row in rows if can_manage and row.pk != actor.pk and (can_manage_owners or row.role != Role.OWNER)}
    return render(request, "orgs/members.html", {
        "organization": actor.organization, "actor": actor, "rows": rows, "editable": editable,
        "can_manage": can_manage, "role_choices": [choice for choice in ROLE_CHOICES if can_grant(actor.role, choice[0])],
        "nav": "members",
    })


@login_required
@require_POST
def member_role(request: HttpRequest, slug: str, membership_id: int) -> HttpResponse:
    actor = selectors.membership_get(user=request.user, slug=slug, permission=Permission.MANAGE_MEMBERS)
    target = selectors.member_get(actor=actor, membership_id=membership_id)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, _form_errors(form))
    else:
        try:
            actions.membership_change_role(actor=actor, membership=target, role=form.cleaned_data["role"], request=request)
            messages.success(request, f"{target.user.email} is now {form.cleaned_data['role']}.")
        except ValidationError as error:
            messages.error(request, _error_text(error))
    return HttpResponseRedirect(reverse("orgs:members", args=[slug]))


@login_required
@require_POST
def member_remove(request: HttpRequest, slug: str, membership_id: int) -> HttpResponse:
    """Remove a member, or leave (any member may remove their own membership)."""
    actor = selectors.membership_get(user=request.user, slug=slug)
    target = selectors.member_get(actor=actor, membership_id=membership_id)
    try:
        actions.membership_remove(actor=actor, membership=target, request=request)
    except ValidationError as error:
        messages.error(request, _error_text(error))
        return HttpResponseRedirect(reverse("orgs:members", args=[slug]))
    if target.pk == actor.pk:
        messages.success(request, f"You left {actor.organization.name}.")
        return HttpResponseRedirect(reverse("web:home"))
    messages.success(request, f"{target.user.email} was removed.")
    return HttpResponseRedirect(reverse("orgs:members", args=[slug]))


@login_required
@require_http_methods(["GET", "POST"])
def teams(request: HttpRequest, slug: str) -> HttpResponse:
    actor = selectors.membership_get(user=request.user, slug=slug, permission=Permission.VIEW_MEMBERS)
    form = TeamForm(request.POST or None)
    if request.method == "POST":
        actions.require(actor, Permission.MANAGE_TEAMS)
        if form.is_valid():
            try:
                team = actions.team_create(actor=actor, name=form.cleaned_data["name"], request=request)
                messages.success(request, f"Team {team.name} created.")
                return HttpResponseRedirect(reverse("orgs:team", args=[slug, team.pk]))
            except ValidationError as error:
                form.add_error("name", _error_text(error))
    return render(request, "orgs/teams.html", {
        "organization": actor.organization, "actor": actor, "teams": selectors.organization_teams(actor=actor),
        "form": form, "can_manage": role_allows(actor.role, Permission.MANAGE_TEAMS), "nav": "teams",
    })


@login_required
@require_GET
def team(request: HttpRequest, slug: str, team_id: int) -> HttpResponse:
    actor = selectors.membership_get(user=request.user, slug=slug, permission=Permission.VIEW_MEMBERS)
    team_ = selectors.team_get(actor=actor, team_id=team_id)
    in_team = list(selectors.team_members(actor=actor, team=team_))
    in_team_ids = {link.membership_id for link in in_team}
    others = [member for member in selectors.organization_members(actor=actor) if member.pk not in in_team_ids]
    return render(request, "orgs/team.html", {
        "organization": actor.organization, "actor": actor, "team": team_, "in_team": in_team, "others": others,
        "can_manage": role_allows(actor.role, Permission.MANAGE_TEAMS), "rename_form": TeamForm(initial={"name": team_.name}), "nav": "teams",
    })


@login_required
@require_POST
def team_update(request: HttpRequest, slug: str, team_id: int) -> HttpResponse:
    actor = selectors.membership_get(user=request.user, slug=slug, permission=Permission.MANAGE_TEAMS)
    team_ = selectors.team_get(actor=actor, team_id=team_id)
    operation = request.POST.get("operation")
    try:
        if operation == "rename":
            form = TeamForm(request.POST)
            if not form.is_valid():
                raise ValidationError(_form_errors(form))
            actions.team_rename(actor=actor, team=team_, name=form.cleaned_data["name"], request=request)
            messages.success(request, f"Team renamed to {team_.name}.")
        elif operation == "delete":
            actions.team_delete(actor=actor, team=team_, request=request)
            messages.success(request, f"Team {team_.name} deleted.")
            return HttpResponseRedirect(reverse("orgs:teams", args=[slug]))
        elif operation in {"add", "remove", "observer", "active"}:
            member_form = TeamMemberForm(request.POST)
            if not member_form.is_valid():
                raise ValidationError("Choose a member.")
            target = selectors.member_get(actor=actor, membership_id=member_form.cleaned_data["membership"])
            if operation == "add":
                observer = member_form.cleaned_data["observer"]
                actions.team_member_add(actor=actor, team=team_, membership=target, observer=observer, request=request)
            elif operation in {"observer", "active"}:
                # Changes how someone already in the team takes part (never adds them).
                if not selectors.team_members(actor=actor, team=team_).filter(membership=target).exists():
                    raise ValidationError(f"{target.user.display_name} is not in this team.")
                actions.team_member_add(actor=actor, team=team_, membership=target, observer=operation == "observer", request=request)
                messages.success(
                    request, f"{target.user.display_name} is now {'an observer' if operation == 'observer' else 'active'} in {team_.name}."
                )
            else:
                actions.team_member_remove(actor=actor, team=team_, membership=target, request=request)
        else:
            raise ValidationError("Unknown operation.")
    except ValidationError as error:
        messages.error(request, _error_text(error))
    return HttpResponseRedirect(reverse("orgs:team", args=[slug, team_.pk]))


@login_required
@require_http_methods(["GET", "POST"])
def invitations(request: HttpRequest, slug: str) -> HttpResponse:
    actor = selectors.membership_get(user=request.user, slug=slug, permission=Permission.INVITE)
    form = InvitationForm(request.POST or None, granter_role=actor.role)
    if request.method == "POST" and form.is_valid():
        try:
            invitation, _token = actions.invitation_create(actor=actor, email=form.cleaned_data["email"], role=form.cleaned_data["role"], request=request)
            messages.success(request, f"Invitation sent to {invitation.email}. It is valid for 7 days.")
            return HttpResponseRedirect(reverse("orgs:invitations", args=[slug]))
        except ValidationError as error:
            form.add_error(None, _error_text(error))
    return render(request, "orgs/invitations.html", {
        "organization": actor.organization, "actor": actor, "form": form,
        "invitations": selectors.organization_invitations(actor=actor)[:200], "nav": "invitations",
    })


@login_required
@require_POST
def invitation_revoke(request: HttpRequest, slug: str, invitation_id: int) -> HttpResponse:
    actor = selectors.membership_get(user=request.user, slug=slug, permission=Permission.INVITE)
    invitation = selectors.invitation_get(actor=actor, invitation_id=invitation_id)
    try:
        actions.invitation_revoke(actor=actor, invitation=invitation, request=request)
        messages.success(request, f"The invitation for {invitation.email} was revoked.")
    except ValidationError as error:
        messages.error(request, _error_text(error))
    return HttpResponseRedirect(reverse("orgs:invitations", args=[slug]))


@login_required
@require_http_methods(["GET", "POST"])
def organization_settings(request: HttpRequest, slug: str) -> HttpResponse:
    actor = selectors.membership_get(user=request.user, slug=slug, permission=Permission.MANAGE_SETTINGS)
    organization = actor.organization
    form = OrganizationSettingsForm(request.POST or None, initial={"name": organization.name, "require_two_factor": organization.require_two_factor})
    if request.method == "POST" and form.is_valid():
        actions.organization_update_settings(actor=actor, name=form.cleaned_data["name"], require_two_factor=form.cleaned_data["require_two_factor"], request=request)
        messages.success(request, "Settings saved.")
        return HttpResponseRedirect(reverse("orgs:settings", args=[slug]))
    return render(request, "orgs/settings.html", {"organization": organization, "actor": actor, "form": form, "nav": "org-settings"})


@require_http_methods(["GET", "POST"])
def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    """The link in the invitation mail: one answer for every unusable invitation.

    Signed out: the landing page, identical whether or not the address has an account (R5),
    with links to sign up (the address filled in) or sign in; ``next`` brings the person back
    here through allauth's sign-up, email verification and sign-in, and the token is kept in
    the session too. Signed in: accepting needs the invited address, verified by allauth on
    this account — holding the link alone is not enough, since links get forwarded.
    """
    try:
        invitation = selectors.invitation_by_token(token=token)
    except selectors.InvitationInvalidError:
        request.session.pop(PENDING_INVITATION_SESSION_KEY, None)
        return render(request, "orgs/invitation_invalid.html", status=404)
    if not request.user.is_authenticated:
        request.session[PENDING_INVITATION_SESSION_KEY] = token
        back_here = {"next": request.path}
        return render(request, "orgs/invitation_landing.html", {
            "invitation": invitation,
            "signup_query": urlencode({**back_here, "email": invitation.email}),
            "login_query": urlencode(back_here),
        })
    wrong_address = {"signed_in_as": request.user.email, "wrong_address": True}
    if request.method == "POST":
        try:
            membership = actions.invitation_accept(user=request.user, token=token, request=request)  # audits a refusal
        except selectors.InvitationInvalidError:
            verified = selectors.invitation_address_verified(invitation=invitation, user=request.user)
            return render(request, "orgs/invitation_invalid.html", {} if verified else wrong_address, status=404)
        request.session.pop(PENDING_INVITATION_SESSION_KEY, None)
        messages.success(request, f"Welcome to {membership.organization.name}.")
        return HttpResponseRedirect(reverse("orgs:members", args=[membership.organization.slug]))
    if not selectors.invitation_address_verified(invitation=invitation, user=request.user):
        return render(request, "orgs/invitation_invalid.html", wrong_address, status=404)
    return render(request, "orgs/invitation_confirm.html", {"invitation": invitation})
