"""The buses on their own: the database log, the in-process bus, Redis pub/sub between
connections that stand for separate processes, and the hub's fan-out on top of them."""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from postroom.conftest import Cast
from postroom.live import bus as buses
from postroom.live import hub as hubs
from postroom.live.events import Event, InvalidEventError, control_event, conversation_event, cursor_decode, cursor_encode
from postroom.live.models import LiveEvent
from postroom.live.selectors import StreamGrant
from postroom.live.tests.asgi import in_thread
from postroom.live.tests.conftest import deliver, run
from postroom.mailboxes.models import Mailbox
from postroom.testing.aio import run_in_fresh_loop


def event(kind: str = "assigned", organization_id: int = 1, audience: list[int] | None = None) -> Event:
    return conversation_event(organization_id=organization_id, conversation_id=uuid.uuid4(), kind=kind, audience=audience)


async def collect(listener: buses.Listener, count: int) -> list[Event]:
    """The next ``count`` events (bounded: a missing event fails instead of hanging)."""
    received: list[Event] = []

    async def gather() -> None:
        while len(received) < count:
            batch = await listener.receive()
            assert batch is not None, "the listener reported a gap"
            received.extend(batch)

    await asyncio.wait_for(gather(), 20)
    return received


def publish_all(bus: buses.Bus, events: list[Event]) -> None:
    for item in events:
        bus.publish(item)


async def run_sync(function: Any, *arguments: Any, **keywords: Any) -> Any:
    return await in_thread(lambda: function(*arguments, **keywords))


# --- Events and cursors ----------------------------------------------------------------------------
def test_events_cross_processes_as_ids_and_a_kind() -> None:
    original = event(audience=[3, 1])
    assert Event.from_wire(original.to_wire()) == original
    assert Event.from_wire(control_event(7).to_wire()) == control_event(7)
    assert set(original.to_wire().decode()) <= set('{}[]":,_-0123456789abcdefghijklmnopqrstuvwxyz')


@pytest.mark.parametrize(
    "wire",
    [b"not json", b"{}", b'{"k":"x","o":1,"c":"not-a-uuid"}', b'{"k":"Bad Kind","o":1,"c":"01a1fd60-e302-7696-a567-00875c0d93de"}'],
)
def test_a_malformed_event_is_rejected(wire: bytes) -> None:
    with pytest.raises(InvalidEventError):
        Event.from_wire(wire)


@pytest.mark.parametrize("kind", ["", "Assigned", "message added", "x" * 41, "kind\nevent: forged"])
def test_r19_a_kind_cannot_smuggle_anything_into_the_stream(kind: str) -> None:
    with pytest.raises(InvalidEventError):
        conversation_event(organization_id=1, conversation_id=uuid.uuid4(), kind=kind)


def test_r19_a_cursor_opens_only_for_its_user_in_its_organization() -> None:
    token = cursor_encode(12345, user_id=7, organization_id=1)
    assert cursor_decode(token, user_id=7, organization_id=1) == 12345
    assert cursor_decode(token, user_id=8, organization_id=1) is None
    assert cursor_decode(token, user_id=7, organization_id=2) is None
    assert cursor_decode(token[:-2] + ("AA" if token[-2:] != "AA" else "BB"), user_id=7, organization_id=1) is None
    assert cursor_encode(12345, user_id=7, organization_id=1) != token  # a fresh nonce each time: equal positions do not show


# --- The database log ------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_the_database_log_hands_over_events_in_commit_order_from_another_thread() -> None:
    bus = buses.DatabaseBus()
    sent = [event(kind=f"kind_{index}") for index in range(30)]

    async def scenario() -> None:
        listener = bus.listener(run_sync)
        start = await listener.open()
        # Published from other threads, as the sync service and the worker do from other processes.
        publisher = threading.Thread(target=publish_all, args=(bus, sent))
        publisher.start()
        received = await collect(listener, len(sent))
        publisher.join()
        assert received == sent
        sequences = [item.sequence for item in received]
        assert sequences == sorted(sequences)
        assert sequences[0] > start
        # What the log still holds can be replayed to a reconnecting stream.
        assert await listener.backlog(sequences[9], sequences[19]) == sent[10:20]
        await listener.close()

    run(scenario)


@pytest.mark.django_db(transaction=True)
def test_the_log_forgets_old_events_and_then_refuses_to_replay_them() -> None:
    bus = buses.DatabaseBus()
    for _ in range(3):
        bus.publish(event())
    first, second, third = LiveEvent.objects.order_by("id").values_list("id", flat=True)
    LiveEvent.objects.filter(pk__in=[first, second]).update(created_at=timezone.now() - buses.RETENTION - timedelta(seconds=1))
    bus._pruned_at = timezone.now() - buses.PRUNE_EVERY
    bus.publish(event())
    assert list(LiveEvent.objects.values_list("id", flat=True)) == [third, third + 1]
    assert buses._backlog(first, third + 1) is None  # the second is gone: cannot replay from the first
    assert [item.sequence for item in buses._backlog(second, third + 1) or []] == [third, third + 1]


@pytest.mark.django_db(transaction=True)
def test_events_held_are_written_together_in_order_when_the_block_ends(settings: Any) -> None:
    settings.LIVE_BUS = "database"
    sent = [event(kind=f"kind_{index}") for index in range(5)]
    with buses.publishing_held():
        for item in sent[:3]:
            buses.publish(item)
        with buses.publishing_held():  # nested: still held by the outer block
            buses.publish(sent[3])
        assert not LiveEvent.objects.exists()
    buses.publish(sent[4])  # outside any block: at once
    assert buses._rows_after(0, 10) == [item.with_sequence(row_id) for item, row_id in
                                        zip(sent, LiveEvent.objects.order_by("id").values_list("id", flat=True), strict=True)]  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_events_held_that_cannot_be_written_are_dropped_without_failing_the_caller(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.LIVE_BUS = "database"

    def refuse(self: buses.DatabaseBus, events: list[Event]) -> None:
        raise buses.DatabaseError("database is locked")

    monkeypatch.setattr(buses.DatabaseBus, "publish_many", refuse)
    with buses.publishing_held():
        buses.publish(event())
    assert not LiveEvent.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_events_held_by_a_block_that_failed_are_dropped(settings: Any) -> None:
    settings.LIVE_BUS = "database"

    def publish_then_fail() -> None:
        with buses.publishing_held():
            buses.publish(event())
            raise RuntimeError("the changes they describe were rolled back")

    with pytest.raises(RuntimeError):
        publish_then_fail()
    assert not LiveEvent.objects.exists()
    with buses.publishing_held():  # the next block starts empty
        buses.publish(event())
    assert LiveEvent.objects.count() == 1


# --- In one process --------------------------------------------------------------------------------
def test_the_memory_bus_reaches_every_listener_from_any_thread() -> None:
    bus = buses.MemoryBus()
    sent = [event(kind="first"), event(kind="second")]

    async def scenario() -> None:
        listeners = [bus.listener(run_sync), bus.listener(run_sync)]
        for listener in listeners:
            await listener.open()
        publisher = threading.Thread(target=publish_all, args=(bus, sent))
        publisher.start()
        publisher.join()
        for listener in listeners:
            assert await collect(listener, 2) == sent
            await listener.close()

    run_in_fresh_loop(scenario())


# --- The hub ---------------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_r19_the_hub_delivers_only_what_each_member_may_see(
    cast: Cast, alice_mailbox: Mailbox, bob_mailbox: Mailbox, settings: Any
) -> None:
    settings.LIVE_BUS = "memory"
    alices_conversation, bobs_conversation = deliver(alice_mailbox), deliver(bob_mailbox)

    async def scenario() -> None:
        hub = hubs.get_hub()
        bob = await hub.subscribe(
            grant=StreamGrant("x", cast.bob.pk, cast.bob_membership.pk), organization_id=cast.org_a.pk, resume_from=None
        )
        charlie = await hub.subscribe(
            grant=StreamGrant("y", cast.charlie.pk, cast.charlie_membership.pk), organization_id=cast.org_b.pk, resume_from=None
        )
        for conversation in (alices_conversation, bobs_conversation):
            buses.publish(conversation_event(organization_id=cast.org_a.pk, conversation_id=conversation.pk, kind="assigned"))
        received = await asyncio.wait_for(bob.subscriber.queue.get(), 20)
        assert isinstance(received, Event)
        assert received.conversation_id == bobs_conversation.pk
        assert charlie.subscriber.queue.empty()

    run(scenario)


def test_a_stream_that_cannot_keep_up_is_told_to_resync() -> None:
    async def scenario() -> None:
        subscriber = hubs.Subscriber(grant=StreamGrant("x", 1, 1), organization_id=1)
        for index in range(hubs.QUEUE_SIZE + 5):
            subscriber.offer(event().with_sequence(index), index)
        first = subscriber.queue.get_nowait()
        assert first == hubs.Resync(hubs.QUEUE_SIZE)
        assert subscriber.queue.qsize() == 4  # what came after the overflow follows the resync

    run_in_fresh_loop(scenario())


# --- Redis (the scaled-out shape) --------------------------------------------------------------------
def _redis_url() -> str:
    url = os.environ.get("POSTROOM_TEST_REDIS_URL")
    if not url:
        pytest.skip("POSTROOM_TEST_REDIS_URL is not set (scripts/test sets it when Redis runs)")
    return url


@pytest.mark.redis
def test_redis_pub_sub_reaches_subscribers_on_separate_connections() -> None:
    """Two listeners (two web processes) each on their own connection, a publisher on a third."""
    bus = buses.RedisBus(_redis_url(), f"postroom-test:{secrets.token_hex(6)}")
    sent = [event(kind="first"), control_event(42), event(kind="third", audience=[5])]

    async def scenario() -> None:
        listeners = [bus.listener(run_sync), bus.listener(run_sync)]
        for listener in listeners:
            await listener.open()
        publisher = threading.Thread(target=publish_all, args=(bus, sent))
        publisher.start()
        publisher.join()
        for listener in listeners:
            received = await collect(listener, 3)
            assert received == sent
            assert [item.sequence for item in received] == sorted(item.sequence for item in received)
            assert await listener.backlog(received[0].sequence, received[2].sequence) is None  # nothing is kept
            await listener.close()

    run_in_fresh_loop(scenario())


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_two_web_processes_on_redis_see_each_others_events(cast: Cast, alice_mailbox: Mailbox, settings: Any) -> None:
    """Each hub stands for a web process; an action done in one reaches the streams of both."""
    settings.LIVE_BUS = "redis"
    settings.REDIS_URL = _redis_url()
    settings.LIVE_REDIS_CHANNEL = f"postroom-test:{secrets.token_hex(6)}"
    from postroom.conversations import actions

    conversation = deliver(alice_mailbox)
    actions.conversation_share(actor=cast.alice_membership, conversation=conversation, organization=True)

    async def scenario() -> None:
        first, second = hubs.Hub(buses.get_bus()), hubs.Hub(buses.get_bus())
        try:
            bob = await first.subscribe(
                grant=StreamGrant("x", cast.bob.pk, cast.bob_membership.pk), organization_id=cast.org_a.pk, resume_from=None
            )
            carol = await second.subscribe(
                grant=StreamGrant("y", cast.carol.pk, cast.carol_membership.pk), organization_id=cast.org_a.pk, resume_from=None
            )
            await in_thread(lambda: actions.conversation_close(actor=cast.alice_membership, conversation=conversation))
            for opening in (bob, carol):
                received = await asyncio.wait_for(opening.subscriber.queue.get(), 20)
                assert isinstance(received, Event)
                assert (received.conversation_id, received.kind) == (conversation.pk, "closed")
        finally:
            await first.close()
            await second.close()

    run_in_fresh_loop(scenario())
