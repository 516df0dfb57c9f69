"""SingleHostMiddleware's set lookup lets through exactly what Litestar's allowed-hosts check does."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.config.allowed_hosts import AllowedHostsConfig
from litestar.middleware.allowed_hosts import AllowedHostsMiddleware

from app.factory import SingleHostMiddleware

pytestmark = pytest.mark.anyio

CONFIGS = [
    ["coop.test", "blog.coop.test:8001", "127.0.0.1:8000"],
    ["*.coop.test", "coop.test"],
    [":8000", "a.test"],  # an entry with no host part: refused by Litestar, so by us
    ["*"],
]
HOSTS: list[list[tuple[bytes, bytes]]] = [
    [(b"host", b"coop.test")],
    [(b"host", b"COOP.TEST")],  # Litestar's match is case-sensitive
    [(b"host", b"coop.test:8000")],
    [(b"host", b"blog.coop.test:8001")],
    [(b"host", b"blog.coop.test")],
    [(b"host", b"x.coop.test")],
    [(b"host", b"evil.test")],
    [(b"host", b":8000")],
    [(b"host", b"")],
    [],
    [(b"Host", b"coop.test")],
    [(b"accept", b"*/*"), (b"host", b"127.0.0.1:8000")],
]


async def _status(middleware_class: type[AllowedHostsMiddleware], hosts: list[str],
                  headers: list[tuple[bytes, bytes]]) -> int:
    async def inner(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request"}

    app = middleware_class(inner, config=AllowedHostsConfig(allowed_hosts=hosts, www_redirect=False))
    await app({"type": "http", "method": "GET", "path": "/", "headers": list(headers), "query_string": b"",
               "state": {}, "route_handler": None, "app": None, "scheme": "http", "server": None,
               "root_path": ""}, receive, send)  # type: ignore[arg-type]
    return int(sent[0]["status"])


@pytest.mark.parametrize("hosts", CONFIGS)
async def test_the_same_hosts_pass_as_with_litestar(hosts: list[str]) -> None:
    for headers in HOSTS:
        assert await _status(SingleHostMiddleware, hosts, headers) == \
            await _status(AllowedHostsMiddleware, hosts, headers), (hosts, headers)


async def test_a_second_host_line_is_refused_even_when_both_are_allowed() -> None:
    twice = [(b"host", b"coop.test"), (b"host", b"coop.test")]
    assert await _status(SingleHostMiddleware, ["coop.test"], twice) == 400
    assert await _status(SingleHostMiddleware, ["coop.test"], [(b"host", b"coop.test")]) == 200
    assert await _status(SingleHostMiddleware, ["coop.test"], [(b"host", b"evil.test")]) == 400
