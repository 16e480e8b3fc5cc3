"""SECURITY.md R30: server-side fetching reaches public addresses only, in every notation.

Loopback refusals are proven with real traffic that does not happen: a listener on 127.0.0.1 and
::1 counts connections and must count none. Private, link-local, CGNAT and other internal ranges
are never contacted for real: there the socket opener is replaced by one that fails the test.
"""

from __future__ import annotations

import ipaddress
import runpy
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import postroom.settings
from postroom.core import fetch
from postroom.core.fetch import FetchError, FetchLimits, fetch_public, is_public_address
from postroom.testing.web_peers import PNG_PIXEL, Answer, ConnectionCounter, RemoteSite

LOOPBACK_NOTATIONS = [
    "127.0.0.1", "127.1", "127.0.1", "0x7f000001", "0X7F000001", "2130706433", "017700000001", "0177.0.0.1",
    "0x7f.0.0.1", "0x7f.1", "127.000.000.001", "127.0.0.1.", "0.0.0.0", "0", "[::1]", "[0:0:0:0:0:0:0:1]",
    "[::ffff:7f00:1]", "[::ffff:127.0.0.1]", "[0:0:0:0:0:ffff:7f00:1]", "[::127.0.0.1]", "[::7f00:1]",
    "[64:ff9b::127.0.0.1]", "[2002:7f00:1::]", "[::]", "localhost", "localhost.", "LOCALHOST", "app.localhost",
]  # fmt: skip


@pytest.fixture
def no_connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Replace the socket opener: any attempt is recorded and fails, nothing leaves the machine."""
    attempts: list[tuple[str, int]] = []

    def refuse(address: str, port: int, timeout: float) -> socket.socket:
        attempts.append((address, port))
        raise AssertionError(f"the fetcher tried to connect to {address}:{port}")

    monkeypatch.setattr(fetch, "_open_socket", refuse)
    return attempts


def resolver_returning(monkeypatch: pytest.MonkeyPatch, *answers: list[str]) -> list[str]:
    """Patch name resolution: the n-th lookup returns ``answers[n]``; returns the names looked up."""
    looked_up: list[str] = []

    def lookup(host: str, port: int) -> list[str]:
        looked_up.append(host)
        if len(looked_up) > len(answers):
            raise AssertionError(f"{host} was resolved a second time")
        return answers[len(looked_up) - 1]

    monkeypatch.setattr(fetch, "_getaddrinfo", lookup)
    return looked_up


# --- addresses -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1", "169.254.169.254", "100.64.0.1",
        "100.100.100.200", "0.0.0.0", "255.255.255.255", "224.0.0.1", "240.0.0.1", "192.0.0.8", "198.18.0.1",
        "192.0.2.1", "::1", "::", "::ffff:127.0.0.1", "::ffff:8.8.8.8", "::127.0.0.1", "fe80::1", "fc00::1",
        "fd00:ec2::254", "64:ff9b::a00:1", "2002:a00:1::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2", "ff02::1",
        "2001:db8::1", "fec0::1",
    ],
)  # fmt: skip
def test_r30_internal_addresses_are_not_public(address: str) -> None:
    assert not is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "93.184.215.14", "2606:4700:4700::1111", "2a00:1450:4001:80b::200e"])
def test_r30_ordinary_public_addresses_are_public(address: str) -> None:
    assert is_public_address(ipaddress.ip_address(address))


# --- loopback, with a listener that must see nothing ------------------------------------------------
@pytest.mark.parametrize("host", LOOPBACK_NOTATIONS)
def test_r30_loopback_in_any_notation_is_refused_without_connecting(host: str, connection_counter: ConnectionCounter) -> None:
    # The port is allowed, so only the address can be what refuses.
    limits = FetchLimits(ports=frozenset({connection_counter.port}))
    with pytest.raises(FetchError) as refused:
        fetch_public(f"http://{host}:{connection_counter.port}/pixel.png", limits=limits)
    assert refused.value.reason != "port not allowed"
    assert connection_counter.count == 0


def test_r30_a_name_resolving_to_loopback_is_refused(monkeypatch: pytest.MonkeyPatch, connection_counter: ConnectionCounter) -> None:
    looked_up = resolver_returning(monkeypatch, ["127.0.0.1"])
    limits = FetchLimits(ports=frozenset({connection_counter.port}))
    with pytest.raises(FetchError, match="address not allowed"):
        fetch_public(f"http://images.attacker.test:{connection_counter.port}/x.png", limits=limits)
    assert looked_up == ["images.attacker.test"]
    assert connection_counter.count == 0


def test_r30_a_name_with_one_private_address_among_public_ones_is_refused(monkeypatch: pytest.MonkeyPatch, no_connections) -> None:
    resolver_returning(monkeypatch, ["93.184.215.14", "10.0.0.5"])
    with pytest.raises(FetchError, match="address not allowed"):
        fetch_public("https://images.attacker.test/x.png")
    assert no_connections == []


@pytest.mark.parametrize("host", ["127.1", "0x7f000001", "2130706433", "localhost", "ip6-localhost", socket.gethostname()])
def test_r30_the_real_resolver_answers_are_checked_too(host: str, connection_counter: ConnectionCounter) -> None:
    """Even a host that got past the notation and name checks is refused by the address check,
    with the answer of the machine's own resolver (numeric forms, /etc/hosts)."""
    try:
        addresses = fetch.resolve(host, connection_counter.port, timeout=5)
    except FetchError:
        pytest.skip(f"{host} does not resolve on this machine")
    if any(is_public_address(address) for address in addresses):
        pytest.skip(f"{host} resolves to a public address on this machine")
    target = fetch._Target("http", host, connection_counter.port, "/", None)
    with pytest.raises(FetchError, match="address not allowed"):
        fetch._checked_addresses(target, deadline=time.monotonic() + 5)
    assert connection_counter.count == 0


IPV4_PRIVATE = st.one_of(
    st.integers(0x7F000000, 0x7FFFFFFF),  # 127/8
    st.integers(0x0A000000, 0x0AFFFFFF),  # 10/8
    st.integers(0xAC100000, 0xAC1FFFFF),  # 172.16/12
    st.integers(0xC0A80000, 0xC0A8FFFF),  # 192.168/16
    st.integers(0xA9FE0000, 0xA9FEFFFF),  # 169.254/16 (metadata)
    st.integers(0x64400000, 0x647FFFFF),  # 100.64/10 (CGNAT)
    st.integers(0x00000000, 0x00FFFFFF),  # 0/8
)


def encodings(value: int) -> list[str]:
    """Spellings of one IPv4 address that some parser (the C library, a browser, ipaddress) accepts."""
    octets = value.to_bytes(4, "big")
    a, b, c, d = octets
    dotted = ".".join(map(str, octets))
    return [
        dotted, f"{dotted}.", str(value), hex(value), f"0{value:o}", ".".join(f"0{octet:o}" for octet in octets),
        ".".join(hex(octet) for octet in octets), f"{a}.{(b << 16) | (c << 8) | d}", f"{a}.{b}.{(c << 8) | d}",
        f"[::ffff:{dotted}]", f"[::ffff:{(a << 8) | b:x}:{(c << 8) | d:x}]", f"[0:0:0:0:0:ffff:{dotted}]",
        f"[::{dotted}]", f"[64:ff9b::{dotted}]", f"[2002:{(a << 8) | b:x}:{(c << 8) | d:x}::1]",
    ]  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(value=IPV4_PRIVATE, scheme=st.sampled_from(["http", "https"]), index=st.integers(0, 14))
def test_r30_fuzz_internal_ipv4_addresses_in_any_encoding_are_refused(value: int, scheme: str, index: int) -> None:
    attempts: list[tuple[str, int]] = []

    def refuse(address: str, port: int, timeout: float) -> socket.socket:
        attempts.append((address, port))
        raise AssertionError("connected")

    original = fetch._open_socket
    fetch._open_socket = refuse  # type: ignore[assignment]  # Hypothesis cannot use function-scoped fixtures
    try:
        host = encodings(value)[index]
        with pytest.raises(FetchError):
            fetch_public(f"{scheme}://{host}/image.png")
    finally:
        fetch._open_socket = original  # type: ignore[assignment]
    assert attempts == []


# --- schemes, credentials, ports ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd", "ftp://example.com/x.png", "gopher://example.com:70/_x", "dict://example.com:11211/stat",
        "javascript:alert(1)", "data:image/png;base64,AAAA", "//example.com/x.png", "http:///x.png", "http://user:pw@example.com/",
        "http://example.com@127.0.0.1/", "http://example.com:22/", "http://example.com:6379/", "http://exa mple.com/",
        "http://example.com\\@127.0.0.1/", "http://[fe80::1%25eth0]/", "http://ex%41mple.com/", "http://" + "a" * 5000 + ".com/",
    ],
)  # fmt: skip
def test_r30_other_schemes_credentials_ports_and_malformed_urls_are_refused(url: str, no_connections) -> None:
    with pytest.raises(FetchError):
        fetch_public(url)
    assert no_connections == []


# --- redirects, size, time, headers ----------------------------------------------------------------
def test_r30_a_redirect_to_loopback_is_refused(fetchable_remote_site: RemoteSite, connection_counter: ConnectionCounter) -> None:
    limits = FetchLimits(ports=frozenset({80, 443, connection_counter.port}))
    for target in (
        f"http://127.0.0.1:{connection_counter.port}/",
        f"http://[::ffff:7f00:1]:{connection_counter.port}/",
        f"http://2130706433:{connection_counter.port}/",
    ):
        url = fetchable_remote_site.redirect("/moved", target)
        with pytest.raises(FetchError, match=r"address not allowed|unusual notation"):
            fetch_public(url, limits=limits)
    assert connection_counter.count == 0
    assert fetchable_remote_site.paths_requested() == ["/moved"] * 3


def test_r30_redirects_are_followed_only_a_few_times_and_each_hop_is_checked(fetchable_remote_site: RemoteSite) -> None:
    site = fetchable_remote_site
    final = site.image("/final.png")
    site.redirect("/hop2", final, status=307)
    start = site.redirect("/hop1", "/hop2", status=301)  # relative locations resolve against the hop
    fetched = fetch_public(start)
    assert (fetched.url, fetched.body) == (final, PNG_PIXEL)
    site.redirect("/loop", "/loop")
    with pytest.raises(FetchError, match="too many redirects"):
        fetch_public(site.url("/loop"), limits=FetchLimits(max_redirects=3))
    assert site.paths_requested().count("/loop") == 4


def test_r30_pinned_address_the_name_is_resolved_once(monkeypatch: pytest.MonkeyPatch, fetchable_remote_site: RemoteSite) -> None:
    looked_up = resolver_returning(monkeypatch, ["127.0.0.1"])  # a second lookup fails the test
    url = fetchable_remote_site.image("/logo.png")
    fetched = fetch_public(url.replace("127.0.0.1", "images.sender.test"))
    assert fetched.body == PNG_PIXEL
    assert looked_up == ["images.sender.test"]
    assert fetchable_remote_site.requests[-1].headers["host"] == f"images.sender.test:{fetchable_remote_site.port}"


def test_r30_the_request_carries_no_cookie_referer_or_credentials(fetchable_remote_site: RemoteSite) -> None:
    fetch_public(fetchable_remote_site.image("/a.png") + "?u=1")
    headers = fetchable_remote_site.requests[-1].headers
    assert set(headers) == {"host", "user-agent", "accept", "accept-encoding", "connection"}
    assert headers["accept-encoding"] == "identity"


def test_r30_size_is_capped_declared_or_streamed(fetchable_remote_site: RemoteSite) -> None:
    site = fetchable_remote_site
    limits = FetchLimits(max_bytes=100_000)
    declared = site.answer("/declared", Answer(body=b"\0" * 100_001, headers={"Content-Type": "image/png"}))
    streamed = site.answer("/streamed", Answer(stream_bytes=1_000_000, headers={"Content-Type": "image/png"}))
    exact = site.answer("/exact", Answer(body=b"\0" * 100_000, headers={"Content-Type": "image/png"}))
    for url in (declared, streamed):
        with pytest.raises(FetchError, match="too large"):
            fetch_public(url, limits=limits)
    assert len(fetch_public(exact, limits=limits).body) == 100_000


def test_r30_a_stalled_server_ends_in_a_timeout(fetchable_remote_site: RemoteSite) -> None:
    url = fetchable_remote_site.answer("/stalled", Answer(body=PNG_PIXEL, stall_seconds=3))
    with pytest.raises(FetchError, match="timed out"):
        fetch_public(url, limits=FetchLimits(read_timeout=0.3, total_timeout=1))


def test_r30_error_statuses_are_refused(fetchable_remote_site: RemoteSite) -> None:
    with pytest.raises(FetchError, match="answered 404"):
        fetch_public(fetchable_remote_site.url("/missing"))


# --- the test-only loopback allowlist ----------------------------------------------------------------
def test_r30_loopback_test_ports_are_honoured_only_outside_the_production_settings(settings: Any, remote_site: RemoteSite) -> None:
    url = remote_site.image("/a.png")
    settings.POSTROOM_FETCH_LOOPBACK_TEST_PORTS = frozenset({remote_site.port})
    assert fetch_public(url).body == PNG_PIXEL
    settings.SETTINGS_MODULE = fetch.PRODUCTION_SETTINGS_MODULE
    with pytest.raises(FetchError):
        fetch_public(url)
    assert remote_site.paths_requested() == ["/a.png"]


def test_r30_the_production_settings_allow_no_loopback_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTROOM_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("POSTROOM_FETCH_LOOPBACK_TEST_PORTS", "8000")  # no such variable: ignored
    values = runpy.run_path(postroom.settings.__file__)
    assert values["POSTROOM_FETCH_LOOPBACK_TEST_PORTS"] == frozenset()
