"""The optional email digest: off by default, one per interval even with several senders,
counts and links only (no subject, no comment text), through the sealed system-mail task."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.core import mail
from django.utils import timezone
from django_tasks.backends.dummy import DummyBackend

from postroom.comments.models import Comment
from postroom.comments.tests.conftest import Scene, mention
from postroom.notifications import actions
from postroom.notifications.models import DigestFrequency, Notification

pytestmark = pytest.mark.django_db

CANARY = "canary-digest-91b2"


@pytest.fixture
def busy(scene: Scene, comment_as: Callable[..., Comment]) -> Scene:
    """Bob has two unread notifications about a conversation whose subject and comments hold the canary."""
    scene.shared.subject = f"Order {CANARY}"
    scene.shared.save(update_fields=["subject_sealed"])
    comment_as(scene.cast.alice_membership, scene.shared, f"{mention(scene.cast.bob_membership)} {CANARY} please")
    comment_as(scene.cast.carol_membership, scene.shared, f"{CANARY} more")  # Bob follows now: a comment notification
    return scene


def run(capture: Any, now: Any = None) -> int:
    with capture(execute=True):
        return actions.digests_send_due(now=now)


def test_no_digest_unless_turned_on(busy: Scene, django_capture_on_commit_callbacks: Any) -> None:
    assert run(django_capture_on_commit_callbacks, timezone.now() + timedelta(hours=2)) == 0
    assert mail.outbox == []


def test_the_digest_lists_who_did_what_with_links_and_no_content(busy: Scene, django_capture_on_commit_callbacks: Any) -> None:
    actions.preference_set(actor=busy.cast.bob_membership, digest=DigestFrequency.HOURLY)
    assert run(django_capture_on_commit_callbacks) == 0  # too fresh: he may be reading them in the app
    later = timezone.now() + timedelta(minutes=15)
    with time_machine.travel(later, tick=False):
        assert run(django_capture_on_commit_callbacks, later) == 1
    [message] = mail.outbox
    assert message.to == ["bob@acme.test"]
    assert message.subject == "2 unread notifications in Acme Support"
    assert "- Alice Owner mentioned you: http" in message.body
    assert "- New comment from Carol Admin: http" in message.body
    assert f"http://127.0.0.1:8000/o/acme/conversations/{busy.shared.pk}/" in message.body
    assert CANARY not in f"{message.subject}{message.body}"
    assert not message.alternatives  # plain text only
    assert not Notification.objects.filter(recipient=busy.cast.bob_membership, emailed_at__isnull=True).exists()


def test_one_digest_per_interval_and_nothing_twice(
    busy: Scene, django_capture_on_commit_callbacks: Any, comment_as: Callable[..., Comment]
) -> None:
    actions.preference_set(actor=busy.cast.bob_membership, digest=DigestFrequency.HOURLY)
    start = timezone.now() + timedelta(minutes=15)
    with time_machine.travel(start, tick=False):
        assert run(django_capture_on_commit_callbacks, start) == 1
        assert run(django_capture_on_commit_callbacks, start) == 0  # a second sync service in the same minute
        comment_as(busy.cast.alice_membership, busy.shared, f"{mention(busy.cast.bob_membership)} again")
    soon = start + timedelta(minutes=30)
    with time_machine.travel(soon, tick=False):
        assert run(django_capture_on_commit_callbacks, soon) == 0  # not an hour yet
    hour = start + timedelta(minutes=61)
    with time_machine.travel(hour, tick=False):
        assert run(django_capture_on_commit_callbacks, hour) == 1
        assert run(django_capture_on_commit_callbacks, hour + timedelta(hours=2)) == 0  # nothing new since
    assert len(mail.outbox) == 2
    assert mail.outbox[1].subject == "1 unread notification in Acme Support"  # only the new one


def test_read_notifications_are_not_mailed(busy: Scene, django_capture_on_commit_callbacks: Any) -> None:
    actions.preference_set(actor=busy.cast.bob_membership, digest=DigestFrequency.DAILY)
    actions.notifications_mark_all_read(actor=busy.cast.bob_membership)
    later = timezone.now() + timedelta(hours=1)
    with time_machine.travel(later, tick=False):
        assert run(django_capture_on_commit_callbacks, later) == 0
    assert mail.outbox == []


def test_the_system_mail_task_payload_is_sealed(busy: Scene, django_capture_on_commit_callbacks: Any, queue: DummyBackend) -> None:
    """What waits in the task queue is ciphertext: names and links do not sit there in the clear."""
    backend = queue
    actions.preference_set(actor=busy.cast.bob_membership, digest=DigestFrequency.HOURLY)
    later = timezone.now() + timedelta(minutes=15)
    with time_machine.travel(later, tick=False):
        assert run(django_capture_on_commit_callbacks, later) == 1
    [result] = backend.results
    payload = repr(result.args) + repr(result.kwargs)
    assert "Alice" not in payload
    assert "bob@acme.test" not in payload
    assert "/o/acme/" not in payload
    assert mail.outbox == []  # nothing sent until a worker runs it
