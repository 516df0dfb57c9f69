"""What every ``rose-ash`` command group shares: the app's settings, one database session, errors.

Kernel code, so domain CLI modules (``domains/*/cli.py``, ``forge/cli.py``...) can use it without
importing the composition root's ``app.cli``.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, NoReturn, TypeVar

import click

from app.db import database_error

if TYPE_CHECKING:
    from litestar import Litestar
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

    from app.settings import Settings

__all__ = [
    "NOT_MIGRATED", "explain_unmigrated", "fail", "require_migrated", "schema_is_current", "settings_from",
    "with_session",
]

T = TypeVar("T")

NOT_MIGRATED = "error: the database is not migrated: run `rose-ash database upgrade`"


def settings_from(ctx: click.Context) -> Settings:
    """The settings of the app the ``rose-ash`` command loaded."""
    app: Litestar = ctx.obj.app
    settings: Settings = app.state.settings
    return settings


def fail(errors: dict[str, str]) -> NoReturn:
    for name, message in errors.items():
        click.echo(f"error: {name}: {message}", err=True)
    sys.exit(1)


async def schema_is_current(engine: AsyncEngine) -> bool:
    """Whether the database's Alembic revision is the newest the code knows."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from app.db import MIGRATIONS_DIR

    heads = set(ScriptDirectory(str(MIGRATIONS_DIR)).get_heads())
    async with engine.connect() as conn:
        current = await conn.run_sync(lambda sync: set(MigrationContext.configure(sync).get_current_heads()))
    return current == heads


def with_session(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` in one transaction on the configured database (see :func:`explain_unmigrated`)."""
    from app.db import make_engine, make_sessionmaker

    async def run() -> T:
        engine = make_engine(settings.database_url)
        try:
            async with make_sessionmaker(engine, settings)() as session, session.begin():
                return await work(session)
        finally:
            await engine.dispose()

    with explain_unmigrated(settings):
        return asyncio.run(run())


# "no such table: users", "table users has no column named x" (SQLite); undefined_table and
# undefined_column (PostgreSQL SQLSTATE 42P01, 42703).
_MISSING_SCHEMA = ("no such table", "no such column", "has no column named", "UndefinedTableError",
                   "UndefinedColumnError")
_MISSING_SQLSTATES = ("42P01", "42703")


def _missing_schema(exc: BaseException) -> bool:
    error = database_error(exc)
    if error is None:
        return False
    sqlstate = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
    return sqlstate in _MISSING_SQLSTATES or any(text in str(error.orig) for text in _MISSING_SCHEMA)


@contextmanager
def explain_unmigrated(settings: Settings) -> Iterator[None]:
    """A missing table or column in a database behind the migrations: one line naming the fix.

    Not the driver's traceback. Checked only after such a failure, so the happy path pays
    nothing, and a failure for any other reason keeps its own error.
    """
    from app.db import make_engine

    async def current() -> bool:
        engine = make_engine(settings.database_url)
        try:
            return await schema_is_current(engine)
        finally:
            await engine.dispose()

    try:
        yield
    except Exception as exc:
        if not _missing_schema(exc) or asyncio.run(current()):
            raise
        click.echo(NOT_MIGRATED, err=True)
        sys.exit(1)


def require_migrated(settings: Settings) -> None:
    """Exit with the one-line hint now, rather than a worker that logs a missing table forever."""
    from sqlalchemy import select

    from app.jobs.models import Job

    async def probe(session: AsyncSession) -> None:
        await session.execute(select(Job.id).limit(0))

    with_session(settings, probe)
