"""Personal API tokens in Settings: created after confirming the password, shown once, stored as
an HMAC with a visible prefix, revocable, audited without the token, announced by email
(R6, R7, R23, R47). The API side is in postroom/api/tests/test_token_auth.py."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from postroom.accounts.api_tokens import (
    MAX_TOKENS_PER_USER,
    TOKEN_PATTERN,
    api_token_create,
    api_token_revoke,
)
from postroom.accounts.models import ApiToken, User
from postroom.accounts.tests.authflows import delivered
from postroom.accounts.tests.session_helpers import confirm_password
from postroom.accounts.tests.test_notifications import assert_is_a_safe_notice
from postroom.audit.models import AuditEvent
from postroom.conftest import Cast
from postroom.core.tokens import token_hash

pytestmark = pytest.mark.django_db
PAGE = "/settings/api-tokens/"
SHOWN_TOKEN = re.compile(rb"pr_[a-z0-9]{8}[A-Za-z0-9]{40}")


def confirmed_client(user: User) -> Client:
    client = Client()
    client.force_login(user, backend="allauth.account.auth_backends.AuthenticationBackend")
    confirm_password(client)
    return client


def create_through_the_page(client: Client, **fields: str) -> tuple[str, Any]:
    response = client.post(PAGE, {"name": "Nightly export", "scope": "read", "expires_in": "30", **fields})
    assert response.status_code == 200, response.get("Location")
    found = SHOWN_TOKEN.findall(response.content)
    assert len(set(found)) == 1, "the new token is shown (once) in the answer"
    return found[0].decode(), response


def test_r47_tokens_have_a_public_prefix_and_238_random_bits() -> None:
    tokens = [api_token_create(user=user, name="x", scope="read", expires_at=None).token for user in [_user(n) for n in range(20)]]
    for token in tokens:
        assert TOKEN_PATTERN.match(token)
        assert len(token) == 51
    assert len({token[:11] for token in tokens}) == 20
    assert len({token[11:] for token in tokens}) == 20


def _user(number: int) -> User:
    return User.objects.create_user(email=f"user{number}@example.test", password=None)


def test_creating_a_token_shows_it_once_and_stores_only_its_hmac(cast: Cast) -> None:
    client = confirmed_client(cast.alice)
    with delivered():
        token, response = create_through_the_page(client, scope="write", expires_in="90")
    assert response["Cache-Control"] == "no-store"
    row = ApiToken.objects.get(user=cast.alice)
    assert (row.name, row.scope, row.prefix) == ("Nightly export", "write", token[:11])
    assert row.token_hash == token_hash("api_token", token)
    assert row.expires_at is not None
    assert timedelta(days=89) < row.expires_at - timezone.now() <= timedelta(days=90)
    # Nothing stored holds the token or its secret part.
    stored = " ".join(str(value) for value in ApiToken.objects.values_list().get())
    assert token[11:] not in stored
    # Shown once: the list afterwards names it by prefix only.
    listed = client.get(PAGE)
    assert listed.status_code == 200
    assert not SHOWN_TOKEN.search(listed.content)
    assert row.prefix.encode() in listed.content
    assert b"never used" in listed.content


def test_r07_a_new_token_is_announced_by_email_without_the_token(cast: Cast) -> None:
    client = confirmed_client(cast.alice)
    mail.outbox.clear()
    with delivered():
        token, _response = create_through_the_page(client)
    assert [(message.subject, message.to) for message in mail.outbox] == [("[Postroom] A new API token was created", ["alice@acme.test"])]
    assert_is_a_safe_notice(mail.outbox[0], secrets=(token, token[11:]))
    assert token[:11] in str(mail.outbox[0].body)


def test_r53_creating_and_revoking_are_audited_by_prefix_only(cast: Cast) -> None:
    client = confirmed_client(cast.alice)
    token, _response = create_through_the_page(client)
    row = ApiToken.objects.get(user=cast.alice)
    response = client.post(f"/settings/api-tokens/{row.pk}/revoke/")
    assert response.status_code == 302
    row.refresh_from_db()
    assert row.revoked_at is not None
    events = list(AuditEvent.objects.filter(action__startswith="auth.api_token").order_by("id"))
    assert [(event.action, event.organization_id, event.actor_id) for event in events] == [
        ("auth.api_token_created", cast.org_a.pk, cast.alice.pk),
        ("auth.api_token_revoked", cast.org_a.pk, cast.alice.pk),
    ]
    assert events[0].details == {
        "prefix": token[:11],
        "scope": "read",
        "expires_at": row.expires_at.isoformat() if row.expires_at else None,
    }
    assert events[1].details == {"prefix": token[:11]}
    for event in events:
        assert token[11:] not in str(event.details) + event.target_label + event.user_agent
    listed = client.get(PAGE)
    assert b"Revoked" in listed.content
    again = client.post(f"/settings/api-tokens/{row.pk}/revoke/", follow=True)
    assert b"already revoked" in again.content


def test_a_member_cannot_revoke_someone_elses_token(cast: Cast) -> None:
    alices = api_token_create(user=cast.alice, name="Mine", scope="read", expires_at=None)
    response = confirmed_client(cast.bob).post(f"/settings/api-tokens/{alices.row.pk}/revoke/")
    assert response.status_code == 404
    assert ApiToken.objects.get(pk=alices.row.pk).revoked_at is None


def test_the_form_says_what_is_wrong_and_creates_nothing(cast: Cast) -> None:
    client = confirmed_client(cast.alice)
    for fields in ({"name": ""}, {"name": "   "}, {"scope": "admin"}, {"expires_in": "10000"}, {"name": "x" * 81}):
        response = client.post(PAGE, {"name": "Script", "scope": "read", "expires_in": "30", **fields})
        assert response.status_code == 200
        assert b"field-error" in response.content or b"alert-danger" in response.content, fields
    assert not ApiToken.objects.exists()


def test_never_expiring_tokens_and_the_limit(cast: Cast) -> None:
    client = confirmed_client(cast.alice)
    create_through_the_page(client, expires_in="never")
    assert ApiToken.objects.get(user=cast.alice).expires_at is None
    for number in range(MAX_TOKENS_PER_USER - 1):
        api_token_create(user=cast.alice, name=f"t{number}", scope="read", expires_at=None)
    response = client.post(PAGE, {"name": "One too many", "scope": "read", "expires_in": "30"})
    assert b"revoke one you no longer use" in response.content
    assert not SHOWN_TOKEN.search(response.content)
    api_token_revoke(user=cast.alice, token=ApiToken.objects.filter(user=cast.alice).first())  # type: ignore[arg-type]
    create_through_the_page(client, name="Fits again")


def test_the_page_lists_last_use_and_expiry(cast: Cast) -> None:
    created = api_token_create(user=cast.alice, name="Reporter", scope="read", expires_at=timezone.now() + timedelta(days=3))
    ApiToken.objects.filter(pk=created.row.pk).update(last_used_at=timezone.now() - timedelta(hours=2), last_used_network="203.0.113.0/24")
    page = confirmed_client(cast.alice).get(PAGE).content.decode()
    assert "Reporter" in page
    assert "203.0.113.0/24" in page
    assert "2\xa0hours ago" in page
    assert "expires" in page
    overview = confirmed_client(cast.alice).get("/settings/security/").content.decode()
    assert "1 active token" in overview
