"""Structured logging: one JSON object per line, and one access line per request."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from app.head import HEAD_AS_GET

access_log = logging.getLogger("rose_ash.access")

# The id of the request (or of the request that enqueued the job) this code runs for. A context
# variable: each request's task, and each job run, sees its own; threads started with
# ``anyio.to_thread`` copy it.
REQUEST_ID: ContextVar[str | None] = ContextVar("rose_ash_request_id", default=None)
REQUEST_ID_HEADER = "x-request-id"
# An incoming ``X-Request-ID`` is kept only when it is short and plain (a proxy's UUID or hex id),
# so a client cannot write arbitrary text, quotes or newlines into every log line of its request.
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{8,64}")


def current_request_id() -> str | None:
    return REQUEST_ID.get()


def new_request_id() -> str:
    return uuid.uuid4().hex[:16]


def accepted_request_id(value: str | bytes | None) -> str | None:
    """The incoming id when it is sane, else ``None`` (then one is generated)."""
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    return value if value is not None and _SANE_ID.fullmatch(value) else None


@contextmanager
def request_id_context(request_id: str | None) -> Iterator[None]:
    """Run the body with ``request_id`` as the current one (a job run carries its request's id)."""
    token = REQUEST_ID.set(request_id)
    try:
        yield
    finally:
        REQUEST_ID.reset(token)


class RequestIdFilter(logging.Filter):
    """Stamp every record with the current request id (``None`` outside a request or job)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        return True


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,  # which of several workers (rose-ash run -W N) said it
        }
        request_id = getattr(record, "request_id", None) or REQUEST_ID.get()
        if request_id is not None:
            entry["request_id"] = request_id
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str) -> None:
    root = logging.getLogger("rose_ash")
    jobs = logging.getLogger("app.jobs")  # the kernel's job queue and worker (app/jobs)
    if any(getattr(h, "_rose_ash", False) for h in root.handlers):
        root.setLevel(level.upper())
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter())
    handler.addFilter(RequestIdFilter())
    handler._rose_ash = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False
    # The job worker's own lines (claims, retries, the machine's worker lock) in the same JSON;
    # it still propagates, as it did, to whatever the host process configured at the root.
    jobs.addHandler(handler)
    if jobs.level == logging.NOTSET:
        jobs.setLevel(level.upper())


def request_logging_middleware(app: ASGIApp) -> ASGIApp:
    """Log method, path, status, duration and a request id (echoed as ``X-Request-Id``).

    The id is the client's (or the proxy's) ``X-Request-ID`` when it is sane, else a new one; it
    is the current id (``REQUEST_ID``) for everything the request runs, so every log line of the
    request carries it, and so does every job the request enqueues (app/jobs/queue.py).
    """

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        method = "HEAD" if scope.get("state", {}).get(HEAD_AS_GET) else str(scope.get("method", ""))
        started = time.perf_counter()
        incoming = next((v for k, v in scope["headers"] if k == b"x-request-id"), None)
        request_id = accepted_request_id(incoming) or new_request_id()
        token = REQUEST_ID.set(request_id)
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                message["headers"] = [*headers, (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await app(scope, receive, send_wrapper)
        except Exception as exc:
            # Middleware errors (CSRF, auth) are turned into responses further out.
            status = getattr(exc, "status_code", 500)
            raise
        finally:
            access_log.info(
                "%s %s %s",
                method,
                scope["path"],
                status,
                extra={"fields": {
                    "request_id": request_id,
                    "method": method,
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    "client": (scope.get("client") or ("", 0))[0],
                    "user": scope.get("rose_ash.username"),  # type: ignore[typeddict-item]
                }},
            )
            REQUEST_ID.reset(token)

    return middleware
