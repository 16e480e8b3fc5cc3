"""Background work on stored messages: the body pass (see ``conversations.bodies``)."""

from __future__ import annotations

from django_tasks import task

from postroom.conversations.bodies import message_bodies_fill


@task(queue_name="default")
def message_bodies_fill_task(message_ids: list[str]) -> int:
    return message_bodies_fill(message_ids=message_ids)
