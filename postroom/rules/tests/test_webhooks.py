"""Webhooks of organization rules: delivered to a real HTTP server on loopback (through the
fetcher's test-only loopback allowance), signed, retried on 5xx, refused for private addresses
under the production settings (R30, R38)."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from postroom.core import fetch
from postroom.rules.models import DeliveryStatus, Rule, WebhookDelivery
from postroom.rules.tests.conftest import Place
from postroom.testing.web_peers import Answer, RemoteSite

pytestmark = pytest.mark.django_db


def webhook_rule(place: Place, make_rule: Callable[..., Rule], url: str) -> Rule:
    return make_rule(place.cast.carol_membership, organization=True, actions_=[{"kind": "webhook", "url": url}])


def arrive(place: Place, capture: Any) -> Any:
    with capture(execute=True):
        return place.deliver(place.support_mailbox, subject="Secret plans", sender="dana@customer.example")


def run_queued(queue: Any) -> list[Any]:
    queued = list(queue.results)
    queue.results.clear()
    for result in queued:
        result.task.call(*result.args, **result.kwargs)
    return queued


def test_a_webhook_is_delivered_signed_with_ids_only(
    place: Place, make_rule: Callable[..., Rule], fetchable_remote_site: RemoteSite, queue: Any, django_capture_on_commit_callbacks: Any
) -> None:
    url = fetchable_remote_site.answer("/hook", Answer(status=204))
    rule = webhook_rule(place, make_rule, url)
    message = arrive(place, django_capture_on_commit_callbacks)
    run_queued(queue)

    [request] = fetchable_remote_site.requests
    assert request.method == "POST"
    assert request.path == "/hook"
    payload = json.loads(request.body)
    assert payload["conversation_id"] == str(message.conversation_id)
    assert payload["rule_id"] == str(rule.pk)
    assert payload["trigger"] == "incoming"
    assert b"Secret plans" not in request.body
    assert b"customer.example" not in request.body
    timestamp = request.headers["x-postroom-timestamp"]
    expected = hmac.new((rule.signing_key or "").encode(), timestamp.encode() + b"." + request.body, hashlib.sha256).hexdigest()
    assert request.headers["x-postroom-signature"] == f"sha256={expected}"
    delivery = WebhookDelivery.objects.get(rule=rule)
    assert delivery.status == DeliveryStatus.DELIVERED
    assert delivery.last_status_code == 204
    assert delivery.attempts == 1
    assert delivery.last_duration_ms is not None


def test_a_failing_receiver_is_retried_with_backoff(
    place: Place, make_rule: Callable[..., Rule], fetchable_remote_site: RemoteSite, queue: Any, django_capture_on_commit_callbacks: Any
) -> None:
    url = fetchable_remote_site.answer("/hook", Answer(status=500))
    rule = webhook_rule(place, make_rule, url)
    arrive(place, django_capture_on_commit_callbacks)
    run_queued(queue)
    delivery = WebhookDelivery.objects.get(rule=rule)
    assert delivery.status == DeliveryStatus.RETRYING
    assert delivery.last_status_code == 500
    [retry] = queue.results
    assert retry.args[1] == 2
    assert retry.task.run_after is not None

    fetchable_remote_site.answer("/hook", Answer(status=200))
    run_queued(queue)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert delivery.attempts == 2
    assert len(fetchable_remote_site.requests) == 2
    assert not queue.results


def test_a_client_error_is_not_retried(
    place: Place, make_rule: Callable[..., Rule], fetchable_remote_site: RemoteSite, queue: Any, django_capture_on_commit_callbacks: Any
) -> None:
    rule = webhook_rule(place, make_rule, fetchable_remote_site.answer("/hook", Answer(status=410)))
    arrive(place, django_capture_on_commit_callbacks)
    run_queued(queue)
    delivery = WebhookDelivery.objects.get(rule=rule)
    assert (delivery.status, delivery.last_error) == (DeliveryStatus.FAILED, "answered 410")
    assert not queue.results


def test_r30_webhooks_to_loopback_are_refused_under_the_production_settings(
    place: Place, make_rule: Callable[..., Rule], remote_site: RemoteSite, queue: Any, django_capture_on_commit_callbacks: Any,
    settings: Any,
) -> None:  # fmt: skip
    settings.POSTROOM_FETCH_LOOPBACK_TEST_PORTS = frozenset({remote_site.port})
    rule = webhook_rule(place, make_rule, remote_site.answer("/hook", Answer(status=200)))
    settings.SETTINGS_MODULE = fetch.PRODUCTION_SETTINGS_MODULE
    arrive(place, django_capture_on_commit_callbacks)
    run_queued(queue)
    delivery = WebhookDelivery.objects.get(rule=rule)
    assert delivery.last_error in {"address not allowed", "port not allowed"}
    assert delivery.status != DeliveryStatus.DELIVERED
    assert delivery.last_status_code is None
    assert remote_site.requests == []


@pytest.mark.parametrize("resolved", ["127.0.0.1", "10.0.0.5", "169.254.169.254", "::ffff:7f00:1"])
def test_r30_a_webhook_name_resolving_to_a_private_address_is_never_connected_to(
    place: Place, make_rule: Callable[..., Rule], queue: Any, django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch, resolved: str,
) -> None:  # fmt: skip
    connections: list[Any] = []
    monkeypatch.setattr(fetch, "_getaddrinfo", lambda host, port: [resolved])
    monkeypatch.setattr(fetch, "_open_socket", lambda *args: connections.append(args))
    rule = webhook_rule(place, make_rule, "https://hooks.example/hook")
    arrive(place, django_capture_on_commit_callbacks)
    run_queued(queue)
    delivery = WebhookDelivery.objects.get(rule=rule)
    assert delivery.last_error == "address not allowed"
    assert delivery.status == DeliveryStatus.FAILED  # refused for good: a retry would be refused the same way
    assert not queue.results
    assert connections == []


@pytest.mark.parametrize(
    "url",
    ["http://10.0.0.1/hook", "http://127.1/hook", "http://[::ffff:7f00:1]/hook", "ftp://hooks.example/x", "http://u:p@hooks.example/"],
)
def test_webhook_urls_that_can_never_be_called_are_refused_on_save(place: Place, make_rule: Callable[..., Rule], url: str) -> None:
    with pytest.raises(ValidationError):
        webhook_rule(place, make_rule, url)


def test_r30_a_webhook_post_is_never_redirected(fetchable_remote_site: RemoteSite) -> None:
    url = fetchable_remote_site.redirect("/hook", fetchable_remote_site.url("/elsewhere"), status=307)
    assert fetch.post_public(url, body=b"{}", headers={"Content-Type": "application/json"}) == 307
    assert fetchable_remote_site.paths_requested() == ["/hook"]
    with pytest.raises(fetch.FetchError, match="header not allowed"):
        fetch.post_public(url, body=b"{}", headers={"Host": "internal"})
