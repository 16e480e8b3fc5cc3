"""Generators of hostile messages for the parser's resource-limit tests (SECURITY.md R31)."""

from __future__ import annotations

import base64
from collections.abc import Callable

HEADERS = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hostile\r\nMessage-ID: <hostile@example.org>\r\n"


def deep_multipart(depth: int = 10_000) -> bytes:
    opening = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (level, level) for level in range(depth))
    closing = b"".join(b"\r\n--b%d--" % level for level in reversed(range(depth)))
    return HEADERS + opening + b"Content-Type: text/plain\r\n\r\nhello" + closing + b"\r\n"


def deep_embedded_messages(depth: int = 10_000) -> bytes:
    return HEADERS + b"Content-Type: message/rfc822\r\n\r\n" * depth + b"Subject: innermost\r\n\r\nbody\r\n"


def many_parts(count: int = 20_000) -> bytes:
    parts = b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" * count
    return HEADERS + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + parts + b"--b--\r\n"


def many_to_lines(count: int = 200_000) -> bytes:
    return b"From: a@example.org\r\n" + b"To: x@example.org\r\n" * count + b"\r\nbody\r\n"


def many_addresses(count: int = 5_000) -> bytes:
    addresses = b",\r\n ".join(b"user%d@example.org" % number for number in range(count))
    return b"From: a@example.org\r\nTo: " + addresses + b"\r\nSubject: many\r\n\r\nbody\r\n"


def long_header_line(size: int = 1 << 20) -> bytes:
    return HEADERS + b"X-Long: " + b"a" * size + b"\r\n\r\nbody\r\n"


def long_body_line(size: int = 2 << 20) -> bytes:
    return HEADERS + b"\r\n" + b"a" * size + b"\r\n"


def rfc2231_parameters(count: int = 10_000) -> bytes:
    parameters = b"".join(b";\r\n filename*%d*=utf-8''a%%41" % section for section in range(count))
    return (
        HEADERS
        + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
        + b"Content-Type: application/octet-stream\r\nContent-Disposition: attachment"
        + parameters
        + b"\r\nContent-Transfer-Encoding: base64\r\n\r\nQUFB\r\n--b--\r\n"
    )


def base64_bomb(decoded_size: int = 60 << 20) -> bytes:
    encoded = base64.encodebytes(b"\0" * decoded_size).replace(b"\n", b"\r\n")
    return HEADERS + b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n" + encoded


CORPUS: dict[str, Callable[[], bytes]] = {
    "deep_multipart": deep_multipart,
    "deep_embedded_messages": deep_embedded_messages,
    "many_parts": many_parts,
    "many_to_lines": many_to_lines,
    "many_addresses": many_addresses,
    "long_header_line": long_header_line,
    "long_body_line": long_body_line,
    "rfc2231_parameters": rfc2231_parameters,
    "base64_bomb": base64_bomb,
}
