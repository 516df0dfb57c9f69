"""Server-side sessions that stay out of the way of caching.

Litestar's server-side backend writes the store and sends ``Set-Cookie`` on every response, even
for a visitor whose session is empty. That would make every public page uncacheable and fill the
store with empty sessions. This backend writes only when the session changed, sends a cookie
only when one must be created, renewed or cleared, and issues a fresh session id on sign-in
(session fixation). A cookie naming no session (stale, forged, another host's) is ignored, not
answered with ``Set-Cookie: rose_ash_session=null``, so public pages stay cookie-free.

A session belongs to the host that issued it: the store key is ``<host>/<session id>``, so the
blog host's cookie sent to the main host (or the reverse) names no session there. Single sign-on
(federation/oauth/sso.py) is the only way a session reaches another host. The Host header can be
trusted here because the allowed-hosts middleware (app/factory.py) has already refused any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie, MutableScopeHeaders
from litestar.middleware import DefineMiddleware
from litestar.middleware.session.base import SessionMiddleware
from litestar.middleware.session.server_side import ServerSideSessionBackend, ServerSideSessionConfig
from litestar.types import Empty, Message, Receive, Scope, ScopeSession, Send
from litestar.utils.dataclass import extract_dataclass_items

_LOADED = "rose_ash.session_loaded"
_ROTATE = "rose_ash.session_rotate"


def rotate_session_id(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    """Ask for a brand-new session id when this response is sent (call on sign-in)."""
    connection.scope[_ROTATE] = True  # type: ignore[literal-required]


def _store_key(connection: ASGIConnection[Any, Any, Any, Any], session_id: str) -> str:
    return f"{connection.headers.get('host', '').lower()}/{session_id}"


class LazySessionBackend(ServerSideSessionBackend):
    async def load_from_connection(self, connection: ASGIConnection[Any, Any, Any, Any]) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if session_id := connection.cookies.get(self.config.key):
            store = self.config.get_store_from_app(connection.scope["app"])
            raw = await self.get(_store_key(connection, session_id), store=store)
            data = self.deserialize_data(raw) if raw is not None else {}
        connection.scope[_LOADED] = self.serialize_data(data, connection.scope) if data else None  # type: ignore[literal-required]
        return data

    @cached_property
    def cookie_params(self) -> dict[str, Any]:
        """The config's cookie attributes (path, max-age, flags), the same for every response."""
        return dict(extract_dataclass_items(self.config, exclude_none=True, include=Cookie.__dict__.keys()))

    async def store_in_message(
        self, scope_session: ScopeSession, message: Message, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> None:
        scope = connection.scope
        incoming = connection.cookies.get(self.config.key)
        incoming = None if incoming in (None, "", "null") else incoming
        if (scope_session is Empty or not scope_session) and not (incoming and scope.get(_LOADED) is not None):
            return  # no session, none ended: nothing to store, no cookie (most public requests)
        store = self.config.get_store_from_app(scope["app"])
        headers = MutableScopeHeaders.from_message(message)
        params = self.cookie_params

        if scope_session is Empty or not scope_session:  # a real session ended (sign-out)
            await self.delete(_store_key(connection, incoming), store=store)  # type: ignore[arg-type]
            expired = Cookie(value="null", key=self.config.key, expires=0, **params)
            headers.add("Set-Cookie", expired.to_header(header=""))
            return

        data = self.serialize_data(scope_session, scope)
        rotate = bool(scope.get(_ROTATE))
        # Never adopt an id this host did not issue (session fixation): only a loaded session keeps its id.
        session_id = incoming if scope.get(_LOADED) is not None else None
        if session_id and not rotate and data == scope.get(_LOADED):
            return  # unchanged: no write, no cookie
        if rotate or not session_id:
            if session_id:
                await self.delete(_store_key(connection, session_id), store=store)
            session_id = self.generate_session_id()
        await self.set(session_id=_store_key(connection, session_id), data=data, store=store)
        headers.add("Set-Cookie", Cookie(value=session_id, key=self.config.key, **params).to_header(header=""))


class LazySessionMiddleware(SessionMiddleware[LazySessionBackend]):
    """Litestar's session middleware without the per-request session id it would generate for a
    visitor with no cookie: :class:`LazySessionBackend` issues its own ids when it writes, and
    nothing reads that one (``connection.get_session_id()``)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        connection = ASGIConnection[Any, Any, Any, Any](scope, receive=receive, send=send)
        scope["session"] = await self.backend.load_from_connection(connection)
        await self.app(scope, receive, self.create_send_wrapper(connection))


@dataclass
class LazySessionConfig(ServerSideSessionConfig):
    _backend_class = LazySessionBackend

    @property
    def middleware(self) -> DefineMiddleware:
        return DefineMiddleware(LazySessionMiddleware, backend=self._backend_class(config=self))
