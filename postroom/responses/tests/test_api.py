"""The responses API, checked against the OpenAPI document by ApiClient."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from postroom.api.tests.helpers import ApiClient
from postroom.audit.models import AuditEvent
from postroom.conftest import Cast
from postroom.responses.models import Response, Scope
from postroom.responses.tests.conftest import Responses

pytestmark = pytest.mark.django_db


def test_create_read_update_delete(cast: Cast) -> None:
    bob = ApiClient(cast.bob)
    created = bob.post(
        "/orgs/acme/responses",
        {"name": " Thanks ", "subject": "Thanks, {{ recipient_first_name }}", "body": "<p onclick=x>Hi {{ input:Ticket }}</p>"},
    )
    assert created.status_code == 201
    body = created.json()
    assert body["name"] == "Thanks"
    assert body["scope"] == "personal"
    assert body["body"] == "<p>Hi {{ input:Ticket }}</p>"
    assert body["inputs"] == ["Ticket"]
    assert body["can_manage"] is True
    response = Response.objects.get(pk=body["id"])
    assert (response.organization_id, response.owner_id, response.created_by_id, response.team_id) == (
        cast.org_a.pk,
        cast.bob_membership.pk,
        cast.bob_membership.pk,
        None,
    )
    assert bob.get(f"/orgs/acme/responses/{response.pk}").json()["subject"] == "Thanks, {{ recipient_first_name }}"
    patched = bob.patch(f"/orgs/acme/responses/{response.pk}", {"subject": "Merci"})
    assert patched.status_code == 200
    assert (patched.json()["subject"], patched.json()["name"]) == ("Merci", "Thanks")
    assert bob.delete(f"/orgs/acme/responses/{response.pk}").status_code == 204
    assert not Response.objects.filter(pk=response.pk).exists()
    actions = list(AuditEvent.objects.filter(action__startswith="responses.").order_by("pk").values_list("action", flat=True))
    assert actions == ["responses.created", "responses.updated", "responses.deleted"]
    # The audit trail holds no content: neither the name nor the subject.
    for event in AuditEvent.objects.filter(action__startswith="responses."):
        assert "Thanks" not in f"{event.target_label}{event.details}"
        assert "Merci" not in f"{event.target_label}{event.details}"


def test_invalid_input_names_the_field(cast: Cast) -> None:
    bob = ApiClient(cast.bob)
    empty = bob.post("/orgs/acme/responses", {"name": "  "})
    assert empty.status_code == 422
    assert empty.json()["errors"][0]["field"] == "name"
    two_lines = bob.post("/orgs/acme/responses", {"name": "X", "subject": "a\r\nBcc: x@y.test"})
    assert two_lines.status_code == 422
    assert two_lines.json()["errors"][0]["field"] == "subject"
    no_team = ApiClient(cast.carol).post("/orgs/acme/responses", {"name": "X", "scope": "team"})
    assert no_team.status_code == 422
    assert no_team.json()["errors"][0]["field"] == "team"
    assert bob.post("/orgs/acme/responses", {"name": "X", "scope": "everyone"}).status_code == 422
    assert not Response.objects.exists()


def test_list_pages_with_a_cursor_and_filters_by_scope(cast: Cast, responses: Responses) -> None:
    alice = ApiClient(cast.alice)
    first = alice.get("/orgs/acme/responses", limit=2).json()
    assert len(first["items"]) == 2
    assert first["next"]
    rest = alice.get("/orgs/acme/responses", limit=2, cursor=first["next"]).json()
    more = alice.get("/orgs/acme/responses", limit=2, cursor=rest["next"]).json() if rest["next"] else {"items": [], "next": None}
    names = [item["name"] for item in first["items"] + rest["items"] + more["items"]]
    assert sorted(names) == sorted(["Welcome", "Refund", "Pricing", "Alice's own"])
    assert more["next"] is None
    teams = alice.get("/orgs/acme/responses", scope="team").json()["items"]
    assert sorted(item["name"] for item in teams) == ["Pricing", "Refund"]


def test_render_with_inputs_recipient_and_attachments(cast: Cast, responses: Responses, client_as) -> None:  # type: ignore[no-untyped-def]
    upload = SimpleUploadedFile("Refund policy.pdf", b"%PDF refund", content_type="application/pdf")
    page = client_as(cast.bob).post(reverse("responses:edit", args=["acme", responses.support_team.pk]), {
        "name": "Refund", "scope": "team", "team": responses.support.pk, "subject": "", "body": responses.support_team.body, "attachments": upload,
    })  # fmt: skip
    assert page.status_code == 302
    rendered = ApiClient(cast.bob).post(f"/orgs/acme/responses/{responses.support_team.pk}/render", {
        "to": "Dana Customer <dana@customer.example>, erin@customer.example", "inputs": {"Order number": "<4711>"},
    })  # fmt: skip
    assert rendered.status_code == 200
    body = rendered.json()
    assert body["html"] == "<p>Hi Dana, order &lt;4711&gt;.</p>"
    assert body["text"] == "Hi Dana, order <4711>."
    assert body["missing_inputs"] == []
    [attachment] = body["attachments"]
    assert (attachment["filename"], attachment["size"], attachment["content_type"]) == ("Refund policy.pdf", 11, "application/pdf")
    missing = ApiClient(cast.bob).post(f"/orgs/acme/responses/{responses.support_team.pk}/render", {}).json()
    assert missing["missing_inputs"] == ["Order number"]
    assert "{{ input:Order number }}" in missing["text"]
    unreadable = ApiClient(cast.bob).post(f"/orgs/acme/responses/{responses.support_team.pk}/render", {"to": "a@b, c@d ("})
    assert unreadable.status_code == 422


def test_render_for_a_conversation_the_member_cannot_answer_is_404(cast: Cast, responses: Responses) -> None:
    answer = ApiClient(cast.bob).post(
        f"/orgs/acme/responses/{responses.organization.pk}/render", {"conversation_id": "00000000-0000-7000-8000-000000000001"}
    )
    assert answer.status_code == 404


def test_extra_fields_are_ignored(cast: Cast, responses: Responses) -> None:
    sneaky = {"organization_id": cast.org_b.pk, "owner": cast.alice_membership.pk, "owner_id": cast.alice_membership.pk, "created_by": 1,
              "id": str(responses.organization.pk), "name": "Mine"}  # fmt: skip
    created = ApiClient(cast.bob).post("/orgs/acme/responses", sneaky)
    assert created.status_code == 201
    response = Response.objects.get(pk=created.json()["id"])
    assert (response.organization_id, response.owner_id, response.scope) == (cast.org_a.pk, cast.bob_membership.pk, Scope.PERSONAL)
    assert Response.objects.get(pk=responses.organization.pk).name == "Welcome"
