"""Keyset pages of a member's lists (follows, blocks, mutes) whose cursors are row ids, as the
Mastodon API pages them (docs.joinmastodon.org/api/guidelines/#pagination: ``max_id`` for older
rows, ``since_id`` for the newest rows after one, ``min_id`` for the rows right after one)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from uuid import UUID

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession

from federation.activitypub.models import Actor
from federation.social.paging import EPOCH, Cursor, newer_than, older_than

Row = TypeVar("Row")


@dataclass
class KeysetPage(Generic[Row]):
    rows: list[Row]
    actors: dict[str, Actor] = field(default_factory=dict)  # the accounts the rows name, by URI
    actor_of: dict[UUID, str] = field(default_factory=dict)  # row id -> the account it names


async def _cursor(session: AsyncSession, model: Any, row_id: UUID | None) -> Cursor | None:
    """The (created_at, id) of a row id; an id of no row (deleted meanwhile, or made up) pages
    from its own id at the epoch's end, so a stale cursor gives an empty page, not an error."""
    if row_id is None:
        return None
    row = await session.get(model, row_id)
    return Cursor(row.created_at, row.id) if row is not None else Cursor(EPOCH, UUID(int=0))


async def keyset_page(session: AsyncSession, model: Any, query: Select[Any], *, before: UUID | None,
                      after: UUID | None, oldest_first: bool, size: int) -> KeysetPage[Any]:
    """``size`` rows of ``query`` older than ``before`` and newer than ``after``, newest first
    (``oldest_first``: the ``size`` rows right after ``after``, still answered newest first)."""
    if (older := older_than(model.created_at, model.id, await _cursor(session, model, before))) is not None:
        query = query.where(older)
    if (newer := newer_than(model.created_at, model.id, await _cursor(session, model, after))) is not None:
        query = query.where(newer)
    order = (model.created_at.asc(), model.id.asc()) if oldest_first else (model.created_at.desc(), model.id.desc())
    rows = list((await session.scalars(query.order_by(*order).limit(size))).all())
    return KeysetPage(rows=rows[::-1] if oldest_first else rows)
