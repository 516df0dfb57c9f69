"""Per-request overhead that serves no request: SQLite's empty COMMIT/ROLLBACK trips, and the
server's start-up heap left out of garbage collection (app/db.py, app/asgi.py)."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import Column, Integer, MetaData, Table, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from app.asgi import create_app, freeze_startup_heap
from app.settings import Settings

pytestmark = pytest.mark.anyio

metadata = MetaData()
counter = Table("test_overhead_counter", metadata, Column("id", Integer, primary_key=True), Column("n", Integer))


async def test_sqlite_sends_commit_and_rollback_only_for_a_transaction_that_wrote(
    engine: AsyncEngine, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's autocommit reads")
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await conn.execute(counter.insert().values(id=1, n=0))
    trips: list[str] = []
    original_commit, original_rollback = aiosqlite.Connection.commit, aiosqlite.Connection.rollback

    async def commit(self: aiosqlite.Connection) -> None:
        trips.append("commit")
        await original_commit(self)

    async def rollback(self: aiosqlite.Connection) -> None:
        trips.append("rollback")
        await original_rollback(self)

    monkeypatch.setattr(aiosqlite.Connection, "commit", commit)
    monkeypatch.setattr(aiosqlite.Connection, "rollback", rollback)
    sm = async_sessionmaker(engine, expire_on_commit=False)

    # A read-only request: its reads ran in autocommit, so neither the commit nor the pool's
    # reset on return has anything to end.
    async with sm() as session, session.begin():
        assert await session.scalar(select(counter.c.n)) == 0
    assert trips == []

    async with sm() as session, session.begin():
        await session.execute(update(counter).values(n=counter.c.n + 1))
    assert trips == ["commit"]

    trips.clear()
    with pytest.raises(RuntimeError, match="refused"):
        async with sm() as session, session.begin():
            await session.execute(update(counter).values(n=counter.c.n + 100))
            raise RuntimeError("refused")
    assert trips == ["rollback"]
    async with sm() as session:
        assert await session.scalar(select(counter.c.n)) == 1  # the committed write kept, the other undone


async def test_the_server_app_freezes_its_start_up_heap_last(settings: Settings) -> None:
    app = create_app(settings)
    assert app.on_startup[-1] is freeze_startup_heap
    garbage = _Node()
    garbage.me = garbage  # a cycle only the collector frees
    gone = weakref.ref(garbage)
    del garbage
    try:
        freeze_startup_heap()
        assert gc.get_freeze_count() > 0
        assert gone() is None  # start-up garbage is collected first, not frozen for good
    finally:
        gc.unfreeze()


class _Node:
    me: Any = None
