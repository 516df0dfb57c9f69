"""An empty database upgraded to head with `rose-ash database upgrade` matches the models exactly."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from tests.helpers.server import REPO_ROOT, ROSE_ASH

pytestmark = pytest.mark.anyio


def _upgrade(database_url: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROSE_ASH_")}
    env.update({"ROSE_ASH_DATABASE_URL": database_url, "ROSE_ASH_DATA_DIR": str(data_dir)})
    return subprocess.run([ROSE_ASH, "database", "upgrade", "--no-prompt"], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)


async def test_migrations_reach_the_models(tmp_path: Path, server_database_url: str | None) -> None:
    from advanced_alchemy.base import metadata_registry

    import app.models  # noqa: F401

    url = server_database_url or f"sqlite+aiosqlite:///{tmp_path / 'migrated.sqlite3'}"
    await _check(url, tmp_path, metadata_registry.get(None))


async def _check(url: str, tmp_path: Path, metadata: Any) -> None:
    result = _upgrade(url, tmp_path / "data")
    assert result.returncode == 0, result.stdout + result.stderr
    again = _upgrade(url, tmp_path / "data")  # idempotent at head
    assert again.returncode == 0, again.stdout + again.stderr

    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            def diff(sync_conn: Any) -> list[Any]:
                # SQLite reflects type decorators (GUID, DateTimeUTC) by storage affinity only, so
                # column types are compared on PostgreSQL; tables, columns, indexes everywhere.
                ctx = MigrationContext.configure(sync_conn, opts={"compare_type": not url.startswith("sqlite")})
                return [d for d in compare_metadata(ctx, metadata) if not _ignorable(d)]

            differences = await conn.run_sync(diff)
    finally:
        await engine.dispose()
    assert differences == []


def _ignorable(diff: Any) -> bool:
    # Alembic's own bookkeeping table is not part of the models; nor is SQLite's FTS5 search index
    # (a virtual table and its shadow tables, made by DDL beside the models: domains/market/search_models.py).
    from domains.market.search_models import FTS_TABLE

    return isinstance(diff, tuple) and diff[0] == "remove_table" and (
        diff[1].name == "alembic_version" or diff[1].name == FTS_TABLE or diff[1].name.startswith(FTS_TABLE + "_"))
