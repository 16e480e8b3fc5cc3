"""A small open-loop HTTP load generator for the benches (HTTP/1.1 keep-alive, asyncio, no dependency).

``wrk -c 50`` is closed-loop: 50 clients each send the next request the moment the previous
answer arrives, which saturates any server and measures its queue, not what a person waits for.
Two models of "50 people using the inbox" instead:

- ``users``: ``users`` virtual people, each on their own connection, wait a random think time
  (exponential, mean ``think`` seconds) between pages. Latency is from sending to the last byte.
- ``rate``: requests arrive at a fixed mean rate (Poisson arrivals), whatever the server does;
  each takes an idle connection or opens one. Latency is counted from the moment the request
  was due, not when it was sent, so a server that falls behind shows it (no coordinated omission).

Not a test; ``run`` returns the latency percentiles (ms), the rate achieved and the errors.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Target:
    host: str
    port: int
    path: str
    headers: dict[str, str] = field(default_factory=dict)

    def request(self) -> bytes:
        lines = [f"GET {self.path} HTTP/1.1", f"Host: {self.host}:{self.port}", "Connection: keep-alive"]
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, target: Target) -> _Connection:
        reader, writer = await asyncio.open_connection(target.host, target.port)
        return cls(reader, writer)

    async def get(self, request: bytes, target: Target) -> int:
        """Send and read one answer; a kept-alive connection the server has closed meanwhile
        (uvicorn closes idle ones after 5 s) is opened again and the request sent once more."""
        try:
            return await self._exchange(request)
        except (asyncio.IncompleteReadError, ConnectionError):
            self.close()
            self.reader, self.writer = await asyncio.open_connection(target.host, target.port)
            return await self._exchange(request)

    async def _exchange(self, request: bytes) -> int:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:] if line)}
        if "content-length" in headers:
            await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        return status

    def close(self) -> None:
        self.writer.close()


def percentiles(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    if not ordered:
        return {}

    def at(fraction: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000, 2)

    return {"p50_ms": at(0.50), "p90_ms": at(0.90), "p99_ms": at(0.99), "max_ms": round(ordered[-1] * 1000, 2)}


async def _users(target: Target, users: int, think: float, seconds: float, rng: random.Random) -> tuple[list[float], int, int]:
    latencies: list[float] = []
    errors = 0
    request = target.request()
    deadline = time.perf_counter() + seconds

    async def person() -> None:
        nonlocal errors
        connection = await _Connection.open(target)
        await asyncio.sleep(rng.uniform(0, min(think, seconds / 2)))  # people do not all start at once
        try:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                status = await connection.get(request, target)
                latencies.append(time.perf_counter() - started)
                errors += status != 200
                await asyncio.sleep(min(rng.expovariate(1 / think), max(0.0, deadline - time.perf_counter())))
        finally:
            connection.close()

    await asyncio.gather(*(person() for _ in range(users)))
    return latencies, errors, users


async def _rate(target: Target, rate: float, seconds: float, rng: random.Random, max_connections: int) -> tuple[list[float], int, int]:
    latencies: list[float] = []
    errors = 0
    request = target.request()
    idle: list[_Connection] = []
    opened = 0
    in_flight: set[asyncio.Task[None]] = set()

    async def one(due: float) -> None:
        nonlocal errors, opened
        if idle:
            connection = idle.pop()
        else:
            opened += 1
            connection = await _Connection.open(target)
        try:
            status = await connection.get(request, target)
        except (asyncio.IncompleteReadError, OSError):
            errors += 1
            connection.close()
            return
        latencies.append(time.perf_counter() - due)
        errors += status != 200
        idle.append(connection)

    start = time.perf_counter()
    due = start
    while due < start + seconds:
        due += rng.expovariate(rate)
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(in_flight) >= max_connections:
            errors += 1  # the server is so far behind that the generator gives up on this one
            continue
        task = asyncio.create_task(one(due))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    if in_flight:
        await asyncio.gather(*in_flight)
    for connection in idle:
        connection.close()
    return latencies, errors, opened


def run(target: Target, *, model: str, seconds: float, users: int = 50, think: float = 1.0, rate: float = 50.0,
        max_connections: int = 500, seed: int = 1) -> dict[str, Any]:  # fmt: skip
    rng = random.Random(seed)
    started = time.perf_counter()
    if model == "users":
        latencies, errors, connections = asyncio.run(_users(target, users, think, seconds, rng))
    elif model == "rate":
        latencies, errors, connections = asyncio.run(_rate(target, rate, seconds, rng, max_connections))
    else:
        raise ValueError(model)
    elapsed = time.perf_counter() - started
    return {
        **percentiles(latencies), "requests": len(latencies), "requests_per_second": round(len(latencies) / elapsed, 1),
        "errors": errors, "connections": connections,
    }  # fmt: skip
