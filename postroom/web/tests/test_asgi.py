"""The production ASGI application (``postroom.asgi``): a request's synchronous work on one
thread of its own, threads lent again instead of started per request, one crossing into the
middleware chain."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from postroom.asgi import RequestThreads, SyncChainHandler, build_application
from postroom.testing.aio import run_in_fresh_loop as run

WAIT_SECONDS = 10.0  # a bound on a hang, not a measurement


def http_scope(path: str = "/") -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"host", b"testserver")], "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
    }  # fmt: skip


async def call(application: Any, path: str = "/") -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the client stays connected until the answer is sent
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(application(http_scope(path), receive, send), WAIT_SECONDS * 6)
    return sent


class ThreadRecorder:
    """An ASGI application that, like a Django request, calls synchronous code twice and notes
    the thread of each call; ``meet`` makes the first request wait, in its thread, for a second
    one to reach its own."""

    def __init__(self, meet: bool = False) -> None:
        self.threads: list[tuple[int, int]] = []
        self.meet = meet
        self.arrived = threading.Event()
        self.started = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.started += 1
        first_call = self.started == 1

        def first() -> int:
            if self.meet and first_call:
                # Only another thread can set this while this one waits.
                assert self.arrived.wait(WAIT_SECONDS), "the second request never ran: it waited for this one's thread"
            elif self.meet:
                self.arrived.set()
            return threading.get_ident()

        one = await sync_to_async(first)()
        two = await sync_to_async(threading.get_ident)()
        self.threads.append((one, two))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def test_a_request_keeps_its_thread_and_the_next_request_is_lent_the_same_one() -> None:
    recorder = ThreadRecorder()
    application = RequestThreads(recorder)

    async def two_requests() -> int:
        await call(application)
        await call(application)
        return threading.get_ident()

    loop_thread = run(two_requests())
    (first_one, first_two), (second_one, second_two) = recorder.threads
    assert first_one == first_two, "a request's synchronous calls ran on two threads"
    assert second_one == second_two
    assert second_one == first_one, "a new thread was started for the second request"
    assert first_one != loop_thread, "synchronous work ran on the event loop's thread"


def test_concurrent_requests_each_have_a_thread_of_their_own() -> None:
    recorder = ThreadRecorder(meet=True)
    application = RequestThreads(recorder)

    async def both() -> None:
        first = asyncio.create_task(call(application))
        await asyncio.sleep(0.05)  # the first request is in its thread, waiting
        await asyncio.wait_for(asyncio.gather(call(application), first), WAIT_SECONDS * 2)

    run(both())
    threads = {pair[0] for pair in recorder.threads}
    assert len(recorder.threads) == 2
    assert len(threads) == 2, "two requests at once shared one thread"


def test_a_burst_leaves_at_most_keep_idle_threads_behind() -> None:
    recorder = ThreadRecorder()
    application = RequestThreads(recorder)

    async def burst() -> None:
        await asyncio.gather(*(call(application) for _ in range(RequestThreads.KEEP_IDLE + 8)))

    run(burst())
    assert len(application._idle) == RequestThreads.KEEP_IDLE


def test_the_middleware_chain_is_one_synchronous_call() -> None:
    handler = SyncChainHandler()
    assert not asyncio.iscoroutinefunction(handler._middleware_chain)


@pytest.mark.django_db
def test_the_production_application_answers_with_the_pages_headers() -> None:
    sent = run(call(build_application(), "/health"))
    start = next(message for message in sent if message["type"] == "http.response.start")
    headers = {name.decode().lower(): value.decode() for name, value in start["headers"]}
    body = b"".join(message.get("body", b"") for message in sent if message["type"] == "http.response.body")
    assert start["status"] == 200, body
    assert b'"database": "ok"' in body
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"


_SERVER_PROCESS = """
import gc, json, os
from postroom.asgi import server_application
server_application()
from django.template import engines
cached = engines["django"].engine.template_loaders[0]
print(json.dumps({"frozen": gc.get_freeze_count(), "tracked": len(gc.get_objects()),
                  "templates": sorted(key for key in cached.get_template_cache if isinstance(key, str))}))
"""


def test_a_server_worker_starts_with_its_templates_compiled_and_its_heap_frozen(tmp_path: Any) -> None:
    """``postroom web``'s workers (``server_application``) compile every template of ours and
    freeze what start-up made, so the cyclic collector's full passes do not walk it again under
    load (they paused a worker 40-110 ms). In a process of its own: freezing is for the process's life."""
    import json
    import os
    import subprocess
    import sys

    environment = {**os.environ, "POSTROOM_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "postroom.settings"}
    environment.pop("DATABASE_URL", None)
    done = subprocess.run([sys.executable, "-c", _SERVER_PROCESS], env=environment, capture_output=True, text=True, timeout=120, check=True)
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["frozen"] > 50_000, found["frozen"]
    assert found["tracked"] < found["frozen"] / 10, found  # what is left for the collector to walk
    for name in ("conversations/detail.html", "conversations/list.html", "conversations/_nav.html"):
        assert name in found["templates"]
