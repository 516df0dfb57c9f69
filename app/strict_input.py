"""What every request must satisfy before a handler sees it: text without NULs, JSON where JSON is due.

PostgreSQL refuses ``\\x00`` in text and SQLite stores it silently, so a NUL that reaches a query
is a 500 on one engine and a bad row on the other; it is refused here at the edge, once, for the
URL (path and query), for forms (:func:`app.forms.decode_form_body`) and for JSON bodies
(:func:`app.json_input.decode_json`). Write requests under ``/api/`` that carry a body must say
``application/json`` (415 otherwise), whether or not the handler reads it.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote_to_bytes

from litestar.datastructures import FormMultiDict
from litestar.enums import RequestEncodingType, ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.plugins.htmx import HTMXRequest
from litestar.types import ASGIApp, Receive, Scope, Send
from litestar.types.empty import Empty

from app.forms import decode_form_body
from app.json_input import (
    MAX_JSON_BYTES,
    bad_input,
    decode_json,
    require_json_media_type,
)

API_PREFIX = "/api/"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Machine endpoints outside /api/ whose body is JSON by their spec (RFC 7591 §3.1).
JSON_MACHINE_PATHS = frozenset({"/oauth/register"})
# The Mastodon client API (federation/mastodon) takes forms as well as JSON: Mastodon.py and
# Phanpy post forms (docs.joinmastodon.org/client/intro/#parameters); its handlers decode either.
FORM_API_PATHS = re.compile(r"^/api/v[12]/(apps|statuses|accounts|notifications|markers|media|lists|filters"
                            r"|follow_requests|reports|tags|push|polls|domain_blocks)(/|$)")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _has_body(scope: Scope) -> bool:
    length = _header(scope, b"content-length")
    if length is not None:
        return length.strip() not in ("", "0")
    return _header(scope, b"transfer-encoding") is not None


def check_url(scope: Scope) -> None:
    """400 for a NUL anywhere in the URL, or a query string that is not UTF-8."""
    raw_path = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
    if b"\x00" in unquote_to_bytes(bytes(raw_path)) or "\x00" in scope["path"]:
        raise bad_input("The address may not contain NUL characters (%00).")
    query = unquote_to_bytes(bytes(scope.get("query_string", b"")).replace(b"+", b" "))
    if b"\x00" in query:
        raise bad_input("The query string may not contain NUL characters (%00).")
    try:
        query.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_input("The query string is not valid UTF-8.") from None


def check_json_write(scope: Scope) -> None:
    """415 for an /api/ or JSON machine write with a body that is not application/json; 413 early
    when its Content-Length already says it is too large."""
    path = scope["path"]
    if scope.get("method") not in WRITE_METHODS or not _has_body(scope):
        return
    if not (path.startswith(API_PREFIX) or path in JSON_MACHINE_PATHS) or FORM_API_PATHS.match(path):
        return
    require_json_media_type(_header(scope, b"content-type"))
    length = _header(scope, b"content-length")
    if length is not None and length.strip().isdigit() and int(length) > MAX_JSON_BYTES:
        raise bad_input(f"The JSON is larger than {MAX_JSON_BYTES} bytes.", 413)


class StrictInputMiddleware(ASGIMiddleware):
    """Runs before session, auth and every handler, so a refused request touches no database."""

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        check_url(scope)
        check_json_write(scope)
        await next_app(scope, receive, send)


class StrictInputRequest(HTMXRequest):
    """The app's request base: ``json()`` and ``form()`` decode strictly (see module doc).

    Litestar's ``data:`` parameters read the body through ``json()``, so every JSON handler gets
    these checks without doing anything; handlers that read ``request.json()`` or
    ``request.form()`` themselves get them too.
    """

    async def json(self) -> Any:
        if self._json is Empty:
            if (cached := self._connection_state.json) is not Empty:
                self._json = cached
            else:
                body = await self.body()
                if body:
                    require_json_media_type(self.headers.get("content-type"))
                self._json = self._connection_state.json = decode_json(body) if body else None
        return self._json

    async def form(self) -> FormMultiDict:
        if self._form is Empty and self.content_type[0] == RequestEncodingType.URL_ENCODED:
            # Parsed again even when the CSRF middleware already read the form with Litestar's
            # lenient parser (it builds a plain Request): the handler must see the strict result.
            self._connection_state.form = decode_form_body(await self.body())  # type: ignore[assignment]
        try:
            form = await super().form()
        except UnicodeDecodeError as exc:
            # Litestar decodes multipart fields as UTF-8 and lets the error through (a 500, even
            # before the CSRF check, which reads the form too): undecodable input is a 400.
            raise bad_input("The form is not valid UTF-8 text.") from exc
        if any(isinstance(value, str) and "\x00" in value for value in form.values()):  # multipart text fields
            raise bad_input("The form may not contain NUL characters.")
        return form
