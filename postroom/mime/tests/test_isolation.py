"""The parser processes (SECURITY.md R31): the same results as parsing in-process, and a message
that exceeds a process limit (wall clock, CPU, memory) or kills the process is quarantined with
the limit's name while the messages after it are parsed as usual."""

from __future__ import annotations

import base64
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from postroom.mime.isolation import Body, Headers, IsolatedParser, ParserUnavailable, ProcessLimits
from postroom.mime.parse import MessageBody, ParsedMessage, Quarantined, QuarantineReason, parse_message
from postroom.mime.tests import pathological

HEADERS = b"From: Dana <dana@example.org>\r\nTo: b@example.org\r\nSubject: slow\r\nMessage-ID: <slow@example.org>\r\n"
FINE = (
    b"From: =?utf-8?q?Dana_M=C3=BCller?= <dana@example.org>\r\nTo: a@example.org, Bo <b@example.org>\r\n"
    b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nMessage-ID: <fine@example.org>\r\nIn-Reply-To: <parent@example.org>\r\n"
    b"References: <root@example.org> <parent@example.org>\r\nDate: Mon, 02 Mar 2026 09:30:00 +0100\r\n"
    b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello there\r\n'
    b'--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename="a.pdf"\r\n'
    b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(b"%PDF-1.4 data").replace(b"\n", b"\r\n") + b"--b--\r\n"
)


def slow_message(megabytes: int) -> bytes:
    """Within every limit of the pre-scan, but the stdlib's line-by-line body parse takes seconds."""
    return HEADERS + b"\r\n" + b"ab\r\n" * (megabytes * 1024 * 1024 // 4)


def large_attachment(megabytes: int) -> bytes:
    encoded = base64.encodebytes(b"\x01" * (megabytes << 20)).replace(b"\n", b"\r\n")
    return (
        HEADERS + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n'
        b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n" + encoded + b"\r\n--b--\r\n"
    )


@pytest.fixture
def make_parser() -> Iterator[type[IsolatedParser]]:
    made: list[IsolatedParser] = []

    class Tracked(IsolatedParser):
        def __init__(self, **options: object) -> None:
            super().__init__(**options)  # type: ignore[arg-type]
            made.append(self)

    yield Tracked
    for parser in made:
        parser.close()


def test_headers_and_bodies_match_parsing_in_process(make_parser: type[IsolatedParser]) -> None:
    parser = make_parser()
    [headers] = parser.headers([FINE])
    expected = parse_message(FINE)
    assert isinstance(headers, Headers)
    assert isinstance(expected, ParsedMessage)
    assert headers.message_id == expected.message_id == "<fine@example.org>"
    assert headers.references == expected.references
    assert headers.in_reply_to == "<parent@example.org>"
    assert headers.subject == "Grüße"
    assert headers.addresses["from"] == [["Dana Müller", "dana@example.org"]]
    assert headers.addresses["to"] == [["", "a@example.org"], ["Bo", "b@example.org"]]
    assert headers.date == expected.date
    [body] = parser.bodies([FINE])
    assert isinstance(body, Body)
    assert isinstance(expected.body, MessageBody)
    assert body.text == expected.body.text
    assert body.html is None
    assert body.snippet == "Hello there"
    assert [(part.filename, part.content_type, part.content) for part in body.parts] == [("a.pdf", "application/pdf", b"%PDF-1.4 data")]


def test_many_messages_come_back_in_order_from_two_processes(make_parser: type[IsolatedParser]) -> None:
    raws = [FINE.replace(b"<fine@", f"<m{number}@".encode()) for number in range(30)]
    results = list(make_parser(processes=2).headers(raws))
    assert [result.message_id for result in results if isinstance(result, Headers)] == [f"<m{number}@example.org>" for number in range(30)]


def test_r31_the_pre_scan_limits_still_apply(make_parser: type[IsolatedParser]) -> None:
    results = list(make_parser().bodies([pathological.deep_multipart(), FINE]))
    assert isinstance(results[0], Quarantined)
    assert results[0].reason == QuarantineReason.MIME_TOO_DEEP
    assert isinstance(results[1], Body)


@pytest.mark.timeout(60)
def test_r31_a_message_past_the_wall_clock_limit_is_quarantined_and_the_next_one_parsed(make_parser: type[IsolatedParser]) -> None:
    parser = make_parser(limits=ProcessLimits(wall_seconds=0.3, cpu_seconds=60))
    started = time.monotonic()
    results = list(parser.bodies([FINE, slow_message(16), FINE]))
    assert isinstance(results[0], Body)
    assert isinstance(results[1], Quarantined)
    assert results[1].reason == QuarantineReason.PARSER_TIMEOUT
    assert isinstance(results[2], Body)
    assert time.monotonic() - started < 30  # killed, not waited for


@pytest.mark.timeout(60)
def test_r31_a_message_past_the_cpu_limit_is_quarantined(make_parser: type[IsolatedParser]) -> None:
    parser = make_parser(limits=ProcessLimits(wall_seconds=60, cpu_seconds=1))
    results = list(parser.bodies([slow_message(45), FINE]))
    assert isinstance(results[0], Quarantined)
    assert results[0].reason == QuarantineReason.PARSER_CPU_LIMIT
    assert isinstance(results[1], Body)


@pytest.mark.timeout(60)
def test_r31_a_message_past_the_memory_limit_is_quarantined(make_parser: type[IsolatedParser]) -> None:
    parser = make_parser(limits=ProcessLimits(memory_bytes=160 * 1024 * 1024))
    results = list(parser.bodies([large_attachment(20), FINE]))
    assert isinstance(results[0], Quarantined)
    assert results[0].reason == QuarantineReason.PARSER_MEMORY_LIMIT
    assert isinstance(results[1], Body)


def _parser_processes() -> set[int]:
    """Parser processes of this test process (other tests' pools may have some already)."""
    me = os.getpid()
    found = set()
    for task in os.listdir(f"/proc/{me}/task"):
        for child in Path(f"/proc/{me}/task/{task}/children").read_text().split():
            try:
                command = Path(f"/proc/{child}/cmdline").read_bytes()
            except FileNotFoundError:  # gone meanwhile
                continue
            if b"postroom.mime.isolation" in command:
                found.add(int(child))
    return found


def _bytes_read(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    return 0


@pytest.mark.timeout(120)
def test_r31_a_message_that_kills_the_parser_is_quarantined(make_parser: type[IsolatedParser]) -> None:
    parser = make_parser(limits=ProcessLimits(wall_seconds=60, cpu_seconds=60))
    others = _parser_processes()
    list(parser.bodies([FINE]))  # the process is started, and idle
    [process] = _parser_processes() - others

    slow = slow_message(40)

    def crash_it_while_it_parses() -> None:
        # Once it has read the whole message (a loaded machine may take its time to send it).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _bytes_read(process) < len(slow):
            time.sleep(0.01)
        os.kill(process, signal.SIGSEGV)

    crasher = threading.Thread(target=crash_it_while_it_parses)
    crasher.start()
    results = list(parser.bodies([slow, FINE]))
    crasher.join()
    assert isinstance(results[0], Quarantined)
    assert results[0].reason == QuarantineReason.PARSER_CRASHED
    assert isinstance(results[1], Body)
    assert process not in _parser_processes()


def test_r31_a_parser_that_cannot_start_blames_no_message(make_parser: type[IsolatedParser], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.executable", "/nonexistent/python")
    with pytest.raises(ParserUnavailable):
        list(make_parser().headers([FINE]))


def test_a_process_is_replaced_after_its_share_of_messages(make_parser: type[IsolatedParser]) -> None:
    parser = make_parser(limits=ProcessLimits(messages_per_process=2))
    others = _parser_processes()
    list(parser.headers([FINE]))
    [first] = _parser_processes() - others
    list(parser.headers([FINE]))  # its second message: then it is retired (and exits on its own)
    deadline = time.monotonic() + 30
    while _parser_processes() - others and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _parser_processes() - others == set()
    list(parser.headers([FINE]))
    [second] = _parser_processes() - others
    assert second != first
