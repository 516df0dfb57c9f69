"""Throw-away PostgreSQL databases for tests (one per process or per server)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

PG_URL = os.environ.get("ROSE_ASH_TEST_DATABASE_URL", "")


def _run(sql: str) -> None:
    async def go() -> None:
        engine = create_async_engine(make_url(PG_URL), isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(text(sql))
        finally:
            await engine.dispose()

    asyncio.run(go())


@contextmanager
def pg_database(label: str = "t") -> Iterator[str]:
    """Create an empty database next to ROSE_ASH_TEST_DATABASE_URL and drop it afterwards."""
    name = f"rose_ash_{label}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    _run(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        _run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
