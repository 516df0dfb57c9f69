"""Keyset paging for the social hub's lists, newest first.

A page link carries the sort key of the last row shown (``?before=<µs since epoch>_<row id>``), so
the next page starts right after it however many rows arrive meanwhile (no OFFSET drift, as with
Mastodon's ``max_id``), and still works when that row has since been deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit
from uuid import UUID

from litestar.exceptions import ClientException
from sqlalchemy import ColumnElement, and_, or_

# Page sizes (read at call time, so tests can make pages short).
TIMELINE_SIZE = 40
LIST_SIZE = 50  # followers, following, notifications
PROFILE_SIZE = 20

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Cursor:
    at: datetime
    id: UUID

    def token(self) -> str:
        return f"{(self.at - EPOCH) // MICROSECOND}_{self.id.hex}"  # integers: exact to the µs


def parse_cursor(value: str | None) -> Cursor | None:
    """The cursor of a ``before`` query value; a malformed one is a 400 a person can act on."""
    if not value:
        return None
    micros, _, row = value.partition("_")
    try:
        return Cursor(EPOCH + int(micros) * MICROSECOND, UUID(hex=row))
    except (ValueError, OverflowError):
        raise ClientException(
            f"{value!r} is not a page position. Follow the Older link from the first page instead.") from None


def older_than(at: Any, row_id: Any, cursor: Cursor | None) -> ColumnElement[bool] | None:
    """``(at, row_id) < cursor`` as a condition both SQLite and PostgreSQL can use an index for."""
    if cursor is None:
        return None
    return or_(at < cursor.at, and_(at == cursor.at, row_id < cursor.id))


def newer_than(at: Any, row_id: Any, cursor: Cursor | None) -> ColumnElement[bool] | None:
    """``(at, row_id) > cursor``: the other direction, for the Mastodon API's ``since_id``/``min_id``."""
    if cursor is None:
        return None
    return or_(at > cursor.at, and_(at == cursor.at, row_id > cursor.id))


def cut(rows: list[Any], size: int, key: Any) -> tuple[list[Any], str]:
    """The first ``size`` of ``rows`` (fetched newest first, at least ``size + 1`` of them when
    more exist) and the ``before`` token for the next page ("" on the last page)."""
    if len(rows) <= size:
        return rows, ""
    page = rows[:size]
    at, row_id = key(page[-1])
    return page, Cursor(at, row_id).token()


def page_link(url: str, token: str) -> str:
    """The URL of the next page: ``url`` (its own query kept, as a lookup's ``q``) plus ``before``."""
    if not token:
        return ""
    parts = urlsplit(url)
    params = [(k, v) for k, v in parse_qsl(parts.query) if k != "before"]
    return f"{parts.path}?{urlencode([*params, ('before', token)])}"
