"""HEAD answered as GET without the body (RFC 9110 §9.3.2).

Litestar's ``@get`` does not serve HEAD, so without this every page answered ``HEAD`` with 405,
which link checkers, uptime monitors and ``curl -I`` all use. The router answers 404/405
before any middleware runs, so this wraps the app's ASGI handler itself: a HEAD request to a path
that has a GET route is routed as GET (also where a route declares HEAD too, like the static
files router, whose own HEAD answer lacks ``Content-Type``), and the response keeps its status and every header
(``Content-Length`` and ``ETag`` included, as §9.3.2 asks) while the body is dropped.

GET is safe (§9.2.1), so running its handler for HEAD has no effect a GET would not have.
"""

from __future__ import annotations

from litestar import Litestar
from litestar.enums import ScopeType
from litestar.exceptions import MethodNotAllowedException, NotFoundException
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from litestar.utils import normalize_path

__all__ = ["HEAD_AS_GET", "answer_head_as_get"]

# In ``scope["state"]`` of a HEAD request routed as GET, so the access log names the real method.
HEAD_AS_GET = "rose_ash.head_as_get"


def _serves_get(app: Litestar, path: str) -> bool:
    try:
        app.asgi_router.handle_routing(path=normalize_path(path), method="GET")  # type: ignore[arg-type]
    except (NotFoundException, MethodNotAllowedException):
        return False
    return True


def answer_head_as_get(app: Litestar) -> None:
    """Wrap ``app``'s handler so that HEAD is served by the GET route of the same path.

    A path without a GET route is left to the router: its own HEAD route, or 404/405.
    """
    inner: ASGIApp = app.asgi_handler

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["method"] != "HEAD" \
                or not _serves_get(app, scope["path"]):
            await inner(scope, receive, send)
            return
        # The scope itself is switched, not a copy: Litestar runs the ``before_send`` hooks (the
        # database session's commit-and-close among them) with the scope it was called with, and
        # advanced-alchemy keeps the request's session in a key it adds to the scope on first use.
        # On a copy the hook never saw that session, so every HEAD that opened one left its pooled
        # connection to the garbage collector. The server reads the method of this same scope to
        # know that no body follows (uvicorn at the response start, or at each body chunk), so it
        # is HEAD again before the response start reaches the server.
        scope["method"] = "GET"
        scope.setdefault("state", {})[HEAD_AS_GET] = True

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.start":
                scope["method"] = "HEAD"
            elif message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return  # a streamed body's chunks: none of them is sent
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        try:
            await inner(scope, receive, headers_only)
        finally:
            scope["method"] = "HEAD"

    app.asgi_handler = handler
