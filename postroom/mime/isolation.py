"""Parsing received mail in separate, resource-limited processes (SECURITY.md R31).

Attacker: anyone can send a member's mailbox bytes crafted to make a MIME parser spin, eat
memory or crash. ``postroom.mime.parse`` checks limits before and while parsing, but the stdlib
``email`` package has had quadratic and infinite-loop bugs that no pre-scan foresees.

Defences:
- Every parse of received bytes (the header pass at import, the body pass after it) runs in a
  parser process: ``python -m postroom.mime.isolation``, which imports nothing but the MIME
  modules (no Django, no database connection, no keys: a compromised parser holds no secret and
  reaches no data but the message it was given).
- The parser process limits itself before it reads anything: an address-space limit
  (``RLIMIT_AS``, so a memory blow-up is a ``MemoryError`` in the parser, not an OOM kill of the
  sync service), and before each message a CPU-time limit (``RLIMIT_CPU``: the kernel kills it
  with SIGXCPU). The parent enforces a wall-clock limit per message and kills the process when it
  passes.
- A message whose parse exceeds a limit or kills the process is returned as ``Quarantined`` with
  a reason naming the limit (``parser_timeout``, ``parser_cpu_limit``, ``parser_memory_limit``,
  ``parser_crashed``); the caller stores it raw (encrypted) and flagged, exactly as for the
  pre-scan limits. A new process takes the next message: one message is blamed for each death,
  so a hostile message cannot stop the mailbox and the pool cannot crash-loop. A process that
  dies before it says it is ready is not a message's fault: ``ParserUnavailable`` is raised and
  nothing is quarantined.
- The parent never unpickles what a parser process sends: results are JSON plus length-prefixed
  byte strings, each length checked against a bound before anything is allocated.

Speed: the header pass runs at ~2,900 messages per CPU second and the body pass at ~720; a
process of its own lets the sync service store one batch while the next is parsed, on the
second core. Four messages are in flight per process so it never waits for the parent.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import selectors
import signal
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO

from postroom.mime.parse import (
    DEFAULT_LIMITS,
    Limits,
    MessageBody,
    ParsedMessage,
    Quarantined,
    QuarantineReason,
    content_digest,
    parse_headers,
    parse_message,
)
from postroom.mime.snippet import snippet_of

MIB = 1024 * 1024
_REQUEST = struct.Struct(">BI")  # operation, length of the raw message that follows
_FRAME = struct.Struct(">I")  # length of the frame that follows
_HEADERS, _BODY = 1, 2
# Messages sent ahead of the one being parsed, at most (each answer wakes the parent: more in
# flight lets one wake-up collect several answers).
_IN_FLIGHT = 4
_WRITE_BYTES = 1 << 20
_READ_BYTES = 1 << 16
# Lists at least this long are split between two processes (when a second one is free).
_SPLIT_FROM = 8


@dataclass(frozen=True, slots=True)
class ProcessLimits:
    """Limits of one parser process, per message (memory: for the whole process)."""

    cpu_seconds: int = 10
    wall_seconds: float = 30.0
    memory_bytes: int = 1024 * MIB
    # Niceness of the process (0: as the parent). The body pass runs below the import.
    nice: int = 0
    # A process is replaced after this many messages, so that whatever its heap keeps (caches,
    # fragmentation) stays bounded however many messages a long import brings.
    messages_per_process: int = 5_000


class ParserUnavailable(Exception):  # noqa: N818 (a state the caller retries, not a message's fault)
    """No parser process could be started (or it died before it was ready)."""


@dataclass(frozen=True, slots=True)
class Headers:
    """What the header pass yields: threading, duplicate detection and the conversation list."""

    message_id: str | None
    in_reply_to: str | None
    references: tuple[str, ...]
    subject: str
    # {"from": [[name, address]], "to": …, "cc": …, "bcc": …, "reply_to": …}
    addresses: dict[str, list[list[str]]]
    date: datetime | None
    is_automated: bool
    # SHA-256 of the body with line endings and trailing spaces normalised (see ``content_digest``).
    body_digest: str


@dataclass(frozen=True, slots=True)
class Part:
    filename: str
    content_type: str
    content_id: str | None
    is_inline: bool
    content: bytes


@dataclass(frozen=True, slots=True)
class Body:
    """What the body pass yields: the texts, a snippet for the list, and the attachments."""

    text: str | None
    html: str | None
    snippet: str
    parts: tuple[Part, ...]


# --- the parser process ----------------------------------------------------------------------------
def _address_pairs(mailboxes: Sequence[Any]) -> list[list[str]]:
    return [[mailbox.display_name, mailbox.address] for mailbox in mailboxes]


def _quarantine_payload(result: Quarantined) -> dict[str, Any]:
    return {"quarantined": [result.reason.value, result.detail]}


def _headers_payload(raw: bytes, limits: Limits) -> dict[str, Any]:
    parsed = parse_headers(raw, limits=limits)
    if isinstance(parsed, Quarantined):
        return _quarantine_payload(parsed)
    return {
        "message_id": parsed.message_id,
        "in_reply_to": parsed.in_reply_to,
        "references": list(parsed.references),
        "subject": parsed.subject,
        "addresses": {
            "from": _address_pairs(parsed.from_),
            "to": _address_pairs(parsed.to),
            "cc": _address_pairs(parsed.cc),
            "bcc": _address_pairs(parsed.bcc),
            "reply_to": _address_pairs(parsed.reply_to),
        },
        "date": parsed.date.isoformat() if parsed.date else None,
        "is_automated": parsed.is_automated,
        "body_digest": content_digest(raw),
    }


def _body_payload(raw: bytes, limits: Limits) -> tuple[dict[str, Any], list[bytes]]:
    parsed = parse_message(raw, limits=limits)
    body = parsed.body if isinstance(parsed, ParsedMessage) else parsed
    if isinstance(body, Quarantined):
        return _quarantine_payload(body), []
    if not isinstance(body, MessageBody):  # pragma: no cover (parse_message yields nothing else)
        raise TypeError(type(body).__name__)
    parts = [(part, True) for part in body.inline_parts.values()] + [(part, False) for part in body.attachments]
    payload = {
        "text": body.text,
        "html": body.html,
        "snippet": snippet_of(body.text, body.html),
        "parts": [[part.filename, part.content_type, part.content_id, inline] for part, inline in parts],
    }
    return payload, [part.content for part, _ in parts]


def _read_exactly(stream: BinaryIO, size: int) -> bytes | None:
    data = bytearray()
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def _write_frames(stream: BinaryIO, payload: dict[str, Any], blobs: Sequence[bytes] = ()) -> None:
    encoded = json.dumps({**payload, "blobs": len(blobs)}).encode("ascii")
    stream.write(_FRAME.pack(len(encoded)) + encoded)
    for blob in blobs:
        stream.write(_FRAME.pack(len(blob)))
        stream.write(blob)
    stream.flush()


def _limit_cpu(seconds: int) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = usage.ru_utime + usage.ru_stime
    _soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = int(used) + seconds + 1
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard if hard == resource.RLIM_INFINITY else max(hard, soft)))


def serve(arguments: Sequence[str]) -> int:
    """The parser process: read requests on stdin, answer on stdout, until stdin closes."""
    config = json.loads(arguments[0])
    limits = Limits(**config["limits"]) if config.get("limits") else DEFAULT_LIMITS
    resource.setrlimit(resource.RLIMIT_AS, (config["memory_bytes"], config["memory_bytes"]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if config.get("nice"):
        os.nice(config["nice"])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent, which stops us by closing stdin
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    _write_frames(answers, {"ready": True})
    while True:
        header = _read_exactly(requests, _REQUEST.size)
        if header is None:
            return 0
        operation, length = _REQUEST.unpack(header)
        raw = _read_exactly(requests, length)
        if raw is None:
            return 0
        _limit_cpu(config["cpu_seconds"])
        blobs: list[bytes] = []
        try:
            if operation == _HEADERS:
                payload = _headers_payload(raw, limits)
            else:
                payload, blobs = _body_payload(raw, limits)
        except MemoryError:
            payload = {"quarantined": ["MemoryError"]}
        # parse_message turns any exception into a quarantine, MemoryError included: name the limit.
        out_of_memory = "MemoryError" in str(payload.get("quarantined", ""))
        if out_of_memory:
            payload, blobs = _quarantine_payload(Quarantined(QuarantineReason.PARSER_MEMORY_LIMIT, "over the parser's memory limit")), []
        del raw
        _write_frames(answers, payload, blobs)
        if out_of_memory:
            return 0  # start afresh rather than go on in a fragmented heap


# --- the parent side -------------------------------------------------------------------------------
class _ProcessDied(Exception):  # noqa: N818
    pass


class _Process:
    """One parser process and the requests it has been sent but not answered yet."""

    def __init__(self, limits: ProcessLimits, parse_limits: Limits) -> None:
        config = {
            "memory_bytes": limits.memory_bytes,
            "cpu_seconds": limits.cpu_seconds,
            "nice": limits.nice,
            "limits": None if parse_limits == DEFAULT_LIMITS else {name: getattr(parse_limits, name) for name in Limits.__slots__},
        }
        self.max_frame = 2 * parse_limits.max_message_bytes + MIB
        try:
            self.process = subprocess.Popen(  # noqa: S603 (our interpreter and module, fixed arguments)
                [sys.executable, "-m", "postroom.mime.isolation", json.dumps(config)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,  # a traceback could quote message content
                close_fds=True,
                env={**os.environ, "PYTHONPATH": os.pathsep.join(path for path in sys.path if path)},
            )
        except OSError as error:
            raise ParserUnavailable(f"cannot start a parser process: {error}") from error
        if self.process.stdin is None or self.process.stdout is None:  # pragma: no cover (PIPE was asked for)
            raise ParserUnavailable("the parser process has no pipes")
        self.stdin, self.stdout = self.process.stdin.fileno(), self.process.stdout.fileno()
        os.set_blocking(self.stdin, False)
        os.set_blocking(self.stdout, False)
        self.received = bytearray()
        self.outgoing = bytearray()
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.stdout, selectors.EVENT_READ)
        self.writing = False
        self.sent = 0
        self.ready = False
        try:
            ready, _ = self._next_answer(deadline=time.monotonic() + 60)
        except (TimeoutError, _ProcessDied):
            ready = {}
        if not ready.get("ready"):
            self.kill()
            raise ParserUnavailable("the parser process did not start")
        self.ready = True

    def send(self, operation: int, raw: bytes) -> None:
        self.sent += 1
        self.outgoing += _REQUEST.pack(operation, len(raw))
        self.outgoing += raw

    def _take_frame(self) -> bytes | None:
        if len(self.received) < _FRAME.size:
            return None
        (length,) = _FRAME.unpack_from(self.received)
        if length > self.max_frame:
            raise _ProcessDied("oversized answer")
        if len(self.received) < _FRAME.size + length:
            return None
        frame = bytes(self.received[_FRAME.size : _FRAME.size + length])
        del self.received[: _FRAME.size + length]
        return frame

    def _write_pending(self) -> None:
        """Write what the pipe takes now (a view, not a copy, of what is pending)."""
        try:
            with memoryview(self.outgoing) as pending, pending[:_WRITE_BYTES] as chunk:
                written = os.write(self.stdin, chunk)
        except BlockingIOError:
            return
        except OSError as error:  # the process has gone
            raise _ProcessDied("stdin closed") from error
        del self.outgoing[:written]

    def _read_size(self) -> int:
        """Enough for the rest of a large frame being received, else a small read: a header
        pass's answers are a few hundred bytes, and a large buffer costs its allocation."""
        if len(self.received) >= _FRAME.size:
            (length,) = _FRAME.unpack_from(self.received)
            return min(max(_FRAME.size + length - len(self.received), _READ_BYTES), _WRITE_BYTES)
        return _READ_BYTES

    def _pump(self, deadline: float) -> bool:
        """Write what is pending and read what is there; False once ``deadline`` has passed."""
        timeout = deadline - time.monotonic()
        if timeout <= 0:
            return False
        if self.outgoing:
            self._write_pending()  # the pipe usually has room: no need to wait for it
        if self.outgoing and not self.writing:
            self.selector.register(self.stdin, selectors.EVENT_WRITE)
            self.writing = True
        elif not self.outgoing and self.writing:
            self.selector.unregister(self.stdin)
            self.writing = False
        for key, _mask in self.selector.select(timeout):
            if key.fd == self.stdin:
                self._write_pending()
            else:
                try:
                    chunk = os.read(self.stdout, self._read_size())
                except BlockingIOError:
                    continue
                if not chunk:
                    raise _ProcessDied("stdout closed")
                self.received += chunk
        return True

    def _next_frame(self, deadline: float) -> bytes | None:
        while True:
            frame = self._take_frame()
            if frame is not None:
                return frame
            if not self._pump(deadline):
                return None

    def _next_answer(self, deadline: float) -> tuple[dict[str, Any], list[bytes]]:
        """The next answer; ``_ProcessDied`` if the process ended, ``TimeoutError`` at the deadline."""
        frame = self._next_frame(deadline)
        if frame is None:
            raise TimeoutError
        try:
            payload = json.loads(frame)
            count = int(payload.pop("blobs"))
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise _ProcessDied("unreadable answer") from error
        blobs: list[bytes] = []
        for _ in range(count):
            blob = self._next_frame(deadline)
            if blob is None:
                raise TimeoutError
            blobs.append(blob)
        return payload, blobs

    def answer(self, deadline: float) -> tuple[dict[str, Any], list[bytes]]:
        return self._next_answer(deadline)

    def death_reason(self) -> QuarantineReason:
        """Why the process ended (it has, or is killed now)."""
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
            return QuarantineReason.PARSER_CRASHED
        if code == -signal.SIGXCPU:
            return QuarantineReason.PARSER_CPU_LIMIT
        return QuarantineReason.PARSER_CRASHED

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait()
        self.close_pipes()

    def retire(self) -> None:
        """End its input: it exits once it has read that. Not waited for (the subprocess module
        reaps it later): a sync thread has better things to do than watch a process exit."""
        with contextlib.suppress(OSError):
            os.close(self.stdin)
        self.process.stdin = None
        self.close_pipes()

    def close(self) -> None:
        """Ask the process to finish (end of its input) and reap it."""
        with contextlib.suppress(OSError):
            os.close(self.stdin)
        self.process.stdin = None
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
        self.close_pipes()

    def close_pipes(self) -> None:
        self.selector.close()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def _headers_from(payload: dict[str, Any]) -> Headers:
    date = payload["date"]
    return Headers(
        message_id=payload["message_id"],
        in_reply_to=payload["in_reply_to"],
        references=tuple(payload["references"]),
        subject=payload["subject"],
        addresses={role: [[str(name), str(address)] for name, address in pairs] for role, pairs in payload["addresses"].items()},
        date=datetime.fromisoformat(date) if date else None,
        is_automated=bool(payload["is_automated"]),
        body_digest=str(payload["body_digest"]),
    )


def _body_from(payload: dict[str, Any], blobs: list[bytes]) -> Body:
    descriptions = payload["parts"]
    if len(descriptions) != len(blobs):
        raise _ProcessDied("parts and contents differ")
    parts = tuple(
        Part(filename=str(filename), content_type=str(content_type), content_id=content_id, is_inline=bool(inline), content=content)
        for (filename, content_type, content_id, inline), content in zip(descriptions, blobs, strict=True)
    )
    return Body(text=payload["text"], html=payload["html"], snippet=str(payload["snippet"]), parts=parts)


def _result(operation: int, payload: dict[str, Any], blobs: list[bytes]) -> Headers | Body | Quarantined:
    if "quarantined" in payload:
        reason, detail = payload["quarantined"]
        return Quarantined(QuarantineReason(reason), str(detail))
    return _headers_from(payload) if operation == _HEADERS else _body_from(payload, blobs)


_DEATH_DETAIL = {
    QuarantineReason.PARSER_TIMEOUT: "the parser ran past its wall-clock limit",
    QuarantineReason.PARSER_CPU_LIMIT: "the parser ran past its CPU-time limit",
    QuarantineReason.PARSER_CRASHED: "the parser process died",
}


class IsolatedParser:
    """Parser processes shared by the threads of one Postroom process (each call takes one)."""

    def __init__(self, *, processes: int = 1, limits: ProcessLimits | None = None, parse_limits: Limits = DEFAULT_LIMITS) -> None:
        self.limits = limits or ProcessLimits()
        self.parse_limits = parse_limits
        self._idle: list[_Process] = []
        self._slots = threading.BoundedSemaphore(processes)
        self._lock = threading.Lock()
        self._closed = False

    def headers(self, raws: Sequence[bytes]) -> Iterator[Headers | Quarantined]:
        """The header pass of each message, in order."""
        for result in self._map(_HEADERS, raws):
            if isinstance(result, Headers | Quarantined):
                yield result

    def bodies(self, raws: Sequence[bytes]) -> Iterator[Body | Quarantined]:
        """The body pass of each message, in order."""
        for result in self._map(_BODY, raws):
            if isinstance(result, Body | Quarantined):
                yield result

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for process in idle:
            process.close()

    def _checkout(self) -> _Process:
        with self._lock:
            while self._idle:
                process = self._idle.pop()
                if process.process.poll() is None:
                    return process
                process.kill()
        return _Process(self.limits, self.parse_limits)

    def _checkin(self, process: _Process) -> None:
        with self._lock:
            if not self._closed and process.sent < self.limits.messages_per_process:
                self._idle.append(process)
                return
        process.retire()

    def _map(self, operation: int, raws: Sequence[bytes]) -> Iterator[Headers | Body | Quarantined]:
        """Results in order. A long list is split between two processes when a second one is free."""
        if not raws:
            return
        self._slots.acquire()
        slots = 1
        try:
            if len(raws) >= _SPLIT_FROM and self._slots.acquire(blocking=False):
                slots = 2
                halves = [self._run(operation, raws[0::2]), self._run(operation, raws[1::2])]
                try:
                    for index in range(len(raws)):
                        yield next(halves[index % 2])
                finally:
                    for half in halves:
                        half.close()
            else:
                yield from self._run(operation, raws)
        finally:
            for _ in range(slots):
                self._slots.release()

    def _run(self, operation: int, raws: Sequence[bytes]) -> Generator[Headers | Body | Quarantined, None, None]:
        process = self._checkout()
        waiting = deque(range(len(raws)))  # not sent yet
        sent: deque[int] = deque()  # sent and not answered yet; the first is being parsed
        head_since = time.monotonic()
        try:
            while waiting or sent:
                # Two in flight at least; more while little is waiting to be written (large
                # messages: no more copies of them in memory than with two).
                while waiting and (len(sent) < 2 or (len(sent) < _IN_FLIGHT and len(process.outgoing) < _WRITE_BYTES)):
                    if not sent:
                        head_since = time.monotonic()
                    index = waiting.popleft()
                    process.send(operation, raws[index])
                    sent.append(index)
                outcome: Headers | Body | Quarantined
                try:
                    payload, blobs = process.answer(head_since + self.limits.wall_seconds)
                    outcome = _result(operation, payload, blobs)
                    # After running out of memory it answers and ends: the next message gets a new process.
                    fresh_process = process.process.poll() is not None or (
                        isinstance(outcome, Quarantined) and outcome.reason is QuarantineReason.PARSER_MEMORY_LIMIT
                    )
                except (TimeoutError, _ProcessDied) as failure:
                    reason = QuarantineReason.PARSER_TIMEOUT if isinstance(failure, TimeoutError) else process.death_reason()
                    outcome = Quarantined(reason, _DEATH_DETAIL[reason])
                    fresh_process = True
                sent.popleft()
                if fresh_process:
                    # The message being parsed was to blame; the others go to a new process.
                    process.kill()
                    waiting.extendleft(reversed(sent))
                    sent.clear()
                    process = _Process(self.limits, self.parse_limits)
                head_since = time.monotonic()
                yield outcome
        finally:
            if sent or process.outgoing or process.received or process.process.poll() is not None:
                process.kill()  # gone, or the caller stopped early and answers are still owed
            else:
                self._checkin(process)


_parsers: dict[str, IsolatedParser] = {}
_parsers_lock = threading.Lock()


def parser(name: str, *, processes: int = 1, limits: ProcessLimits | None = None) -> IsolatedParser:
    """The process-wide parser pool called ``name`` ("import", "bodies"…), created on first use."""
    with _parsers_lock:
        pool = _parsers.get(name)
        if pool is None:
            pool = _parsers[name] = IsolatedParser(processes=processes, limits=limits)
        return pool


def import_parser() -> IsolatedParser:
    """The header pass of messages being stored (sync, file import, sent mail)."""
    return parser("import", processes=2)


def body_parser() -> IsolatedParser:
    """The body pass, below the import in CPU priority: it catches up when the import leaves time."""
    return parser("bodies", processes=1, limits=ProcessLimits(nice=10))


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1:]))
