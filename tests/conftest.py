"""Shared fixtures: every database test runs on SQLite and, when configured, on PostgreSQL.

``ROSE_ASH_TEST_DATABASE_URL`` (a PostgreSQL URL) and ``ROSE_ASH_TEST_REDIS_URL`` switch the
PostgreSQL leg and the Redis-backed stores on. With ``CI=true`` they are required: a missing
service fails the run instead of skipping it.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.settings import Settings

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PG_URL = os.environ.get("ROSE_ASH_TEST_DATABASE_URL", "")
REDIS_URL = os.environ.get("ROSE_ASH_TEST_REDIS_URL", "")

if IN_CI and not PG_URL:
    raise pytest.UsageError("CI=true but ROSE_ASH_TEST_DATABASE_URL is not set")
if IN_CI and not REDIS_URL:
    raise pytest.UsageError("CI=true but ROSE_ASH_TEST_REDIS_URL is not set")

DB_KINDS = ["sqlite", *(["postgresql"] if PG_URL else [])]


def require_tool(name: str) -> str:
    """Return the path of an external tool; skip without it, but fail under CI."""
    path = shutil.which(name)
    if path:
        return path
    if IN_CI:
        pytest.fail(f"{name} is required in CI but is not installed")
    pytest.skip(f"{name} is not installed")


@pytest.fixture
def browser_binary() -> str:
    """Path of headless Chromium for browser tests; skip without it, fail under CI."""
    from tests.helpers.cdp import chromium_path

    path = chromium_path()
    if path is None:
        if IN_CI:
            pytest.fail("chromium is required in CI but is not installed")
        pytest.skip("chromium is not installed")
    return path


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """One throw-away PostgreSQL database per test process, so parallel runs never collide."""
    if not PG_URL:
        yield ""
        return
    from tests.helpers.pg import pg_database as make_database

    with make_database("test") as url:
        yield url


@pytest.fixture
def server_database_url(db_kind: str) -> Iterator[str | None]:
    """For e2e servers: None means the embedded SQLite default; PostgreSQL gets a fresh database."""
    if db_kind == "sqlite":
        yield None
        return
    from tests.helpers.pg import pg_database as make_database

    with make_database("e2e") as url:
        yield url


@pytest.fixture(params=DB_KINDS)
def db_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(db_kind: str, tmp_path: Path, pg_database: str) -> str:
    if db_kind == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'test.sqlite3'}"
    return pg_database


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """A database with every table created empty (PostgreSQL tables are reset per test)."""
    from advanced_alchemy.base import metadata_registry

    import app.models  # noqa: F401
    from app.db import make_engine

    metadata = metadata_registry.get(None)
    eng = make_engine(database_url)
    async with eng.begin() as conn:
        await conn.run_sync(metadata.drop_all)
        await conn.run_sync(metadata.create_all)
    try:
        yield eng
    finally:
        await eng.dispose()


@pytest.fixture
async def db_session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with maker() as session:
        yield session


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings.from_env(
        {},
        data_dir=tmp_path / "data",
        database_url=database_url,
        redis_url=REDIS_URL or None,
        redis_namespace=f"rose-ash-test-{uuid.uuid4().hex[:8]}",
        secret_key="test-secret-key-not-for-production-0123456789",
        worker_in_process=False,
        auth_rate_limit=1000,
    )


@pytest.fixture
async def app(settings: Settings, engine: AsyncEngine):  # type: ignore[no-untyped-def]
    from app import create_app

    return create_app(settings)


@pytest.fixture
async def client(app):  # type: ignore[no-untyped-def]
    from litestar.testing import AsyncTestClient

    async with AsyncTestClient(app=app, base_url="http://127.0.0.1:8000") as c:
        c.follow_redirects = False  # tests look at each 303 themselves
        yield c


# --- Which store backs the app: memory (as `make run`) or Redis (issue 13 item 7) ----------------
# Modules whose tests exercise the stores (sessions, CSRF, rate limits, the SSO and fragment
# stores) override ``settings`` with ``on_store(settings, store_kind)``. The other modules keep
# whatever the suite's ``settings`` gives them.


def on_store(settings: Settings, store_kind: str) -> Settings:
    import msgspec

    return msgspec.structs.replace(settings, redis_url=REDIS_URL if store_kind == "redis" else None)


@pytest.fixture
def store_kind(db_kind: str) -> str:
    """The SQLite leg runs on the in-process memory stores (what `make run` uses), the PostgreSQL
    leg on Redis (the container deployment), so CI covers both paths without running a test
    twice. With Redis but no PostgreSQL configured, the SQLite leg takes Redis."""
    if REDIS_URL and (db_kind == "postgresql" or not PG_URL):
        return "redis"
    return "memory"
