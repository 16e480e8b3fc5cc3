"""Personal API tokens at the API: Bearer authentication, scopes, refusals, CSRF, last use, and
that a token is never found where it should not be (R20, R23, R52, R54)."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
import time_machine
from allauth.mfa.models import Authenticator
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from postroom.accounts.api_tokens import api_token_create, api_token_revoke
from postroom.accounts.models import ApiToken
from postroom.api.tests.helpers import ApiClient, secret_keys
from postroom.audit.models import AuditEvent
from postroom.conftest import Cast
from postroom.core.logs import SafeFormatter, redact
from postroom.orgs.models import Membership, Organization, Team
from postroom.orgs.policy import Role

pytestmark = pytest.mark.django_db


def token_for(user, scope: str = "write", **options) -> str:  # type: ignore[no-untyped-def]
    return api_token_create(user=user, name="Script", scope=scope, expires_at=options.get("expires_at")).token


def test_a_token_acts_as_its_member_in_the_organization_of_the_url(cast: Cast) -> None:
    bob = ApiClient(token=token_for(cast.bob))
    response = bob.get("/me")
    assert response.status_code == 200
    assert response.json()["email"] == "bob@acme.test"
    assert bob.get("/orgs/acme/members").status_code == 200
    assert bob.get("/orgs/acme/invitations").status_code == 403  # Bob's role, not more
    assert bob.get("/orgs/beta/members").status_code == 404  # not Bob's organization
    assert bob.get(f"/orgs/acme/members/{cast.charlie_membership.pk}").status_code == 404


def test_r52_token_requests_need_no_csrf_token_and_send_no_cookie(cast: Cast) -> None:
    carol = ApiClient(token=token_for(cast.carol))
    assert not carol.client.cookies
    response = carol.post("/orgs/acme/teams", {"name": "Support"})
    assert response.status_code == 201
    assert Team.objects.filter(name="Support").exists()
    assert carol.patch(f"/orgs/acme/members/{cast.bob_membership.pk}", {"role": "admin"}).status_code == 200
    assert carol.delete(f"/orgs/acme/teams/{response.json()['id']}").status_code == 204


def test_r52_session_requests_still_need_the_csrf_token(cast: Cast) -> None:
    response = ApiClient(cast.carol, csrf=False).post("/orgs/acme/teams", {"name": "Forged"})
    assert response.status_code == 403
    assert "X-CSRFToken" in response.json()["detail"]
    assert not Team.objects.exists()


def test_a_read_token_is_refused_every_write_before_anything_changes(cast: Cast) -> None:
    reader = ApiClient(token=token_for(cast.alice, scope="read"))
    assert reader.get("/orgs/acme/members").status_code == 200
    team = Team.objects.create(organization=cast.org_a, name="Sales")
    attempts = [
        ("POST", "/orgs/acme/teams", {"name": "Mine"}),
        ("PATCH", f"/orgs/acme/teams/{team.pk}", {"name": "Mine"}),
        ("DELETE", f"/orgs/acme/teams/{team.pk}", None),
        ("PATCH", f"/orgs/acme/members/{cast.bob_membership.pk}", {"role": "admin"}),
        ("DELETE", f"/orgs/acme/members/{cast.bob_membership.pk}", None),
        ("POST", "/orgs/acme/invitations", {"email": "x@example.test"}),
        ("PATCH", "/orgs/acme", {"name": "Renamed"}),
    ]
    for method, path, body in attempts:
        response = reader.request(method, path, body)
        assert response.status_code == 403, (method, path)
        assert "scope is read" in response.json()["detail"]
    assert list(Team.objects.values_list("name", flat=True)) == ["Sales"]
    assert Membership.objects.get(pk=cast.bob_membership.pk).role == Role.MEMBER
    assert Organization.objects.get(pk=cast.org_a.pk).name == "Acme Support"


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("Bearer pr_abcdefgh" + "A" * 40, "not valid"),  # well formed, unknown
        ("Bearer not-a-token", "not a Postroom API token"),
        ("Bearer ", "Bearer <token>"),
        ("Basic YWxpY2U6c2VjcmV0", "Bearer <token>"),
        ("Token pr_abcdefgh" + "A" * 40, "Bearer <token>"),
    ],
)
def test_r20_a_bad_authorization_header_is_a_clear_401(cast: Cast, header: str, message: str) -> None:
    client = ApiClient(csrf=False)
    client.headers["Authorization"] = header
    response = client.get("/orgs/acme/members")
    assert response.status_code == 401
    assert message in response.json()["detail"]
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_wrong_secret_with_a_real_prefix_is_not_valid(cast: Cast) -> None:
    token = token_for(cast.alice)
    forged = token[:11] + ("B" if token[11] != "B" else "C") + token[12:]
    response = ApiClient(token=forged).get("/me")
    assert response.status_code == 401
    assert response.json()["detail"] == "This API token is not valid."


def test_r20_revoked_expired_and_deactivated_tokens_are_refused_with_the_reason(cast: Cast) -> None:
    revoked = api_token_create(user=cast.alice, name="Old", scope="write", expires_at=None)
    api_token_revoke(user=cast.alice, token=revoked.row)
    response = ApiClient(token=revoked.token).get("/me")
    assert (response.status_code, response.json()["detail"]) == (401, "This API token was revoked.")
    assert 'error="invalid_token"' in response["WWW-Authenticate"]

    expiring = token_for(cast.alice, expires_at=timezone.now() + timedelta(days=7))
    assert ApiClient(token=expiring).get("/me").status_code == 200
    with time_machine.travel(timezone.now() + timedelta(days=7, seconds=1)):
        response = ApiClient(token=expiring).get("/me")
    assert response.status_code == 401
    assert response.json()["detail"].startswith("This API token expired on ")

    bobs = token_for(cast.bob)
    cast.bob.is_active = False
    cast.bob.save(update_fields=["is_active"])
    response = ApiClient(token=bobs).get("/me")
    assert (response.status_code, response.json()["detail"]) == (401, "The account of this API token is deactivated.")


def test_r20_a_bad_token_never_falls_back_to_the_session_sent_along(cast: Cast) -> None:
    client = ApiClient(cast.alice)
    client.headers["Authorization"] = "Bearer pr_abcdefgh" + "A" * 40
    assert client.get("/me").status_code == 401
    assert client.post("/orgs/acme/teams", {"name": "Sneaky"}).status_code == 401
    assert not Team.objects.exists()


def test_a_token_wins_over_a_session_of_someone_else(cast: Cast) -> None:
    client = ApiClient(cast.alice)
    client.headers["Authorization"] = f"Bearer {token_for(cast.bob)}"
    assert client.get("/me").json()["email"] == "bob@acme.test"


def test_no_credentials_is_a_401_that_says_what_to_send(cast: Cast) -> None:
    response = ApiClient(csrf=False).get("/me")
    assert response.status_code == 401
    assert "Authorization: Bearer" in response.json()["detail"]


def test_an_organization_that_requires_two_factor_refuses_tokens_of_members_without_it(cast: Cast) -> None:
    token = token_for(cast.bob)
    Organization.objects.filter(pk=cast.org_a.pk).update(require_two_factor=True)
    response = ApiClient(token=token).get("/orgs/acme/members")
    assert response.status_code == 403
    assert "two-factor" in response.json()["detail"]
    Authenticator.objects.create(user=cast.bob, type=Authenticator.Type.TOTP, data={})
    assert ApiClient(token=token).get("/orgs/acme/members").status_code == 200


def test_last_use_is_recorded_at_most_once_a_minute_with_the_network(cast: Cast) -> None:
    created = api_token_create(user=cast.alice, name="Script", scope="read", expires_at=None)
    start = timezone.now()

    def call(address: str) -> None:
        client = Client(REMOTE_ADDR=address)
        assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {created.token}"}).status_code == 200

    with time_machine.travel(start, tick=False) as clock:
        call("203.0.113.77")
        row = ApiToken.objects.get(pk=created.row.pk)
        assert (row.last_used_at, row.last_used_network) == (start, "203.0.113.0/24")
        clock.shift(timedelta(seconds=59))
        with CaptureQueriesContext(connection) as queries:
            call("198.51.100.1")
        assert not [query for query in queries.captured_queries if query["sql"].startswith("UPDATE")]
        assert ApiToken.objects.get(pk=created.row.pk).last_used_at == start
        clock.shift(timedelta(seconds=2))
        call("2001:db8:1234:5678::1")
        row = ApiToken.objects.get(pk=created.row.pk)
        assert (row.last_used_at, row.last_used_network) == (start + timedelta(seconds=61), "2001:db8:1234::/48")


def test_the_openapi_document_is_served_to_tokens_too(cast: Cast) -> None:
    token = token_for(cast.bob, scope="read")
    response = Client().get("/api/v1/openapi.json", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    document = response.json()
    assert document["components"]["securitySchemes"]["ApiTokenAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": document["components"]["securitySchemes"]["ApiTokenAuth"]["description"],
    }
    response = Client().get("/api/v1/openapi.json", headers={"Authorization": "Bearer pr_abcdefgh" + "A" * 40})
    assert response.status_code == 401


def test_r54_tokens_never_reach_a_log_line_or_an_answer(cast: Cast, caplog: pytest.LogCaptureFixture) -> None:
    created = api_token_create(user=cast.alice, name="Script", scope="read", expires_at=None)
    caplog.set_level(logging.DEBUG)
    client = ApiClient(token=created.token)
    answers = [client.get("/me"), client.get("/orgs/acme/members"), client.post("/orgs/acme/teams", {"name": "x"})]
    api_token_revoke(user=cast.alice, token=created.row)
    answers += [client.get("/me"), client.client.get("/api/v1/orgs/acme/nothing-here", headers=client.headers)]
    for answer in answers:
        assert created.token.encode() not in answer.content
        assert created.token[11:].encode() not in answer.content
    formatter = SafeFormatter("%(message)s")
    for record in caplog.records:
        assert created.token[11:] not in formatter.format(record)
    # The audit rows name the token by its prefix only.
    for event in AuditEvent.objects.filter(action__startswith="auth.api_token"):
        assert created.token[11:] not in str(event.details) + event.target_label
        assert event.details["prefix"] == created.row.prefix


def test_r54_log_lines_keep_only_a_tokens_prefix() -> None:
    token = "pr_abcd1234" + "Zq9" * 13 + "x"
    assert redact(f"refused {token} from 203.0.113.1") == "refused pr_abcd1234[redacted] from 203.0.113.1"
    assert "Zq9Zq9" not in redact(f"Authorization: Bearer {token}")
    assert redact("Authorization: bearer s3cr3t-value") == "Authorization: bearer [redacted]"
    assert redact("GET /api/v1/orgs/acme/members 200") == "GET /api/v1/orgs/acme/members 200"


def test_r23_the_secret_key_scan_finds_what_it_is_for() -> None:
    assert secret_keys({"items": [{"id": 1, "token_hash": "x"}], "next": None}) == ["items.token_hash"]
    assert secret_keys({"imap": {"password": "x"}, "credentials": {}}) == ["imap.password", "credentials"]
    assert secret_keys({"details": {"login_hash": "x"}}) == []  # allowed on purpose (audit correlation)
    assert secret_keys({"name": "token", "items": ["password"]}) == []  # values are not keys
