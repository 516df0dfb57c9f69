"""The hook's precomputed path adds exactly what the general ``apply`` would, header for header."""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

import pytest
from litestar.datastructures import MutableScopeHeaders

from app.caching import POLICY_OPT_KEY, CachePolicy
from app.headers import SecurityHeaders
from app.settings import Settings

RESPONSE_HEADERS: list[list[tuple[bytes, bytes]]] = [
    [],
    [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", b"12")],
    [(b"Content-Type", b"application/json")],
    [(b"content-type", b"image/svg+xml"), (b"content-type", b"text/plain")],  # the first one counts
    [(b"content-type", b"")],
    [(b"content-type", b"text/css"), (b"set-cookie", b"a=b")],
    # A handler's own values: the general path merges or keeps them.
    [(b"content-type", b"text/html"), (b"content-security-policy", b"frame-ancestors *")],
    [(b"Content-Security-Policy", b"script-src 'none'"), (b"content-type", b"text/html")],
    [(b"x-frame-options", b"SAMEORIGIN")],
    [(b"content-type", b"application/json"), (b"Referrer-Policy", b"no-referrer")],
    [(b"cross-origin-opener-policy", b"unsafe-none"), (b"content-type", b"text/html")],
]
pytestmark = pytest.mark.anyio

POLICIES: list[CachePolicy | None] = [None, *CachePolicy]


def _scope(policy: CachePolicy | None) -> dict[str, Any]:
    handler = SimpleNamespace(opt={} if policy is None else {POLICY_OPT_KEY: policy})
    return {"type": "http", "route_handler": None if policy is None else handler}


@pytest.mark.parametrize("base_url", ["http://127.0.0.1:8000", "https://coop.test"])
async def test_the_hook_adds_what_apply_adds(base_url: str, tmp_path: Any) -> None:
    hook = SecurityHeaders(Settings.from_env({}, data_dir=tmp_path, base_url=base_url))
    for raw, policy in itertools.product(RESPONSE_HEADERS, POLICIES):
        message: dict[str, Any] = {"type": "http.response.start", "status": 200, "headers": list(raw)}
        await hook(message, _scope(policy))  # type: ignore[arg-type]
        expected: dict[str, Any] = {"type": "http.response.start", "status": 200, "headers": list(raw)}
        hook.apply(MutableScopeHeaders.from_message(expected), _scope(policy))  # type: ignore[arg-type]
        assert message["headers"] == expected["headers"], (raw, policy)
        assert any(name == b"content-security-policy" for name, _ in message["headers"])


async def test_only_http_response_starts_are_touched(tmp_path: Any) -> None:
    hook = SecurityHeaders(Settings.from_env({}, data_dir=tmp_path, base_url="http://127.0.0.1:8000"))
    body: dict[str, Any] = {"type": "http.response.body", "body": b"x", "headers": []}
    await hook(body, _scope(None))  # type: ignore[arg-type]
    assert body["headers"] == []
    start: dict[str, Any] = {"type": "http.response.start", "status": 200, "headers": []}
    await hook(start, {"type": "websocket"})  # type: ignore[arg-type]
    assert start["headers"] == []
