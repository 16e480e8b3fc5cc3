"""R13 and R6 for linked logins: link and unlink only after a fresh reauthentication."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import time_machine
from allauth.account.internal.flows.login import AUTHENTICATION_METHODS_SESSION_KEY
from allauth.socialaccount.models import SocialAccount
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from postroom.accounts.models import User
from postroom.accounts.tests.oidc import steps
from postroom.accounts.tests.oidc.idp_client import LocalIdentityProvider
from postroom.conftest import Cast
from postroom.testing.factories import DEFAULT_PASSWORD


def reauthentications(client: Client) -> list[dict[str, Any]]:
    return [record for record in client.session.get(AUTHENTICATION_METHODS_SESSION_KEY, []) if record.get("reauthenticated")]


def oidc_only_member(idp: LocalIdentityProvider, sub: str = "dana-sub") -> tuple[Client, User]:
    idp.add_identity(sub, f"{sub}@corp.test")
    client = Client()
    assert steps.sign_in(client, idp, "corp", sub).status_code == 302
    user = User.objects.get(socialaccount__provider="corp", socialaccount__uid=sub)
    return client, user


def reauthenticate_at_provider(client: Client, idp: LocalIdentityProvider, sub: str, *, next_url: str = "/") -> Any:
    authorize_url = steps.start(client, "corp", process="redirect", action="reauthenticate", next=next_url)
    return steps.finish(client, idp.authorize(authorize_url, sub))


def test_r13_linking_a_provider_requires_fresh_reauthentication(
    idp: LocalIdentityProvider, cast: Cast, client_as: Callable[[User], Client], django_capture_on_commit_callbacks: Any
) -> None:
    idp.add_identity("alice-at-partner", "alice@partner.test")
    client = client_as(cast.alice)  # signed in, but not recently reauthenticated

    response = steps.sign_in(client, idp, "partner", "alice-at-partner", process="connect")

    assert response.status_code == 302
    assert response["Location"] == reverse("account_reauthenticate")
    assert not SocialAccount.objects.filter(user=cast.alice).exists()

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("account_reauthenticate"), {"password": DEFAULT_PASSWORD})

    assert response.status_code == 302
    linked = SocialAccount.objects.get(user=cast.alice)
    assert (linked.provider, linked.uid) == ("partner", "alice-at-partner")
    # R7: the member hears of the new login by email.
    assert [message.to for message in mail.outbox] == [[cast.alice.email]]


def test_r13_oidc_only_member_reauthenticates_at_the_provider_before_linking(idp: LocalIdentityProvider) -> None:
    client, dana = oidc_only_member(idp)
    idp.add_identity("dana-at-partner", "dana@partner.test")
    connect_url = reverse("openid_connect_login", kwargs={"provider_id": "partner"}) + "?process=connect"

    response = client.post(connect_url)

    # Sent to confirm at the provider they already use, then back to the connect page.
    assert response.status_code == 302
    reauthenticate_url = response["Location"]
    assert steps.query(reauthenticate_url) == {"process": "redirect", "action": "reauthenticate", "next": connect_url}
    authorize_url = client.post(reauthenticate_url)["Location"]
    assert steps.query(authorize_url)["prompt"] == "login"
    assert steps.query(authorize_url)["max_age"] == "0"
    back = steps.finish(client, idp.authorize(authorize_url, "dana-sub"))
    assert back["Location"] == connect_url
    assert len(reauthentications(client)) == 1
    assert client.session["_auth_user_id"] == str(dana.pk)

    response = steps.sign_in(client, idp, "partner", "dana-at-partner", process="connect")

    assert response.status_code == 302
    assert set(SocialAccount.objects.filter(user=dana).values_list("provider", "uid")) == {("corp", "dana-sub"), ("partner", "dana-at-partner")}


def test_r13_unlinking_needs_a_recent_reauthentication(idp: LocalIdentityProvider) -> None:
    client, dana = oidc_only_member(idp)
    reauthenticate_at_provider(client, idp, "dana-sub")
    idp.add_identity("dana-at-partner", "dana@partner.test")
    steps.sign_in(client, idp, "partner", "dana-at-partner", process="connect")
    partner = SocialAccount.objects.get(user=dana, provider="partner")

    with time_machine.travel(timezone.now() + timedelta(minutes=10)):
        stale = client.post(reverse("socialaccount_connections"), {"account": partner.pk})

    assert stale.status_code == 302
    assert steps.query(stale["Location"])["action"] == "reauthenticate"
    assert SocialAccount.objects.filter(pk=partner.pk).exists()

    reauthenticate_at_provider(client, idp, "dana-sub", next_url=reverse("socialaccount_connections"))
    fresh = client.post(reverse("socialaccount_connections"), {"account": partner.pk})

    assert fresh.status_code == 302
    assert fresh["Location"] == reverse("socialaccount_connections")
    assert not SocialAccount.objects.filter(pk=partner.pk).exists()


def test_r13_unlinking_the_last_login_of_a_member_without_password_is_refused(idp: LocalIdentityProvider) -> None:
    client, dana = oidc_only_member(idp)
    reauthenticate_at_provider(client, idp, "dana-sub")
    corp = SocialAccount.objects.get(user=dana)

    response = client.post(reverse("socialaccount_connections"), {"account": corp.pk})

    assert response.status_code == 200
    assert [error.code for error in response.context["form"].non_field_errors().as_data()] == ["no_password"]
    assert SocialAccount.objects.filter(pk=corp.pk).exists()


def test_r12_reauthentication_with_stale_auth_time_is_rejected(idp: LocalIdentityProvider) -> None:
    client, _ = oidc_only_member(idp)
    authorize_url = steps.start(client, "corp", process="redirect", action="reauthenticate")
    idp.tamper_next_token("stale_auth_time")

    response = steps.finish(client, idp.authorize(authorize_url, "dana-sub"))

    assert response.status_code == 401
    assert reauthentications(client) == []


def test_r12_reauthentication_as_another_identity_is_rejected(idp: LocalIdentityProvider) -> None:
    client, dana = oidc_only_member(idp)
    idp.add_identity("erin-sub", "erin@corp.test")

    response = reauthenticate_at_provider(client, idp, "erin-sub")

    assert response.status_code == 401
    assert reauthentications(client) == []
    assert client.session["_auth_user_id"] == str(dana.pk)


def test_r13_reauthentication_at_a_linked_provider_counts_for_password_members_too(
    idp: LocalIdentityProvider, cast: Cast, client_as: Callable[[User], Client]
) -> None:
    """R6's "password or an OIDC re-login": a fresh sign-in at a linked provider satisfies allauth's check."""
    idp.add_identity("alice-at-corp", cast.alice.email)
    idp.add_identity("alice-at-partner", "alice@partner.test")
    client = client_as(cast.alice)
    SocialAccount.objects.create(user=cast.alice, provider="corp", uid="alice-at-corp", extra_data={})

    assert reauthenticate_at_provider(client, idp, "alice-at-corp").status_code == 302
    response = steps.sign_in(client, idp, "partner", "alice-at-partner", process="connect")

    assert response["Location"] != reverse("account_reauthenticate")
    assert SocialAccount.objects.filter(user=cast.alice, provider="partner", uid="alice-at-partner").exists()
