"""Rule 2, enforced mechanically: public answers never depend on who asked (design §2).

:class:`TrackingRequest` notes every read of the session or the user on the request. The
:class:`FragmentMiddleware` then downgrades any ``PUBLIC``/``SHARED_FRAGMENT``/``EMBED``
answer whose handler touched them, or that carries a ``Set-Cookie``, to ``private, no-store``,
drops its ``Surrogate-Key`` and ETag, and logs an error. It also fills in inline fragments
for ordinary ``Template`` responses whose template called ``fragment()``.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from app.caching import (
    CACHEABLE,
    DEGRADED_CACHE_CONTROL,
    DOWNGRADED_CACHE_CONTROL,
    CachePolicy,
    etag_matches,
    note_identity_read,
    policy_of,
    render_state,
    weak_etag,
)
from app.strict_input import StrictInputRequest

__all__ = ["FragmentMiddleware", "TrackingRequest", "note_identity_read"]

log = logging.getLogger("rose_ash.fragments.guard")


class TrackingRequest(StrictInputRequest):
    """The app's request class: session and identity reads are recorded for the guard.

    On routes that skip the session and auth middleware (public ones) the accessors answer
    empty instead of raising, so the guard can downgrade and log rather than fail with a 500.
    """

    @property
    def session(self) -> dict[str, Any]:
        note_identity_read(self.scope, "session")
        if "session" not in self.scope:
            self.scope["session"] = {}
        return super().session

    def set_session(self, value: Any) -> None:
        note_identity_read(self.scope, "session")
        super().set_session(value)

    def clear_session(self) -> None:
        note_identity_read(self.scope, "session")
        super().clear_session()

    @property
    def user(self) -> Any:
        note_identity_read(self.scope, "user")
        return self.scope.get("user")

    @property
    def auth(self) -> Any:
        note_identity_read(self.scope, "auth")
        return self.scope.get("auth")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


class FragmentMiddleware:
    """Outermost app middleware (inside request logging): sees the final status and headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        policy = policy_of(scope)
        state = render_state(scope)
        held: list[Message] = []
        body = bytearray()

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                if state.pending:
                    held.append(message)
                    return
                self._guard(scope, policy, message)
                await send(message)
                return
            if message["type"] == "http.response.body" and held:
                body.extend(message.get("body", b""))
                if message.get("more_body", False):
                    return
                start = held.pop()
                html = await self._assemble(scope, receive, bytes(body))
                headers = MutableScopeHeaders.from_message(start)  # type: ignore[arg-type]
                cacheable = policy in CACHEABLE and "no-store" not in headers.get("cache-control", "")
                if state.fallbacks and cacheable:
                    headers["cache-control"] = DEGRADED_CACHE_CONTROL
                    del headers["etag"]
                if state.keys and cacheable:
                    keys = state.keys | set(headers.get("surrogate-key", "").split())
                    headers["surrogate-key"] = " ".join(sorted(keys))
                if state.deferred_etag and not (state.fallbacks and cacheable) and not state.touched:
                    headers["etag"] = weak_etag(html)
                    if scope.get("method") in ("GET", "HEAD") and etag_matches(
                            _header(scope, b"if-none-match"), headers["etag"]):
                        start["status"] = 304  # type: ignore[typeddict-unknown-key]
                        html = b""
                if start.get("status") == 304:
                    del headers["content-length"]
                    del headers["content-type"]
                else:
                    headers["content-length"] = str(len(html))
                self._guard(scope, policy, start)
                await send(start)
                await send({"type": "http.response.body", "body": html, "more_body": False})
                return
            await send(message)

        await self.app(scope, receive, wrapped)

    @staticmethod
    async def _assemble(scope: Scope, receive: Receive, body: bytes) -> bytes:
        from fragments.registry import resolve_placeholders

        request = scope["litestar_app"].request_class(scope=scope, receive=receive)
        return (await resolve_placeholders(request, body.decode())).encode()

    @staticmethod
    def _guard(scope: Scope, policy: CachePolicy | None, message: Message) -> None:
        if policy not in CACHEABLE:
            return
        headers = MutableScopeHeaders.from_message(message)  # type: ignore[arg-type]
        touched = render_state(scope).touched
        sets_cookie = "set-cookie" in headers
        if not touched and not sets_cookie:
            return
        reason = ", ".join(touched) + (" set-cookie" if sets_cookie else "")
        log.error(
            "public route %s %s (%s) touched %s: downgraded to private, no-store",
            scope.get("method"), scope.get("path"), policy.value if policy else "?", reason.strip(),
        )
        headers["cache-control"] = DOWNGRADED_CACHE_CONTROL
        for name in ("surrogate-key", "etag"):
            del headers[name]
