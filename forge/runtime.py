"""Per-process forge state: the config, the repository store and the git-children limiter, one
set per data directory (tests run several apps in one process, each with its own)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

from app.metrics import GIT_BUFFERED_BODY_BYTES
from app.settings import Settings
from forge.config import ForgeConfig
from forge.storage import RepoStore

__all__ = ["BodyBudget", "ForgeRuntime", "Limiter", "Slot", "runtime_for"]


@dataclass
class Limiter:
    """Counts git children per process and per repository; refuses instead of queueing (429)."""

    total: int
    per_repo: int
    running: int = 0
    by_repo: dict[uuid.UUID, int] = field(default_factory=dict)

    def try_acquire(self, repo_id: uuid.UUID) -> Slot | None:
        if self.running >= self.total or self.by_repo.get(repo_id, 0) >= self.per_repo:
            return None
        self.running += 1
        self.by_repo[repo_id] = self.by_repo.get(repo_id, 0) + 1
        return Slot(self, repo_id)


@dataclass
class Slot:
    limiter: Limiter
    repo_id: uuid.UUID
    released: bool = False

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        self.limiter.running -= 1
        left = self.limiter.by_repo.get(self.repo_id, 1) - 1
        if left > 0:
            self.limiter.by_repo[self.repo_id] = left
        else:
            self.limiter.by_repo.pop(self.repo_id, None)


@dataclass
class BodyBudget:
    """Bytes held by fetch bodies still being read (not yet admitted to a slot), per process.

    The limit is the caller's (``ForgeConfig.max_buffered_body_bytes``, read when a body starts),
    so a changed config applies to the next body; ``used`` goes back to 0 once every body has
    been admitted, refused or abandoned (smart_http.BodyBuffer.release)."""

    used: int = 0

    def try_take(self, size: int, limit: int) -> bool:
        if self.used + size > limit:
            return False
        self.used += size
        GIT_BUFFERED_BODY_BYTES.inc(size)
        return True

    def give(self, size: int) -> None:
        self.used -= size
        GIT_BUFFERED_BODY_BYTES.dec(size)


@dataclass
class ForgeRuntime:
    config: ForgeConfig
    store: RepoStore
    limiter: Limiter
    bodies: BodyBudget = field(default_factory=BodyBudget)


_runtimes: dict[Path, ForgeRuntime] = {}


def runtime_for(settings: Settings) -> ForgeRuntime:
    """One runtime (config, store, limiter) per data directory, created on first use."""
    rt = _runtimes.get(settings.data_dir)
    if rt is None:
        config = ForgeConfig.from_settings(settings, state_dir=settings.data_dir / "forge")
        rt = ForgeRuntime(config, RepoStore(settings.repos_dir, config),
                          Limiter(config.max_concurrent, config.max_per_repo))
        _runtimes[settings.data_dir] = rt
    return rt
