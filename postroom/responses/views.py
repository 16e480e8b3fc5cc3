"""Response pages: list (with a scope filter), create, edit, delete, attachments.

Shape of every view: parse → access (selectors) → action → render. A response the actor cannot
see is 404 (a teammate's personal one, another team's, another organization's); one the actor can
see but not manage is shown read-only, and a write to it is 403.
"""

from __future__ import annotations

from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from postroom.orgs.models import Membership
from postroom.orgs.policy import Permission, role_allows
from postroom.orgs.selectors import membership_get
from postroom.responses import actions, selectors, variables
from postroom.responses.forms import ResponseForm
from postroom.responses.models import Response, Scope

MAX_UPLOADS = actions.MAX_ATTACHMENTS


def _scopes(actor: Membership) -> list[tuple[str, str]]:
    choices = [(Scope.PERSONAL.value, "Only me")]
    if selectors.teams_for_responses(actor=actor).exists():
        choices.append((Scope.TEAM.value, "A team of mine"))
    if role_allows(actor.role, Permission.MANAGE_ORGANIZATION_RESPONSES):
        choices.append((Scope.ORGANIZATION.value, "Everyone in the organization"))
    return choices


def _uploads(request: HttpRequest) -> list[actions.NewAttachment]:
    return [
        actions.NewAttachment(filename=upload.name or "attachment", content_type=upload.content_type or "", content=upload.read())
        for upload in request.FILES.getlist("attachments")[:MAX_UPLOADS]
    ]


def _add_errors(form: ResponseForm, error: ValidationError) -> None:
    for field, field_messages in error.message_dict.items():
        form.add_error(field if field in form.fields else None, field_messages)


def _page(request: HttpRequest, actor: Membership, form: ResponseForm, response: Response | None) -> HttpResponse:
    return render(request, "responses/form.html", {
        "organization": actor.organization, "form": form, "response": response, "nav": "responses",
        "variables": variables.VARIABLES, "max_attachment_mb": actions.MAX_ATTACHMENT_BYTES // (1024 * 1024),
        "can_manage": response is None or actions.can_manage(actor, response),
        "attachments": list(response.attachments.all()) if response is not None else [],
    })  # fmt: skip


@login_required
@require_GET
def response_list(request: HttpRequest, slug: str) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    scope = request.GET.get("scope", "")
    if scope not in Scope.values:
        scope = ""
    responses = selectors.responses_by_name(actor=actor, scope=scope or None)
    rows = [(response, actions.can_manage(actor, response)) for response in responses]
    return render(request, "responses/list.html", {
        "organization": actor.organization, "rows": rows, "scope": scope, "scopes": Scope.choices, "nav": "responses",
    })  # fmt: skip


@login_required
@require_http_methods(["GET", "POST"])
def response_new(request: HttpRequest, slug: str) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    teams = selectors.teams_for_responses(actor=actor)
    if request.method == "POST":
        form = ResponseForm(request.POST, teams=teams, scopes=_scopes(actor))
        if form.is_valid():
            data = form.cleaned_data
            content = actions.ResponseContent(name=data["name"], subject=data["subject"], body=data["body"])
            try:
                with_files = _uploads(request)
                response = actions.response_create(actor=actor, scope=data["scope"], team=data["team"], content=content, request=request)
                actions.response_attachments_add(actor=actor, response=response, files=with_files, request=request)
            except ValidationError as error:
                _add_errors(form, error)
            else:
                messages.success(request, "The response is saved.")
                return HttpResponseRedirect(reverse("responses:edit", args=[slug, response.pk]))
    else:
        form = ResponseForm(teams=teams, scopes=_scopes(actor))
    return _page(request, actor, form, None)


@login_required
@require_http_methods(["GET", "POST"])
def response_edit(request: HttpRequest, slug: str, response_id: UUID) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    response = selectors.response_get(actor=actor, response_id=response_id)
    teams = selectors.teams_for_responses(actor=actor)
    scopes = _scopes(actor)
    if response.scope not in {value for value, _label in scopes}:
        scopes.append((response.scope, response.get_scope_display()))
    if request.method == "POST":
        if not actions.can_manage(actor, response):
            raise PermissionDenied(actions.refusal_message(response.scope))
        form = ResponseForm(request.POST, teams=teams, scopes=scopes)
        if form.is_valid():
            data = form.cleaned_data
            content = actions.ResponseContent(name=data["name"], subject=data["subject"], body=data["body"])
            try:
                actions.response_update(
                    actor=actor, response=response, content=content, scope=data["scope"], team=data["team"], request=request
                )
                actions.response_attachments_add(actor=actor, response=response, files=_uploads(request), request=request)
            except ValidationError as error:
                _add_errors(form, error)
            else:
                messages.success(request, "The response is saved.")
                return HttpResponseRedirect(reverse("responses:edit", args=[slug, response.pk]))
    else:
        form = ResponseForm(
            initial={"name": response.name, "scope": response.scope, "team": response.team_id, "subject": response.subject, "body": response.body},
            teams=teams, scopes=scopes,
        )  # fmt: skip
    return _page(request, actor, form, response)


@login_required
@require_POST
def response_delete(request: HttpRequest, slug: str, response_id: UUID) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    response = selectors.response_get(actor=actor, response_id=response_id)
    actions.response_delete(actor=actor, response=response, request=request)
    messages.success(request, "The response is deleted.")
    return HttpResponseRedirect(reverse("responses:list", args=[slug]))


@login_required
@require_POST
def response_attachment_remove(request: HttpRequest, slug: str, response_id: UUID) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    response = selectors.response_get(actor=actor, response_id=response_id)
    attachment_id = _uuid_or_none(request.POST.get("attachment", ""))
    attachment = response.attachments.filter(pk=attachment_id).first() if attachment_id is not None else None
    if attachment is None:
        messages.error(request, "That file is no longer attached.")
    else:
        actions.response_attachment_remove(actor=actor, response=response, attachment=attachment, request=request)
        messages.success(request, "The file is removed.")
    return HttpResponseRedirect(reverse("responses:edit", args=[slug, response.pk]))


def _uuid_or_none(value: str) -> UUID | None:
    try:
        return UUID(value)
    except ValueError:
        return None
