"""The SSRF guard: address policy, connect-time checks, redirects, body caps."""

from __future__ import annotations

import socket
from typing import Any

import anyio
import httpcore
import httpx
import pytest

from app import safe_http as safe_fetch
from app.safe_http import (
    BlockedAddressError,
    FetchError,
    GuardedBackend,
    SafeClient,
    check_address,
    check_url,
)

pytestmark = pytest.mark.anyio

BLOCKED = [
    "127.0.0.1", "127.8.9.10", "10.0.0.1", "10.255.1.2", "172.16.0.1", "192.168.1.1", "169.254.169.254",
    "169.254.0.1", "0.0.0.0", "100.64.0.1", "192.0.0.9", "198.18.0.1", "224.0.0.1", "255.255.255.255",
    "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
    "64:ff9b::7f00:1", "64:ff9b::a00:1", "64:ff9b::a9fe:a9fe", "64:ff9b:1::a00:1",
    "2002:7f00:1::1", "2002:a00:1::", "2002:a9fe:a9fe::1", "2001:db8::1", "ff02::1",
]
ALLOWED = ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "::ffff:93.184.216.34"]


@pytest.mark.parametrize("address", BLOCKED)
def test_blocked_addresses(address: str) -> None:
    with pytest.raises(BlockedAddressError):
        check_address(address)


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses(address: str) -> None:
    check_address(address)


def test_test_allowance_is_off_by_default_and_narrow() -> None:
    with pytest.raises(BlockedAddressError):
        check_address("127.0.0.1")
    check_address("127.0.0.1", allow_private=True)
    check_address("::1", allow_private=True)
    for address in ("169.254.169.254", "64:ff9b::7f00:1", "2002:7f00:1::1", "0.0.0.0"):
        with pytest.raises(BlockedAddressError):
            check_address(address, allow_private=True)


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/actor", "http://10.0.0.5/actor", "http://169.254.169.254/latest/meta-data",
    "http://[::1]/actor", "http://[64:ff9b::7f00:1]/actor", "http://[2002:7f00:1::1]/actor",
    "http://localhost/actor", "http://foo.onion/x", "ftp://example.org/x", "https://example.org:8443/x",
    "file:///etc/passwd", "http://user:pw@example.org/",
])
def test_urls_refused(url: str) -> None:
    with pytest.raises((BlockedAddressError, FetchError)):
        check_url(url)


async def test_connect_time_check_on_resolved_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """A public-looking name that resolves to a private address is refused when connecting."""
    answers = {"evil.example": ["10.1.2.3"], "nat64.example": ["64:ff9b::7f00:1"],
               "sixtofour.example": ["2002:7f00:1::1"], "mixed.example": ["93.184.216.34", "127.0.0.1"],
               "metadata.example": ["169.254.169.254"], "v6loop.example": ["::1"]}

    async def fake_getaddrinfo(host: str, port: int, **_: Any) -> list[Any]:
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in answers[host]]

    monkeypatch.setattr(anyio, "getaddrinfo", fake_getaddrinfo)
    backend = GuardedBackend()
    for host in answers:
        with pytest.raises(BlockedAddressError):
            await backend.connect_tcp(host, 443, timeout=1)
    async with SafeClient() as client:
        for host in answers:
            with pytest.raises(BlockedAddressError):
                await client.get_json(f"https://{host}/actor")


async def test_default_client_refuses_loopback_server() -> None:
    """The real client with the default settings never reaches a server on 127.0.0.1."""
    async with SafeClient() as client:
        with pytest.raises(BlockedAddressError):
            await client.get_json("http://127.0.0.1:1/actor")


async def test_redirects_are_rechecked_and_capped() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/to-metadata":
            return httpx.Response(302, headers={"Location": "http://169.254.169.254/latest"})
        if path == "/to-localhost":
            return httpx.Response(301, headers={"Location": "http://localhost/admin"})
        if path == "/loop":
            return httpx.Response(302, headers={"Location": "/loop"})
        if path == "/big":
            return httpx.Response(200, content=b"{" + b" " * 2_000_000 + b"}",
                                  headers={"Content-Type": "application/activity+json"})
        if path == "/html":
            return httpx.Response(200, content=b"<html>", headers={"Content-Type": "text/html"})
        if path == "/ok":
            return httpx.Response(200, json={"id": "https://example.org/ok"},
                                  headers={"Content-Type": "application/activity+json"})
        return httpx.Response(404)

    client = SafeClient(transport=httpx.MockTransport(handler))
    try:
        with pytest.raises(BlockedAddressError):
            await client.get_json("https://example.org/to-metadata")
        with pytest.raises(BlockedAddressError):
            await client.get_json("https://example.org/to-localhost")
        with pytest.raises(FetchError, match="too many redirects"):
            await client.get_json("https://example.org/loop")
        with pytest.raises(FetchError, match="exceeds"):
            await client.get_json("https://example.org/big")
        with pytest.raises(FetchError, match="not JSON"):
            await client.get_json("https://example.org/html")
        assert (await client.get_json("https://example.org/ok")).data["id"] == "https://example.org/ok"
    finally:
        await client.aclose()


def test_module_limits() -> None:
    assert safe_fetch.MAX_JSON_BYTES == 1_000_000 and safe_fetch.MAX_REDIRECTS == 3


# --- the test allowance reaches this machine only (issue 11 item 12) -------------------------------

OTHER_NETWORKS = ["10.0.0.1", "10.255.1.2", "172.16.0.1", "172.31.255.254", "192.168.1.1", "169.254.169.254",
                  "100.64.0.1", "fc00::1", "fd12:3456::1", "fe80::1", "::ffff:10.0.0.1", "::ffff:192.168.0.1",
                  "64:ff9b::a00:1", "2002:a00:1::", "0.0.0.0", "224.0.0.1"]
THIS_MACHINE = ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"]


@pytest.mark.parametrize("address", OTHER_NETWORKS)
def test_the_allowance_still_refuses_private_ranges(address: str) -> None:
    with pytest.raises(BlockedAddressError):
        check_address(address, allow_private=True)


@pytest.mark.parametrize("address", THIS_MACHINE)
def test_the_allowance_admits_loopback(address: str) -> None:
    check_address(address, allow_private=True)


class _Recorder(httpcore.AsyncNetworkBackend):
    """An inner network that records every connection attempt and opens no socket."""

    def __init__(self) -> None:
        self.attempts: list[tuple[str, int]] = []

    async def connect_tcp(self, host: str, port: int, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        self.attempts.append((host, port))
        raise httpcore.ConnectError(f"recorded {host}:{port}")


async def test_the_allowance_refuses_other_networks_before_any_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    """Names resolving to another network, and literals, are refused at connect time with the
    allowance on, before a socket is opened; a name resolving to loopback goes through."""
    answers = {f"h{n}.example": [a] for n, a in enumerate(OTHER_NETWORKS)}
    answers["loop.example"] = ["127.0.0.1"]

    async def fake_getaddrinfo(host: str, port: int, **_: Any) -> list[Any]:
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in answers[host]]

    monkeypatch.setattr(anyio, "getaddrinfo", fake_getaddrinfo)
    network = _Recorder()
    backend = GuardedBackend(allow_private=True, inner=network)
    for host in [*answers, *OTHER_NETWORKS]:
        if host == "loop.example":
            continue
        with pytest.raises(BlockedAddressError):
            await backend.connect_tcp(host, 80, timeout=1)
    assert network.attempts == []
    with pytest.raises(httpcore.ConnectError, match=r"recorded 127\.0\.0\.1:80"):
        await backend.connect_tcp("loop.example", 80, timeout=1)
    assert network.attempts == [("127.0.0.1", 80)]
    # the client with the allowance: a literal of another network is refused before the request
    async with SafeClient(allow_private=True) as client:
        for address in ("10.0.0.1", "[fd00::1]", "192.168.1.1", "169.254.169.254"):
            with pytest.raises(BlockedAddressError):
                await client.get_json(f"http://{address}:8080/actor")
            with pytest.raises(BlockedAddressError):
                await client.post(f"http://{address}/inbox", b"{}")


async def test_forge_mirrors_follow_the_same_loopback_only_allowance() -> None:
    from forge.remote import MirrorError, build_remote

    for url in ("http://10.1.2.3/r.git", "http://192.168.0.10:3000/r.git", "http://[fd00::1]/r.git",
                "http://169.254.169.254/r.git", "http://172.20.0.2/r.git"):
        with pytest.raises(MirrorError, match="not allowed"):
            await build_remote(url, None, allow_private=True)
    remote = await build_remote("http://127.0.0.1:1/r.git", None, allow_private=True)  # builds config only
    assert ("http.curloptResolve", "127.0.0.1:1:127.0.0.1") in remote.config


async def test_unencodable_host_names_are_a_fetch_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """``a..b`` passes URL parsing but the resolver's IDNA step raises UnicodeError: a FetchError
    (an inbox or lookup answers 4xx), never an unhandled exception."""
    async def idna_fails(host: str, port: int, **_: Any) -> list[Any]:
        raise UnicodeError("encoding with 'idna' codec failed (UnicodeError: label empty or too long)")

    monkeypatch.setattr(anyio, "getaddrinfo", idna_fails)
    async with SafeClient() as client:
        for url in ("https://a..b.example/actor", "https://" + "a" * 70 + ".example/actor"):
            with pytest.raises(FetchError, match="cannot resolve"):
                await client.get_json(url)
