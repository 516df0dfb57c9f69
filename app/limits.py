"""Fixed-window rate limits counted in a Litestar store.

With Redis configured the store is shared, so a limit holds across every app process (scale
out) rather than per process; otherwise it is an in-process MemoryStore. Used where Litestar's
RateLimitMiddleware does not fit: keys that are not the client address (a remote host), or a
second limit beside the auth-form one on the same store.
"""

from __future__ import annotations

import time

from litestar.stores.base import Store


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

    async def allow(self, store: Store, key: str) -> bool:
        bucket = int(time.time()) // self.window
        slot = f"{self.name}:{key}:{bucket}"
        raw = await store.get(slot)
        hits = int(raw) if raw else 0
        if hits >= self.limit:
            return False
        await store.set(slot, str(hits + 1), expires_in=self.window * 2)
        return True
