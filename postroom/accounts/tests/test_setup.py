"""SECURITY.md R14: no default accounts; the first owner comes from a one-time console token."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from postroom.accounts.actions import setup_token_issue
from postroom.accounts.models import User
from postroom.accounts.tests.authflows import is_signed_in
from postroom.audit.models import AuditEvent
from postroom.core.models import SetupToken
from postroom.orgs.models import Membership, Organization
from postroom.orgs.policy import Role

PASSWORD = "harbor lights at the quiet dock"


def setup_form(token: str) -> dict[str, str]:
    return {"token": token, "organization_name": "Harbor Lights", "name": "Frida First", "email": "Frida@Example.test", "password": PASSWORD}


def nothing_created() -> bool:
    return not User.objects.exists() and not Organization.objects.exists()


@pytest.mark.django_db
def test_r14_a_freshly_migrated_database_has_no_account_that_can_sign_in() -> None:
    assert not [user for user in User.objects.all() if user.has_usable_password()]
    assert not User.objects.exists()
    assert Client().get(reverse("web:home"))["Location"] == reverse("web:setup")


@pytest.mark.django_db
def test_r14_without_a_token_the_setup_page_creates_nothing() -> None:
    setup_token_issue()
    client = Client()
    page = client.get(reverse("web:setup"))
    assert page.status_code == 200
    assert b"setup link" in page.content
    assert b'name="password"' not in page.content
    client.post(reverse("web:setup"), setup_form(""))
    assert nothing_created()


@pytest.mark.django_db
def test_r14_a_wrong_token_creates_nothing() -> None:
    real = setup_token_issue()
    assert real
    client = Client()
    assert client.get(reverse("web:setup"), {"token": "not-the-token"}).status_code == 403
    response = client.post(reverse("web:setup"), setup_form(real[:-2] + "xx"))
    assert response.status_code == 403
    assert nothing_created()


@pytest.mark.django_db
def test_r14_the_token_works_once_then_the_page_is_gone() -> None:
    token = setup_token_issue()
    assert token
    assert not SetupToken.objects.filter(token_hash__contains=token).exists()  # stored only as an HMAC
    client = Client()
    form_page = client.get(reverse("web:setup"), {"token": token})
    assert form_page.status_code == 200
    assert b'name="password"' in form_page.content
    response = client.post(reverse("web:setup"), setup_form(token))
    assert response.status_code == 302
    assert is_signed_in(client)
    owner = User.objects.get()
    assert owner.email == "frida@example.test"
    assert owner.check_password(PASSWORD)
    assert Membership.objects.get(user=owner).role == Role.OWNER
    assert AuditEvent.objects.filter(action="setup.completed", actor=owner).count() == 1
    assert not SetupToken.objects.exists()

    stranger = Client()
    assert stranger.get(reverse("web:setup"), {"token": token}).status_code == 404
    assert stranger.post(reverse("web:setup"), setup_form(token) | {"email": "second@example.test"}).status_code == 404
    assert setup_token_issue() is None
    assert User.objects.count() == 1


@pytest.mark.django_db
def test_r14_nobody_can_sign_up_before_setup_and_take_the_page_away() -> None:
    token = setup_token_issue()
    assert token
    Client().post(reverse("account_signup"), {"email": "early@example.test", "password1": PASSWORD, "password2": PASSWORD})
    assert nothing_created()
    assert Client().post(reverse("web:setup"), setup_form(token)).status_code == 302
    signup = Client().post(reverse("account_signup"), {"email": "later@example.test", "password1": PASSWORD, "password2": PASSWORD})
    assert signup.status_code == 302
    assert User.objects.filter(email="later@example.test").exists()
