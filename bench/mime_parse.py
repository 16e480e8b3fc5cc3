"""Measure how fast postroom.mime.parse handles a realistic mailbox, against a full parse.

Not a test. Run from the worktree root:

    .venv/bin/python bench/mime_parse.py [N]

It builds N seeded messages (plain, HTML alternatives, attachments, several charsets, about
30 KB on average) in memory, then times, on one core:

- ``full``: ``BytesParser(policy=policy.default)`` followed by ``get_content()`` of every part,
  the naive way an importer would do it;
- ``headers``: ``parse_message`` reading only what threading and deduplication need;
- ``pass``: the import's header pass in a parser process (``parse_headers`` and the body digest);
- ``complete``: ``parse_message`` and then every body, attachment digest and calendar part.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

from postroom.mime.parse import ParsedMessage, Quarantined, content_digest, parse_headers, parse_message

SAMPLE_TEXT = "the of and to in is you that it he was for on are as with his they at be this from have or by one had not"
WORDS = SAMPLE_TEXT.split()
GREETINGS = ["Grüße", "Привет", "こんにちは", "Cześć", "Hello", "Bonjour à tous", "Olá"]
CHARSETS = ["utf-8", "utf-8", "utf-8", "iso-8859-1", "koi8-r", "iso-2022-jp", "windows-1252"]


def _paragraphs(rng: random.Random, size: int) -> str:
    words: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(WORDS)
        words.append(word)
        length += len(word) + 1
        if rng.random() < 0.08:
            words.append(".\n\n" if rng.random() < 0.3 else ".\n")
    return " ".join(words)


def _text_for_charset(rng: random.Random, charset: str, size: int) -> str:
    greeting = {"koi8-r": "Привет", "iso-2022-jp": "こんにちは", "iso-8859-1": "Grüße", "windows-1252": "Grüße"}.get(
        charset, rng.choice(GREETINGS)
    )
    return f"{greeting},\n\n{_paragraphs(rng, size)}\n\n-- \nSomeone\n"


def build_corpus(count: int, seed: int = 20261121) -> list[bytes]:
    rng = random.Random(seed)
    messages: list[bytes] = []
    for number in range(count):
        message = EmailMessage()
        message["From"] = f"{rng.choice(GREETINGS)} Sender <sender{number % 97}@example.org>"
        message["To"] = ", ".join(f"Person {i} <p{i}@example.com>" for i in range(rng.randint(1, 4)))
        message["Subject"] = f"{rng.choice(GREETINGS)} about {rng.choice(WORDS)} #{number // 3}"
        message["Message-ID"] = f"<{number}.{seed}@example.org>"
        if number % 3:
            message["In-Reply-To"] = f"<{number - 1}.{seed}@example.org>"
            message["References"] = " ".join(f"<{n}.{seed}@example.org>" for n in range(number - number % 3, number))
        message["Date"] = "Sat, 21 Nov 2026 10:00:00 +0100"
        add_trace_and_body(message, rng, number)
        messages.append(bytes(message))
    return messages


def add_trace_and_body(message: EmailMessage, rng: random.Random, number: int) -> None:
    """Received hops, a text part in a random charset, HTML on 60 %, a PDF on 20 %."""
    for hop in range(rng.randint(3, 8)):
        message["Received"] = f"from mx{hop}.example.net (mx{hop}.example.net [192.0.2.{hop}]) by mx.example.org with ESMTPS id {number}"
    charset = rng.choice(CHARSETS)
    kind = rng.random()
    text = _text_for_charset(rng, charset, rng.randint(2_000, 12_000))
    message.set_content(text, charset=charset)
    if kind > 0.4:
        paragraphs = "".join(f"<p style='color:#333'>{block}</p>" for block in text.split("\n\n"))
        html = f"<html><body><table><tr><td>{paragraphs}</td></tr></table><img src='https://t.example.net/p.gif' width=1 height=1></body></html>"
        message.add_alternative(html, subtype="html", charset="utf-8")
    if kind > 0.8:
        blob = rng.randbytes(rng.randint(20_000, 120_000))
        message.add_attachment(blob, maintype="application", subtype="pdf", filename=f"report-{number}.pdf")


def full_parse(raw: bytes) -> None:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    for part in message.walk():
        if not part.is_multipart():
            part.get_content()


def headers_only(raw: bytes) -> None:
    parsed = parse_message(raw)
    assert isinstance(parsed, ParsedMessage)
    _ = parsed.subject, parsed.from_, parsed.references


def header_pass(raw: bytes) -> None:
    """What a parser process does for the import's header pass (``isolation._headers_payload``)."""
    parsed = parse_headers(raw)
    assert isinstance(parsed, ParsedMessage)
    _ = parsed.subject, parsed.from_, parsed.references, content_digest(raw)


def complete(raw: bytes) -> None:
    parsed = parse_message(raw)
    assert isinstance(parsed, ParsedMessage)
    body = parsed.body
    assert not isinstance(body, Quarantined)
    _ = body.text, body.html, [attachment.sha256 for attachment in body.attachments]


def measure(name: str, corpus: list[bytes], function: Callable[[bytes], None]) -> None:
    # CPU time, not wall time: on a shared machine the wall clock measures the neighbours.
    started = time.process_time()
    for raw in corpus:
        function(raw)
    elapsed = time.process_time() - started
    print(f"{name:>9}: {len(corpus) / elapsed:8.0f} messages per CPU second")


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000
    corpus = build_corpus(count)
    average_kb = sum(map(len, corpus)) / len(corpus) / 1024
    print(f"{count} messages, {average_kb:.1f} KB on average, one process")
    measure("full", corpus, full_parse)
    measure("headers", corpus, headers_only)
    measure("pass", corpus, header_pass)
    measure("complete", corpus, complete)


if __name__ == "__main__":
    main()
