"""A pool of long-lived ``git cat-file --batch-command`` processes per repository (issue 19, item 1).

The code browser reads many objects per page (a commit, its tree, each tree on the way to a path,
the blob): one ``git`` child per object would cost a spawn each (~4 ms, forge/process.py). A
``cat-file --batch-command`` child answers ``info <object>`` and ``contents <object>`` on its
stdin for as long as it lives (git-cat-file(1), "BATCH OUTPUT"):

* ``contents``: ``<oid> SP <type> SP <size> LF <contents> LF``
* ``info``:     ``<oid> SP <type> SP <size> LF``
* either, for a name that does not resolve: ``<object> SP missing LF`` (or ``ambiguous``).

Without ``--buffer`` git flushes after every command, so one request/answer at a time works.

Rules of the pool:

* A process serves one request at a time: it is leased out of the idle list and returned after.
* Bounded: at most ``per_repo`` processes per repository and ``total`` in the pool; at the total
  cap a repository without any process closes the oldest idle one of another; otherwise it waits.
* Reaped: a process idle for ``idle_seconds`` is closed by a reaper task that runs only while
  processes exist.
* Restarted: a process that died, answered garbage, or was interrupted mid-answer (timeout,
  cancellation) is killed and dropped, never returned to the pool; the next lease spawns anew.
  The pool's reads (:meth:`CatFilePool.info`, ``read``, ``read_prefix``, ``run``) retry once on
  a fresh process when the one they leased fails (killed just before or during the read, which
  the idle check cannot see yet); only a second failure reaches the caller, as
  :class:`CatFileError`: an HTTP 503 with ``Retry-After`` wherever nobody catches it.
* After a push: objects never change, and git re-scans the pack directory when it misses an
  object, so a new commit is found by an old process; git gc moving packs is handled the same way
  (git-cat-file keeps working across repacks). Ref names are resolved from the database's ref
  mirror by the callers, not here, so no stale ref can be read; :meth:`CatFilePool.invalidate`
  still retires a repository's idle processes when its ``ref_version`` moves, so that a process
  never outlives a ref change by more than one request.

One pool per event loop and store (tests run several apps and loops in one process; pipes belong
to the loop that opened them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from litestar.exceptions import HTTPException

from forge.process import Child, spawn
from forge.storage import RepoStore

__all__ = ["BatchProcess", "CatFileError", "CatFilePool", "ObjectInfo", "pool_for"]

COMMAND_DEADLINE = 15.0
RETRY_AFTER = "1"
T = TypeVar("T")
log = logging.getLogger("rose_ash.forge.catfile")


class CatFileError(HTTPException, RuntimeError):
    """The child died or answered something that is not the batch protocol.

    ``str()`` is what went wrong (for logs); raised out of a handler it is a 503 with
    ``Retry-After`` and a message for people (app/errors.py renders it, in Gitea's shape under
    ``/api/v1/``), never a 500: a retry is served by a new process.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason, detail="The repository could not be read just now; try again.",
                         status_code=503, headers={"Retry-After": RETRY_AFTER})
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True)
class ObjectInfo:
    oid: str
    type: str  # "blob", "tree", "commit", "tag"
    size: int


class _Process:
    def __init__(self, repo_id: uuid.UUID, child: Child) -> None:
        self.repo_id = repo_id
        self.child = child
        self.last_used = time.monotonic()
        self.broken = False

    @property
    def alive(self) -> bool:
        return not self.broken and self.child.returncode is None

    async def _header(self, command: bytes, name: bytes) -> ObjectInfo | None:
        if b"\n" in name or b"\0" in name:
            return None  # not expressible on the batch protocol's line: no such object
        assert self.child.stdin is not None and self.child.stdout is not None
        self.child.stdin.write(command + b" " + name + b"\n")
        await self.child.stdin.drain()
        line = await self.child.stdout.readline()
        if not line.endswith(b"\n"):
            raise CatFileError("git cat-file closed its output")
        parts = line[:-1].split(b" ")
        if len(parts) == 3 and parts[1] in (b"blob", b"tree", b"commit", b"tag") and parts[2].isdigit():
            return ObjectInfo(parts[0].decode(), parts[1].decode(), int(parts[2]))
        if parts[-1] in (b"missing", b"ambiguous"):
            return None
        raise CatFileError(f"unexpected cat-file answer {line[:200]!r}")

    async def info(self, name: bytes) -> ObjectInfo | None:
        return await self._header(b"info", name)

    async def contents(self, name: bytes, *, max_size: int | None = None, prefix: bool = False
                       ) -> tuple[ObjectInfo, bytes | None] | None:
        """The object; above ``max_size`` its first ``max_size`` bytes (``prefix``) or None, and then
        the rest of the answer is never read: the process is marked broken (killed on release), so a
        small pushed object that inflates to hundreds of megabytes costs no memory here."""
        info = await self._header(b"contents", name)
        if info is None:
            return None
        assert self.child.stdout is not None
        if max_size is not None and info.size > max_size:
            self.broken = True  # its output is mid-object now: never handed to another request
            if not prefix:
                return info, None
            return info, await self.child.stdout.readexactly(max_size)
        data = await self.child.stdout.readexactly(info.size + 1)
        if data[-1:] != b"\n":
            raise CatFileError("cat-file answer without its trailing LF")
        return info, data[:-1]

    def kill(self) -> None:
        self.broken = True
        self.child.kill_group()
        self.child.close_pipes()
        # Reap it without blocking anybody (the child exits at once on SIGKILL).
        with contextlib.suppress(Exception):
            self.child.popen.wait(timeout=0.5)


BatchProcess = _Process  # what CatFilePool.run hands its work


@dataclass
class _Repo:
    idle: list[_Process] = field(default_factory=list)
    count: int = 0  # idle + leased
    version: int = -1  # the ref_version its processes were started under


class CatFilePool:
    """Leases cat-file processes per repository; see the module docstring for the rules."""

    def __init__(self, store: RepoStore, *, per_repo: int = 4, total: int = 32, idle_seconds: float = 60.0) -> None:
        self.store = store
        self.per_repo = per_repo
        self.total = total
        self.idle_seconds = idle_seconds
        self._repos: dict[uuid.UUID, _Repo] = {}
        self._count = 0
        self._changed = asyncio.Condition()
        self._reaper: asyncio.Task[None] | None = None
        self.spawned = 0  # for tests and the benchmark: how many children were started

    # -- public reads --------------------------------------------------------------------------------
    async def run(self, repo_id: uuid.UUID, work: Callable[[_Process], Awaitable[T]]) -> T:
        """``work`` on a leased process; if that process fails (:class:`CatFileError`: it died,
        was killed, answered garbage), once more on a new one. Reads are idempotent."""
        try:
            async with self.lease(repo_id) as proc:
                return await work(proc)
        except CatFileError as exc:
            log.warning("git cat-file for %s failed (%s); retrying on a new process", repo_id, exc)
        async with self.lease(repo_id, fresh=True) as proc:
            return await work(proc)

    async def info(self, repo_id: uuid.UUID, name: bytes | str) -> ObjectInfo | None:
        raw = name.encode() if isinstance(name, str) else name
        return await self.run(repo_id, lambda proc: proc.info(raw))

    async def read(self, repo_id: uuid.UUID, name: bytes | str, *, max_size: int | None = None
                   ) -> tuple[ObjectInfo, bytes | None] | None:
        """The object's info and contents; contents None when larger than ``max_size`` (then not read)."""
        raw = name.encode() if isinstance(name, str) else name

        async def work(proc: _Process) -> tuple[ObjectInfo, bytes | None] | None:
            name = raw
            if max_size is not None:
                info = await proc.info(name)
                if info is None:
                    return None
                if info.size > max_size:
                    return info, None
                name = info.oid.encode()
            got = await proc.contents(name, max_size=max_size)
            return None if got is None else (got[0], got[1])

        return await self.run(repo_id, work)

    async def read_prefix(self, repo_id: uuid.UUID, name: bytes | str, max_size: int
                          ) -> tuple[ObjectInfo, bytes, bool] | None:
        """The object's info, contents and False; for one larger than ``max_size``, its first
        ``max_size`` bytes and True (the rest is never read: the process is retired instead)."""
        raw = name.encode() if isinstance(name, str) else name
        got = await self.run(repo_id, lambda proc: proc.contents(raw, max_size=max_size, prefix=True))
        if got is None:
            return None
        info, data = got
        assert data is not None
        return info, data, info.size > max_size

    def invalidate(self, repo_id: uuid.UUID, version: int | None = None) -> None:
        """Retire the repository's idle processes (after a push: ``version`` is the new ref_version;
        a call with the version already seen does nothing)."""
        entry = self._repos.get(repo_id)
        if entry is None:
            return
        if version is not None:
            if version <= entry.version:
                return
            entry.version = version
        for proc in entry.idle:
            self._forget(proc)
            proc.kill()
        entry.idle.clear()

    def observe_version(self, repo_id: uuid.UUID, version: int) -> None:
        """Callers pass the repository row's ``ref_version`` they read; a newer one invalidates."""
        entry = self._repos.get(repo_id)
        if entry is None:
            self._repos[repo_id] = _Repo(version=version)
        elif version > entry.version:
            self.invalidate(repo_id, version)

    async def close(self) -> None:
        for entry in self._repos.values():
            for proc in entry.idle:
                proc.kill()
            entry.idle.clear()
        self._repos.clear()
        self._count = 0
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None

    def stats(self) -> dict[str, int]:
        return {"processes": self._count, "idle": sum(len(e.idle) for e in self._repos.values()),
                "spawned": self.spawned}

    # -- leasing ---------------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def lease(self, repo_id: uuid.UUID, *, fresh: bool = False) -> AsyncIterator[_Process]:
        """A process of the repository's for one request; ``fresh``: a newly started one (the
        retry after a failure, which must not land on another process that died the same way)."""
        proc = await self._acquire(repo_id, fresh=fresh)
        ok = False
        try:
            async with asyncio.timeout(COMMAND_DEADLINE):
                yield proc
            ok = True
        except (CatFileError, asyncio.IncompleteReadError, ConnectionError, BrokenPipeError) as exc:
            raise CatFileError(str(exc) or type(exc).__name__) from exc
        finally:
            # Anything but a clean answer (an error, a timeout, a cancellation) leaves the child's
            # output mid-object: it is killed rather than handed to the next request.
            await self._release(proc, ok and proc.alive)

    async def _acquire(self, repo_id: uuid.UUID, *, fresh: bool = False) -> _Process:
        async with self._changed:
            while True:
                entry = self._repos.setdefault(repo_id, _Repo())
                if fresh:
                    for stale in entry.idle:  # they may have died with the one that failed
                        self._forget(stale)
                        stale.kill()
                    entry.idle.clear()
                while entry.idle:
                    proc = entry.idle.pop()
                    if proc.alive:
                        return proc
                    self._forget(proc)  # died while idle (killed, OOM): restart below
                if entry.count < self.per_repo:
                    if self._count >= self.total and entry.count == 0:
                        # Only a repository with no process at all takes one from another (the
                        # oldest idle); one that has a process waits for it, so busy repositories
                        # do not evict each other's processes back and forth.
                        self._evict_one()
                    if self._count < self.total:
                        entry.count += 1
                        self._count += 1
                        break
                await self._changed.wait()
        try:
            proc = await self._spawn(repo_id)
        except BaseException:
            async with self._changed:
                entry.count -= 1
                self._count -= 1
                self._changed.notify_all()
            raise
        return proc

    async def _spawn(self, repo_id: uuid.UUID) -> _Process:
        path: Path = self.store.locate(repo_id)
        child = await spawn(["git", "--git-dir", str(path), "cat-file", "--batch-command"],
                            env=self.store.git_env(), pipe_stdin=True)
        self.spawned += 1
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(self._reap())
        return _Process(repo_id, child)

    async def _release(self, proc: _Process, reusable: bool) -> None:
        async with self._changed:
            entry = self._repos.get(proc.repo_id)
            if reusable and entry is not None:
                proc.last_used = time.monotonic()
                entry.idle.append(proc)
            else:
                self._forget(proc)
                proc.kill()
            self._changed.notify_all()

    def _forget(self, proc: _Process) -> None:
        entry = self._repos.get(proc.repo_id)
        if entry is not None:
            entry.count -= 1
        self._count -= 1

    def _evict_one(self) -> None:
        oldest: _Process | None = None
        for entry in self._repos.values():
            for proc in entry.idle:
                if oldest is None or proc.last_used < oldest.last_used:
                    oldest = proc
        if oldest is not None:
            self._repos[oldest.repo_id].idle.remove(oldest)
            self._forget(oldest)
            oldest.kill()

    async def _reap(self) -> None:
        while self._count > 0:
            await asyncio.sleep(min(self.idle_seconds / 2, 30.0))
            now = time.monotonic()
            async with self._changed:
                for entry in self._repos.values():
                    for proc in [p for p in entry.idle if now - p.last_used >= self.idle_seconds or not p.alive]:
                        entry.idle.remove(proc)
                        self._forget(proc)
                        proc.kill()
                self._changed.notify_all()


_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Path, CatFilePool]] = weakref.WeakKeyDictionary()


def pool_for(store: RepoStore) -> CatFilePool:
    """The running loop's pool for ``store`` (one per data directory), created on first use."""
    loop = asyncio.get_running_loop()
    pools = _pools.setdefault(loop, {})
    pool = pools.get(store.root)
    if pool is None:
        pool = pools[store.root] = CatFilePool(store)
    return pool
