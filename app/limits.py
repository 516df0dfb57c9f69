"""Fixed-window rate limits counted in a Litestar store.

With Redis configured the store is shared, so a limit holds across every app process (scale
out) rather than per process; otherwise it is an in-process MemoryStore. Used where Litestar's
RateLimitMiddleware does not fit: keys that are not the client address (a remote host), or a
second limit beside the auth-form one on the same store.
"""

from __future__ import annotations

import time

from litestar.stores.base import Store
from litestar.stores.memory import MemoryStore

PRUNE_EVERY = 1000


class WindowLimit:
    """At most ``limit`` hits per ``window`` seconds per key.

    The count is a read then a write, as in Litestar's RateLimitMiddleware: under a race a few
    extra hits may pass, never fewer. That is enough for abuse limits, not for quotas.
    """

    def __init__(self, name: str, limit: int, window: int) -> None:
        if limit < 1 or window < 1:
            raise ValueError("limit and window must be positive")
        self.name = name
        self.limit = limit
        self.window = window
        self._calls = 0

    async def allow(self, store: Store, key: str) -> bool:
        # One entry per key holding "window-start:count": no new key each window, so an
        # in-process store keeps one entry per client, and those expire with their window.
        now = int(time.time())
        start = now - now % self.window
        slot = f"{self.name}:{key}"
        raw = await store.get(slot)
        seen_start, _, count = (raw.decode() if isinstance(raw, bytes) else str(raw or "")).partition(":")
        hits = int(count) if seen_start == str(start) and count.isdigit() else 0
        if hits >= self.limit:
            return False
        await store.set(slot, f"{start}:{hits + 1}", expires_in=self.window)
        self._calls += 1
        if self._calls % PRUNE_EVERY == 0 and isinstance(store, MemoryStore):
            await store.delete_expired()  # a MemoryStore forgets expired keys only when asked
        return True
