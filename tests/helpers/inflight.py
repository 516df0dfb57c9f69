"""Wait, without sleeping, until a database statement is stuck behind another transaction's lock.

Tests of lock waits used to ``sleep(0.3)`` and hope the waiter had got that far. Instead: the
engine's cursor events say which statements the driver is executing right now; a statement that
was sent and has not come back while another transaction holds the lock it needs is waiting. On
PostgreSQL that is also confirmed from ``pg_locks`` (a lock request not yet granted), so the test
knows the waiter is blocked, not merely slow.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine


class InFlight:
    """Statements the driver is executing now, by the connection that sent them."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.running: dict[int, str] = {}
        self._sent = anyio.Event()

    def _before(self, conn: Any, statement: Any, *args: Any) -> None:
        # Runs on the event loop's thread (SQLAlchemy's asyncio greenlet), so it may set the Event.
        self.running[id(conn)] = str(statement)
        self._sent.set()

    def _after(self, conn: Any, *args: Any) -> None:
        self.running.pop(id(conn), None)

    def _error(self, context: Any) -> None:
        self.running.pop(id(context.connection), None)

    async def wait_blocked(self, contains: str, *, seconds: float = 30.0) -> None:
        """Return once a statement containing ``contains`` (case-insensitive; "" for any) has been
        sent and not answered; on PostgreSQL, once its backend also waits for a lock. Fails after ``seconds``."""
        needle = contains.lower()
        with anyio.fail_after(seconds):
            while not any(needle in s.lower() for s in list(self.running.values())):
                self._sent = anyio.Event()
                await self._sent.wait()
            if self.engine.dialect.name == "postgresql":
                for _poll in itertools.count():  # bounded by fail_after
                    if await self._pg_lock_waiter():
                        break
                    await anyio.sleep(0.005)

    async def _pg_lock_waiter(self) -> bool:
        async with self.engine.connect() as conn:
            waiting = await conn.scalar(text(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE NOT l.granted AND a.datname = current_database()"))
        return bool(waiting)


@contextmanager
def in_flight(engine: AsyncEngine) -> Iterator[InFlight]:
    watch = InFlight(engine)
    sync = engine.sync_engine
    # Statement level, not cursor level: app.db's before_cursor_execute hook may itself be what
    # blocks (it sends BEGIN IMMEDIATE), and a cursor-level listener would only run after it.
    event.listen(sync, "before_execute", watch._before)
    event.listen(sync, "after_execute", watch._after)
    event.listen(sync, "handle_error", watch._error)
    try:
        yield watch
    finally:
        event.remove(sync, "before_execute", watch._before)
        event.remove(sync, "after_execute", watch._after)
        event.remove(sync, "handle_error", watch._error)
