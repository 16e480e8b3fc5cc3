"""``bodies.folder_bodies_fill_later``: the body pass a first import deferred, queued at its end."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from postroom.conversations import bodies
from postroom.conversations.models import Message
from postroom.conversations.tests.conftest import TeamInbox, inbox_of

pytestmark = pytest.mark.django_db


def test_each_waiting_message_of_the_folder_is_queued_once_newest_first_a_task_at_a_time(
    team_inbox: TeamInbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = datetime(2026, 11, 1, tzinfo=UTC)
    messages = [
        team_inbox.deliver(subject=f"Number {number}", message_id=f"<n{number}@customer.example>", date=base + timedelta(hours=number))
        for number in range(5)
    ]
    # The same message in the folder twice (copied on the server): still one body pass.
    again = team_inbox.deliver(subject="Number 3", message_id="<n3@customer.example>", date=base + timedelta(hours=3))
    assert again.pk == messages[3].pk
    # In another mailbox's folder, or already done: not queued.
    elsewhere = team_inbox.deliver(mailbox=team_inbox.private_mailbox, subject="Elsewhere")
    waiting = [messages[number].pk for number in (4, 3, 1, 0)]
    Message.objects.filter(pk__in=[*waiting, elsewhere.pk]).update(body_pending=True)

    queued: list[list[uuid.UUID]] = []
    monkeypatch.setattr(bodies, "TASK_SIZE", 3)
    monkeypatch.setattr(bodies, "message_bodies_fill_later", lambda *, message_ids: queued.append(list(message_ids)))
    assert bodies.folder_bodies_fill_later(folder_id=inbox_of(team_inbox.mailbox).pk) == 4
    assert queued == [waiting[:3], waiting[3:]]
