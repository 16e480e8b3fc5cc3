"""The rules pages with the cast: the builder creates a working rule, ordering buttons, preview,
log, flags shown; members cannot reach organization rules; outsiders get 404 everywhere."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from postroom.conversations.models import ConversationLabel
from postroom.rules.models import Rule
from postroom.rules.tests.conftest import Place

pytestmark = pytest.mark.django_db


def builder(**fields: str) -> dict[str, str]:
    return {"name": "Billing", "trigger": "incoming", "match": "all", "enabled": "on", **fields}


def test_an_admin_builds_an_organization_rule_that_labels_incoming_mail(place: Place, client_as: Any) -> None:
    client = client_as(place.cast.carol)
    assert client.get("/o/acme/rules/new/?scope=organization").status_code == 200
    response = client.post("/o/acme/rules/new/", builder(**{
        "scope": "organization", "condition-0-field": "from", "condition-0-op": "glob", "condition-0-value": "*@customer.example",
        "action-0-kind": "label", "action-0-target": f"label:{place.billing.pk}",
        "action-1-kind": "webhook", "action-1-value": "https://hooks.example/in",
    }))  # fmt: skip
    assert response.status_code == 302
    rule = Rule.objects.get()
    assert rule.owner is None
    assert rule.definition == {
        "conditions": [{"field": "from", "op": "glob", "value": "*@customer.example"}],
        "actions": [{"kind": "label", "label_id": str(place.billing.pk)}, {"kind": "webhook", "url": "https://hooks.example/in"}],
    }
    page = client.get(f"/o/acme/rules/{rule.pk}/")
    assert rule.signing_key
    assert rule.signing_key in page.content.decode()  # shown to admins on the page only
    message = place.deliver(place.support_mailbox)
    assert ConversationLabel.objects.filter(conversation=message.conversation, label=place.billing).exists()
    log = client.get(f"/o/acme/rules/{rule.pk}/log/").content.decode()
    assert "applied" in log
    assert "pending" in log  # the webhook delivery, queued after the commit
    assert "Billing" in client.get("/o/acme/rules/").content.decode()


def test_a_refused_form_keeps_what_was_typed_and_says_why(place: Place, client_as: Any) -> None:
    client = client_as(place.cast.bob)
    response = client.post("/o/acme/rules/new/", builder(**{
        "condition-0-field": "subject", "condition-0-op": "regex", "condition-0-value": "(?<=x)y", "action-0-kind": "close",
    }))  # fmt: skip
    assert response.status_code == 422
    body = response.content.decode()
    assert "RE2" in body
    assert "(?&lt;=x)y" in body
    assert not Rule.objects.exists()


def test_ordering_buttons_and_flags_on_the_list(place: Place, client_as: Any, make_rule: Callable[..., Rule]) -> None:
    cast = place.cast
    first = make_rule(cast.bob_membership, name="First")
    second = make_rule(cast.bob_membership, name="Second")
    client = client_as(cast.bob)
    assert client.post(f"/o/acme/rules/{second.pk}/move/", {"direction": "up"}).status_code == 302
    assert list(Rule.objects.order_by("position").values_list("name", flat=True)) == ["Second", "First"]
    Rule.objects.filter(pk=first.pk).update(flagged_reason="A team in the actions is gone, or the rule's owner left it.")
    page = client.get("/o/acme/rules/").content.decode()
    assert "Flagged" in page
    assert "the rule&#x27;s owner left it" in page
    assert client.get(f"/o/acme/rules/{first.pk}/preview/").status_code == 200
    assert client.post(f"/o/acme/rules/{first.pk}/delete/").status_code == 302
    assert not Rule.objects.filter(pk=first.pk).exists()


def test_members_cannot_reach_organization_rules(place: Place, client_as: Any, make_rule: Callable[..., Rule]) -> None:
    rule = make_rule(place.cast.carol_membership, organization=True)
    client = client_as(place.cast.bob)
    assert client.get("/o/acme/rules/new/?scope=organization").status_code == 403
    assert client.get(f"/o/acme/rules/{rule.pk}/").status_code == 404
    assert client.post(f"/o/acme/rules/{rule.pk}/delete/").status_code == 404
    assert "Organization rules" not in client.get("/o/acme/rules/").content.decode()


def test_outsiders_get_404_on_every_rules_page(place: Place, client_as: Any, make_rule: Callable[..., Rule]) -> None:
    rule = make_rule(place.cast.carol_membership, organization=True)
    client = client_as(place.cast.charlie)
    base = f"/o/acme/rules/{rule.pk}"
    statuses = [
        client.get("/o/acme/rules/").status_code, client.get("/o/acme/rules/new/").status_code,
        client.post("/o/acme/rules/new/", builder(**{"action-0-kind": "close"})).status_code, client.get(f"{base}/").status_code,
        client.post(f"{base}/", builder()).status_code, client.post(f"{base}/move/", {"direction": "up"}).status_code,
        client.post(f"{base}/delete/").status_code, client.get(f"{base}/preview/").status_code, client.get(f"{base}/log/").status_code,
        client.get(f"/o/beta/rules/{rule.pk}/").status_code,
    ]  # fmt: skip
    assert statuses == [404] * len(statuses)
    assert Rule.objects.count() == 1
