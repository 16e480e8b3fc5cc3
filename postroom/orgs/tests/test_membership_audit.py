"""SECURITY.md R53, membership part: a scripted scenario through the pages writes exactly the
expected audit rows, each with an individual actor, the client address and a UTC time; the rows
are read back through the API, so each is validated against the audit event schema."""

from __future__ import annotations

import re
from datetime import UTC

import pytest
from django.core import mail
from django.urls import reverse

from postroom.api.tests.helpers import ApiClient
from postroom.audit.models import AuditEvent
from postroom.conftest import Cast
from postroom.orgs.models import Invitation, Membership, Team
from postroom.testing.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_r53_every_membership_change_writes_exactly_its_audit_row(cast: Cast, client_as, django_capture_on_commit_callbacks) -> None:
    dana = UserFactory(email="dana@example.test")
    alice, carol = client_as(cast.alice), client_as(cast.carol)
    start = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0

    def step(response, status: int = 302) -> None:  # type: ignore[no-untyped-def]
        assert response.status_code == status, response.content[:300]

    invite = reverse("orgs:invitations", args=["acme"])
    step(alice.post(invite, {"email": "dana@example.test", "role": "member"}))
    step(alice.post(invite, {"email": "erin@example.test", "role": "admin"}))
    erin_invitation = Invitation.objects.get(email="erin@example.test")
    step(alice.post(reverse("orgs:invitation_revoke", args=["acme", erin_invitation.pk])))
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        step(alice.post(invite, {"email": "dana@example.test", "role": "member"}))  # replaces the first one
    link = re.search(r"http://[^/\s]+(/invitations/[^/\s]+/)", mail.outbox[0].body).group(1)  # type: ignore[union-attr]
    step(client_as(dana).post(link))
    dana_membership = Membership.objects.get(user_id=dana.pk)
    step(alice.post(reverse("orgs:member_role", args=["acme", dana_membership.pk]), {"role": "admin"}))
    step(carol.post(reverse("orgs:teams", args=["acme"]), {"name": "Support"}))
    team = Team.objects.get(name="Support")
    team_update = reverse("orgs:team_update", args=["acme", team.pk])
    step(carol.post(team_update, {"operation": "add", "membership": dana_membership.pk}))
    step(carol.post(team_update, {"operation": "rename", "name": "Care"}))
    step(carol.post(team_update, {"operation": "remove", "membership": dana_membership.pk}))
    step(carol.post(team_update, {"operation": "delete"}))
    step(alice.post(reverse("orgs:member_remove", args=["acme", cast.bob_membership.pk])))
    step(client_as(dana).post(reverse("orgs:member_remove", args=["acme", dana_membership.pk])))
    step(alice.post(reverse("orgs:settings", args=["acme"]), {"name": "Acme Care", "require_two_factor": ""}))

    expected = [
        ("invitation.created", "alice@acme.test", "dana@example.test", "success", {"role": "member"}),
        ("invitation.created", "alice@acme.test", "erin@example.test", "success", {"role": "admin"}),
        ("invitation.revoked", "alice@acme.test", "erin@example.test", "success", {}),
        # A second invitation to the same address replaces the first, and says so.
        ("invitation.revoked", "alice@acme.test", "dana@example.test", "success", {"reason": "replaced by a new invitation"}),
        ("invitation.created", "alice@acme.test", "dana@example.test", "success", {"role": "member"}),
        ("invitation.accepted", "dana@example.test", "dana@example.test", "success", {}),
        ("member.added", "dana@example.test", "dana@example.test", "success", {"role": "member", "via": "invitation"}),
        ("member.role_changed", "alice@acme.test", "dana@example.test", "success", {"from": "member", "to": "admin"}),
        ("team.created", "carol@acme.test", "Support", "success", {}),
        ("team.member_added", "carol@acme.test", "dana@example.test", "success", {"team": "Support", "observer": False}),
        ("team.renamed", "carol@acme.test", "Care", "success", {"from": "Support"}),
        ("team.member_removed", "carol@acme.test", "dana@example.test", "success", {"team": "Care"}),
        ("team.deleted", "carol@acme.test", "Care", "success", {}),
        ("member.removed", "alice@acme.test", "bob@acme.test", "success", {"role": "member"}),
        ("member.left", "dana@example.test", "dana@example.test", "success", {"role": "admin"}),
        ("org.settings_changed", "alice@acme.test", "", "success", {"name": "Acme Care"}),
    ]
    rows = ApiClient(cast.alice).get("/orgs/acme/audit", limit=100).json()["items"]  # schema-checked by ApiClient
    rows = [row for row in reversed(rows) if row["id"] > start]
    assert [(row["action"], row["actor"], row["target_label"], row["result"], row["details"]) for row in rows] == expected
    assert [row["ip_address"] for row in rows] == ["127.0.0.1"] * len(expected)
    events = AuditEvent.objects.filter(id__gt=start, organization=cast.org_a)
    assert events.count() == len(expected)
    assert not events.filter(actor__isnull=True).exists()
    assert all(event.created_at.tzinfo is not None and event.created_at.utcoffset() == UTC.utcoffset(None) for event in events)


def test_r53_refused_changes_write_no_success_rows(cast: Cast, client_as) -> None:
    start = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    bob = client_as(cast.bob)
    assert bob.post(reverse("orgs:member_role", args=["acme", cast.bob_membership.pk]), {"role": "owner"}).status_code == 403
    assert bob.post(reverse("orgs:teams", args=["acme"]), {"name": "Mine"}).status_code == 403
    assert (
        client_as(cast.alice).post(reverse("orgs:member_remove", args=["acme", cast.alice_membership.pk])).status_code == 302
    )  # last owner: refused
    assert not AuditEvent.objects.filter(id__gt=start, result="success").exists()
    assert Membership.objects.filter(organization=cast.org_a).count() == 3
