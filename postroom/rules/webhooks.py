"""Webhooks of organization rules: signed, sent from the server through the SSRF-safe fetcher,
retried with backoff, each attempt logged on the rule.

Threat model: an admin (or whoever takes over an admin's session) points a webhook at an
internal service, or uses it to carry mail out of Postroom; a receiver wants to be sure a call
came from us. Defences:

- the URL is fetched with ``core.fetch.post_public``: public addresses only (resolved, checked
  and pinned), ports 80/443, no redirects followed, bounded time and size (R30);
- what leaves Postroom is ids and minimal metadata, never content: the event, the rule's id,
  the organization's slug, the conversation's and the message's ids, the trigger and the time
  (no subject, address, body or label name); a receiver that wants more calls the API with its
  own token, under that token's owner's rights;
- each call is signed: ``X-Postroom-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">``
  with the rule's signing key, and ``X-Postroom-Timestamp`` (Unix seconds) so a receiver can
  refuse replays older than a few minutes;
- the delivery log keeps the status code, the duration and the fetcher's fixed error text, never
  what the receiver answered.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from postroom.conversations.models import Conversation
from postroom.core.fetch import FetchError, post_public
from postroom.rules.models import DeliveryStatus, Rule, WebhookDelivery

logger = logging.getLogger(__name__)

# Waits after the 1st, 2nd, … failed attempt (about 6 hours in all); then the delivery has failed.
# Fetch failures that a later attempt may not meet; anything else (an address or port refused,
# a malformed URL) would fail the same way again, so it is not retried.
TRANSIENT_FAILURES = frozenset({
    "timed out", "connection timed out", "connection refused or unreachable", "name does not resolve", "name lookup timed out",
    "the server's answer was malformed or cut short", "TLS handshake failed or certificate not trusted",
})  # fmt: skip
RETRY_DELAYS = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=1), timedelta(hours=4))


def signature(key: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(key.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def webhook_queue(*, rule: Rule, conversation: Conversation, trigger: str, message_id: str | None = None) -> WebhookDelivery:
    """Log a delivery and send it after the commit (never from inside a transaction)."""
    from postroom.rules.tasks import webhook_send

    latest = conversation.messages.order_by("-sent_at", "-created_at").values_list("pk", flat=True).first()
    payload = {
        "event": "rule.matched",
        "rule_id": str(rule.pk),
        "organization": rule.organization.slug,
        "trigger": trigger,
        "conversation_id": str(conversation.pk),
        "message_id": message_id or (str(latest) if latest else None),
        "occurred_at": timezone.now().isoformat(),
    }
    delivery = WebhookDelivery.objects.create(rule=rule, payload=payload)
    delivery_id = str(delivery.pk)
    transaction.on_commit(lambda: webhook_send.enqueue(delivery_id, 1))
    return delivery


def _webhook_url(rule: Rule) -> str | None:
    for action in (rule.definition or {}).get("actions", []):
        if action["kind"] == "webhook":
            return str(action["url"])
    return None


def webhook_attempt(delivery_id: str, attempt: int) -> None:
    """One attempt; a failure that may pass (no answer, 408, 429, 5xx) is queued again."""
    from postroom.rules.definition import authorisation_problem
    from postroom.rules.tasks import webhook_send

    delivery = WebhookDelivery.objects.select_related("rule", "rule__updated_by").filter(pk=delivery_id).first()
    if delivery is None or delivery.status in (DeliveryStatus.DELIVERED, DeliveryStatus.FAILED):
        return
    rule = delivery.rule
    url = _webhook_url(rule)
    problem = authorisation_problem(
        organization_id=rule.organization_id, owner=rule.owner, editor=rule.updated_by, definition=rule.definition or {}
    )
    if url is None or problem or not rule.enabled:
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status=DeliveryStatus.FAILED, last_error="rule changed, disabled or no longer authorised"
        )
        return
    body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode("utf-8")
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-Postroom-Event": "rule.matched",
        "X-Postroom-Delivery": str(delivery.pk),
        "X-Postroom-Timestamp": timestamp,
        "X-Postroom-Signature": signature(rule.signing_key or "", timestamp, body),
    }
    started = time.monotonic()
    status_code: int | None = None
    error = ""
    try:
        status_code = post_public(url, body=body, headers=headers)
    except FetchError as failure:
        error = failure.reason
    duration_ms = int((time.monotonic() - started) * 1000)
    delivered = status_code is not None and 200 <= status_code < 300
    retryable = error in TRANSIENT_FAILURES if status_code is None else status_code in (408, 429) or status_code >= 500
    if not delivered and not error:
        error = f"answered {status_code}"
    if delivered:
        status = DeliveryStatus.DELIVERED
    elif retryable and attempt <= len(RETRY_DELAYS):
        status = DeliveryStatus.RETRYING
    else:
        status = DeliveryStatus.FAILED
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=status, attempts=attempt, last_status_code=status_code, last_duration_ms=duration_ms, last_error=error[:120],
        last_attempt_at=timezone.now(),
    )  # fmt: skip
    if status == DeliveryStatus.RETRYING:
        logger.info("webhook delivery %s: attempt %d failed (%s); retrying", delivery.pk, attempt, error)
        webhook_send.using(run_after=timezone.now() + RETRY_DELAYS[attempt - 1]).enqueue(str(delivery.pk), attempt + 1)
