"""Organization admin pages. Shape of every view: parse → access (selectors) → action → render."""

from __future__ import annotations

from allauth.mfa.models import Authenticator
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from postroom.orgs import actions, selectors
from postroom.orgs.forms import InvitationForm, OrganizationSettingsForm, RoleForm, TeamForm, TeamMemberForm
from postroom.orgs.policy import Permission, role_allows


def _error_text(error: ValidationError) -> str:
    return " ".join(message for messages_ in getattr(error, "message_dict", {"": error.messages}).values() for message in messages_)


@login_required
@require_GET
def members(request: HttpRequest, slug: str) -> HttpResponse:
    actor = selectors.membership_get(user=request.user, slug=slug, permission=Permission.VIEW_MEMBERS)
    rows = list(selectors.organization_members(actor=actor))
    with_two_factor = set(
        Authenticator.objects.filter(user__in=[row.user_id for row in rows], type__in=[Authenticator.Type.TOTP, Authenticator.Type.WEBAUTHN]).values_list("user_id", flat=True)
    )
    return render(request, "orgs/members.html", {
        "organization": actor.organization, "actor": actor, "rows": rows, "with_two_factor": with_two_factor,
        "can_manage": role_allows(actor.role, Permission.MANAGE_MEMBERS), "role_form": RoleForm(), "nav": "members",
    })


@login_required
@require_POST
def member_role(request: HttpRequest, slug: str, membership_id: int) -> HttpResponse:
    actor = selectors.membership_get(user=request.user, slug=slug, permission=Permission.MANAGE_MEMBERS)
    target = selectors.member_get(actor=actor, membership_id=membership_id)
    form = RoleForm(request.POST)
    if form.is_valid():
        try:
            actions.membership_change_role(actor=actor, membership=target, role=form.cleaned_data["role"], request=request)
            messages.success(request, f"{target.user.email} is now {form.cleaned_data['role']}.")
        except ValidationError as error:
            messages.error(request, _error_text(error))
    return HttpResponseRedirect(reverse("orgs:members", args=[slug]))


@login_required
@require_POST
def member_remove(request: HttpRequest, slug: str, membership_id: int) -> HttpResponse:
    actor = selectors.membership_get(user=request.user, slug=slug)
    target = selectors.member_get(actor=actor, membership_id=membership_id)
    if target.pk != actor.pk and not role_allows(actor.role, Permission.MANAGE_MEMBERS):
        from django.http import Http404

        raise Http404
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
    can_manage = role_allows(actor.role, Permission.MANAGE_TEAMS)
    form = TeamForm(request.POST or None)
    if request.method == "POST":
        if not can_manage:
            from django.http import Http404

            raise Http404
        if form.is_valid():
            try:
                team = actions.team_create(actor=actor, name=form.cleaned_data["name"], request=request)
                messages.success(request, f"Team {team.name} created.")
                return HttpResponseRedirect(reverse("orgs:team", args=[slug, team.pk]))
            except ValidationError as error:
                form.add_error("name", _error_text(error))
    return render(request, "orgs/teams.html", {
        "organization": actor.organization, "actor": actor, "teams": selectors.organization_teams(actor=actor),
        "form": form, "can_manage": can_manage, "nav": "teams",
    })


@login_required
@require_GET
def team(request: HttpRequest, slug: str, team_id: int) -> HttpResponse:
    actor = selectors.membership_get(user=request.user, slug=slug, permission=Permission.VIEW_MEMBERS)
    team_ = selectors.team_get(actor=actor, team_id=team_id)
    in_team = list(team_.team_memberships.select_related("membership__user").order_by("membership__user__email"))
    ids = {link.membership_id for link in in_team}
    others = [m for m in selectors.organization_members(actor=actor) if m.pk not in ids]
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
            if form.is_valid():
                actions.team_rename(actor=actor, team=team_, name=form.cleaned_data["name"], request=request)
        elif operation == "delete":
            actions.team_delete(actor=actor, team=team_, request=request)
            messages.success(request, f"Team {team_.name} deleted.")
            return HttpResponseRedirect(reverse("orgs:teams", args=[slug]))
        elif operation in {"add", "remove"}:
            member_form = TeamMemberForm(request.POST)
            if member_form.is_valid():
                target = selectors.member_get(actor=actor, membership_id=member_form.cleaned_data["membership"])
                if operation == "add":
                    actions.team_member_add(actor=actor, team=team_, membership=target, request=request)
                else:
                    actions.team_member_remove(actor=actor, team=team_, membership=target, request=request)
    except ValidationError as error:
        messages.error(request, _error_text(error))
    return HttpResponseRedirect(reverse("orgs:team", args=[slug, team_.pk]))


@login_required
@require_http_methods(["GET", "POST"])
def invitations(request: HttpRequest, slug: str) -> HttpResponse:
    actor = selectors.membership_get(user=request.user, slug=slug, permission=Permission.INVITE)
    form = InvitationForm(request.POST or None)
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
    actions.invitation_revoke(actor=actor, invitation=invitation, request=request)
    messages.success(request, f"The invitation for {invitation.email} was revoked.")
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
    """One answer for every invalid invitation; accepting needs the invited, verified address."""
    try:
        invitation = actions.invitation_find(token=token)
    except actions.InvitationInvalidError:
        return render(request, "orgs/invitation_invalid.html", status=404)
    if not request.user.is_authenticated:
        request.session["postroom_invitation_token"] = token
        return render(request, "orgs/invitation_landing.html", {"invitation": invitation})
    if request.method == "POST":
        try:
            membership = actions.invitation_accept(user=request.user, token=token, request=request)
        except actions.InvitationInvalidError:
            return render(request, "orgs/invitation_invalid.html", {"signed_in_as": request.user.email}, status=404)
        request.session.pop("postroom_invitation_token", None)
        messages.success(request, f"Welcome to {membership.organization.name}.")
        return HttpResponseRedirect(reverse("orgs:members", args=[membership.organization.slug]))
    return render(request, "orgs/invitation_confirm.html", {"invitation": invitation})
