"""Database configuration: advanced-alchemy on SQLite (embedded default) or PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from advanced_alchemy.extensions.litestar import (
    AlembicAsyncConfig,
    AsyncSessionConfig,
    SQLAlchemyAsyncConfig,
)
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction

from app.settings import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


_WROTE = "rose_ash.wrote"
_SETTINGS = "rose_ash.settings"


def make_sessionmaker(engine: AsyncEngine, settings: Settings) -> async_sessionmaker[AsyncSession]:
    """Sessions outside a request (worker, CLI) carry the settings, as request sessions do."""
    return async_sessionmaker(engine, expire_on_commit=False, info={_SETTINGS: settings})


def settings_of(session: AsyncSession) -> Settings | None:
    """The settings of the app or process that opened ``session`` (None for a bare session)."""
    found = session.sync_session.info.get(_SETTINGS)
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
    """True for SQLite's SQLITE_BUSY_SNAPSHOT: a transaction that began by reading (a SAVEPOINT
    opens a deferred one) tried to write after another connection committed. SQLite fails it at
    once, without the busy timeout; rolled back and run again, the work sees a fresh snapshot.
    """
    orig = getattr(exc, "orig", None)
    return getattr(orig, "sqlite_errorname", "") == "SQLITE_BUSY_SNAPSHOT"


def make_engine(database_url: str) -> AsyncEngine:
    if database_url.startswith("sqlite"):
        path = database_url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(database_url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets readers run beside the single writer; busy_timeout makes writers wait
            # instead of failing; foreign keys are off by default in SQLite.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_async_engine(database_url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def make_alchemy_config(settings: Settings, engine: AsyncEngine | None = None) -> SQLAlchemyAsyncConfig:
    import app.models  # noqa: F401  (registers every table on the shared metadata)

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
