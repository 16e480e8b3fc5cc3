"""Live updates: latency from an ingest commit to the event at an SSE client, and the idle cost
of open streams. Not a test (nothing here asserts a time). Run from the worktree root:

    .venv/bin/python bench/live_bench.py [--events 100] [--streams 50] [--idle-seconds 30]
        [--redis-url redis://127.0.0.1:6379/15] [--json out.json]

For each bus (the database event log, as in the embedded shape; and Redis pub/sub, the scaled
shape, when ``--redis-url`` is given) it starts a real ``postroom web`` (uvicorn, its own
throwaway data directory and SQLite database) and, from this process — which stands for the
sync service, a separate process — :

1. opens one stream as a member and stores ``--events`` messages in the member's mailbox
   through ``message_ingest``, one at a time at random intervals (50–300 ms), each in a
   conversation of its own, and measures the commit of the message (an ``on_commit``
   callback registered before the ingest's own) → the ``conversation`` event parsed by the
   stream client: p50, p95, max;
2. measures the CPU time of the web process over ``--idle-seconds`` with no stream open (before
   any was, so its hub has not started), with one, and with ``--streams`` (heartbeats every
   15 s; on the database bus, the poll every ``LIVE_POLL_SECONDS``), from ``/proc/<pid>/stat``.

Each latency is set against the poll interval (the database bus cannot do better than half of
it on average), and the Redis bus is the reference for the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


# --- the server and its data -------------------------------------------------------------------------
class Setup:
    """A data directory with one organization, members and a mailbox, seen from this process."""

    def __init__(self, data_dir: Path, port: int) -> None:
        os.environ["POSTROOM_DATA_DIR"] = str(data_dir)
        os.environ["POSTROOM_PUBLIC_URL"] = f"http://127.0.0.1:{port}"
        os.environ["DJANGO_SETTINGS_MODULE"] = "postroom.settings"
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", interactive=False, verbosity=0)
        from postroom.mailboxes.models import Folder, FolderRole, Mailbox
        from postroom.orgs.models import Membership, Organization
        from postroom.orgs.policy import Role

        self.organization = Organization.objects.create(name="Bench", slug="bench")
        self.members = [self._member(index) for index in range(10)]
        owner = Membership.objects.get(user=self.members[0], organization=self.organization)
        assert owner.role == Role.OWNER
        self.mailbox = Mailbox(
            organization_id=self.organization.pk, owner=owner, name="bench@bench.test", email_address="bench@bench.test",
            imap_host="localhost", imap_port=993, smtp_host="localhost", smtp_port=465, status="paused",
        )  # fmt: skip
        self.mailbox.credentials = {"username": "bench", "password": "unused"}
        self.mailbox.save()
        self.folder = Folder.objects.create(mailbox=self.mailbox, name="INBOX", role=FolderRole.INBOX, uidvalidity=1)
        self.uid = 0

    def _member(self, index: int) -> Any:
        from postroom.accounts.models import User
        from postroom.orgs.models import Membership
        from postroom.orgs.policy import Role

        user = User.objects.create_user(f"member{index}@bench.test", password=None)
        Membership.objects.create(organization=self.organization, user=user, role=Role.OWNER if index == 0 else Role.MEMBER)
        return user

    def cookie(self, user: Any) -> str:
        from django.conf import settings
        from django.test import Client

        client = Client()
        client.force_login(user, backend="allauth.account.auth_backends.AuthenticationBackend")
        return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"

    def ingest(self) -> tuple[str, float]:
        """Store one new message; (conversation id, the moment its transaction committed)."""
        from email.message import EmailMessage

        from django.db import transaction

        from postroom.conversations.ingest import message_ingest

        self.uid += 1
        message = EmailMessage()
        message["Subject"] = f"Bench {self.uid} {secrets.token_hex(4)}"
        message["From"] = "Dana <dana@customer.example>"
        message["To"] = "bench@bench.test"
        message["Message-ID"] = f"<{secrets.token_hex(8)}@customer.example>"
        message.set_content("Hello.\n")
        committed: list[float] = []
        with transaction.atomic():
            transaction.on_commit(lambda: committed.append(time.perf_counter()))
            copy = message_ingest(mailbox=self.mailbox, folder=self.folder, uidvalidity=1, uid=self.uid, raw=message.as_bytes())
        return str(copy.message.conversation_id), committed[0]


def start_web(data_dir: Path, port: int, redis_url: str | None) -> subprocess.Popen[bytes]:
    environment = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL"}}
    environment.update(POSTROOM_DATA_DIR=str(data_dir), POSTROOM_PUBLIC_URL=f"http://127.0.0.1:{port}", POSTROOM_LOG_LEVEL="WARNING")
    if redis_url:
        environment["REDIS_URL"] = redis_url
    process = subprocess.Popen(
        [sys.executable, "-m", "postroom", "web", "--port", str(port), "--no-migrate"], env=environment, cwd=data_dir
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return process
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit("postroom web did not start") from None
            time.sleep(0.2)


# --- a minimal SSE client ---------------------------------------------------------------------------
class StreamClient:
    def __init__(self, port: int, slug: str, cookie: str) -> None:
        self.port, self.slug, self.cookie = port, slug, cookie
        self.ready = asyncio.Event()
        self.arrivals: dict[str, float] = {}
        self.waiters: dict[str, asyncio.Future[float]] = {}
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            await self._read(reader, writer)
        finally:
            writer.close()

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(
            f"GET /o/{self.slug}/events/ HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nAccept: text/event-stream\r\n"
            f"Cookie: {self.cookie}\r\n\r\n".encode()
        )
        await writer.drain()
        status = await reader.readline()
        if b" 200 " not in status:
            raise SystemExit(f"stream refused: {status!r}")
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        event, data = "", ""
        while line := await reader.readline():
            # Chunked transfer framing: size lines are hex digits alone; the SSE lines carry a colon.
            text = line.decode().rstrip("\r\n")
            if text.startswith("event: "):
                event = text[7:]
            elif text.startswith("data: "):
                data = text[6:]
            elif text == "" and event:
                if event == "ready":
                    self.ready.set()
                elif event == "conversation":
                    conversation = json.loads(data)["conversation"]
                    now = time.perf_counter()
                    self.arrivals.setdefault(conversation, now)
                    waiter = self.waiters.pop(conversation, None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(now)
                event, data = "", ""

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.run())

    async def arrival_of(self, conversation: str) -> float:
        if conversation in self.arrivals:
            return self.arrivals[conversation]
        waiter = self.waiters.setdefault(conversation, asyncio.get_running_loop().create_future())
        return await asyncio.wait_for(waiter, 30)


# --- the measurements -------------------------------------------------------------------------------
async def latency(setup: Setup, port: int, events: int, rng: random.Random, cookie: str) -> list[float]:
    client = StreamClient(port, setup.organization.slug, cookie)
    client.start()
    await asyncio.wait_for(client.ready.wait(), 30)
    loop = asyncio.get_running_loop()
    database_thread = ThreadPoolExecutor(max_workers=1)  # one connection, as the sync service has
    samples = []
    for _ in range(events):
        await asyncio.sleep(rng.uniform(0.05, 0.3))
        conversation, committed = await loop.run_in_executor(database_thread, setup.ingest)
        samples.append(await client.arrival_of(conversation) - committed)
    assert client.task is not None
    client.task.cancel()
    await asyncio.gather(client.task, return_exceptions=True)
    database_thread.shutdown()
    return samples


async def idle_cpu(setup: Setup, port: int, pid: int, cookies: list[str], seconds: float) -> float:
    clients = [StreamClient(port, setup.organization.slug, cookie) for cookie in cookies]
    for client in clients:
        client.start()
    for client in clients:
        await asyncio.wait_for(client.ready.wait(), 60)
    await asyncio.sleep(3)  # let the connections settle
    before = cpu_seconds(pid)
    await asyncio.sleep(seconds)
    used = cpu_seconds(pid) - before
    for client in clients:
        assert client.task is not None
        client.task.cancel()
    await asyncio.gather(*(client.task for client in clients if client.task), return_exceptions=True)
    return used / seconds


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def run_shape(name: str, redis_url: str | None, arguments: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix=f"postroom-live-bench-{name}-"))
    port = free_port()
    setup = Setup(data_dir, port) if name == "database" else arguments.setup
    if name != "database":
        # The same database for both servers; this run's bus is Redis.
        from django.conf import settings

        settings.LIVE_BUS, settings.REDIS_URL = "redis", redis_url
        data_dir = Path(os.environ["POSTROOM_DATA_DIR"])
    arguments.setup = setup
    web = start_web(data_dir, port, redis_url)
    try:
        # No stream has been opened yet: the web process has not started its hub.
        cpu = {"0": asyncio.run(idle_cpu(setup, port, web.pid, [], arguments.idle_seconds))}
        samples = asyncio.run(latency(setup, port, arguments.events, rng, setup.cookie(setup.members[0])))
        for count in (1, arguments.streams):
            # Ten members, so that no one exceeds the streams allowed per user.
            cookies = [setup.cookie(setup.members[index % len(setup.members)]) for index in range(count)]
            cpu[str(count)] = asyncio.run(idle_cpu(setup, port, web.pid, cookies, arguments.idle_seconds))
    finally:
        web.terminate()
        web.wait(timeout=30)
    from django.conf import settings

    result = {
        "bus": name,
        "events": len(samples),
        "latency_ms": {
            "p50": round(statistics.median(samples) * 1000, 1),
            "p95": round(percentile(samples, 0.95) * 1000, 1),
            "max": round(max(samples) * 1000, 1),
        },
        "poll_ms": settings.LIVE_POLL_SECONDS * 1000 if name == "database" else None,
        "idle_cpu_percent": {count: round(share * 100, 2) for count, share in cpu.items()},
        "samples_ms": [round(sample * 1000, 1) for sample in samples],
    }
    print(
        f"{name:9} latency p50 {result['latency_ms']['p50']} ms, p95 {result['latency_ms']['p95']} ms, "
        f"max {result['latency_ms']['max']} ms over {len(samples)} events; idle CPU of the web process: "
        + ", ".join(f"{count} streams {value} %" for count, value in result["idle_cpu_percent"].items()),
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None)
    arguments = parser.parse_args()
    arguments.setup = None
    rng = random.Random(arguments.seed)
    load = os.getloadavg()
    results = [run_shape("database", None, arguments, rng)]
    if arguments.redis_url:
        results.append(run_shape("redis", arguments.redis_url, arguments, rng))
    report = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_before": [round(value, 2) for value in load],
        "load_average_after": [round(value, 2) for value in os.getloadavg()],
        "threads": threading.active_count(),
        "results": results,
    }
    if len(results) == 2:
        report["database_to_redis_p50"] = round(results[0]["latency_ms"]["p50"] / results[1]["latency_ms"]["p50"], 2)
    print(json.dumps({key: value for key, value in report.items() if key != "results"}))
    if arguments.json:
        arguments.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
