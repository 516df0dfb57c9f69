"""One error handler: an HTML page, an htmx partial or problem+json, by what the client asked for."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, NotAuthorizedException, ValidationException
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_303_SEE_OTHER, HTTP_400_BAD_REQUEST, HTTP_500_INTERNAL_SERVER_ERROR
from sqlalchemy.exc import DataError, StatementError

from app.access import Reach, access_of
from app.forms import InputProblems, is_htmx

log = logging.getLogger("rose_ash.errors")

PROBLEM_JSON = "application/problem+json"


def wants_json(request: Request[Any, Any, Any]) -> bool:
    # The scope's path, not request.url: building the URL parses the Host header, and the router
    # refuses a malformed one (port "8000 ") with a 400 that must not become a 500 here.
    path = request.scope["path"]
    if path.startswith(("/api/", "/oauth/", "/.well-known/")):
        return True
    access = access_of(request.scope.get("route_handler"))
    if access is not None and access.reach is Reach.TOKEN:
        # Only programs hold tokens (the cookie is never honoured there), and some token APIs live
        # outside /api/ by their spec's path (Pretix's /events/<slug>/checkin/redeem): a program
        # reads JSON errors (problem+json carries DRF's "detail", which Pretix clients show).
        return True
    accept = request.headers.get("accept", "")
    return "json" in accept and "text/html" not in accept


def _out_of_range(exc: Exception) -> bool:
    """The database refused a value the request carried: PostgreSQL's data exceptions (class 22:
    NUL in text, an integer beyond bigint), SQLite's driver refusing an int beyond 64 bits (a bare
    OverflowError through aiosqlite).
    The edge checks (app.strict_input) should have caught it; this keeps a missed one a 400."""
    if isinstance(exc, DataError | OverflowError):
        return True
    return isinstance(exc, StatementError) and isinstance(exc.orig, OverflowError)


def _describe(exc: Exception) -> tuple[int, str, dict[str, str], Any]:
    if _out_of_range(exc):
        log.warning("database refused a request value: %s", type(getattr(exc, "orig", exc)).__name__)
        return HTTP_400_BAD_REQUEST, "A value in the request is out of range or is not valid text.", {}, None
    if isinstance(exc, InputProblems):  # a form a handler did not re-render itself
        return exc.status, str(exc), {}, [{"key": k, "message": v} for k, v in exc.errors.items()]
    if isinstance(exc, HTTPException):
        status = exc.status_code
        detail = exc.detail if exc.detail and exc.detail != HTTPStatus(status).phrase else ""
        extra = exc.extra if isinstance(exc, ValidationException) else None
        return status, detail, dict(exc.headers or {}), extra
    return HTTP_500_INTERNAL_SERVER_ERROR, "", {}, None


FRIENDLY = {
    400: "The request couldn't be understood.",
    401: "You need to sign in to see this.",
    403: "You don't have permission to do that.",
    404: "We couldn't find that page.",
    405: "That action isn't allowed here.",
    409: "That conflicts with something that already exists.",
    413: "That upload is too large.",
    415: "Send this as application/json.",
    422: "Some of what you sent isn't valid.",
    429: "Too many attempts. Please wait a minute and try again.",
    500: "Something went wrong on our side. It has been logged.",
}


def exception_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    status, detail, headers, extra = _describe(exc)
    if status >= 500:
        log.exception("unhandled error on %s %s", request.method, request.scope["path"], exc_info=exc)
        detail = ""  # never leak internals
    title = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    message = detail or FRIENDLY.get(status, title)
    if "csrf" in message.lower():
        message = "Your form expired or came from another site. Reload the page and try again."

    if wants_json(request):
        body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": message}
        if extra:
            body["errors"] = extra
        if request.scope["path"].startswith("/api/v1/"):
            # Gitea's APIError ({"message", "url"}), which its typed clients decode, beside problem+json.
            body["message"] = message
            body["url"] = f"{request.base_url}api/swagger"
        return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)

    htmx = is_htmx(request)
    if isinstance(exc, NotAuthorizedException) and request.method in {"GET", "HEAD"} and not htmx \
            and "www-authenticate" not in {k.lower() for k in headers}:
        query = request.scope.get("query_string", b"").decode("latin-1")
        target = request.scope["path"] + (f"?{query}" if query else "")
        return Redirect(f"/account/login?next={quote(target)}", status_code=HTTP_303_SEE_OTHER)

    template = "errors/_partial.html" if htmx else "errors/page.html"
    return Template(
        template_name=template,
        context={"status": status, "title": title, "message": message},
        status_code=status,
        headers={**headers, "Cache-Control": "no-store"},
        media_type=MediaType.HTML,
    )
