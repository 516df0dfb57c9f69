"""CORS for the routes browser apps call from other origins (Phanpy and Elk are pure web apps):
the Mastodon client API, token and revocation, and discovery.

``Access-Control-Allow-Origin: *`` is safe there because none of them honours the session cookie:
they authenticate by bearer token or client credentials only (app/access.py), so another site's
page gains nothing a script with the token would not already have. ``Link`` (paging) and the
rate-limit headers are exposed so the apps can read them (Fetch standard, CORS-safelisted headers).
"""

from __future__ import annotations

from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

ALLOW = {
    "access-control-allow-origin": "*",
    "access-control-expose-headers": "Link, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset",
}
PREFLIGHT = {
    "access-control-allow-methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
    "access-control-allow-headers": "Authorization, Content-Type, Idempotency-Key",
    "access-control-max-age": "86400",
}


class CORSMiddleware(ASGIMiddleware):
    """Adds the headers to every answer of the routes it wraps (errors too); a preflight
    ``OPTIONS`` also gets the methods and headers it may use."""

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        extra = {**ALLOW, **(PREFLIGHT if scope.get("method") == "OPTIONS" else {})}

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.decode("latin-1").lower() not in extra]
                headers += [(k.encode(), v.encode()) for k, v in extra.items()]
                message = {**message, "headers": headers}  # type: ignore[typeddict-item]
            await send(message)

        await next_app(scope, receive, send_with_cors)
