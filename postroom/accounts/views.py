from __future__ import annotations

from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from allauth.socialaccount.models import SocialAccount
from allauth.usersessions.models import UserSession
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

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
