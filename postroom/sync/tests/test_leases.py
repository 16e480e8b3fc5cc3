"""Leases: each mailbox is synced by one service at a time; a dead service's are taken over."""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest
import time_machine
from django.db import connection, connections
from django.utils import timezone

from postroom.mailboxes.models import Mailbox, MailboxStatus
from postroom.sync.leases import LEASE_SECONDS, lease_claim, lease_release, lease_renew


def test_a_free_mailbox_is_claimed_once(idle_mailboxes: Callable[[int], list[Mailbox]]) -> None:
    boxes = idle_mailboxes(3)
    first = lease_claim("service-a", limit=10)
    second = lease_claim("service-b", limit=10)
    assert sorted(first) == sorted(box.id for box in boxes)
    assert second == []
    assert set(Mailbox.objects.values_list("lease_owner", flat=True)) == {"service-a"}


def test_claims_respect_the_limit_and_skip_mailboxes_waiting_for_a_member(idle_mailboxes: Callable[[int], list[Mailbox]]) -> None:
    boxes = idle_mailboxes(4)
    Mailbox.objects.filter(id=boxes[0].id).update(status=MailboxStatus.NEEDS_RECONNECT)
    Mailbox.objects.filter(id=boxes[1].id).update(status=MailboxStatus.PAUSED)
    assert len(lease_claim("service-a", limit=1)) == 1
    assert len(lease_claim("service-a", limit=5)) == 1
    assert lease_claim("service-b", limit=5) == []


def test_a_dead_services_mailboxes_are_taken_over_within_a_minute(idle_mailboxes: Callable[[int], list[Mailbox]]) -> None:
    boxes = idle_mailboxes(2)
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        assert len(lease_claim("dead-service", limit=10)) == 2
        traveller.shift(timedelta(seconds=LEASE_SECONDS - 1))
        assert lease_claim("survivor", limit=10) == []
        traveller.shift(timedelta(seconds=2))  # the dead one never renewed
        assert sorted(lease_claim("survivor", limit=10)) == sorted(box.id for box in boxes)
        # The dead service, were it to come back, learns it lost them.
        assert lease_renew("dead-service", [box.id for box in boxes]) == set()


def test_renewal_keeps_the_lease_and_release_frees_it(idle_mailboxes: Callable[[int], list[Mailbox]]) -> None:
    (box,) = idle_mailboxes(1)
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        lease_claim("service-a", limit=1)
        for _ in range(5):
            traveller.shift(timedelta(seconds=LEASE_SECONDS / 2))
            assert lease_renew("service-a", [box.id]) == {box.id}
            assert lease_claim("service-b", limit=1) == []
        lease_release("service-a")
        assert lease_claim("service-b", limit=1) == [box.id]


def test_renewal_gives_up_a_mailbox_that_now_needs_reconnecting(idle_mailboxes: Callable[[int], list[Mailbox]]) -> None:
    (box,) = idle_mailboxes(1)
    lease_claim("service-a", limit=1)
    Mailbox.objects.filter(id=box.id).update(status=MailboxStatus.NEEDS_RECONNECT)
    assert lease_renew("service-a", [box.id]) == set()


@pytest.mark.django_db(transaction=True)
def test_two_contending_services_never_hold_the_same_mailbox(idle_mailboxes: Callable[[int], list[Mailbox]]) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs truly concurrent connections (PostgreSQL)")
    boxes = idle_mailboxes(6)
    holders: dict[uuid.UUID, str] = {}
    violations: list[str] = []
    book = threading.Lock()
    start_together = threading.Barrier(2)
    claims = {"service-a": 0, "service-b": 0}

    def service(name: str, seed: int) -> None:
        chooser = random.Random(seed)
        held: set[uuid.UUID] = set()
        try:
            start_together.wait()
            for _ in range(150):
                lost = held - lease_renew(name, held, lease_seconds=30)
                if lost:
                    violations.append(f"{name} lost {lost} while renewing")
                for mailbox_id in lease_claim(name, limit=chooser.randint(1, 6), lease_seconds=30):
                    with book:
                        if holders.get(mailbox_id, name) != name:
                            violations.append(f"{name} and {holders[mailbox_id]} both hold {mailbox_id}")
                        holders[mailbox_id] = name
                        claims[name] += 1
                    held.add(mailbox_id)
                giving_up = {mailbox_id for mailbox_id in held if chooser.random() < 0.3}
                with book:  # forget first: once released, the other may claim it at once
                    for mailbox_id in giving_up:
                        holders.pop(mailbox_id, None)
                lease_release(name, giving_up)
                held -= giving_up
        finally:
            connections.close_all()

    threads = [threading.Thread(target=service, args=(name, seed)) for seed, name in enumerate(("service-a", "service-b"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not violations
    assert set(Mailbox.objects.filter(id__in=[box.id for box in boxes]).exclude(lease_owner="").values_list("lease_owner", flat=True)) <= {"service-a", "service-b"}
    assert claims["service-a"] > 0
    assert claims["service-b"] > 0
