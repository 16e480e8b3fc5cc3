"""Invitations (SECURITY.md R24, and R5 for invitations): single use, bound to the invited and
verified address, 7 days, revocable; a new account made from the link ends in the organization."""

from __future__ import annotations

import difflib
import re
from datetime import timedelta
from typing import cast as cast_to_user
from urllib.parse import quote

import pytest
import time_machine
from allauth.account.models import EmailAddress
from django.core import mail
from django.db import transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from postroom.accounts.models import User
from postroom.audit.models import AuditEvent
from postroom.conftest import Cast
from postroom.orgs import actions
from postroom.orgs.models import Membership
from postroom.orgs.policy import Role
from postroom.orgs.selectors import InvitationInvalidError
from postroom.testing.factories import UserFactory

pytestmark = pytest.mark.django_db
NEW_PASSWORD = "orbit lantern violin meadow"


def person(email: str, **fields: object) -> User:
    return cast_to_user(User, UserFactory(email=email, **fields))


def invite(cast: Cast, email: str, role: str = Role.MEMBER) -> str:
    _invitation, token = actions.invitation_create(actor=cast.alice_membership, email=email, role=role)
    return token


def accept_url(token: str) -> str:
    return reverse("invitation_accept", kwargs={"token": token})


def test_r24_invitation_is_accepted_once_by_the_invited_verified_address(cast: Cast, client_as) -> None:
    dana = person("dana@example.test")
    token = invite(cast, "dana@example.test", Role.ADMIN)
    client = client_as(dana)
    assert client.get(accept_url(token)).status_code == 200
    response = client.post(accept_url(token))
    assert response.status_code == 302
    assert Membership.objects.get(user=dana, organization=cast.org_a).role == Role.ADMIN
    # Single use: the same link is dead, for her and for anyone else.
    assert client.post(accept_url(token)).status_code == 404
    with pytest.raises(InvitationInvalidError):
        actions.invitation_accept(user=dana, token=token)
    assert Membership.objects.filter(user=dana).count() == 1


def test_r24_invitation_for_x_accepted_by_y_is_refused_and_audited(cast: Cast, client_as) -> None:
    token = invite(cast, "x@example.test")
    y = person("y@example.test")
    client = client_as(y)
    page = client.get(accept_url(token))
    assert page.status_code == 404
    assert b"y@example.test" in page.content
    assert client.post(accept_url(token)).status_code == 404
    assert not Membership.objects.filter(user=y).exists()
    refusal = AuditEvent.objects.get(action="invitation.accept_refused")
    assert (refusal.actor_id, refusal.result, refusal.target_label) == (y.pk, "denied", "x@example.test")
    # The invitation is still usable by its addressee.
    x = person("x@example.test")
    assert client_as(x).post(accept_url(token)).status_code == 302


def test_r24_invited_address_must_be_verified_on_the_account(cast: Cast, client_as) -> None:
    token = invite(cast, "x@example.test")
    y = person("y@example.test")
    EmailAddress.objects.create(user=y, email="x@example.test", verified=False, primary=False)
    assert client_as(y).post(accept_url(token)).status_code == 404
    assert not Membership.objects.filter(user=y).exists()
    EmailAddress.objects.filter(user=y, email="x@example.test").update(verified=True)
    assert client_as(y).post(accept_url(token)).status_code == 302
    assert Membership.objects.filter(user=y, organization=cast.org_a).exists()


def test_r24_invitation_expires_after_seven_days(cast: Cast, client_as) -> None:
    dana = person("dana@example.test")
    token = invite(cast, "dana@example.test")
    with time_machine.travel(timezone.now() + timedelta(days=6, hours=23)):
        assert client_as(dana).get(accept_url(token)).status_code == 200
    with time_machine.travel(timezone.now() + timedelta(days=7, seconds=1)):
        assert Client().get(accept_url(token)).status_code == 404
        assert client_as(dana).post(accept_url(token)).status_code == 404
    assert not Membership.objects.filter(user=dana).exists()


def test_r24_revoked_invitation_is_refused(cast: Cast, client_as) -> None:
    dana = person("dana@example.test")
    invitation, token = actions.invitation_create(actor=cast.carol_membership, email="dana@example.test", role=Role.MEMBER)
    response = client_as(cast.carol).post(reverse("orgs:invitation_revoke", args=["acme", invitation.pk]))
    assert response.status_code == 302
    assert client_as(dana).post(accept_url(token)).status_code == 404
    assert not Membership.objects.filter(user=dana).exists()


def test_r24_a_new_invitation_replaces_the_open_one(cast: Cast, client_as) -> None:
    dana = person("dana@example.test")
    first = invite(cast, "dana@example.test")
    second = invite(cast, "dana@example.test")
    assert client_as(dana).post(accept_url(first)).status_code == 404
    assert client_as(dana).post(accept_url(second)).status_code == 302


def test_r24_unknown_and_malformed_tokens_get_the_same_answer(cast: Cast) -> None:
    unknown = Client().get(accept_url("A" * 43))
    odd = Client().get(accept_url("x.y-z~"))
    assert unknown.status_code == odd.status_code == 404
    assert b"cannot be used" in unknown.content


def _normalised(text: str, *replacements: str) -> str:
    for number, value in enumerate(replacements):
        text = text.replace(value, f"<{number}>").replace(quote(value, safe=""), f"<{number}>")
    text = re.sub(r"/invitations/\d+/", "/invitations/<id>/", text)
    # Values drawn afresh for every response: CSP nonces, CSRF tokens, live-update cursors.
    return re.sub(r'nonce="[^"]+"|name="csrfmiddlewaretoken" value="[^"]+"|"X-CSRFToken": "[^"]+"|data-live-after="[^"]+"', "", text)


def test_r05_invitation_answers_do_not_reveal_whether_the_address_has_an_account(cast: Cast, client_as, django_capture_on_commit_callbacks) -> None:
    person("known@example.test")
    answers = []
    for email in ("known@example.test", "unknown@example.test"):
        mail.outbox.clear()
        with transaction.atomic():  # each address starts from the same state
            with django_capture_on_commit_callbacks(execute=True):
                created = client_as(cast.alice).post(reverse("orgs:invitations", args=["acme"]), {"email": email, "role": "member"}, follow=True)
            token = re.search(r"/invitations/([^/\s]+)/", mail.outbox[0].body).group(1)  # type: ignore[union-attr]
            landing = Client().get(accept_url(token))
            transaction.set_rollback(True)
        answers.append((
            created.status_code, created.redirect_chain, _normalised(created.content.decode(), email),
            mail.outbox[0].subject, _normalised(mail.outbox[0].body, email, token),
            landing.status_code, sorted(landing.cookies), _normalised(landing.content.decode(), email, token),
        ))
    for first, second in zip(*answers, strict=True):
        assert first == second, "\n".join(difflib.unified_diff(str(first).splitlines(), str(second).splitlines(), lineterm=""))


@pytest.fixture
def password_length_only(settings) -> None:
    """The password policy has its own tests in accounts; here only invitations are under test."""
    settings.AUTH_PASSWORD_VALIDATORS = [{"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 15}}]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("password_length_only")
def test_r24_new_account_from_the_invitation_link_signs_up_verifies_and_joins(cast: Cast) -> None:
    token = invite(cast, "newbie@example.test", Role.MEMBER)
    browser = Client()
    landing = browser.get(accept_url(token))
    assert landing.status_code == 200
    signup_link = re.search(r'href="(/accounts/signup/\?[^"]+)"', landing.content.decode()).group(1).replace("&amp;", "&")  # type: ignore[union-attr]
    signup_page = browser.get(signup_link)
    assert b'value="newbie@example.test"' in signup_page.content
    mail.outbox.clear()
    signed_up = browser.post(signup_link, {"email": "newbie@example.test", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert signed_up.status_code == 302
    assert signed_up["Location"] == reverse("account_email_verification_sent")
    assert not Membership.objects.filter(user__email="newbie@example.test").exists()

    confirmation_link = re.search(r"http://[^/\s]+(/accounts/confirm-email/\S+/)", mail.outbox[-1].body).group(1)  # type: ignore[union-attr]
    confirmed = browser.post(confirmation_link)
    assert confirmed.status_code == 302
    assert confirmed["Location"] == accept_url(token)  # back to the invitation, signed in

    assert b"Accept invitation" in browser.get(accept_url(token)).content
    accepted = browser.post(accept_url(token))
    assert accepted["Location"] == reverse("orgs:members", args=["acme"])
    membership = Membership.objects.get(user__email="newbie@example.test", organization=cast.org_a)
    assert membership.role == Role.MEMBER
    assert PENDING_KEY not in browser.session
    assert list(AuditEvent.objects.filter(organization=cast.org_a, action__in=["invitation.accepted", "member.added"]).values_list("action", "actor_id")) == [
        ("member.added", membership.user_id), ("invitation.accepted", membership.user_id),
    ]


@pytest.mark.django_db(transaction=True)
def test_r24_existing_account_signs_in_from_the_invitation_link_and_joins(cast: Cast) -> None:
    person("dana@example.test", password=NEW_PASSWORD)
    token = invite(cast, "dana@example.test", Role.ADMIN)
    browser = Client()
    landing = browser.get(accept_url(token))
    login_link = re.search(r'href="(/accounts/login/\?[^"]+)"', landing.content.decode()).group(1).replace("&amp;", "&")  # type: ignore[union-attr]
    assert browser.session[PENDING_KEY] == token
    signed_in = browser.post(login_link, {"login": "dana@example.test", "password": NEW_PASSWORD})
    assert signed_in.status_code == 302
    assert signed_in["Location"] == accept_url(token)
    assert browser.post(accept_url(token)).status_code == 302
    assert Membership.objects.get(user__email="dana@example.test", organization=cast.org_a).role == Role.ADMIN


PENDING_KEY = "postroom_invitation_token"
