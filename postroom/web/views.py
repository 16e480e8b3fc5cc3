from __future__ import annotations

import json
import logging
from pathlib import Path

from django import forms
from django.conf import settings
from django.contrib.auth import login
from django.core.exceptions import PermissionDenied, RequestDataTooBig, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from postroom.accounts.actions import setup_first_owner, setup_needed, setup_token_valid
from postroom.audit.models import AuditEvent
from postroom.core.http import wants_partial
from postroom.orgs.policy import Permission, role_allows
from postroom.orgs.selectors import memberships_of

logger = logging.getLogger(__name__)
csp_logger = logging.getLogger("postroom.csp")


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    if setup_needed():
        return HttpResponseRedirect(reverse("web:setup"))
    if not request.user.is_authenticated:
        return HttpResponseRedirect(reverse("account_login"))
    memberships = list(memberships_of(user=request.user).prefetch_related("organization__memberships__user", "organization__teams"))
    cards = []
    for membership in memberships:
        organization = membership.organization
        members = list(organization.memberships.all())
        from allauth.mfa.models import Authenticator

        with_two_factor = set(
            Authenticator.objects.filter(user__in=[m.user_id for m in members], type__in=[Authenticator.Type.TOTP, Authenticator.Type.WEBAUTHN]).values_list("user_id", flat=True)
        )
        recent = []
        if role_allows(membership.role, Permission.VIEW_AUDIT_LOG):
            recent = list(AuditEvent.objects.filter(organization=organization)[:6])
        cards.append(
            {
                "membership": membership,
                "organization": organization,
                "member_count": len(members),
                "team_count": len(organization.teams.all()),
                "two_factor_count": sum(1 for m in members if m.user_id in with_two_factor),
                "recent_events": recent,
            }
        )
    return render(request, "web/home.html", {"cards": cards, "nav": "home"})


class SetupForm(forms.Form):
    token = forms.CharField(widget=forms.HiddenInput)
    organization_name = forms.CharField(max_length=120, label="Organization name")
    name = forms.CharField(max_length=150, label="Your name")
    email = forms.EmailField(label="Your email address")
    password = forms.CharField(widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}), max_length=1024, help_text="At least 15 characters. A few unrelated words make a strong, memorable password.")


@require_http_methods(["GET", "POST"])
def setup(request: HttpRequest) -> HttpResponse:
    """First-run page: exists only while nobody has an account, and needs the console token."""
    if not setup_needed():
        raise Http404
    form = SetupForm(request.POST or None, initial={"token": request.GET.get("token", "")})
    token = request.POST.get("token") or request.GET.get("token", "")
    if not token or not setup_token_valid(token):
        return render(request, "web/setup_token.html", status=403 if token else 200)
    if request.method == "POST" and form.is_valid():
        try:
            user, _organization = setup_first_owner(
                token=form.cleaned_data["token"], email=form.cleaned_data["email"], name=form.cleaned_data["name"],
                password=form.cleaned_data["password"], organization_name=form.cleaned_data["organization_name"], request=request,
            )
        except ValidationError as error:
            if hasattr(error, "error_dict"):
                for field, messages in error.message_dict.items():
                    form.add_error(field if field in form.fields else None, messages)
            else:
                form.add_error("password", error)
        else:
            login(request, user, backend="allauth.account.auth_backends.AuthenticationBackend")
            return HttpResponseRedirect(reverse("web:home"))
    return render(request, "web/setup.html", {"form": form})


@require_GET
def security_txt(request: HttpRequest) -> HttpResponse:
    from datetime import timedelta

    from django.utils import timezone

    expires = (timezone.now() + timedelta(days=180)).strftime("%Y-%m-%dT00:00:00Z")
    body = (
        f"Contact: {settings.POSTROOM_SECURITY_CONTACT}\n"
        f"Expires: {expires}\n"
        f"Canonical: {settings.PUBLIC_URL}/.well-known/security.txt\n"
        "Preferred-Languages: en\n"
    )
    return HttpResponse(body, content_type="text/plain; charset=utf-8")


DEFAULT_PRIVACY_TEXT = (
    "This Postroom server is run by its operator, who decides how long data is kept and who may "
    "use it. Postroom stores the content of your email encrypted, never shows it to operators' "
    "tools, and lets you export your data at any time. Ask the operator of this server for its "
    "privacy policy; they can publish it on this page."
)


@require_GET
def privacy(request: HttpRequest) -> HttpResponse:
    text = DEFAULT_PRIVACY_TEXT
    if settings.POSTROOM_PRIVACY_POLICY_FILE:
        text = Path(settings.POSTROOM_PRIVACY_POLICY_FILE).read_text(encoding="utf-8")
    paragraphs = [part.strip() for part in text.split("\n\n") if part.strip()]
    template = "web/privacy_app.html" if request.user.is_authenticated else "web/privacy.html"
    return render(request, template, {"paragraphs": paragraphs})


@csrf_exempt  # browsers send CSP reports without a CSRF token; the view only logs.
@require_POST
def csp_report(request: HttpRequest) -> HttpResponse:
    try:
        report = json.loads(request.body[:16384] or b"{}").get("csp-report", {})
    except (ValueError, AttributeError):
        report = {}
    csp_logger.warning(
        "CSP violation: directive=%s blocked=%s page=%s",
        str(report.get("violated-directive", ""))[:100], str(report.get("blocked-uri", ""))[:200], str(report.get("document-uri", ""))[:200],
    )
    return HttpResponse(status=204)


def _error_page(title: str, text: str, *, status: int, reference: str = "") -> HttpResponse:
    """Rendered without the request: no context processors, session or database, so an error
    page still appears when those are what failed. Nothing from the error itself is shown."""
    body = render_to_string("web/error.html", {"title": title, "text": text, "reference": reference})
    return HttpResponse(body, status=status)


def _api_error(request: HttpRequest, detail: str, *, status: int) -> HttpResponse | None:
    """Errors under /api/ (an unknown path, a crash) answer in the API's JSON shape."""
    if not request.path.startswith("/api/"):
        return None
    return JsonResponse({"detail": detail}, status=status)


def error_404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    text = "There is nothing here, or you do not have access to it."
    return _api_error(request, text, status=404) or _error_page("Not found", text, status=404)


def error_403(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    # Our actions raise PermissionDenied with a sentence written for the person (e.g. "You cannot
    # change your own role."); anything else gets the generic text.
    text = str(exception) if isinstance(exception, PermissionDenied) and str(exception) else "You are not allowed to do this."
    return _error_page("Not allowed", text, status=403)


def error_400(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if isinstance(exception, RequestDataTooBig) and str(exception).startswith("The upload is too large"):  # postroom.core.uploads
        if wants_partial(request):
            # The page shows an htmx error answer's text in a toast (inbox.js), as for the ASGI limit's 413.
            return HttpResponse(str(exception), status=413, content_type="text/plain; charset=utf-8")
        return _error_page("Upload too large", str(exception) + " Go back and attach fewer or smaller files.", status=413)
    return _error_page("Bad request", "The request could not be understood.", status=400)


def error_500(request: HttpRequest) -> HttpResponse:
    reference = getattr(request, "correlation_id", "")
    api_answer = _api_error(request, f"Something went wrong. The error has been logged; reference: {reference}", status=500)
    if api_answer is not None:
        return api_answer
    return _error_page(
        "Something went wrong",
        "The error has been logged. If it keeps happening, give your administrator this reference:",
        status=500,
        reference=getattr(request, "correlation_id", ""),
    )


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    # The reason (missing cookie, bad origin …) helps an attacker more than a person; it is logged
    # by Django's django.security.csrf logger.
    return _error_page("Form expired", "This form is out of date. Go back, reload the page and try again.", status=403)
