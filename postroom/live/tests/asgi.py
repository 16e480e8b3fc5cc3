"""An ASGI client for streams: drives ``postroom.asgi.application`` exactly as uvicorn would
(one ``http.request``, then ``http.disconnect`` when the test closes it) and parses what comes
back as server-sent events, one at a time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections
from django.test import Client

from postroom.accounts.models import User

T = TypeVar("T")
WAIT_SECONDS = 20.0  # a bound on a hang, not a measurement: every wait ends much sooner when things work


async def in_thread(function: Callable[[], T]) -> T:
    """Run database code off the event loop (the ORM refuses to run on it), on a thread that
    keeps no connection afterwards (PostgreSQL would keep the test database from being dropped)."""

    def call() -> T:
        try:
            return function()
        finally:
            connections.close_all()

    return await sync_to_async(call, thread_sensitive=False)()


def session_cookie(user: User) -> str:
    client = Client()
    client.force_login(user, backend="allauth.account.auth_backends.AuthenticationBackend")
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


@dataclass
class ServerEvent:
    event: str
    data: str
    id: str | None


@dataclass
class Stream:
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 0
    response_headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    finished: bool = False
    _chunks: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    _disconnect: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    _buffer: str = ""

    async def open(self) -> Stream:
        from postroom.asgi import application

        host = urlsplit(settings.PUBLIC_URL).netloc
        path, _, query = self.path.partition("?")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(b"host", host.encode())] + [(k.lower().encode(), v.encode()) for k, v in self.headers.items()],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        sent_request = False

        async def receive() -> dict[str, Any]:
            nonlocal sent_request
            if not sent_request:
                sent_request = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await self._disconnect.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.status = message["status"]
                self.response_headers = {k.decode().lower(): v.decode() for k, v in message["headers"]}
                started.set_result(None)
            elif message["type"] == "http.response.body":
                if message.get("body"):
                    await self._chunks.put(message["body"])
                if not message.get("more_body"):
                    await self._chunks.put(None)

        self._task = asyncio.get_running_loop().create_task(application(scope, receive, send))
        await asyncio.wait_for(started, WAIT_SECONDS)
        return self

    async def _read(self) -> bool:
        chunk = await asyncio.wait_for(self._chunks.get(), WAIT_SECONDS)
        if chunk is None:
            self.finished = True
            return False
        text = chunk.decode()
        self.body += text
        self._buffer += text
        return True

    async def text(self) -> str:
        """The whole body of a response that is not a stream."""
        while not self.finished and await self._read():
            pass
        return self.body

    async def next_event(self) -> ServerEvent | None:
        """The next event (comments and ``retry:`` skipped), or None when the stream ended."""
        while True:
            while "\n\n" not in self._buffer:
                if self.finished or not await self._read():
                    return None
            block, self._buffer = self._buffer.split("\n\n", 1)
            fields: dict[str, str] = {}
            for line in block.split("\n"):
                if line.startswith(":") or ":" not in line:
                    continue
                name, value = line.split(":", 1)
                fields[name] = value.removeprefix(" ")
            if "event" in fields or "data" in fields:
                return ServerEvent(event=fields.get("event", "message"), data=fields.get("data", ""), id=fields.get("id"))

    async def until(self, event: str) -> ServerEvent:
        """Skip to the next event of this type (failing if the stream ends first, or if it does
        not come while heartbeats keep the stream busy)."""

        async def skip() -> ServerEvent:
            while True:
                received = await self.next_event()
                assert received is not None, f"the stream ended before {event!r}: {self.body[-500:]!r}"
                if received.event == event:
                    return received

        return await asyncio.wait_for(skip(), WAIT_SECONDS)

    async def comment(self, text: str) -> None:
        """Wait for the next comment line ``text`` (bounded), consuming the events before it."""

        async def wait() -> None:
            while True:
                while "\n\n" not in self._buffer:
                    assert not self.finished, f"the stream ended before {text!r}"
                    assert await self._read(), f"the stream ended before {text!r}"
                block, self._buffer = self._buffer.split("\n\n", 1)
                if block == text:
                    return

        await asyncio.wait_for(wait(), WAIT_SECONDS)

    async def close(self) -> None:
        self._disconnect.set()
        if self._task is not None:
            await asyncio.wait_for(self._task, WAIT_SECONDS)


async def open_stream(path: str, *, cookie: str | None = None, **headers: str) -> Stream:
    all_headers = {name.replace("_", "-"): value for name, value in headers.items()}
    if cookie:
        all_headers["cookie"] = cookie
    return await Stream(path=path, headers=all_headers).open()
