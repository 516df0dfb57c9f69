"""Whole public pages from the fragment cache: what the edge would answer, without an edge.

A ``make run`` site has no Varnish in front, yet its public pages (home, blog index, posts, tag
and author pages, the forge index, embeds) are the same for every visitor and already carry the
edge's contract: ``Cache-Control: public``, an ``ETag`` and ``Surrogate-Key``s that every change
purges (design/fragments.md §2, §10). This middleware keeps such a response in the
:class:`~fragments.cache.FragmentCache` under its URL, tagged with those keys, so the same purge
that refreshes the edge drops it here, in every process (Redis pub/sub, or the invalidation log in
``DATA_DIR``). A hit answers from memory (304 when ``If-None-Match`` matches) without running the
route, its queries or its templates.

Stored only when all of these hold, so nothing personal or half-built is ever kept:

- the route declares a cacheable class (``PUBLIC``, ``SHARED_FRAGMENT``, ``EMBED``): the same
  routes the generated VCL caches, whose handlers cannot see the session (the guard downgrades
  any that did, and a downgraded answer is ``private, no-store``);
- status 200, ``public`` without ``no-store``, an ``ETag`` and ``Surrogate-Key``s, no
  ``Set-Cookie``, no ``Vary`` (other than ``Accept-Encoding``), no fragment fallback in it
  (a degraded page is kept by the edge for 15 s only, and not at all here);
- the body arrived in one piece and is UTF-8.

htmx requests are keyed apart from full-page ones (``HX-Request``): no public route answers them
differently today, but one that did must not hand a fragment to a full-page visit.
"""

from __future__ import annotations

from typing import Any

from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from app.caching import CACHEABLE, etag_matches, policy_of, render_state
from fragments.cache import PAGE, CachedFragment, FragmentCache

__all__ = ["PageCacheMiddleware"]

_DROPPED_ON_304 = frozenset({"content-type", "content-length"})


def _request_header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _storable(start: Message, body: bytes, scope: Scope) -> CachedFragment | None:
    if start.get("status") != 200 or render_state(scope).fallbacks:
        return None
    headers = MutableScopeHeaders.from_message(start)  # type: ignore[arg-type]
    cache_control = headers.get("cache-control", "")
    keys = tuple(sorted(set(headers.get("surrogate-key", "").split())))
    etag = headers.get("etag")
    vary = {v.strip().lower() for v in headers.get("vary", "").split(",") if v.strip()}
    if (not cache_control.startswith("public") or "no-store" in cache_control or not keys or not etag
            or "set-cookie" in headers or vary - {"accept-encoding"}):
        return None
    try:
        html = body.decode()
    except UnicodeDecodeError:
        return None
    raw: Any = start.get("headers", ())
    pairs = tuple((bytes(k).decode("latin-1"), bytes(v).decode("latin-1")) for k, v in raw)
    return CachedFragment(html=html, keys=keys, etag=etag, headers=pairs)


class PageCacheMiddleware:
    """Outside the fragment middleware: sees each public page as the visitor gets it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        cache: FragmentCache | None = None
        if scope["type"] == ScopeType.HTTP and scope.get("method") == "GET" and policy_of(scope) in CACHEABLE:
            cache = scope["litestar_app"].state.get("fragment_cache")
        if cache is None:
            await self.app(scope, receive, send)
            return
        query = bytes(scope.get("query_string", b"")).decode("latin-1")
        key = cache.key(PAGE, {"path": scope["path"], "query": query,
                                 "hx": _request_header(scope, b"hx-request") or ""}, "")
        hit = await cache.get(scope, key)
        if hit is not None:
            await self._answer(scope, send, hit)
            return
        epoch = cache.epoch
        held: list[Message] = []
        body = bytearray()

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                # A copy as the route sent it: outer layers may add per-response headers (request
                # id, security headers) to the message in place; they are made anew for each hit.
                held.append({**message, "headers": list(message.get("headers", ()))})
                await send(message)
                return
            if message["type"] == "http.response.body" and held:
                body.extend(message.get("body", b""))
                if not message.get("more_body", False):
                    entry = _storable(held[0], bytes(body), scope)
                    if entry is not None:
                        await cache.put(scope, key, entry, epoch)
            await send(message)

        await self.app(scope, receive, capture)

    @staticmethod
    async def _answer(scope: Scope, send: Send, entry: CachedFragment) -> None:
        not_modified = entry.etag is not None and etag_matches(_request_header(scope, b"if-none-match"), entry.etag)
        headers: list[tuple[bytes, bytes]] = [
            (k.encode("latin-1"), v.encode("latin-1")) for k, v in entry.headers
            if not (not_modified and k.lower() in _DROPPED_ON_304)]
        start: Any = {"type": "http.response.start", "status": 304 if not_modified else 200, "headers": headers}
        await send(start)
        await send({"type": "http.response.body", "body": b"" if not_modified else entry.html.encode(),
                    "more_body": False})
