"""The in-process event bus of a web process: one listener on the bus, fanned out to its streams.

One ``Hub`` per event loop (a web process has one) keeps the open streams (``Subscriber``), runs
one task that takes batches from the bus listener (``live.bus``) while any stream is open (and
half a minute after the last one closed, so page navigation does not restart it), and hands
each stream the events its member may see: for a batch, one query answers for every stream of
the process (``selectors.visible_pairs``). Every ``RECHECK_SECONDS``, and at once when a control
event names the user (logout, credential change, removal), the streams' sessions are checked
again in one batch (``selectors.grants_still_valid``); a stream that fails ends.

Database work runs on the hub's own thread (one connection, closed when the hub idles), never
on the event loop and never on a request's thread, so open streams hold no database connection.
A stream that cannot keep up (its queue is full) gets ``resync`` in place of what it missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import weakref
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from postroom.live import selectors
from postroom.live.bus import Bus, Listener, close_thread_connections, get_bus
from postroom.live.events import Event

logger = logging.getLogger(__name__)

T = TypeVar("T")

MAX_STREAMS_PER_USER = 10  # per web process: tabs of one browser share one stream (live.js)
RECHECK_SECONDS = 60.0
IDLE_STOP_SECONDS = 30.0
QUEUE_SIZE = 256


class TooManyStreamsError(Exception):
    pass


@dataclass(frozen=True)
class Resync:
    """Whatever the page shows may be stale: re-fetch it. ``position`` is where it stands now."""

    position: int


@dataclass(frozen=True)
class End:
    """The stream is over (its session ended, or the server is going away)."""


Item = Event | Resync | End


@dataclass(eq=False)
class Subscriber:
    grant: selectors.StreamGrant
    organization_id: int
    queue: asyncio.Queue[Item] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    ended: bool = False

    @property
    def membership_id(self) -> int:
        return self.grant.membership_id

    @property
    def user_id(self) -> int:
        return self.grant.user_id

    def _clear(self) -> None:
        while not self.queue.empty():
            self.queue.get_nowait()

    def offer(self, item: Item, position: int) -> None:
        if self.ended:
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self._clear()
            self.queue.put_nowait(Resync(position))

    def end(self) -> None:
        if self.ended:
            return
        self.ended = True
        self._clear()
        self.queue.put_nowait(End())


@dataclass
class Opening:
    """A new stream: its subscriber, the position it starts at, and what it must send first."""

    subscriber: Subscriber
    position: int
    first: list[Item]


class Hub:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.subscribers: set[Subscriber] = set()
        self.cursor = 0
        self._listener: Listener | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="postroom-live")

    async def run_sync(self, function: Callable[..., T], *arguments: Any, **keywords: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(function, *arguments, **keywords))

    def streams_of(self, user_id: int) -> int:
        return sum(1 for subscriber in self.subscribers if subscriber.user_id == user_id)

    async def subscribe(self, *, grant: selectors.StreamGrant, organization_id: int, resume_from: int | None) -> Opening:
        """Register a stream. ``resume_from``: the position a reconnecting page reached, or None.

        Raises ``TooManyStreamsError`` beyond ``MAX_STREAMS_PER_USER``."""
        async with self._lock:
            if self.streams_of(grant.user_id) >= MAX_STREAMS_PER_USER:
                raise TooManyStreamsError
            if self._task is None or self._task.done():
                listener = self.bus.listener(self.run_sync)
                self.cursor = await listener.open()
                self._listener = listener
                # A context of its own: started from a request, it must not inherit (and outlive)
                # that request's thread-sensitive context.
                self._task = asyncio.get_running_loop().create_task(self._pump(listener), context=contextvars.Context())
            subscriber = Subscriber(grant=grant, organization_id=organization_id)
            # No await between registering and reading the cursor: events above it reach the
            # queue, events up to it come from the backlog.
            self.subscribers.add(subscriber)
            position, current = self.cursor, self._listener
        first: list[Item] = []
        if resume_from is not None and resume_from != position:
            backlog = await current.backlog(resume_from, position) if current and resume_from < position else None
            if backlog is None:
                first.append(Resync(position))
            else:
                first.extend(await self._visible_to(subscriber, backlog))
        return Opening(subscriber=subscriber, position=position, first=first)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        subscriber.ended = True
        self.subscribers.discard(subscriber)

    async def _visible_to(self, subscriber: Subscriber, events: list[Event]) -> list[Item]:
        mine = [event for event in events if not event.is_control and event.organization_id == subscriber.organization_id]
        pairs = await self.run_sync(
            selectors.visible_pairs,
            conversation_ids=[event.conversation_id for event in mine],
            membership_ids=[subscriber.membership_id],
        )
        return [event for event in mine if self._may_receive(subscriber, event, pairs)]

    @staticmethod
    def _may_receive(subscriber: Subscriber, event: Event, pairs: set[Any]) -> bool:
        if (event.conversation_id, subscriber.membership_id) not in pairs:
            return False
        return event.audience is None or subscriber.membership_id in event.audience

    async def _pump(self, listener: Listener) -> None:
        loop = asyncio.get_running_loop()
        next_check = loop.time() + RECHECK_SECONDS
        idle_since: float | None = None
        try:
            while True:
                try:
                    batch = await listener.receive()
                    if batch is None:
                        for subscriber in list(self.subscribers):
                            subscriber.offer(Resync(self.cursor), self.cursor)
                    elif batch:
                        # The cursor and the recipients are taken together, before any await.
                        self.cursor = batch[-1].sequence
                        await self._deliver(batch, list(self.subscribers))
                    if loop.time() >= next_check:
                        next_check = loop.time() + RECHECK_SECONDS
                        await self.recheck(list(self.subscribers))
                except asyncio.CancelledError:
                    raise
                except Exception:
                    # A poisoned batch or a failing database must not stop every page's updates;
                    # what this batch held is lost to the streams, so they re-fetch.
                    logger.exception("live: delivering events failed; continuing")
                    for subscriber in list(self.subscribers):
                        subscriber.offer(Resync(self.cursor), self.cursor)
                    await asyncio.sleep(1.0)
                if self.subscribers:
                    idle_since = None
                    continue
                idle_since = idle_since or loop.time()
                if loop.time() - idle_since >= IDLE_STOP_SECONDS:
                    self._task = self._listener = None  # before any await: a new stream starts afresh
                    return
        finally:
            await listener.close()
            await self.run_sync(close_thread_connections)

    async def _deliver(self, batch: list[Event], recipients: list[Subscriber]) -> None:
        by_organization: dict[int | None, list[Subscriber]] = defaultdict(list)
        for subscriber in recipients:
            by_organization[subscriber.organization_id].append(subscriber)
        events = [event for event in batch if event.organization_id is not None and event.organization_id in by_organization]
        if events:
            organizations = {event.organization_id for event in events}
            pairs = await self.run_sync(
                selectors.visible_pairs,
                conversation_ids=[event.conversation_id for event in events],
                membership_ids=[s.membership_id for o in organizations for s in by_organization[o]],
            )
            for event in events:
                for subscriber in by_organization[event.organization_id]:
                    if self._may_receive(subscriber, event, pairs):
                        subscriber.offer(event, self.cursor)
        users = {event.user_id for event in batch if event.is_control}
        if users:
            await self.recheck([subscriber for subscriber in self.subscribers if subscriber.user_id in users])

    async def recheck(self, subscribers: list[Subscriber]) -> None:
        """End the streams among these whose session, user or membership no longer holds."""
        if not subscribers:
            return
        valid = await self.run_sync(selectors.grants_still_valid, [subscriber.grant for subscriber in subscribers])
        for subscriber in subscribers:
            if subscriber.grant not in valid:
                subscriber.end()

    async def close(self) -> None:
        """End every stream and stop (tests, and a hub left behind by a changed bus)."""
        for subscriber in list(self.subscribers):
            subscriber.end()
        self.subscribers.clear()
        task, self._task, self._listener = self._task, None, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        else:
            await self.run_sync(close_thread_connections)
        self._executor.shutdown(wait=False)


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def get_hub() -> Hub:
    """The hub of the running event loop, on the bus the settings choose."""
    loop = asyncio.get_running_loop()
    bus = get_bus()
    hub = _hubs.get(loop)
    if hub is None or hub.bus is not bus:
        hub = _hubs[loop] = Hub(bus)
    return hub


def existing_hub() -> Hub | None:
    try:
        return _hubs.get(asyncio.get_running_loop())
    except RuntimeError:
        return None
