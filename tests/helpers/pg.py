"""Throw-away PostgreSQL databases for tests (one per process or per server).

Names carry the test process's id, so pytest-xdist workers never share one.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

PG_URL = os.environ.get("ROSE_ASH_TEST_DATABASE_URL", "")
PREFIX = "rose_ash_"


def _run(sql: str, database: str | None = None) -> list[Any]:
    async def go() -> list[Any]:
        url = make_url(PG_URL) if database is None else make_url(PG_URL).set(database=database)
        engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                result = await conn.execute(text(sql))
                return list(result) if result.returns_rows else []
        finally:
            await engine.dispose()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(go())
    # Called from an async test (app_server is sync): run on a thread with a loop of its own.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, go()).result()


def url_for(name: str) -> str:
    return make_url(PG_URL).set(database=name).render_as_string(hide_password=False)


def create_database(label: str = "t", template: str | None = None) -> str:
    name = f"{PREFIX}{label}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    _run(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return name


def drop_database(name: str) -> None:
    _run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def pg_database(label: str = "t") -> Iterator[str]:
    """Create an empty database next to ROSE_ASH_TEST_DATABASE_URL and drop it afterwards."""
    name = create_database(label)
    try:
        yield url_for(name)
    finally:
        drop_database(name)


def is_throwaway_and_empty(url: str) -> bool:
    """True for a database :func:`pg_database` made that holds no table yet."""
    name = make_url(url).database or ""
    if not name.startswith(PREFIX) or make_url(url).host != make_url(PG_URL).host:
        return False
    return not _run("SELECT 1 FROM pg_tables WHERE schemaname = 'public' LIMIT 1", database=name)


def recreate_from_template(url: str, template: str) -> None:
    """Replace the (empty) database ``url`` names with a copy of ``template`` (same name, so the
    caller's URL and its final DROP stay valid). CREATE DATABASE … TEMPLATE copies files: far
    cheaper than running the migrations again."""
    name = make_url(url).database
    _run(f'DROP DATABASE "{name}" WITH (FORCE)')
    _run(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
