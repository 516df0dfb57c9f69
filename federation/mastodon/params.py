"""Reading a Mastodon API request: its parameters (form, multipart or JSON, ``name[]`` arrays),
its paging (``limit``, ``max_id``, ``since_id``, ``min_id``) and the ``Link`` header it answers with.

Paging follows docs.joinmastodon.org/api/guidelines/#pagination: ``max_id`` pages to older items,
``since_id`` asks for the newest items after one, ``min_id`` for the items immediately after one
(oldest first internally, shown newest first). Ids are our row UUIDs; a cursor is the
(timestamp, id) of the row an id names, so pages stay stable while new items arrive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlencode
from uuid import UUID

from litestar import Request
from litestar.exceptions import ClientException

Row = TypeVar("Row")
MAX_PARAMS = 200  # names in one request body: more is not a client, it is a fuzzer


def bad_request(message: str) -> ClientException:
    return ClientException(message, status_code=400)


async def body_params(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The body's parameters: a JSON object as it is; a form with ``name[]`` fields as lists.
    Malformed or too deeply nested JSON is a 400 (``app.strict_input`` decodes it)."""
    media = request.content_type[0]
    if media == "application/json":
        body = await request.json()
        if body is None:
            return {}
        if not isinstance(body, dict):
            raise bad_request("The JSON body must be an object.")
        return body
    if media in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.form()
        out: dict[str, Any] = {}
        for key in list(dict.fromkeys(form.keys()))[:MAX_PARAMS]:
            values = [v for v in form.getall(key) if isinstance(v, str)]
            if key.endswith("[]"):
                out[key[:-2]] = values
            elif values:
                out[key] = values[-1]
        return out
    return {}


def text(params: dict[str, Any], name: str, default: str = "") -> str:
    value = params.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ClientException(f"'{name}' must be text.", status_code=422)
    return str(value)


def flag(params: dict[str, Any], name: str) -> bool:
    value = params.get(name, False)
    return value is True or (isinstance(value, str) and value.lower() in ("1", "true", "on"))


def some_id(value: str | None, name: str) -> UUID | None:
    """An id parameter: ours are UUIDs; anything else is a 400 (not an empty page)."""
    if value is None or value == "":
        return None
    try:
        return UUID(value)
    except ValueError:
        raise bad_request(f"'{name}' is not an id.") from None


@dataclass(frozen=True, slots=True)
class Paging:
    limit: int
    max_id: UUID | None
    since_id: UUID | None
    min_id: UUID | None


def paging(request: Request[Any, Any, Any], *, default: int = 20, cap: int = 40) -> Paging:
    """Mastodon's limits: 20 by default, at most 40 (80 for accounts); a limit that is not a
    number is a 400, one out of range is clamped, as Mastodon does."""
    query = request.query_params
    raw = query.get("limit")
    if raw in (None, ""):
        limit = default
    else:
        try:
            limit = int(raw)
        except ValueError:
            raise bad_request("'limit' must be a number.") from None
    return Paging(limit=max(1, min(cap, limit)), max_id=some_id(query.get("max_id"), "max_id"),
                  since_id=some_id(query.get("since_id"), "since_id"), min_id=some_id(query.get("min_id"), "min_id"))


def one_more(page_of: Paging) -> int:
    """The rows to ask a list for: one beyond the page tells whether an older page exists (a
    ``rel="next"`` link only then), without counting anything."""
    return page_of.limit + 1


def trim(rows: list[Row], page_of: Paging) -> tuple[list[Row], bool]:
    """The page of ``rows`` (fetched newest first with :func:`one_more`) and whether older rows
    exist past it. For ``min_id`` the rows are the oldest after it, answered newest first: the
    extra one is then the newest, and older rows always exist (the ``min_id`` row itself). Under
    ``since_id`` too, so a page bounded below has a next link whenever it has rows."""
    if page_of.min_id is not None:
        return rows[-page_of.limit:] if len(rows) > page_of.limit else rows, bool(rows)
    return rows[:page_of.limit], len(rows) > page_of.limit or (page_of.since_id is not None and bool(rows))


def link_header(base: str, request: Request[Any, Any, Any], ids: list[str], *, more: bool) -> dict[str, str]:
    """``Link: <…max_id=LAST>; rel="next", <…min_id=FIRST>; rel="prev"``, the request's other query
    parameters kept (Mastodon.py and masto.js page only by this header). ``next`` only when
    ``more`` (older rows exist), so a client walking the list stops at the short last page instead
    of asking once more for an empty one; ``prev`` on every page with rows, as Mastodon answers.
    Nothing for an empty page."""
    if not ids:
        return {}
    kept = [(k, v) for k, v in request.query_params.multi_items() if k not in ("max_id", "since_id", "min_id")]
    url = base + request.url.path + "?"
    newer = f'<{url + urlencode([*kept, ("min_id", ids[0])])}>; rel="prev"'
    if not more:
        return {"Link": newer}
    return {"Link": f'<{url + urlencode([*kept, ("max_id", ids[-1])])}>; rel="next", {newer}'}
