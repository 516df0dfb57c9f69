"""Key-value stores: in-process by default, Redis namespaces when ROSE_ASH_REDIS_URL is set."""

from __future__ import annotations

from datetime import timedelta

import msgspec
from litestar.stores.base import Store
from litestar.stores.file import FileStore
from litestar.stores.memory import MemoryStore
from litestar.stores.redis import RedisStore
from litestar.stores.registry import StoreRegistry

from app.jobs import JobContext, job_handler, registry
from app.settings import Settings

STORE_NAMES = ("sessions", "response_cache", "fragments")  # rate limits: app/limits.py


def make_store_registry(settings: Settings) -> StoreRegistry:
    stores: dict[str, Store] = {}
    if settings.redis_url:
        root = RedisStore.with_client(url=settings.redis_url, namespace=settings.redis_namespace)
        for name in STORE_NAMES:
            stores[name] = root.with_namespace(name)

        def default_factory(name: str) -> Store:
            return root.with_namespace(name)
    else:
        for name in STORE_NAMES:
            stores[name] = MemoryStore()
        # Sessions in files under DATA_DIR (written atomically by rename), so every web process
        # of `rose-ash run -W N` sees the same sign-ins, and a restart signs nobody out; the
        # caches stay per process.
        stores["sessions"] = session_files(settings)

        def default_factory(name: str) -> Store:
            return MemoryStore()

    return StoreRegistry(stores=stores, default_factory=default_factory)


def session_files(settings: Settings) -> FileStore:
    """The session store of a deployment without Redis (one machine, every web process)."""
    return FileStore(settings.data_dir / "sessions", create_directories=True)


class SweepSessions(msgspec.Struct, frozen=True):
    pass


@job_handler("app.sweep-sessions", backoff_base=60.0, backoff_cap=3600.0)
async def sweep_sessions(ctx: JobContext, payload: SweepSessions) -> None:
    """Delete expired session files: a file store drops an expired entry only when it is read
    again, and most never are (the visitor left), so without this ``DATA_DIR/sessions`` only
    grows. Redis expires its keys itself."""
    store = session_files(ctx.settings)
    if not ctx.settings.redis_url and await store.path.exists():  # no web process has run yet
        await store.delete_expired()


registry.every(sweep_sessions, timedelta(hours=1), "app:sweep-sessions", SweepSessions())
