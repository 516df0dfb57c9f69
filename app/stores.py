"""Key-value stores: in-process by default, Redis namespaces when ROSE_ASH_REDIS_URL is set."""

from __future__ import annotations

from litestar.stores.base import Store
from litestar.stores.file import FileStore
from litestar.stores.memory import MemoryStore
from litestar.stores.redis import RedisStore
from litestar.stores.registry import StoreRegistry

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
        stores["sessions"] = FileStore(settings.data_dir / "sessions", create_directories=True)

        def default_factory(name: str) -> Store:
            return MemoryStore()

    return StoreRegistry(stores=stores, default_factory=default_factory)
