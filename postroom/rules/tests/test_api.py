"""The rules API with the cast: members manage their own rules, admins the organization's,
outsiders get 404 everywhere; answers match the OpenAPI document and carry no signing key; extra
fields in bodies are ignored (R21, R22, R23)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postroom.api.tests.helpers import ApiClient
from postroom.rules.models import Rule
from postroom.rules.tests.conftest import Place

pytestmark = pytest.mark.django_db

CLOSE = [{"kind": "close"}]


def body(**fields: Any) -> dict[str, Any]:
    return {"name": "Customers", "trigger": "incoming", "conditions": [{"field": "from", "op": "contains", "value": "customer"}],
            "actions": CLOSE, **fields}  # fmt: skip


def test_a_member_manages_their_own_rules(place: Place) -> None:
    bob = ApiClient(place.cast.bob)
    created = bob.post("/orgs/acme/rules", body())
    assert created.status_code == 201
    rule = created.json()
    assert rule["scope"] == "mine"
    assert rule["conditions"][0]["value"] == "customer"
    assert "signing_key" not in rule
    second = bob.post("/orgs/acme/rules", body(name="Second")).json()
    listed = bob.get("/orgs/acme/rules", limit=1)
    assert [item["id"] for item in listed.json()["items"]] == [rule["id"]]
    assert [item["id"] for item in bob.get("/orgs/acme/rules", cursor=listed.json()["next"]).json()["items"]] == [second["id"]]
    assert bob.patch(f"/orgs/acme/rules/{rule['id']}", {"name": "Renamed", "enabled": False}).json()["enabled"] is False
    reordered = bob.post("/orgs/acme/rules/reorder", {"rule_ids": [second["id"], rule["id"]]})
    assert [item["id"] for item in reordered.json()["items"]] == [second["id"], rule["id"]]
    assert bob.post("/orgs/acme/rules/reorder", {"rule_ids": [second["id"]]}).status_code == 422
    preview = bob.post(f"/orgs/acme/rules/{rule['id']}/preview")
    assert preview.status_code == 200
    assert preview.json()["matched"] == []
    assert bob.get(f"/orgs/acme/rules/{rule['id']}/runs").json()["items"] == []
    assert bob.get(f"/orgs/acme/rules/{rule['id']}/deliveries").json()["items"] == []
    assert bob.delete(f"/orgs/acme/rules/{rule['id']}").status_code == 204
    assert bob.get(f"/orgs/acme/rules/{rule['id']}").status_code == 404


def test_bad_definitions_get_a_clear_422(place: Place) -> None:
    bob = ApiClient(place.cast.bob)
    answer = bob.post("/orgs/acme/rules", body(conditions=[{"field": "subject", "op": "regex", "value": "(?<=a)b"}]))
    assert answer.status_code == 422
    assert "RE2" in answer.json()["detail"]
    assert bob.post("/orgs/acme/rules", body(actions=[{"kind": "explode"}])).status_code == 422
    assert not Rule.objects.exists()


def test_organization_rules_are_for_admins(place: Place) -> None:
    cast = place.cast
    carol, bob = ApiClient(cast.carol), ApiClient(cast.bob)
    assert bob.post("/orgs/acme/rules", body(scope="organization")).status_code == 403
    assert bob.get("/orgs/acme/rules", scope="organization").status_code == 403
    rule = carol.post("/orgs/acme/rules", body(scope="organization")).json()
    assert rule["scope"] == "organization"
    assert [item["id"] for item in ApiClient(cast.alice).get("/orgs/acme/rules", scope="organization").json()["items"]] == [rule["id"]]
    assert bob.get(f"/orgs/acme/rules/{rule['id']}").status_code == 404  # members do not see them
    # A member's personal rule is theirs alone, admins included.
    mine = bob.post("/orgs/acme/rules", body()).json()
    assert carol.get(f"/orgs/acme/rules/{mine['id']}").status_code == 404
    assert carol.delete(f"/orgs/acme/rules/{mine['id']}").status_code == 404


def test_r21_outsiders_get_404_on_every_rules_endpoint(place: Place, make_rule: Callable[..., Rule]) -> None:
    rule = make_rule(place.cast.carol_membership, organization=True)
    charlie = ApiClient(place.cast.charlie)
    base = f"/orgs/acme/rules/{rule.pk}"
    answers = [
        charlie.get("/orgs/acme/rules"), charlie.get("/orgs/acme/rules", scope="organization"), charlie.post("/orgs/acme/rules", body()),
        charlie.post("/orgs/acme/rules/reorder", {"rule_ids": [str(rule.pk)]}), charlie.get(base), charlie.patch(base, {"name": "x"}),
        charlie.delete(base), charlie.post(f"{base}/preview"), charlie.get(f"{base}/runs"), charlie.get(f"{base}/deliveries"),
        ApiClient(place.cast.charlie).get(f"/orgs/beta/rules/{rule.pk}"),
    ]  # fmt: skip
    assert [answer.status_code for answer in answers] == [404] * len(answers)
    assert Rule.objects.get(pk=rule.pk).name == rule.name
    assert ApiClient().get("/orgs/acme/rules").status_code == 401


PROTECTED = ["organization", "organization_id", "owner", "owner_id", "updated_by", "position", "signing_key", "flagged_reason",
             "flagged_at", "id", "created_at", "definition_sealed"]  # fmt: skip
extras = st.dictionaries(
    st.sampled_from(PROTECTED), st.one_of(st.integers(-1, 50), st.text(max_size=12), st.booleans(), st.none()), min_size=1
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(extra=extras)
def test_extra_fields_in_rule_bodies_are_ignored(place: Place, extra: dict[str, Any]) -> None:
    from django.db import transaction

    with transaction.atomic():
        bob = ApiClient(place.cast.bob)
        created = bob.post("/orgs/acme/rules", {**extra, **body()})
        assert created.status_code == 201
        rule = Rule.objects.get(pk=created.json()["id"])
        key = rule.signing_key
        assert bob.patch(f"/orgs/acme/rules/{rule.pk}", {**extra, "name": "Changed"}).status_code == 200
        rule.refresh_from_db()
        assert (rule.organization_id, rule.owner_id, rule.updated_by_id, rule.position) == (place.cast.org_a.pk, place.cast.bob_membership.pk,
                                                                                             place.cast.bob_membership.pk, 0)  # fmt: skip
        assert rule.signing_key == key
        assert rule.flagged_reason == ""
        transaction.set_rollback(True)
