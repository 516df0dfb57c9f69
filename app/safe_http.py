"""The one outbound HTTP client (design/federation.md §9): federation, mirrors, webhooks, listing import.

Addresses are checked **at connect time**: :class:`GuardedBackend` is an httpcore network
backend whose ``connect_tcp`` resolves the host itself, refuses the connection unless *every*
address passes :func:`check_address`, and then connects to a validated IP (TLS SNI and
certificate checks still use the host name, because httpcore passes it to ``start_tls``).
So a DNS answer cannot change between check and connect, and redirects are covered too.

:class:`SafeClient` adds manual redirects (at most 3, each re-checked), a streamed body cap
(bytes are counted; ``Content-Length`` is not trusted), timeouts plus an overall deadline, a
content-type check and a per-host concurrency limit. ``allow_private=True`` (the
``FEDERATION_ALLOW_PRIVATE_ADDRESSES`` test setting) permits loopback only (127.0.0.0/8 and
``::1``: all a test on one machine needs), plain http and any port; every other private range
stays refused, so no test can send traffic to another network. It is off by default.

:func:`decode_json` is the one JSON decoder for untrusted federation bodies (inbox POSTs and
fetched documents): it answers malformed input with :class:`MalformedJSON` instead of the
``UnicodeDecodeError``/``RecursionError`` the decoder raises for some of it.
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urljoin

import anyio
import httpcore
import httpx
from litestar.exceptions import ClientException

from app.json_input import decode_json as decode_request_json

__all__ = [
    "AS2_ACCEPT",
    "HTML_TYPES",
    "IMAGE_TYPES",
    "BlockedAddressError",
    "FetchError",
    "FetchedBody",
    "FetchedJSON",
    "GuardedBackend",
    "MalformedJSON",
    "SafeClient",
    "check_address",
    "check_url",
    "decode_json",
    "guarded_transport",
]

log = logging.getLogger("rose_ash.federation.fetch")

AS2_ACCEPT = 'application/activity+json, application/ld+json; profile="https://www.w3.org/ns/activitystreams"'
JSON_TYPES = ("application/activity+json", "application/ld+json", "application/json", "application/jrd+json")
MAX_JSON_BYTES = 1_000_000
# Listing import (domains/market/importer.py): a shop's product page is HTML, often 0.5-2 MB once
# its inline scripts are counted; product photos are at most what an upload may be.
HTML_TYPES = ("text/html", "application/xhtml+xml")
MAX_HTML_BYTES = 5_000_000
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp")
MAX_IMAGE_BYTES = 10_000_000
MAX_REDIRECTS = 3
TIMEOUT = httpx.Timeout(connect=5.0, read=10.0, write=10.0, pool=5.0)
OVERALL_DEADLINE = 20.0
PER_HOST_CONCURRENCY = 8

_V4_BLOCKED = [ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15",
    "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4", "255.255.255.255/32",
)]
_V6_BLOCKED = [ipaddress.ip_network(n) for n in (
    "::/128", "::1/128", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001::/32", "2001:10::/28",
    "2001:20::/28", "2001:db8::/32", "2002::/16", "fc00::/7", "fe80::/10", "3fff::/20", "ff00::/8",
)]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_SIXTOFOUR = ipaddress.ip_network("2002::/16")
# With the test allowance: loopback only. A private range (RFC 1918, unique-local, link-local)
# is another machine's network, which no test may reach.
_TEST_ALLOWED = [ipaddress.ip_network(n) for n in ("127.0.0.0/8", "::1/128")]
# Nesting a real activity never comes near (Mastodon's deepest, a Create of a Question with its
# options and replies collection, is 5 levels); the cap keeps a hostile body from costing more.
_REFUSED_SUFFIXES = (".onion", ".i2p", ".local", ".localhost", ".internal")


class FetchError(Exception):
    """A federation fetch failed. ``status`` is what an inbox should answer if this was fatal."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


class BlockedAddressError(FetchError):
    """The URL names, resolves to or redirects to an address we never connect to."""


class MalformedJSON(ValueError):
    """A body that is not a UTF-8 JSON document we can store; the message says why."""


def decode_json(body: bytes) -> Any:
    """Decode an untrusted JSON body, or raise :class:`MalformedJSON` (RFC 8259 §8.1: UTF-8).

    The kernel's strict decoder does the work (invalid UTF-8, nesting deeper than
    :data:`app.json_input.MAX_JSON_DEPTH`, NUL characters that PostgreSQL cannot store; msgspec
    itself refuses lone surrogates); body sizes are capped before this, by the inbox route and by
    the fetch client.
    """
    try:
        return decode_request_json(body, max_bytes=len(body))
    except ClientException as exc:
        raise MalformedJSON(exc.detail) from None


def _embedded_v4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    found: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip in _NAT64 or ip in _NAT64_LOCAL:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if ip.teredo is not None:
        found.extend(ip.teredo)
    return found


def check_address(address: str | ipaddress.IPv4Address | ipaddress.IPv6Address, *, allow_private: bool = False) -> None:
    """Raise :class:`BlockedAddressError` unless we may connect to ``address``."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        raise BlockedAddressError(f"scoped IPv6 address {ip} refused")
    candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_v4(ip)
        if ip.ipv4_mapped is not None:
            candidates = list(embedded)  # ::ffff:a.b.c.d is just a.b.c.d
        else:
            candidates.extend(embedded)
    for candidate in candidates:
        if allow_private and any(candidate in net for net in _TEST_ALLOWED):
            continue
        blocked = _V4_BLOCKED if isinstance(candidate, ipaddress.IPv4Address) else _V6_BLOCKED
        if not candidate.is_global or any(candidate in net for net in blocked):
            raise BlockedAddressError(f"address {candidate} is not public")


def check_url(url: str, *, allow_private: bool = False) -> httpx.URL:
    """Scheme, port and host-name checks done before connecting (addresses are checked at connect)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise FetchError(f"invalid URL {url!r}", 400) from None
    if parsed.scheme not in {"http", "https"}:
        raise BlockedAddressError(f"scheme {parsed.scheme!r} refused")
    host = parsed.host.rstrip(".").lower()
    if not host:
        raise FetchError("URL has no host", 400)
    if parsed.userinfo:
        raise BlockedAddressError("credentials in URLs are refused")
    if not allow_private:
        if parsed.port not in (None, 80, 443):
            raise BlockedAddressError(f"port {parsed.port} refused")
        if host == "localhost" or host.endswith(_REFUSED_SUFFIXES) or ("." not in host and not _is_ip(host)):
            raise BlockedAddressError(f"host {host!r} refused")
    elif host.endswith((".onion", ".i2p")):
        raise BlockedAddressError(f"host {host!r} refused")
    if _is_ip(host):
        check_address(host.strip("[]"), allow_private=allow_private)
    return parsed


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolve, check every address, connect only to a checked IP."""

    def __init__(self, *, allow_private: bool = False, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self.allow_private = allow_private
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        host = host.strip("[]")
        if _is_ip(host):
            addresses = [host]
        else:
            try:
                with anyio.fail_after(timeout or 5.0):
                    infos = await anyio.getaddrinfo(host, port, type=0)
            except (OSError, TimeoutError, UnicodeError) as exc:  # UnicodeError: an empty or 64+ byte label
                raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
            addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses:
            raise httpcore.ConnectError(f"{host} has no addresses")
        for address in addresses:
            try:
                check_address(address, allow_private=self.allow_private)
            except BlockedAddressError as exc:
                log.warning("refused connection to %s (%s): %s", host, address, exc)
                raise
        last: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                                    socket_options=socket_options)
            except httpcore.ConnectError as exc:
                last = exc
        raise httpcore.ConnectError(str(last) if last else f"cannot connect to {host}")

    async def connect_unix_socket(self, path: str, timeout: float | None = None,  # noqa: ASYNC109
                                  socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        raise BlockedAddressError("unix sockets are refused")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class _GuardedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, *, allow_private: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=_ssl_context(),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=GuardedBackend(allow_private=allow_private),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except BlockedAddressError:
            raise
        except httpx.ConnectError as exc:
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, BlockedAddressError):
                raise cause from None
            raise


@lru_cache(maxsize=1)
def _ssl_context() -> ssl.SSLContext:
    """One verifying TLS context per process (loading the CA bundle takes tens of milliseconds)."""
    return ssl.create_default_context()


def guarded_transport(*, allow_private: bool = False) -> httpx.AsyncBaseTransport:
    return _GuardedTransport(allow_private=allow_private)


@dataclass(frozen=True)
class FetchedJSON:
    url: str  # the final URL, after redirects
    status: int
    data: dict[str, Any]


@dataclass(frozen=True)
class FetchedBody:
    url: str  # the final URL, after redirects
    status: int
    content_type: str  # the media type, lower case, without parameters
    charset: str  # the ``charset`` parameter, or ""
    body: bytes


class SafeClient:
    """Guarded GETs of JSON documents and POSTs to inboxes; one per process (or per job run)."""

    def __init__(self, *, allow_private: bool = False, transport: httpx.AsyncBaseTransport | None = None,
                 user_agent: str = "RoseAsh/0.1 (+ActivityPub)") -> None:
        self.allow_private = allow_private
        self.client = httpx.AsyncClient(
            transport=transport or guarded_transport(allow_private=allow_private),
            timeout=TIMEOUT,
            follow_redirects=False,
            headers={"User-Agent": user_agent},
        )
        self._limits: dict[str, anyio.Semaphore] = {}

    async def aclose(self) -> None:
        await self.client.aclose()

    async def __aenter__(self) -> SafeClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    def _limit(self, host: str) -> anyio.Semaphore:
        sem = self._limits.get(host)
        if sem is None:
            sem = self._limits[host] = anyio.Semaphore(PER_HOST_CONCURRENCY)
        return sem

    async def get_json(self, url: str, *, auth: httpx.Auth | None = None, accept: str = AS2_ACCEPT,
                       max_bytes: int = MAX_JSON_BYTES) -> FetchedJSON:
        """GET a JSON document, following at most 3 re-checked redirects."""
        fetched = await self.get_body(url, auth=auth, accept=accept, max_bytes=max_bytes)
        if fetched.content_type not in JSON_TYPES:
            raise FetchError(f"GET {fetched.url} returned {fetched.content_type or 'no content type'}, not JSON")
        try:
            data = decode_json(fetched.body)
        except MalformedJSON as exc:
            raise FetchError(f"GET {fetched.url} returned {exc}") from None
        if not isinstance(data, dict):
            raise FetchError(f"GET {fetched.url} returned JSON that is not an object")
        return FetchedJSON(url=fetched.url, status=fetched.status, data=data)

    async def get_document(self, url: str, *, types: tuple[str, ...], accept: str, max_bytes: int,
                           deadline: float = OVERALL_DEADLINE) -> FetchedBody:
        """GET a body of one of ``types`` (e.g. :data:`HTML_TYPES`, :data:`IMAGE_TYPES`), under the same
        address policy, redirect re-checks and streamed cap as :meth:`get_json`.

        Refuses a body of another type with :class:`FetchError` *before* reading it, so a 5 GB video
        at a product URL costs one response header.
        """
        return await self.get_body(url, accept=accept, max_bytes=max_bytes, types=types, deadline=deadline)

    async def get_body(self, url: str, *, accept: str, max_bytes: int, auth: httpx.Auth | None = None,
                       types: tuple[str, ...] = (), deadline: float = OVERALL_DEADLINE) -> FetchedBody:
        """The guarded GET: at most 3 re-checked redirects, an error status refused, the body capped."""
        current = url
        try:
            with anyio.fail_after(deadline):
                for _hop in range(MAX_REDIRECTS + 1):
                    parsed = check_url(current, allow_private=self.allow_private)
                    async with self._limit(parsed.host):
                        request = self.client.build_request("GET", current, headers={"Accept": accept})
                        response = await self.client.send(request, auth=auth, stream=True)
                        try:
                            if response.status_code in (301, 302, 303, 307, 308):
                                location = response.headers.get("location")
                                if not location:
                                    raise FetchError(f"redirect without Location from {current}")
                                current = urljoin(current, location)
                                continue
                            ctype, charset = _media_type(response.headers.get("content-type", ""))
                            if response.status_code < 400 and types and ctype not in types:
                                raise FetchError(f"GET {current} returned {ctype or 'no content type'}, "
                                                 f"not {' or '.join(types)}")
                            body = await _read_capped(response, max_bytes)
                        finally:
                            await response.aclose()
                    if response.status_code >= 400:
                        raise FetchError(f"GET {current} answered {response.status_code}", response.status_code)
                    return FetchedBody(url=current, status=response.status_code, content_type=ctype,
                                       charset=charset, body=body)
        except TimeoutError:
            raise FetchError(f"GET {url} timed out", 422) from None
        except httpx.HTTPError as exc:
            raise FetchError(f"GET {url} failed: {type(exc).__name__}: {exc}", 422) from None
        raise FetchError(f"too many redirects from {url}")

    async def post(self, url: str, body: bytes, *, auth: httpx.Auth | None = None,
                   content_type: str = "application/activity+json") -> httpx.Response:
        """POST a body (to an inbox); no redirects are followed; the response body is capped."""
        response, _body = await self.post_read(url, body, auth=auth, content_type=content_type)
        return response

    async def post_read(self, url: str, body: bytes, *, auth: httpx.Auth | None = None,
                        content_type: str = "application/activity+json",
                        headers: dict[str, str] | None = None) -> tuple[httpx.Response, bytes]:
        """:meth:`post` with extra request headers, returning the (capped, 64 kB) response body
        too (webhook deliveries log an excerpt of what the receiver answered)."""
        parsed = check_url(url, allow_private=self.allow_private)
        async with self._limit(parsed.host):
            with anyio.fail_after(OVERALL_DEADLINE):
                request = self.client.build_request("POST", url, content=body,
                                                    headers={**(headers or {}), "Content-Type": content_type})
                response = await self.client.send(request, auth=auth, stream=True)
                try:
                    received = await _read_capped(response, 64_000, truncate=True)
                finally:
                    await response.aclose()
        return response, received


def _media_type(header: str) -> tuple[str, str]:
    """``("text/html", "utf-8")`` from ``text/html; charset=UTF-8`` (RFC 9110 §8.3.1)."""
    ctype, _, params = header.partition(";")
    charset = ""
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
    return ctype.strip().lower(), charset


async def _read_capped(response: httpx.Response, max_bytes: int, *, truncate: bool = False) -> bytes:
    try:
        already = response.content  # an in-memory response (tests' MockTransport)
    except httpx.ResponseNotRead:
        pass
    else:
        if len(already) > max_bytes and not truncate:
            raise FetchError(f"response from {response.request.url} exceeds {max_bytes} bytes", 422)
        return already[:max_bytes]
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():  # decoded bytes: a gzip bomb hits the cap too
        size += len(chunk)
        if size > max_bytes:
            if truncate:
                break
            raise FetchError(f"response from {response.request.url} exceeds {max_bytes} bytes", 422)
        chunks.append(chunk)
    return b"".join(chunks)

