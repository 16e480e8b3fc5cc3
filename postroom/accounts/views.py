from __future__ import annotations

from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from allauth.socialaccount.models import SocialAccount
from allauth.usersessions.models import UserSession
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from postroom.accounts.api_tokens import api_token_create, api_token_get, api_token_revoke, api_tokens_active, api_tokens_of
from postroom.accounts.forms import ApiTokenForm
from postroom.accounts.middleware import CLEAR_SITE_DATA
from postroom.accounts.models import User
from postroom.accounts.reauth import confirmation_required
from postroom.accounts.sessions import user_session_end


@login_required
@require_GET
def security(request: HttpRequest) -> HttpResponse:
    """Login & Security overview: one look at every way this account can be signed in to."""
    user = request.user
    if not isinstance(user, User):  # login_required has let only signed-in users through
        raise Http404
    authenticators = list(Authenticator.objects.filter(user=user))
    return render(request, "accounts/security.html", {
        "emails": EmailAddress.objects.filter(user=user),
        "has_password": user.has_usable_password(),
        "totp": next((a for a in authenticators if a.type == Authenticator.Type.TOTP), None),
        "passkeys": [a for a in authenticators if a.type == Authenticator.Type.WEBAUTHN],
        "recovery": next((a for a in authenticators if a.type == Authenticator.Type.RECOVERY_CODES), None),
        "session_count": UserSession.objects.filter(user=user).count(),
        "linked": SocialAccount.objects.filter(user=user),
        "api_token_count": api_tokens_active(user=user).count(),
        "nav": "security",
    })


@login_required
@require_POST
@confirmation_required
def session_end(request: HttpRequest, session_id: int) -> HttpResponse:
    """End one of the member's sessions from the session list; their own ends like a logout."""
    user = request.user
    if not isinstance(user, User):
        raise Http404
    user_session_end(actor=user, session_id=session_id, request=request)
    if request.user.is_authenticated:
        return HttpResponseRedirect(reverse("usersessions_list"))
    response = HttpResponseRedirect(reverse("account_login"))
    response["Clear-Site-Data"] = CLEAR_SITE_DATA
    return response


@login_required
@require_http_methods(["GET", "POST"])
@confirmation_required(allow_get=True)
def api_tokens(request: HttpRequest) -> HttpResponse:
    """The member's API tokens; POST creates one (after a fresh password confirmation, R6) and
    shows it in this answer only: it is never stored anywhere it could be shown again."""
    user = request.user
    if not isinstance(user, User):
        raise Http404
    form = ApiTokenForm(request.POST or None)
    created = None
    if request.method == "POST" and form.is_valid():
        try:
            created = api_token_create(
                user=user, name=form.cleaned_data["name"], scope=form.cleaned_data["scope"], expires_at=form.expires_at(), request=request,
            )
        except ValidationError as error:
            form.add_error(None, error)
        else:
            form = ApiTokenForm()
    response = render(request, "accounts/api_tokens.html", {
        "form": form, "created": created, "tokens": api_tokens_of(user=user), "now": timezone.now(), "nav": "security",
    })
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
@confirmation_required
def api_token_revoke_view(request: HttpRequest, token_id: int) -> HttpResponse:
    user = request.user
    if not isinstance(user, User):
        raise Http404
    token = api_token_get(user=user, token_id=token_id)
    try:
        api_token_revoke(user=user, token=token, request=request)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, f"The token {token.prefix}… was revoked. Requests that use it are refused from now on.")
    return HttpResponseRedirect(reverse("accounts:api_tokens"))
