"""Settings › Mailboxes. Shape of every view: parse → access (selectors) → action → render.

Mailboxes belong to a membership, so the pages live under the organization (``/o/<slug>/``):
a non-member gets 404 from ``membership_get``, a member reaches only their own mailboxes, and an
admin also sees the status of everyone's (``selectors``). State changes are POST only.
Changing a mailbox's credentials or removing it needs a recently confirmed password (R6).
"""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from postroom.accounts.reauth import confirmation_required
from postroom.mailboxes import actions, selectors
from postroom.mailboxes.actions import MailboxConnectionFailed
from postroom.mailboxes.forms import ConnectForm, ImportRangeForm, ReconnectForm, ReimportForm, import_since_from, preset_initial
from postroom.mailboxes.models import Mailbox
from postroom.mailboxes.presets import PRESETS
from postroom.orgs.models import Membership
from postroom.orgs.selectors import membership_get, organization_teams

POLL_SECONDS = 3


def _list_url(slug: str) -> str:
    return reverse("mailboxes:list", args=[slug])


def _status_context(actor: Membership) -> dict[str, object]:
    own = selectors.mailbox_status_rows(actor=actor, mailboxes=selectors.mailboxes_of_member(actor=actor))
    oversee = selectors.can_oversee_mailboxes(actor)
    others = (
        [row for row in selectors.mailbox_status_rows(actor=actor, mailboxes=selectors.mailboxes_of_organization(actor=actor)) if not row.is_own]
        if oversee else []
    )
    return {
        "own_rows": own, "other_rows": others, "teams": list(organization_teams(actor=actor)), "can_oversee": oversee,
        # Poll only while something changes by itself: an import in progress.
        "polling": any(row.state in {"syncing", "waiting"} for row in [*own, *others]), "poll_seconds": POLL_SECONDS,
    }


@login_required
@require_GET
def mailbox_list(request: HttpRequest, slug: str) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    context = {"organization": actor.organization, "actor": actor, "nav": "mailboxes", **_status_context(actor)}
    context["import_form"] = ImportRangeForm()
    context["reimport_form"] = ReimportForm()
    return render(request, "mailboxes/list.html", context)


@login_required
@require_GET
def mailbox_status(request: HttpRequest, slug: str) -> HttpResponse:
    """The status block alone, polled by htmx while an import runs."""
    actor = membership_get(user=request.user, slug=slug)
    context = {"organization": actor.organization, "actor": actor, **_status_context(actor)}
    context["import_form"] = ImportRangeForm()
    context["reimport_form"] = ReimportForm()
    return render(request, "mailboxes/_status.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def mailbox_connect(request: HttpRequest, slug: str) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    if request.method == "POST":
        form = ConnectForm(request.POST)
        sign_in = form.sign_in() if form.is_valid() else None
        if sign_in is not None:
            try:
                if request.POST.get("intent") == "test":
                    actions.mailbox_test_sign_in(actor=actor, sign_in=sign_in)
                    messages.success(request, "Both servers accepted the sign-in. Nothing was saved yet.")
                else:
                    mailbox = actions.mailbox_connect(
                        actor=actor, name=form.cleaned_data["name"], email_address=form.cleaned_data["email_address"],
                        sign_in=sign_in, import_since=import_since_from(form.cleaned_data["import_range"]), request=request,
                    )
                    messages.success(request, f"{mailbox.email_address} is connected. The import starts with the newest mail.")
                    return HttpResponseRedirect(_list_url(slug))
            except MailboxConnectionFailed as error:
                form.add_error(None, error)
    else:
        # ?preset= is how the provider select fills the servers without JavaScript.
        form = ConnectForm(initial={"import_range": "3m", **preset_initial(request.GET.get("preset", ""))})
    return render(request, "mailboxes/connect.html", {
        "organization": actor.organization, "actor": actor, "form": form, "nav": "mailboxes",
        "presets": [preset_initial(key) | {"key": key, "name": preset.name} for key, preset in PRESETS.items()],
        "chosen_preset": request.GET.get("preset", ""),
    })


@login_required
@require_http_methods(["GET", "POST"])
def mailbox_reconnect(request: HttpRequest, slug: str, mailbox_id: uuid.UUID) -> HttpResponse:
    # Access first, so that someone else's mailbox is 404 before any password is asked for.
    actor = membership_get(user=request.user, slug=slug)
    mailbox = selectors.mailbox_get_own(actor=actor, mailbox_id=mailbox_id)
    return _reconnect_confirmed(request, actor=actor, mailbox=mailbox)


@confirmation_required
def _reconnect_confirmed(request: HttpRequest, *, actor: Membership, mailbox: Mailbox) -> HttpResponse:
    slug = actor.organization.slug
    if request.method == "POST":
        form = ReconnectForm(request.POST)
        sign_in = form.sign_in() if form.is_valid() else None
        if sign_in is not None:
            try:
                actions.mailbox_update_credentials(actor=actor, mailbox=mailbox, sign_in=sign_in, request=request)
                messages.success(request, f"{mailbox.email_address} is connected again.")
                return HttpResponseRedirect(_list_url(slug))
            except MailboxConnectionFailed as error:
                form.add_error(None, error)
    else:
        form = ReconnectForm(initial=ReconnectForm.initial_for(mailbox))
    return render(request, "mailboxes/reconnect.html", {
        "organization": actor.organization, "actor": actor, "mailbox": mailbox, "form": form, "nav": "mailboxes",
    })


@login_required
@require_POST
def mailbox_test(request: HttpRequest, slug: str, mailbox_id: uuid.UUID) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    mailbox = selectors.mailbox_get_own(actor=actor, mailbox_id=mailbox_id)
    outcome = actions.mailbox_test(actor=actor, mailbox=mailbox, request=request)
    if outcome.ok:
        messages.success(request, f"{mailbox.email_address}: both servers accepted the sign-in.")
    for problem in outcome.problems:
        messages.error(request, f"{mailbox.email_address}: {problem}")
    return HttpResponseRedirect(_list_url(slug))


@login_required
@require_http_methods(["GET", "POST"])
def mailbox_remove(request: HttpRequest, slug: str, mailbox_id: uuid.UUID) -> HttpResponse:
    """GET asks (works without JavaScript, and is where the password confirmation returns to);
    POST removes."""
    actor = membership_get(user=request.user, slug=slug)
    mailbox = selectors.mailbox_get(actor=actor, mailbox_id=mailbox_id)
    return _remove_confirmed(request, actor=actor, mailbox=mailbox)


@confirmation_required
def _remove_confirmed(request: HttpRequest, *, actor: Membership, mailbox: Mailbox) -> HttpResponse:
    if request.method == "POST":
        actions.mailbox_remove(actor=actor, mailbox=mailbox, request=request)
        messages.success(request, f"{mailbox.email_address} was removed. Nothing was changed on the mail server.")
        return HttpResponseRedirect(_list_url(actor.organization.slug))
    return render(request, "mailboxes/remove.html", {"organization": actor.organization, "actor": actor, "mailbox": mailbox, "nav": "mailboxes"})


@login_required
@require_POST
def mailbox_import_range(request: HttpRequest, slug: str, mailbox_id: uuid.UUID) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    mailbox = selectors.mailbox_get_own(actor=actor, mailbox_id=mailbox_id)
    form = ImportRangeForm(request.POST)
    if form.is_valid():
        actions.mailbox_set_import_since(actor=actor, mailbox=mailbox, since=import_since_from(form.cleaned_data["import_range"]), request=request)
        messages.success(request, f"{mailbox.email_address}: import range saved.")
    else:
        messages.error(request, "Choose how far back to import.")
    return HttpResponseRedirect(_list_url(slug))


@login_required
@require_POST
def mailbox_reimport(request: HttpRequest, slug: str, mailbox_id: uuid.UUID) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    if not selectors.can_oversee_mailboxes(actor):
        raise PermissionDenied("Only organization admins can have a mailbox imported again.")
    mailbox: Mailbox = selectors.mailbox_get(actor=actor, mailbox_id=mailbox_id)
    form = ReimportForm(request.POST)
    if form.is_valid():
        actions.mailbox_reimport_from(actor=actor, mailbox=mailbox, since=form.cleaned_data["since"], request=request)
        messages.success(request, f"{mailbox.email_address} will be imported again.")
    else:
        messages.error(request, "Enter a valid date, or leave it empty to import everything.")
    return HttpResponseRedirect(_list_url(slug))


@login_required
@require_POST
def mailbox_team(request: HttpRequest, slug: str, mailbox_id: uuid.UUID) -> HttpResponse:
    """Make a mailbox a team mailbox (``team`` = a team's id) or a personal one again (empty)."""
    actor = membership_get(user=request.user, slug=slug)
    mailbox = selectors.mailbox_get(actor=actor, mailbox_id=mailbox_id)
    team_id = request.POST.get("team", "")
    team = None
    if team_id:
        team = organization_teams(actor=actor).filter(pk=int(team_id) if team_id.isdigit() else 0).first()
        if team is None:
            raise Http404
    try:
        actions.mailbox_team_set(actor=actor, mailbox=mailbox, team=team, request=request)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        if team is None:
            messages.success(request, f"{mailbox.email_address} is a personal mailbox: new mail in it stays private to its owner.")
        else:
            messages.success(request, f"{mailbox.email_address} is a team mailbox: new mail in it is shared with {team.name}.")
    return HttpResponseRedirect(_list_url(slug))
