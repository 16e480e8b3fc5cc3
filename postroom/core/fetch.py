"""Fetch a URL that someone else chose, from the server, without reaching anything private.

Threat model (SECURITY.md R30)
------------------------------
The URL comes from an attacker: a remote image in a received message (the image proxy), and
later link previews, avatars, calendar feeds, OIDC discovery and webhooks. The server sits
inside a network the attacker cannot reach, with services that trust it: the database, Redis,
Dovecot, the cloud's metadata endpoint (169.254.169.254, fd00:ec2::254), admin panels on
loopback. Server-side request forgery turns our fetcher into the attacker's client inside that
network. Known ways past naive checks, each refused here:

- other schemes (``file:``, ``gopher:``, ``ftp:``, ``dict:``): only http and https are fetched;
- IP literals in unusual notations that resolvers still accept (``127.1``, ``0x7f000001``,
  ``2130706433``, ``0177.0.0.1``, ``[::ffff:7f00:1]``, ``[::ffff:127.0.0.1]``, ``[::127.0.0.1]``):
  every notation the C library would read as an IPv4 address is refused as such, and every
  address is checked as the resolver returned it, never as the URL spelled it;
- names that resolve to private addresses (``localhost.``, ``*.localtest.me``, a DNS entry the
  attacker controls), and DNS rebinding (the name resolves to a public address when checked and
  to a private one when connected): the name is resolved once, every address it resolves to
  must be public, and the socket connects to that checked address (the TLS certificate is
  still verified for the name);
- redirects to any of the above (Zammad CVE-2025-32358): each hop is checked like the first,
  and there are at most ``max_redirects`` of them;
- ranges that are not "private" in the everyday sense but still internal: CGNAT 100.64/10,
  link-local, IPv4-mapped, IPv4-compatible, 6to4, Teredo and NAT64 IPv6 (which embed an IPv4
  address a gateway would reach), ULA, multicast, reserved and documentation ranges;
- resource exhaustion: bounded time (connect, each read, and the whole fetch, DNS included),
  bounded size (a declared ``Content-Length`` over the limit is refused before reading; the
  body is read in chunks and cut at the limit), only the ports in ``FetchLimits.ports``.

The request carries no cookies, no ``Referer``, no credentials from the URL (a URL with
``user:password@`` is refused) and no proxy settings from the environment.

Tests reach a local server on loopback only through ``POSTROOM_FETCH_LOOPBACK_TEST_PORTS``, a
setting the production settings module fixes to nothing and that this module ignores when the
production settings module is in use.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import ipaddress
import re
import socket
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

PRODUCTION_SETTINGS_MODULE = "postroom.settings"
USER_AGENT = "Postroom (+https://github.com/postroom; server-side fetch without cookies)"
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024
_MAX_URL_LENGTH = 4096
# A host name after IDNA encoding: letters, digits, hyphens and dots (an underscore appears in
# some real DNS names, so it is allowed too). Anything else is refused before resolving.
_HOST_NAME = re.compile(r"(?=.{1,253}\.?$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*\.?")

# Ranges refused in addition to what ``ipaddress`` reports as private, reserved, loopback,
# link-local, multicast or not global (listed so that the rule does not depend on the Python
# version's tables, which changed in 3.11.x and 3.12).
_BLOCKED_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15",
        "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
        "::/96", "::ffff:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001::/32",
        "2001:db8::/32", "2002::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
    )
)  # fmt: skip


class FetchError(Exception):
    """The fetch was refused or failed. ``reason`` is short, fixed text: safe to log and show,
    because it never contains the URL or anything the remote server sent."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class FetchLimits:
    max_bytes: int = 10 * 1024 * 1024
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    total_timeout: float = 20.0
    max_redirects: int = 3
    ports: frozenset[int] = field(default_factory=lambda: frozenset({80, 443}))


@dataclass(frozen=True, slots=True)
class Fetched:
    url: str  # after redirects
    content_type: str  # as the server declared it, lower-cased, without parameters
    body: bytes


@dataclass(frozen=True, slots=True)
class _Target:
    scheme: str
    host: str  # IDNA-encoded name, or an IP address without brackets
    port: int
    path: str  # path and query, never empty
    address: IPAddress | None  # set when the URL names an IP address


def is_public_address(address: IPAddress) -> bool:
    """Whether ``address`` is an ordinary public unicast address that we may connect to."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None or address.sixtofour is not None or address.teredo is not None:
            return False
        if address.scope_id or address.is_site_local:
            return False
    if (
        address.is_private or address.is_loopback or address.is_link_local or address.is_multicast
        or address.is_reserved or address.is_unspecified or not address.is_global
    ):  # fmt: skip
        return False
    return not any(address in network for network in _BLOCKED_NETWORKS if network.version == address.version)


def _test_loopback_ports() -> frozenset[int]:
    """Loopback ports a test may fetch from; always empty under the production settings."""
    if settings.SETTINGS_MODULE == PRODUCTION_SETTINGS_MODULE:
        return frozenset()
    return frozenset(getattr(settings, "POSTROOM_FETCH_LOOPBACK_TEST_PORTS", ()))


def _may_connect(address: IPAddress, port: int) -> bool:
    if is_public_address(address):
        return True
    return address.is_loopback and port in _test_loopback_ports()


def _legacy_ipv4(host: str) -> bool:
    """Whether the C library would read ``host`` as an IPv4 address (``127.1``, ``0x7f.1``,
    ``2130706433``, ``0177.0.0.1``...): such a host is an address, whatever it looks like."""
    if not re.fullmatch(r"[0-9a-fx.]+", host):
        return False
    try:
        socket.inet_aton(host.rstrip("."))
    except OSError:
        return False
    return True


def _target(url: str, limits: FetchLimits) -> _Target:
    if len(url) > _MAX_URL_LENGTH:
        raise FetchError("URL too long")
    if any(ord(character) <= 0x20 or character in "\\\x7f" for character in url):
        raise FetchError("URL contains spaces, control characters or backslashes")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise FetchError("malformed URL") from None
    scheme = parts.scheme.lower()
    if scheme not in {"http", "https"}:
        raise FetchError("only http and https URLs are fetched")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise FetchError("URLs with credentials are not fetched")
    raw_host = (parts.hostname or "").lower()
    if not raw_host:
        raise FetchError("URL without a host")
    port = port or (443 if scheme == "https" else 80)
    if port not in limits.ports and port not in _test_loopback_ports():
        raise FetchError("port not allowed")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    address: IPAddress | None
    if ":" in raw_host or _legacy_ipv4(raw_host):
        try:
            address = ipaddress.ip_address(raw_host)
        except ValueError:
            raise FetchError("IP address in an unusual notation") from None  # 127.1, 0x7f000001 ...
        if "%" in raw_host:
            raise FetchError("IPv6 address with a zone")
        return _Target(scheme, str(address), port, path, address)
    try:
        host = raw_host.encode("idna").decode("ascii")
    except UnicodeError:
        raise FetchError("host name is not a valid internationalised name") from None
    if not _HOST_NAME.fullmatch(host):
        raise FetchError("malformed host name")
    if host.rstrip(".") == "localhost" or host.rstrip(".").endswith(".localhost"):
        raise FetchError("address not allowed")
    return _Target(scheme, host, port, path, None)


def url_check(url: str, limits: FetchLimits | None = None) -> None:
    """Refuse (``FetchError``) a URL that could never be fetched: scheme, syntax, credentials,
    port, an address literal. A name is resolved and checked only when fetched."""
    target = _target(url, limits or FetchLimits())
    if target.address is not None and not _may_connect(target.address, target.port):
        raise FetchError("address not allowed")


_resolver_pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="fetch-resolve")


def _getaddrinfo(host: str, port: int) -> list[str]:
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)]


def resolve(host: str, port: int, timeout: float) -> list[IPAddress]:
    """Every address ``host`` resolves to, within ``timeout`` (getaddrinfo itself has none)."""
    future = _resolver_pool.submit(_getaddrinfo, host, port)
    try:
        found = future.result(timeout=max(timeout, 0.001))
    except concurrent.futures.TimeoutError:
        raise FetchError("name lookup timed out") from None
    except OSError:
        raise FetchError("name does not resolve") from None
    addresses: list[IPAddress] = []
    for text in found:
        address = ipaddress.ip_address(text.split("%")[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def _checked_addresses(target: _Target, deadline: float) -> list[IPAddress]:
    addresses = [target.address] if target.address is not None else resolve(target.host, target.port, deadline - time.monotonic())
    if not addresses:
        raise FetchError("name does not resolve")
    # Every address must be allowed, not just one: otherwise the attacker's name resolves to a
    # public and a private address and we would pick the private one when the first fails.
    if not all(_may_connect(address, target.port) for address in addresses):
        raise FetchError("address not allowed")
    return addresses


def _open_socket(address: str, port: int, timeout: float | None) -> socket.socket:
    """The one place that connects (tests replace it to prove nothing was attempted)."""
    sock = socket.create_connection((address, port), timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Sends ``Host: <name>`` but connects to an address we checked, never resolving again."""

    def __init__(self, target: _Target, address: IPAddress, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self.pinned_address = str(address)

    def connect(self) -> None:
        self.sock = _open_socket(self.pinned_address, self.port, self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, target: _Target, address: IPAddress, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout, context=ssl.create_default_context())
        self.pinned_address = str(address)

    def connect(self) -> None:
        sock = _open_socket(self.pinned_address, self.port, self.timeout)
        # The certificate is verified for the name in the URL, as a browser would.
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def _connect(target: _Target, addresses: Iterable[IPAddress], limits: FetchLimits, deadline: float) -> http.client.HTTPConnection:
    failure = "connection failed"
    for address in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchError("timed out")
        timeout = min(limits.connect_timeout, remaining)
        connection_class = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
        connection = connection_class(target, address, timeout)
        try:
            connection.connect()
        except ssl.SSLError:
            failure = "TLS handshake failed or certificate not trusted"
        except TimeoutError:
            failure = "connection timed out"
        except OSError:
            failure = "connection refused or unreachable"
        else:
            return connection
        connection.close()
    raise FetchError(failure)


def _read_body(response: http.client.HTTPResponse, connection: http.client.HTTPConnection, limits: FetchLimits, deadline: float) -> bytes:
    declared = response.getheader("Content-Length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limits.max_bytes:
        raise FetchError("too large")
    chunks: list[bytes] = []
    size = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchError("timed out")
        if connection.sock is not None:
            connection.sock.settimeout(min(limits.read_timeout, remaining))
        chunk = response.read(min(_CHUNK, limits.max_bytes + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limits.max_bytes:
            raise FetchError("too large")


def _fetch_once(
    target: _Target, *, accept: str, limits: FetchLimits, deadline: float, method: str = "GET", body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, str, str, bytes]:  # fmt: skip
    """(status, Location, Content-Type, body) of one request; the answer's body only for a 200."""
    addresses = _checked_addresses(target, deadline)
    connection = _connect(target, addresses, limits, deadline)
    try:
        connection.putrequest(method, target.path, skip_accept_encoding=True)
        connection.putheader("User-Agent", USER_AGENT)
        connection.putheader("Accept", accept)
        connection.putheader("Accept-Encoding", "identity")
        connection.putheader("Connection", "close")
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        location = response.getheader("Location") or ""
        content_type = (response.getheader("Content-Type") or "").split(";")[0].strip().lower()
        answer = _read_body(response, connection, limits, deadline) if response.status == 200 else b""
        return response.status, location, content_type, answer
    except TimeoutError:
        raise FetchError("timed out") from None
    except (http.client.HTTPException, OSError):
        raise FetchError("the server's answer was malformed or cut short") from None
    finally:
        connection.close()


def fetch_public(url: str, *, accept: str = "*/*", limits: FetchLimits | None = None) -> Fetched:
    """GET ``url`` from a public address; raises ``FetchError`` for anything else (see above)."""
    limits = limits or FetchLimits()
    deadline = time.monotonic() + limits.total_timeout
    for _hop in range(limits.max_redirects + 1):
        target = _target(url, limits)
        status, location, content_type, body = _fetch_once(target, accept=accept, limits=limits, deadline=deadline)
        if status == 200:
            return Fetched(url=url, content_type=content_type, body=body)
        if status not in _REDIRECT_STATUSES:
            raise FetchError(f"the server answered {status}" if 100 <= status <= 599 else "the server answered an invalid status")
        if not location:
            raise FetchError("redirect without a location")
        url = urljoin(url, location)  # checked like the first URL on the next turn
    raise FetchError("too many redirects")


# Header names a caller may set on a POST: anything else (Host, Content-Length, Cookie,
# Authorization, Transfer-Encoding) is ours to decide or must never be sent.
_POST_HEADER = re.compile(r"(Content-Type|X-Postroom-[A-Za-z-]{1,40})")


def post_public(url: str, *, body: bytes, headers: dict[str, str], limits: FetchLimits | None = None) -> int:
    """POST ``body`` to ``url`` on a public address (webhooks) and return the answer's status.

    The same checks as ``fetch_public`` (scheme, pinned and checked address, ports, time), and no
    redirect is followed: a 3xx is an answer like any other, because replaying a POST somewhere
    else is what a redirect-based SSRF wants. Only the answer's status is kept (its body is read
    up to ``limits.max_bytes`` and dropped). Header values must be printable ASCII."""
    limits = limits or FetchLimits(max_bytes=64 * 1024, total_timeout=10.0, max_redirects=0)
    for name, value in headers.items():
        if not _POST_HEADER.fullmatch(name) or not re.fullmatch(r"[\x20-\x7e]{0,500}", value):
            raise FetchError("header not allowed")
    deadline = time.monotonic() + limits.total_timeout
    target = _target(url, limits)
    status, _location, _content_type, _answer = _fetch_once(
        target, accept="*/*", limits=limits, deadline=deadline, method="POST", body=body, headers=headers
    )
    if not 100 <= status <= 599:
        raise FetchError("the server answered an invalid status")
    return status
