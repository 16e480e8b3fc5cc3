"""The outbox sweep (run every minute by the sync service): a message whose task was lost is
queued again and sent once; an attempt interrupted mid-way becomes a failure the member can
retry, never a second delivery."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.utils import timezone
from django_tasks.backends.dummy import DummyBackend

from postroom.audit.models import AuditEvent
from postroom.mailboxes.models import Mailbox, MailboxStatus
from postroom.outbox import actions, tasks
from postroom.outbox.models import OutgoingMessage, OutgoingStatus
from postroom.outbox.tests.test_send import create
from postroom.sync.service import SyncService
from postroom.testing.smtp import SmtpPeer

pytestmark = pytest.mark.django_db

LATER = actions.LOST_TASK_AFTER + timedelta(seconds=1)


def test_a_message_whose_task_was_lost_is_queued_again_and_sent_once(
    mailbox: Mailbox, smtp_peer_requiring_auth: SmtpPeer, django_capture_on_commit_callbacks: Any,
    run_due: Callable[[], int], queue: DummyBackend,
) -> None:  # fmt: skip
    outgoing = create(mailbox, django_capture_on_commit_callbacks, to=[("Dana", "dana@customer.example")])
    queue.clear()  # the task is lost (say, the queue was flushed)

    with django_capture_on_commit_callbacks(execute=True):
        assert actions.outgoing_sweep().requeued == 0  # not overdue yet: its task may still run
    assert queue.results == []

    with time_machine.travel(timezone.now() + LATER):
        with django_capture_on_commit_callbacks(execute=True):
            assert actions.outgoing_sweep() == actions.SweepOutcome(requeued=1, interrupted=0)
            # Straight after, it is due but not overdue again: not queued twice.
            assert actions.outgoing_sweep().requeued == 0
        assert run_due() == 1
    assert OutgoingMessage.objects.get(pk=outgoing.pk).status == OutgoingStatus.SENT
    assert len(smtp_peer_requiring_auth.messages) == 1


def test_a_retry_whose_task_was_lost_is_queued_again(
    mailbox: Mailbox, smtp_peer_requiring_auth: SmtpPeer, django_capture_on_commit_callbacks: Any,
    run_due: Callable[[], int], queue: DummyBackend,
) -> None:  # fmt: skip
    outgoing = create(mailbox, django_capture_on_commit_callbacks, to=[("Dana", "dana@customer.example")])
    queue.clear()
    OutgoingMessage.objects.filter(pk=outgoing.pk).update(
        status=OutgoingStatus.FAILED_TEMPORARY, attempts=1, next_attempt_at=timezone.now() + timedelta(minutes=1)
    )
    with time_machine.travel(timezone.now() + timedelta(minutes=1) + LATER):
        with django_capture_on_commit_callbacks(execute=True):
            assert actions.outgoing_sweep().requeued == 1
        assert run_due() == 1
    assert OutgoingMessage.objects.get(pk=outgoing.pk).status == OutgoingStatus.SENT


def test_an_interrupted_attempt_becomes_a_failure_the_member_can_retry(
    mailbox: Mailbox, smtp_peer_requiring_auth: SmtpPeer, django_capture_on_commit_callbacks: Any, queue: DummyBackend,
) -> None:  # fmt: skip
    outgoing = create(mailbox, django_capture_on_commit_callbacks, to=[("Dana", "dana@customer.example")])
    queue.clear()
    claimed = actions.outgoing_claim(outgoing_id=outgoing.pk)
    assert claimed is not None
    tasks.submit(claimed)  # delivered, then the worker died before recording it

    assert actions.outgoing_sweep().interrupted == 0  # a recent attempt may still be running
    later = timezone.now() + actions.SENDING_TIMEOUT + timedelta(seconds=1)
    with time_machine.travel(later), django_capture_on_commit_callbacks(execute=True):
        assert actions.outgoing_sweep() == actions.SweepOutcome(requeued=0, interrupted=1)
    stored = OutgoingMessage.objects.get(pk=outgoing.pk)
    assert stored.status == OutgoingStatus.FAILED_PERMANENT
    assert stored.last_error == actions.INTERRUPTED_REASON
    assert stored.can_retry
    assert queue.results == []
    assert len(smtp_peer_requiring_auth.messages) == 1
    assert AuditEvent.objects.filter(action="outbox.message_failed", target_id=str(outgoing.pk)).count() == 1


def test_the_sync_service_sweeps_the_outbox(
    mailbox: Mailbox, smtp_peer_requiring_auth: SmtpPeer, django_capture_on_commit_callbacks: Any, queue: DummyBackend,
) -> None:  # fmt: skip
    Mailbox.objects.filter(pk=mailbox.pk).update(status=MailboxStatus.PAUSED)  # no sync thread for this test
    create(mailbox, django_capture_on_commit_callbacks, to=[("Dana", "dana@customer.example")])
    queue.clear()
    service = SyncService(owner="sweep-test")
    with time_machine.travel(timezone.now() + LATER), django_capture_on_commit_callbacks(execute=True):
        service.tick()
    assert len(queue.results) == 1
    service.shutdown()
