"""Real HTTP peers on loopback for the tests of server-side fetching and of remote content.

- ``ConnectionCounter`` accepts TCP connections on 127.0.0.1 and ::1 and only counts them: the
  proof that a refused fetch (or a browser told to fetch nothing) did not even connect.
- ``RemoteSite`` is a small web server standing in for a sender's image host: fixed answers per
  path (images, redirects, oversized and slow answers) and a log of every request it received,
  headers included, so tests can check what a client sent (no cookies, no Referer).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def png_image(width: int, height: int, rgb: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A valid PNG of one colour (browsers and the proxy's type check both accept it)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\0" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(row * height)) + chunk(b"IEND", b"")


PNG_PIXEL = png_image(1, 1)
GIF_PIXEL = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b")
SVG_IMAGE = b'<svg xmlns="http://www.w3.org/2000/svg"><script>window.__xss=1</script></svg>'


class ConnectionCounter:
    """Counts connections to one port on 127.0.0.1 and, when possible, the same port on ::1."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._stopping = threading.Event()
        self.port = self._bind()
        for sock in self._sockets:
            threading.Thread(target=self._accept, args=(sock,), daemon=True).start()

    def _bind(self) -> int:
        for _attempt in range(20):
            ipv4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            ipv4.bind(("127.0.0.1", 0))
            port = int(ipv4.getsockname()[1])
            try:
                ipv6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
                ipv6.bind(("::1", port))
            except OSError:
                ipv4.close()
                continue
            self._sockets = [ipv4, ipv6]
            break
        else:  # no IPv6 loopback here: count on IPv4 alone
            ipv4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            ipv4.bind(("127.0.0.1", 0))
            port = int(ipv4.getsockname()[1])
            self._sockets = [ipv4]
        for sock in self._sockets:
            sock.listen(16)
            sock.settimeout(0.2)
        return port

    def _accept(self, sock: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.count += 1
            connection.close()

    def stop(self) -> None:
        self._stopping.set()
        for sock in self._sockets:
            sock.close()


@dataclass(frozen=True)
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    method: str = "GET"
    body: bytes = b""


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    # Send the headers, then wait this long before the body (a stalled server).
    stall_seconds: float = 0.0
    # Stream this many bytes without a Content-Length (a server that never says how much).
    stream_bytes: int = 0


class RemoteSite:
    """A web server on 127.0.0.1 with a fixed ``Answer`` per path (404 otherwise)."""

    def __init__(self) -> None:
        self.answers: dict[str, Answer] = {}
        self.requests: list[ReceivedRequest] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def answer(self, path: str, answer: Answer) -> str:
        self.answers[path] = answer
        return self.url(path)

    def image(self, path: str, body: bytes = PNG_PIXEL, content_type: str = "image/png") -> str:
        return self.answer(path, Answer(body=body, headers={"Content-Type": content_type}))

    def redirect(self, path: str, location: str, status: int = 302) -> str:
        return self.answer(path, Answer(status=status, headers={"Location": location}))

    def paths_requested(self) -> list[str]:
        with self._lock:
            return [request.path for request in self.requests]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {name.lower(): value for name, value in self.headers.items()}
                with site._lock:
                    site.requests.append(ReceivedRequest(self.path, headers, "POST", body))
                self._answer()

            def do_GET(self) -> None:
                with site._lock:
                    site.requests.append(ReceivedRequest(self.path, {name.lower(): value for name, value in self.headers.items()}))
                self._answer()

            def _answer(self) -> None:
                answer = site.answers.get(self.path.split("?")[0], Answer(status=404, body=b"not found"))
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                if answer.stream_bytes:
                    self.send_header("Connection", "close")
                    self.end_headers()
                    with contextlib.suppress(OSError):
                        for _ in range(0, answer.stream_bytes, 65536):
                            self.wfile.write(b"\0" * 65536)
                    return
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                if answer.stall_seconds:
                    self.wfile.flush()
                    time.sleep(answer.stall_seconds)
                with contextlib.suppress(OSError):
                    self.wfile.write(answer.body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler
