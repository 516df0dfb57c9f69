"""app/limits.py: fixed windows counted in a Litestar store, one entry per key."""

from __future__ import annotations

import pytest
from litestar.stores.memory import MemoryStore

from app import limits
from app.limits import WindowLimit

pytestmark = pytest.mark.anyio


async def test_counts_per_key_and_window(monkeypatch: pytest.MonkeyPatch) -> None:
    store, limit, now = MemoryStore(), WindowLimit("t", limit=2, window=60), [1_000_020.0]
    monkeypatch.setattr(limits.time, "time", lambda: now[0])
    assert [await limit.allow(store, "a") for _ in range(3)] == [True, True, False]
    assert await limit.allow(store, "b")  # another key has its own count
    now[0] += 60  # the next window starts afresh
    assert [await limit.allow(store, "a") for _ in range(3)] == [True, True, False]
    assert sorted(store._store) == ["t:a", "t:b"]  # one entry per key, not one per window


async def test_expired_entries_are_pruned_from_an_in_process_store(monkeypatch: pytest.MonkeyPatch) -> None:
    store, limit = MemoryStore(), WindowLimit("t", limit=5, window=1)
    monkeypatch.setattr(limits, "PRUNE_EVERY", 10)
    for i in range(9):
        assert await limit.allow(store, f"client-{i}")
    assert len(store._store) == 9
    await store.set("t:old", "0:1", expires_in=-1)  # an entry whose window is over
    assert await limit.allow(store, "client-9")  # the tenth call prunes
    assert "t:old" not in store._store and len(store._store) == 10


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        WindowLimit("t", limit=0, window=60)
