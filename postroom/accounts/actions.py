from __future__ import annotations

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest

from postroom.accounts.models import User
from postroom.audit.actions import audit_record
from postroom.core.models import SetupToken
from postroom.core.tokens import new_token, token_hash, token_matches
from postroom.orgs.actions import organization_create
from postroom.orgs.models import Organization

SETUP_PURPOSE = "setup"


def setup_needed() -> bool:
    return not User.objects.exists()


@transaction.atomic
def setup_token_issue() -> str | None:
    """A fresh one-time setup token while nobody has an account yet; None afterwards."""
    if not setup_needed():
        SetupToken.objects.all().delete()
        return None
    token = new_token()
    SetupToken.objects.all().delete()
    SetupToken.objects.create(token_hash=token_hash(SETUP_PURPOSE, token))
    return token


def setup_token_valid(token: str) -> bool:
    stored = SetupToken.objects.first()
    return stored is not None and setup_needed() and token_matches(SETUP_PURPOSE, token, stored.token_hash)


@transaction.atomic
def setup_first_owner(*, token: str, email: str, name: str, password: str, organization_name: str, request: HttpRequest | None = None) -> tuple[User, Organization]:
    """Create the first organization and its owner; the token then stops working."""
    from allauth.account.models import EmailAddress

    stored = SetupToken.objects.select_for_update().first()
    if stored is None or not setup_needed() or not token_matches(SETUP_PURPOSE, token, stored.token_hash):
        raise ValidationError({"token": "This setup link is not valid any more. Restart Postroom to get a new one."})
    email = User.objects.normalize_email(email.strip()).lower()
    candidate = User(email=email, name=name.strip())
    candidate._organization_names_for_password_check = [organization_name]  # type: ignore[attr-defined]
    validate_password(password, user=candidate)
    user = User.objects.create_user(email=email, password=password, name=name.strip())
    # Whoever holds the console token runs this server; their address counts as confirmed.
    EmailAddress.objects.create(user=user, email=email, primary=True, verified=True)
    organization = organization_create(owner=user, name=organization_name, request=request)
    audit_record(action="setup.completed", actor=user, organization=organization, request=request, target=user, target_label=email)
    SetupToken.objects.all().delete()
    return user, organization
