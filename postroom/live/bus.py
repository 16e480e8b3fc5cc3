"""How an event committed in one process reaches the web processes that hold open streams.

Postroom's processes are separate even in the embedded shape: ``postroom run`` starts the web
server, the task worker and the sync service as children, and mail stored by the sync service
must reach the streams held by the web server. A bus has two halves: ``publish`` (synchronous,
called after the commit from any process or thread) and a ``Listener`` that one hub per web
process runs (``live.hub``), which hands events over in batches, in order, each with a
``sequence``.

- ``DatabaseBus`` (the embedded shape, and any install without ``REDIS_URL``): a row per event
  in ``live_liveevent``; each web process polls it with one indexed query (``id > cursor``)
  every ``LIVE_POLL_SECONDS`` for all its streams together, and only while it has streams.
  Chosen over a socket from the supervisor or PostgreSQL's LISTEN/NOTIFY because it needs no
  other service and nothing shape-specific (SQLite and PostgreSQL alike, any number of
  processes, also ``postroom web`` run on its own), survives a restart of the web process, and
  keeps a few minutes of history, so a page that reconnects resumes from its Last-Event-ID
  instead of reloading everything. The cost is a poll: about 4 cheap reads a second per web
  process and up to a quarter of a second of latency (see bench/README.md). Row ids must become
  visible in id order for ``id > cursor`` to miss nothing: SQLite has one writer at a time; on
  PostgreSQL the insert holds a transaction-scoped advisory lock, so ids commit in order.
- ``RedisBus`` (the scaled-out shape, ``REDIS_URL`` set): Redis pub/sub on one channel; every
  web process subscribes once. Nothing is kept, so a reconnecting page gets ``resync``
  (re-fetch what it shows) instead of a replay, as does every stream of a process whose Redis
  connection dropped.
- ``MemoryBus``: inside one process only (``LIVE_BUS = "memory"``); for tests and experiments.

A publish that fails (database locked for too long, Redis down) is logged without content and
dropped: the change itself is committed, and pages catch up on their next load or resync.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from typing import Any, Protocol, TypeVar

from django.conf import settings
from django.db import DatabaseError, connection, connections, transaction
from django.utils import timezone

from postroom.core.bulk import instances_insert, model_instance
from postroom.live.events import Event, InvalidEventError, conversation_event
from postroom.live.models import LiveEvent

logger = logging.getLogger(__name__)

T = TypeVar("T")
RunSync = Callable[..., Awaitable[Any]]

RETENTION = timedelta(minutes=5)
PRUNE_EVERY = timedelta(minutes=1)
BATCH = 500
BACKLOG_LIMIT = 1000
# Arbitrary, fixed: serialises the inserts of the event log on PostgreSQL (see the docstring).
ADVISORY_LOCK_KEY = 0x706F7374726F6F6D  # "postroom"


class Listener(Protocol):
    async def open(self) -> int:
        """Start listening; the sequence of the last event already passed (new ones are above)."""

    async def receive(self) -> list[Event] | None:
        """The next events (at most about a second's wait; ``[]`` when none came), or None when
        some may have been lost (a dropped connection): every stream must then resync."""

    async def backlog(self, after: int, upto: int) -> list[Event] | None:
        """Events with ``after < sequence <= upto``, or None when they are no longer known."""

    async def close(self) -> None: ...


class Bus(Protocol):
    name: str

    def publish(self, event: Event) -> None: ...

    def listener(self, run_sync: RunSync) -> Listener: ...


# --- Database --------------------------------------------------------------------------------------
def _event_of(row: LiveEvent) -> Event:
    if row.user_id is not None:
        return Event(kind=row.kind, user_id=row.user_id, sequence=row.pk)
    return conversation_event(
        organization_id=row.organization_id or 0, conversation_id=row.conversation_id, kind=row.kind, audience=row.audience
    ).with_sequence(row.pk)


def _rows_after(cursor: int, limit: int, upto: int | None = None) -> list[Event]:
    rows = LiveEvent.objects.filter(id__gt=cursor)
    if upto is not None:
        rows = rows.filter(id__lte=upto)
    events = []
    for row in rows.order_by("id")[:limit]:
        try:
            events.append(_event_of(row))
        except InvalidEventError:
            continue
    return events


def last_event_id() -> int:
    # A constant text: every page asks (live_stream), and building the ORM's query cost more
    # than running it (issue #4).
    with connection.cursor() as cursor:
        cursor.execute("SELECT MAX(id) FROM live_liveevent")
        (last,) = cursor.fetchone()
    return int(last or 0)


def _still_known(after: int) -> bool:
    """Whether every event after ``after`` is still in the log: pruning removes the oldest rows
    first, so it is while a row at or before ``after`` remains, or the first row follows it."""
    if LiveEvent.objects.filter(id__lte=after).exists():
        return True
    first = LiveEvent.objects.order_by("id").values_list("id", flat=True).first()
    return first == after + 1


def _backlog(after: int, upto: int) -> list[Event] | None:
    if upto - after > BACKLOG_LIMIT * 10 or not _still_known(after):
        return None
    events = _rows_after(after, BACKLOG_LIMIT + 1, upto)
    return None if len(events) > BACKLOG_LIMIT else events


def close_thread_connections() -> None:
    connections.close_all()


class DatabaseBus:
    name = "database"

    def __init__(self) -> None:
        self._pruned_at = timezone.now() - PRUNE_EVERY * 2
        self._prune_lock = threading.Lock()

    def publish(self, event: Event) -> None:
        self.publish_many([event])

    def publish_many(self, events: list[Event]) -> None:
        """The events in order, in one transaction (``publishing_held``)."""
        now = timezone.now()
        rows = [
            model_instance(
                LiveEvent,
                {
                    "organization_id": event.organization_id,
                    "conversation_id": event.conversation_id,
                    "kind": event.kind,
                    "audience": None if event.audience is None else sorted(event.audience),
                    "user_id": event.user_id,
                    "created_at": now,
                },
            )
            for event in events
        ]
        with transaction.atomic():
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ADVISORY_LOCK_KEY])
            instances_insert(rows)  # as save() would store them, without compiling an INSERT per event
        self._prune(now)

    def _prune(self, now: Any) -> None:
        with self._prune_lock:
            if now - self._pruned_at < PRUNE_EVERY:
                return
            self._pruned_at = now
        LiveEvent.objects.filter(created_at__lt=now - RETENTION).delete()

    def listener(self, run_sync: RunSync) -> Listener:
        return DatabaseListener(run_sync)


class DatabaseListener:
    def __init__(self, run_sync: RunSync) -> None:
        self.run_sync = run_sync
        self.cursor = 0
        self._full = False

    async def open(self) -> int:
        self.cursor = await self.run_sync(last_event_id)
        return int(self.cursor)

    async def receive(self) -> list[Event] | None:
        if not self._full:
            await asyncio.sleep(float(settings.LIVE_POLL_SECONDS))
        try:
            events: list[Event] = await self.run_sync(_rows_after, self.cursor, BATCH)
        except DatabaseError as error:
            # The cursor has not moved: the next poll reads the same events again.
            logger.warning("live: polling the event log failed (%s); retrying", type(error).__name__)
            await self.run_sync(close_thread_connections)
            await asyncio.sleep(1.0)
            return []
        self._full = len(events) >= BATCH
        if events:
            self.cursor = events[-1].sequence
        return events

    async def backlog(self, after: int, upto: int) -> list[Event] | None:
        result: list[Event] | None = await self.run_sync(_backlog, after, upto)
        return result

    async def close(self) -> None:
        return None


# --- Redis -----------------------------------------------------------------------------------------
class RedisBus:
    name = "redis"

    def __init__(self, url: str, channel: str) -> None:
        self.url = url
        self.channel = channel
        self._client: Any = None
        self._lock = threading.Lock()

    def _publisher(self) -> Any:
        with self._lock:
            if self._client is None:
                import redis

                self._client = redis.Redis.from_url(self.url, socket_timeout=2, socket_connect_timeout=2)
            return self._client

    def publish(self, event: Event) -> None:
        self._publisher().publish(self.channel, event.to_wire())

    def listener(self, run_sync: RunSync) -> Listener:
        return RedisListener(self.url, self.channel)


class RedisListener:
    def __init__(self, url: str, channel: str) -> None:
        self.url = url
        self.channel = channel
        self._client: Any = None
        self._pubsub: Any = None
        # Sequences are this listener's own count, from a random start: a cursor from before a
        # restart then never matches, and its page resyncs.
        self.sequence = secrets.randbits(40)

    async def _connect(self) -> None:
        import redis.asyncio

        self._client = redis.asyncio.Redis.from_url(self.url, socket_connect_timeout=2, health_check_interval=30)
        self._pubsub = self._client.pubsub()
        await self._pubsub.subscribe(self.channel)
        # Wait for the confirmation: from then on, everything published reaches us.
        while True:
            message = await self._pubsub.get_message(timeout=2.0)
            if message is None:
                raise ConnectionError("no subscription confirmation from Redis")
            if message["type"] == "subscribe":
                return

    async def open(self) -> int:
        await self._connect()
        return self.sequence

    async def receive(self) -> list[Event] | None:
        import redis

        try:
            if self._pubsub is None:
                await self._connect()
                return None  # whatever was published while we were away is lost
            message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            messages: list[dict[str, Any]] = []
            while message is not None and len(messages) < BATCH:
                messages.append(message)
                message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=0)
        except (redis.RedisError, OSError) as error:
            logger.warning("live: the Redis subscription failed (%s); reconnecting", type(error).__name__)
            await self.close()
            await asyncio.sleep(1.0)
            return None
        events = []
        for item in messages:
            if item.get("type") != "message":
                continue
            try:
                event = Event.from_wire(item["data"])
            except InvalidEventError:
                continue
            self.sequence += 1
            events.append(event.with_sequence(self.sequence))
        return events

    async def backlog(self, after: int, upto: int) -> list[Event] | None:
        return [] if after == upto else None

    async def close(self) -> None:
        pubsub, client = self._pubsub, self._client
        self._pubsub = self._client = None
        try:
            if pubsub is not None:
                await pubsub.aclose()
            if client is not None:
                await client.aclose()
        except (OSError, ConnectionError):
            pass


# --- In one process --------------------------------------------------------------------------------
class MemoryBus:
    name = "memory"

    def __init__(self) -> None:
        self._listeners: weakref.WeakSet[MemoryListener] = weakref.WeakSet()
        self._lock = threading.Lock()

    def publish(self, event: Event) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener.offer(event)

    def listener(self, run_sync: RunSync) -> Listener:
        listener = MemoryListener(self)
        with self._lock:
            self._listeners.add(listener)
        return listener

    def forget(self, listener: MemoryListener) -> None:
        with self._lock:
            self._listeners.discard(listener)


class MemoryListener:
    def __init__(self, bus: MemoryBus) -> None:
        self.bus = bus
        self.loop: asyncio.AbstractEventLoop | None = None
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.sequence = secrets.randbits(40)

    def offer(self, event: Event) -> None:
        if self.loop is None:
            return
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, event)
        except RuntimeError:  # the loop is closed
            self.bus.forget(self)

    async def open(self) -> int:
        self.loop = asyncio.get_running_loop()
        return self.sequence

    async def receive(self) -> list[Event] | None:
        try:
            first = await asyncio.wait_for(self.queue.get(), timeout=1.0)
        except TimeoutError:
            return []
        events = [first]
        while not self.queue.empty() and len(events) < BATCH:
            events.append(self.queue.get_nowait())
        numbered = []
        for event in events:
            self.sequence += 1
            numbered.append(event.with_sequence(self.sequence))
        return numbered

    async def backlog(self, after: int, upto: int) -> list[Event] | None:
        return [] if after == upto else None

    async def close(self) -> None:
        self.bus.forget(self)


# --- The process's bus -----------------------------------------------------------------------------
_buses: dict[tuple[str, str, str], Bus] = {}
_buses_lock = threading.Lock()


def get_bus() -> Bus:
    """The bus the settings choose (``LIVE_BUS``), one instance per process."""
    key = (str(settings.LIVE_BUS), str(settings.REDIS_URL or ""), str(settings.LIVE_REDIS_CHANNEL))
    with _buses_lock:
        bus = _buses.get(key)
        if bus is None:
            if key[0] == "redis":
                bus = RedisBus(key[1], key[2])
            elif key[0] == "memory":
                bus = MemoryBus()
            else:
                bus = DatabaseBus()
            _buses[key] = bus
        return bus


_held = threading.local()


def publish(event: Event) -> None:
    bus = get_bus()
    held: list[Event] | None = getattr(_held, "events", None)
    if held is not None and isinstance(bus, DatabaseBus):
        held.append(event)
    else:
        bus.publish(event)


@contextlib.contextmanager
def publishing_held() -> Iterator[None]:
    """Events this thread publishes inside the block are published together as it ends: on the
    database bus in one transaction instead of one each (a batch of mail names hundreds of
    conversations); the other buses publish them at once. A failure is logged and dropped, as a
    single publish's is (the changes are committed; pages catch up on their next load); when the
    block raises, what it held is dropped."""
    if getattr(_held, "events", None) is not None:
        yield  # already inside one
        return
    _held.events = []
    try:
        yield
    finally:
        events, _held.events = _held.events, None
    # Not reached when the block raised: its events are dropped, as a rolled-back transaction's rows were.
    if events:
        try:
            bus = get_bus()
            if isinstance(bus, DatabaseBus):
                bus.publish_many(events)
        except Exception as error:
            logger.warning("live: %d events were not published (%s)", len(events), type(error).__name__)
