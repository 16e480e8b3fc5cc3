"""Background work of rules: webhook deliveries (``rules.webhooks``)."""

from __future__ import annotations

from django_tasks import task

from postroom.rules.webhooks import webhook_attempt


@task(queue_name="default")
def webhook_send(delivery_id: str, attempt: int = 1) -> None:
    webhook_attempt(delivery_id, attempt)
