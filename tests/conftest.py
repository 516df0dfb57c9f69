"""Shared fixtures: every database test runs on SQLite and, when configured, on PostgreSQL.

``ROSE_ASH_TEST_DATABASE_URL`` (a PostgreSQL URL) and ``ROSE_ASH_TEST_REDIS_URL`` switch the
PostgreSQL leg and the Redis-backed stores on. With ``CI=true`` they are required: a missing
service fails the run instead of skipping it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import MetaData, make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

# Cheap argon2 parameters for every hash made in this process and in the servers it starts
# (set before domains.account.passwords is imported; test_passwords.py checks production's).
os.environ.setdefault("ROSE_ASH_PASSWORD_HASH_COST", "test")

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


@pytest.fixture(autouse=True)
def installed_service_actors() -> None:
    """The service actors of the installed domains, as building the app declares them: a test that
    uses the federation services without building an app first would otherwise see whatever the
    last app built in this process left (none at all when it runs alone)."""
    from app.installed import INSTALLED
    from app.kit import service_actors
    from federation.activitypub.core import use_service_actors

    use_service_actors(service_actors(INSTALLED))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _metadata() -> MetaData:
    from advanced_alchemy.base import metadata_registry

    import app.models  # noqa: F401

    return metadata_registry.get(None)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every table created once per test process; each test gets a copy of this file."""
    from app.db import make_engine

    path = tmp_path_factory.mktemp("schema") / "template.sqlite3"

    async def create() -> None:
        eng = make_engine(f"sqlite+aiosqlite:///{path}")
        try:
            async with eng.begin() as conn:
                await conn.run_sync(_metadata().create_all)
        finally:
            await eng.dispose()  # the last connection checkpoints the WAL into the file

    asyncio.run(create())
    assert not path.with_name(path.name + "-wal").exists()
    return path


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """One throw-away PostgreSQL database per test process (so xdist workers never collide),
    with every table created once; the ``engine`` fixture empties them before each test."""
    if not PG_URL:
        yield ""
        return
    from tests.helpers.pg import pg_database as make_database

    with make_database("test") as url:
        asyncio.run(_pg_recreate(url))
        yield url


_PG_OBJECTS = text(
    "SELECT c.relkind::text, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = 'public' ORDER BY 1, 2"
)
# The objects each per-process database held right after its tables were created.
_pg_expected: dict[str, list[tuple[str, str]]] = {}


async def _pg_recreate(url: str) -> None:
    from app.db import make_engine

    eng = make_engine(url)
    try:
        async with eng.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
            await conn.run_sync(_metadata().create_all)
            _pg_expected[url] = [(kind, name) for kind, name in await conn.execute(_PG_OBJECTS)]
    finally:
        await eng.dispose()


async def _pg_reset(eng: AsyncEngine, url: str) -> None:
    """Empty every table, children first, in one transaction, and restart any sequence.

    DELETE, not TRUNCATE: on a few dozen small tables it takes milliseconds where TRUNCATE
    takes about a second. If a test left an object the models don't make (or dropped one),
    the schema is rebuilt instead, so no test ever sees another's leftovers.
    """
    async with eng.begin() as conn:
        objects = [(kind, name) for kind, name in await conn.execute(_PG_OBJECTS)]
    if objects != _pg_expected.get(url):
        await eng.dispose()
        await _pg_recreate(url)
        return
    async with eng.begin() as conn:
        for table in reversed(_metadata().sorted_tables):
            await conn.execute(table.delete())
        for kind, name in objects:
            if kind == "S":
                await conn.execute(text(f'ALTER SEQUENCE "{name}" RESTART'))


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
async def engine(database_url: str, db_kind: str, sqlite_template: Path) -> AsyncIterator[AsyncEngine]:
    """A database with every table created empty: SQLite copies the per-process template file,
    PostgreSQL empties the per-process database's tables."""
    from app.db import make_engine

    if db_kind == "sqlite":
        target = Path(make_url(database_url).database or "")
        for stale in (target.with_name(target.name + "-wal"), target.with_name(target.name + "-shm")):
            stale.unlink(missing_ok=True)
        shutil.copyfile(sqlite_template, target)
        eng = make_engine(database_url)
    else:
        eng = make_engine(database_url)
        await _pg_reset(eng, database_url)
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
