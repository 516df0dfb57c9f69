"""Server-side sessions that stay out of the way of caching.

Litestar's server-side backend writes the store and sends ``Set-Cookie`` on every response, even
for a visitor whose session is empty. That would make every public page uncacheable and fill the
store with empty sessions. This backend writes only when the session changed, sends a cookie
only when one must be created, renewed or cleared, and issues a fresh session id on sign-in
(session fixation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie, MutableScopeHeaders
from litestar.middleware.session.server_side import ServerSideSessionBackend, ServerSideSessionConfig
from litestar.types import Empty, Message, ScopeSession
from litestar.utils.dataclass import extract_dataclass_items

_LOADED = "rose_ash.session_loaded"
_ROTATE = "rose_ash.session_rotate"


def rotate_session_id(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    """Ask for a brand-new session id when this response is sent (call on sign-in)."""
    connection.scope[_ROTATE] = True  # type: ignore[literal-required]


class LazySessionBackend(ServerSideSessionBackend):
    async def load_from_connection(self, connection: ASGIConnection[Any, Any, Any, Any]) -> dict[str, Any]:
        data = await super().load_from_connection(connection)
        connection.scope[_LOADED] = self.serialize_data(data, connection.scope) if data else None  # type: ignore[literal-required]
        return data

    async def store_in_message(
        self, scope_session: ScopeSession, message: Message, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> None:
        scope = connection.scope
        store = self.config.get_store_from_app(scope["app"])
        incoming = connection.cookies.get(self.config.key)
        incoming = None if incoming in (None, "", "null") else incoming
        headers = MutableScopeHeaders.from_message(message)
        params = dict(extract_dataclass_items(self.config, exclude_none=True, include=Cookie.__dict__.keys()))

        if scope_session is Empty or not scope_session:
            if incoming:
                await self.delete(incoming, store=store)
                expired = Cookie(value="null", key=self.config.key, expires=0, **params)
                headers.add("Set-Cookie", expired.to_header(header=""))
            return

        data = self.serialize_data(scope_session, scope)
        rotate = bool(scope.get(_ROTATE))
        if incoming and not rotate and data == scope.get(_LOADED):
            return  # unchanged: no write, no cookie
        session_id = incoming
        if rotate or not session_id:
            if session_id:
                await self.delete(session_id, store=store)
            session_id = self.generate_session_id()
        await self.set(session_id=session_id, data=data, store=store)
        headers.add("Set-Cookie", Cookie(value=session_id, key=self.config.key, **params).to_header(header=""))


@dataclass
class LazySessionConfig(ServerSideSessionConfig):
    _backend_class = LazySessionBackend
