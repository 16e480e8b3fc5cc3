from __future__ import annotations

from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from allauth.socialaccount.models import SocialAccount
from allauth.usersessions.models import UserSession
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from postroom.accounts.models import User


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
