"""Database configuration: advanced-alchemy on SQLite (embedded default) or PostgreSQL."""

from __future__ import annotations

import re
from collections import deque
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

from advanced_alchemy.extensions.litestar import (
    AlembicAsyncConfig,
    AsyncSessionConfig,
    SQLAlchemyAsyncConfig,
)
from sqlalchemy import Connection, event, make_url
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
    SQLiteDialect_aiosqlite,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction

from app.settings import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


_WROTE = "rose_ash.wrote"
_SETTINGS = "rose_ash.settings"


def make_sessionmaker(engine: AsyncEngine, settings: Settings) -> async_sessionmaker[AsyncSession]:
    """Sessions outside a request (worker, CLI) carry the settings, as request sessions do."""
    return async_sessionmaker(engine, expire_on_commit=False, info={_SETTINGS: settings})


def settings_of(session: AsyncSession | Session) -> Settings | None:
    """The settings of the app or process that opened ``session`` (None for a bare session)."""
    sync = session.sync_session if isinstance(session, AsyncSession) else session
    found = sync.info.get(_SETTINGS)
    return found if isinstance(found, Settings) else None


def wrote_in_transaction(session: AsyncSession | Session) -> bool:
    """True once the session's current transaction has flushed or executed a write.

    Such a transaction holds locks (SQLite's single write lock; PostgreSQL row locks) until it
    ends, so code that would wait on the network asks this first (federation fetches do).
    """
    sync = session.sync_session if isinstance(session, AsyncSession) else session
    return bool(sync.info.get(_WROTE))


@event.listens_for(Session, "after_flush")
def _flushed(session: Session, _context: object) -> None:
    session.info[_WROTE] = True


@event.listens_for(Session, "do_orm_execute")
def _executed(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        state.session.info[_WROTE] = True


@event.listens_for(Session, "after_transaction_end")
def _ended(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_WROTE, None)


def lost_snapshot(exc: BaseException) -> bool:
    """True for SQLite's SQLITE_BUSY_SNAPSHOT: a transaction that began by reading tried to write
    after another connection committed. :func:`make_engine` makes every SQLite transaction that
    writes start as ``BEGIN IMMEDIATE`` (a savepoint's included), so this no longer happens; it
    is kept for callers that still retry on it.
    """
    orig = getattr(exc, "orig", None)
    return getattr(orig, "sqlite_errorname", "") == "SQLITE_BUSY_SNAPSHOT"


def database_error(exc: BaseException) -> DBAPIError | None:
    """The driver's own error behind ``exc`` (``sqlite3.OperationalError: database is locked``,
    an asyncpg error), or None.

    advanced-alchemy's repositories re-raise every ``StatementError`` (a locked database
    included) as its ``IntegrityError("There was an issue processing the statement.")``; the
    real error is further down the exception chain, and this finds it.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DBAPIError) and current.orig is not None:
            return current
        current = current.__cause__ or current.__context__
    return None


# SQLite waits this long for the write lock before failing with "database is locked". Writes
# are short (no transaction that writes waits on the network, see wrote_in_transaction), so a
# writer waiting this long means a wedge somewhere, which must surface rather than hang. The job
# worker's bound on its shielded outcome writes is longer, so it never cancels a write that is
# still waiting here (a cancelled aiosqlite call would run on in its thread, unsupervised).
SQLITE_BUSY_TIMEOUT = 20.0


# Seconds a PostgreSQL connection is reused: well under the usual idle timeouts of servers,
# PgBouncer and NAT/firewalls (often 10 min to hours).
POOL_RECYCLE = 300


def make_engine(database_url: str, *, busy_timeout: float = SQLITE_BUSY_TIMEOUT) -> AsyncEngine:
    if database_url.startswith("sqlite"):
        return _sqlite_engine(database_url, busy_timeout)
    # No pool_pre_ping: it costs a round trip on every checkout, i.e. every request. Instead
    # connections are recycled before any server or proxy idle timeout can have closed them
    # (POOL_RECYCLE), and a connection found dead anyway (a database restart) is a disconnect
    # error SQLAlchemy recognises: that request fails once and the pool invalidates every
    # connection opened before it, so the next checkouts connect afresh.
    return create_async_engine(database_url, pool_size=10, max_overflow=10, pool_recycle=POOL_RECYCLE)


def _sqlite_engine(database_url: str, busy_timeout: float) -> AsyncEngine:
    """SQLite with WAL and no read-to-write lock upgrades.

    The sqlite3 module opens a transaction only before the first INSERT/UPDATE/DELETE, so
    plain reads run in autocommit (WAL: beside the writer, never blocking it). With
    ``isolation_level="IMMEDIATE"`` that transaction begins as ``BEGIN IMMEDIATE``: it takes
    the write lock first, waiting up to the busy timeout. A deferred transaction that has read
    and then writes would instead fail at once with SQLITE_BUSY while another connection
    writes (SQLite calls the busy handler only for a connection with no transaction open), or
    with SQLITE_BUSY_SNAPSHOT once that writer has committed. SAVEPOINT is the one statement
    that would open a deferred transaction; :class:`LazySavepointSQLiteDialect` holds it back
    until the first write. Why not one writer connection beside a read pool: README, "How it
    is built".
    """
    path = database_url.split(":///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    url = make_url(database_url)
    if url.drivername == "sqlite+aiosqlite":
        url = url.set(drivername=f"sqlite+{_LAZY_SAVEPOINT_DRIVER}")
    engine = create_async_engine(
        url,
        # ``timeout`` is the sqlite3 module's busy timeout (sqlite3_busy_timeout), in seconds.
        connect_args={"timeout": busy_timeout, "isolation_level": "IMMEDIATE"},
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
        # WAL lets readers run beside the single writer; foreign keys are off by default.
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    event.listen(engine.sync_engine, "before_cursor_execute", _open_pending_savepoints)
    return engine


# Savepoints asked for outside a transaction, per sqlite3 connection, not yet sent to SQLite.
_pending_savepoints: WeakKeyDictionary[Any, list[str]] = WeakKeyDictionary()
_WRITE = re.compile(r"\s*(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)
_LAZY_SAVEPOINT_DRIVER = "aiosqlite_lazy_savepoints"


def _run_statement(conn: Any, operation: Any, parameters: Any) -> tuple[Any, list[Any], int, int]:
    """In aiosqlite's thread: execute, fetch everything and close, as SQLAlchemy's cursor does."""
    cursor = conn.cursor()
    try:
        cursor.execute(operation, () if parameters is None else parameters)
        if cursor.description:
            return cursor.description, cursor.fetchall(), -1, -1
        return None, [], cursor.lastrowid, cursor.rowcount
    finally:
        cursor.close()


class _OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """SQLAlchemy's aiosqlite cursor, making one trip to aiosqlite's thread per statement, not four.

    The stock adapter awaits ``cursor()``, ``execute()``, ``fetchall()`` and ``close()`` one by
    one, each a hand-off to the connection's thread and back. On a busy machine every hand-off
    waits for the scheduler and the GIL, which made a page of six queries wait for twenty-four of
    them (bench/pages.py). Same statements, same results, same errors, one hand-off.
    """

    __slots__ = ()

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        try:
            description, rows, lastrowid, rowcount = self.await_(
                self._connection._execute(_run_statement, self._connection._conn, operation, parameters))
        except Exception as error:
            self._adapt_connection._handle_exception(error)
            raise  # _handle_exception always raises
        self.description = description
        self._rows = deque(rows)
        self.lastrowid, self.rowcount = lastrowid, rowcount


class _OneTripConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()

    def cursor(self, server_side: bool = False) -> AsyncAdapt_aiosqlite_cursor:
        return super().cursor(server_side) if server_side else _OneTripCursor(self)


class _OneTripDBAPI(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> AsyncAdapt_aiosqlite_connection:
        connection = super().connect(*arg, **kw)
        if type(connection) is AsyncAdapt_aiosqlite_connection:
            connection.__class__ = _OneTripConnection  # same slots: only the cursor differs
        return connection


class LazySavepointSQLiteDialect(SQLiteDialect_aiosqlite):
    """aiosqlite whose SAVEPOINT, outside a transaction, waits for the first write.

    A SAVEPOINT with no transaction open would begin a deferred one: its reads would pin a
    snapshot and its first write could then not wait for the lock (see :func:`_sqlite_engine`).
    Held back, the reads run in autocommit like any other read, and the first write sends
    ``BEGIN IMMEDIATE`` and the SAVEPOINT just before itself. Rolling back or releasing a
    savepoint that never wrote has nothing to undo, so nothing is sent. Code that reads,
    fetches and then writes inside ``begin_nested()`` (the inbox processor) thus holds no lock
    while it reads or fetches; a read that must stay true until the write says so with
    ``with_for_update()``, which takes the write lock (:func:`_locks_for_update`).
    """

    supports_statement_cache = True

    @classmethod
    def import_dbapi(cls) -> AsyncAdapt_aiosqlite_dbapi:  # type: ignore[override]
        import sqlite3

        import aiosqlite

        return _OneTripDBAPI(aiosqlite, sqlite3)

    def do_savepoint(self, connection: Connection, name: str) -> None:
        driver = connection.connection.driver_connection
        if driver is not None and not driver.in_transaction:
            _pending_savepoints.setdefault(driver, []).append(name)
            return
        super().do_savepoint(connection, name)  # type: ignore[no-untyped-call]

    def do_rollback_to_savepoint(self, connection: Connection, name: str) -> None:
        if not _forget_savepoint(connection, name):
            super().do_rollback_to_savepoint(connection, name)  # type: ignore[no-untyped-call]

    def do_release_savepoint(self, connection: Connection, name: str) -> None:
        if not _forget_savepoint(connection, name):
            super().do_release_savepoint(connection, name)  # type: ignore[no-untyped-call]

    def do_rollback(self, dbapi_connection: Any) -> None:
        _pending_savepoints.pop(getattr(dbapi_connection, "driver_connection", None) or dbapi_connection, None)
        if _no_transaction(dbapi_connection):
            return
        super().do_rollback(dbapi_connection)  # type: ignore[no-untyped-call]

    def do_commit(self, dbapi_connection: Any) -> None:
        _pending_savepoints.pop(getattr(dbapi_connection, "driver_connection", None) or dbapi_connection, None)
        if _no_transaction(dbapi_connection):
            return
        super().do_commit(dbapi_connection)  # type: ignore[no-untyped-call]


def _no_transaction(dbapi_connection: Any) -> bool:
    """True when SQLite has no transaction open on this connection: reads ran in autocommit (see
    :func:`_sqlite_engine`), so COMMIT and ROLLBACK have nothing to end. The sqlite3 module then
    does nothing for either, but aiosqlite still hands each to its thread and back; a read-only
    request ended with two such trips (the session's commit, the pool's reset on return), each
    waiting for the scheduler on a busy machine. ``in_transaction`` reads the connection's state
    without a trip (as :meth:`LazySavepointSQLiteDialect.do_savepoint` does)."""
    driver = getattr(dbapi_connection, "driver_connection", None)
    return driver is not None and not driver.in_transaction


def _forget_savepoint(connection: Connection, name: str) -> bool:
    """Drop ``name`` (and savepoints opened inside it) if it was never sent; True if so."""
    pending = _pending_savepoints.get(connection.connection.driver_connection)
    if not pending or name not in pending:
        return False
    del pending[pending.index(name):]
    return True


def _locks_for_update(context: Any) -> bool:
    """``select(...).with_for_update()``: SQLite has no row locks and drops the clause, so the
    read that means to write takes the write lock instead, as a row lock would on PostgreSQL."""
    compiled = getattr(context, "compiled", None)
    return getattr(getattr(compiled, "statement", None), "_for_update_arg", None) is not None


def _open_pending_savepoints(conn: Connection, cursor: Any, statement: str, _parameters: Any,
                             context: Any, _executemany: bool) -> None:
    """Before a write (or a read FOR UPDATE): BEGIN IMMEDIATE and the held-back savepoints."""
    driver = conn.connection.driver_connection
    if driver is None:
        return
    pending = _pending_savepoints.get(driver)
    if _locks_for_update(context):
        pass
    elif not pending or not _WRITE.match(statement):
        return  # a plain write outside a savepoint: the sqlite3 module sends BEGIN IMMEDIATE itself
    sql = "" if driver.in_transaction else "BEGIN IMMEDIATE"  # waits (busy timeout); nothing read yet
    try:
        if sql:
            cursor.execute(sql)
        for name in pending or ():
            sql = f"SAVEPOINT {conn.dialect.identifier_preparer.quote(name)}"
            cursor.execute(sql)
    except conn.dialect.loaded_dbapi.Error as exc:
        # As SQLAlchemy reports the statement's own errors ("database is locked" after the
        # busy timeout): an OperationalError naming the statement.
        raise DBAPIError.instance(sql, None, exc, conn.dialect.loaded_dbapi.Error) from exc
    if pending:
        pending.clear()


registry.register(f"sqlite.{_LAZY_SAVEPOINT_DRIVER}", __name__, "LazySavepointSQLiteDialect")


def make_alchemy_config(settings: Settings, engine: AsyncEngine | None = None) -> SQLAlchemyAsyncConfig:
    return SQLAlchemyAsyncConfig(
        engine_instance=engine or make_engine(settings.database_url),
        # Plain "autocommit" rolls back on a 303, which would lose every PRG form post.
        before_send_handler="autocommit_include_redirects",
        session_config=AsyncSessionConfig(expire_on_commit=False, info={_SETTINGS: settings}),
        alembic_config=AlembicAsyncConfig(
            script_location=str(MIGRATIONS_DIR),
            version_table_name="alembic_version",
            render_as_batch=True,
        ),
        create_all=False,
    )
