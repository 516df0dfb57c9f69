"""The cat-file pool (forge/catfile.py) against real repositories: answers, 50 concurrent reads on
few processes, caps per repository and in total, a new commit visible after a push, a killed child
replaced, an interrupted read never handing a half-read process on, idle processes reaped."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from pathlib import Path

import pytest

from forge.catfile import BatchProcess, CatFileError, CatFilePool
from forge.config import ForgeConfig
from forge.storage import RepoStore
from tests.forge.browse_fixtures import git

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _store(tmp_path: Path) -> RepoStore:
    return RepoStore(tmp_path / "repos", ForgeConfig(state_dir=tmp_path / "state"))


def _repo(store: RepoStore, tmp_path: Path, files: int = 3) -> tuple[uuid.UUID, Path, list[str]]:
    """A bare repository at the store's path for a new id, filled from a work tree; (id, work, blob ids)."""
    repo_id = uuid.uuid4()
    bare = store.locate(repo_id)
    bare.parent.mkdir(parents=True, exist_ok=True)
    git("init", "-q", "--bare", "-b", "main", str(bare))
    work = tmp_path / f"work-{repo_id.hex[:6]}"
    git("init", "-q", "-b", "main", str(work))
    for i in range(files):
        (work / f"f{i}.txt").write_text(f"file {i}\n" * (i + 1))
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "one", cwd=work)
    git("push", "-q", str(bare), "main", cwd=work)
    blobs = [git("rev-parse", f"HEAD:f{i}.txt", cwd=work).strip() for i in range(files)]
    return repo_id, work, blobs


async def test_reads_and_missing(tmp_path: Path) -> None:
    store = _store(tmp_path)
    repo_id, _work, blobs = _repo(store, tmp_path)
    pool = CatFilePool(store)
    try:
        got = await pool.read(repo_id, blobs[1])
        assert got is not None and got[0].type == "blob" and got[1] == b"file 1\nfile 1\n"
        info = await pool.info(repo_id, "refs/heads/main")
        assert info is not None and info.type == "commit"
        assert await pool.info(repo_id, "0" * 40) is None
        assert await pool.read(repo_id, "no-such-ref") is None
        assert await pool.info(repo_id, b"bad\nname") is None  # not expressible: absent, never an injection
        big = await pool.read(repo_id, blobs[2], max_size=5)
        assert big is not None and big[1] is None and big[0].size == len(b"file 2\n" * 3)
        assert pool.stats()["spawned"] == 1  # all of it on one long-lived process
    finally:
        await pool.close()


async def test_fifty_concurrent_reads_within_caps(tmp_path: Path) -> None:
    store = _store(tmp_path)
    repos = [_repo(store, tmp_path, files=5) for _ in range(3)]
    pool = CatFilePool(store, per_repo=3, total=5)
    peak = 0

    async def one(i: int) -> bytes:
        nonlocal peak
        repo_id, _work, blobs = repos[i % 3]
        got = await pool.read(repo_id, blobs[i % 5])
        peak = max(peak, pool.stats()["processes"])
        assert got is not None and got[1] is not None
        return got[1]

    try:
        results = await asyncio.gather(*(one(i) for i in range(50)))
        for i, data in enumerate(results):
            assert data == f"file {i % 5}\n".encode() * (i % 5 + 1)
        assert peak <= 5
        assert all(entry.count <= 3 for entry in pool._repos.values())
        assert pool.stats()["spawned"] <= 5 + 3  # processes are reused, a few replaced by eviction at most
    finally:
        await pool.close()


async def test_new_commit_visible_after_push(tmp_path: Path) -> None:
    store = _store(tmp_path)
    repo_id, work, _blobs = _repo(store, tmp_path)
    pool = CatFilePool(store)
    try:
        assert await pool.info(repo_id, "refs/heads/main") is not None  # a process is now alive
        (work / "new.txt").write_text("after the push\n")
        git("add", ".", cwd=work)
        git("commit", "-q", "-m", "two", cwd=work)
        # A pack, as a real push leaves it (not loose objects): the old process must find it.
        git("-c", "transfer.unpackLimit=1", "push", "-q", str(store.locate(repo_id)), "main", cwd=work)
        new_blob = git("rev-parse", "HEAD:new.txt", cwd=work).strip()
        new_commit = git("rev-parse", "HEAD", cwd=work).strip()
        spawned = pool.stats()["spawned"]
        got = await pool.read(repo_id, new_blob)
        assert got is not None and got[1] == b"after the push\n"
        assert (await pool.info(repo_id, new_commit)) is not None
        assert pool.stats()["spawned"] == spawned  # the same process saw the new pack
        # A newer ref_version retires idle processes; the next read starts a fresh one.
        pool.observe_version(repo_id, 1)
        pool.observe_version(repo_id, 2)
        assert pool.stats()["processes"] == 0
        assert (await pool.info(repo_id, "refs/heads/main")).oid == new_commit  # type: ignore[union-attr]
        # And after `git gc` moved every object into a new pack.
        git("--git-dir", str(store.locate(repo_id)), "gc", "-q", "--prune=now")
        assert (await pool.read(repo_id, new_blob)) is not None
    finally:
        await pool.close()


async def test_dead_or_interrupted_process_is_replaced(tmp_path: Path) -> None:
    store = _store(tmp_path)
    repo_id, _work, blobs = _repo(store, tmp_path)
    pool = CatFilePool(store, per_repo=1)
    try:
        assert await pool.read(repo_id, blobs[0]) is not None
        proc = pool._repos[repo_id].idle[0]
        os.kill(proc.child.pid, signal.SIGKILL)
        await asyncio.sleep(0.05)
        got = await pool.read(repo_id, blobs[0])  # detected as dead while idle: a new one answers
        assert got is not None and got[1] == b"file 0\n"
        assert pool.stats()["spawned"] == 2

        # Cancelled mid-request: the process is killed, not returned with an answer still unread.
        async def slow() -> None:
            async with pool.lease(repo_id) as leased:
                assert leased.child.stdin is not None
                leased.child.stdin.write(b"contents " + blobs[1].encode() + b"\n")
                await asyncio.sleep(10)

        task = asyncio.create_task(slow())
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        got = await pool.read(repo_id, blobs[2])
        assert got is not None and got[1] == b"file 2\n" * 3  # never the interrupted answer
        assert pool.stats()["spawned"] == 3
    finally:
        await pool.close()


async def test_a_child_killed_mid_read_is_dropped_and_the_read_retried_once(tmp_path: Path) -> None:
    store = _store(tmp_path)
    repo_id, _work, blobs = _repo(store, tmp_path)
    pool = CatFilePool(store, per_repo=2)
    try:
        pids: list[int] = []

        async def killed_once(proc: BatchProcess) -> object:
            pids.append(proc.child.pid)
            if len(pids) == 1:  # dies after the lease, where the idle check cannot see it
                os.kill(proc.child.pid, signal.SIGKILL)
                proc.child.popen.wait()
            return await proc.contents(blobs[0].encode())

        got = await pool.run(repo_id, killed_once)
        assert got is not None and got[1] == b"file 0\n"  # type: ignore[index]
        assert len(pids) == 2 and pids[0] != pids[1]
        assert pool.stats() == {"processes": 1, "idle": 1, "spawned": 2}  # the dead one is gone

        async def always_killed(proc: BatchProcess) -> object:
            pids.append(proc.child.pid)
            os.kill(proc.child.pid, signal.SIGKILL)
            proc.child.popen.wait()
            return await proc.info(blobs[1].encode())

        pids.clear()
        with pytest.raises(CatFileError) as failed:
            await pool.run(repo_id, always_killed)
        assert len(pids) == 2  # one retry, then the error
        assert failed.value.status_code == 503 and failed.value.headers == {"Retry-After": "1"}
        assert pool.stats()["processes"] == 0
        got = await pool.read(repo_id, blobs[2])  # and the pool serves again
        assert got is not None and got[1] == b"file 2\n" * 3
    finally:
        await pool.close()


async def test_idle_processes_are_reaped(tmp_path: Path) -> None:
    store = _store(tmp_path)
    repo_id, _work, blobs = _repo(store, tmp_path)
    pool = CatFilePool(store, idle_seconds=0.2)
    try:
        assert await pool.read(repo_id, blobs[0]) is not None
        proc = pool._repos[repo_id].idle[0]
        for _ in range(100):
            if pool.stats()["processes"] == 0:
                break
            await asyncio.sleep(0.05)
        assert pool.stats()["processes"] == 0
        assert proc.child.returncode is not None  # the child is gone, not just forgotten
        assert await pool.read(repo_id, blobs[0]) is not None  # and a read starts one again
    finally:
        await pool.close()


async def test_push_listener_writes_a_commit_graph_with_changed_paths(tmp_path: Path) -> None:
    from app.jobs import JobContext
    from app.settings import Settings
    from forge.browse.maintenance import write_commit_graph
    from forge.events import PushEvent
    from forge.runtime import runtime_for

    settings = Settings.from_env({}, data_dir=tmp_path / "data", secret_key="test-secret-key-0123456789abcdef")
    store = runtime_for(settings).store
    repo_id, _work, _blobs = _repo(store, tmp_path)
    event = PushEvent(repo_id=str(repo_id), actor_id=None, source="push", changes=[])
    await write_commit_graph(JobContext(sessionmaker=None, settings=settings), event)  # type: ignore[arg-type]
    chain = store.locate(repo_id) / "objects" / "info" / "commit-graphs" / "commit-graph-chain"
    assert chain.exists()
    verified = git("--git-dir", str(store.locate(repo_id)), "commit-graph", "verify")
    assert "error" not in verified.lower()
    # A deleted repository: nothing to do, no error.
    await write_commit_graph(JobContext(sessionmaker=None, settings=settings),  # type: ignore[arg-type]
                             PushEvent(repo_id=str(uuid.uuid4()), actor_id=None, source="push", changes=[]))


async def test_oversized_commit_and_tree_are_never_read_whole(tmp_path: Path) -> None:
    """A pushed commit can inflate to far more than it weighs on the wire: the reader cuts commits at
    MAX_COMMIT_BYTES (message truncated with a note) and refuses trees above MAX_TREE_BYTES, and the
    cat-file child that was left mid-object is retired, never drained into memory or reused."""
    import subprocess

    from forge.browse.gitread import MAX_COMMIT_BYTES, ObjectTooLarge, Reader

    store = _store(tmp_path)
    repo_id, work, blobs = _repo(store, tmp_path)
    bare = str(store.locate(repo_id))
    head = git("rev-parse", "HEAD", cwd=work).strip()
    tree = git("rev-parse", "HEAD^{tree}", cwd=work).strip()

    def literally(kind: str, data: bytes) -> str:
        return subprocess.run(["git", "--git-dir", bare, "hash-object", "-t", kind, "-w", "--literally", "--stdin"],
                              input=data, capture_output=True, check=True).stdout.decode().strip()

    header = (f"tree {tree}\nparent {head}\nauthor A <a@example.org> 1700000000 +0000\n"
              f"committer A <a@example.org> 1700000000 +0000\n\n").encode()
    big = literally("commit", header + b"subject line\n\n" + b"x" * (5 * 1024 * 1024))
    no_body = literally("commit", b"tree " + tree.encode() + b"\n" + b"x-junk " + b"y" * (2 * 1024 * 1024) + b"\n\nm")
    huge_tree = literally("tree", b"100644 f\0" + b"\1" * 20 + b"z" * (9 * 1024 * 1024))
    pool = CatFilePool(store)
    try:
        reader = Reader(store, pool, repo_id)
        commit = await reader.commit(big)
        assert commit.subject == "subject line" and commit.parents == (head,) and commit.tree == tree
        assert commit.author.email == "a@example.org"
        assert len(commit.message) < MAX_COMMIT_BYTES + 200
        size = len(header) + 14 + 5 * 1024 * 1024
        assert commit.message.endswith(f"[… message truncated: the commit object is {size} bytes]")
        assert pool.stats()["processes"] == 0  # the child left mid-object was killed, not reused
        with pytest.raises(ObjectTooLarge):
            await reader.commit(no_body)
        with pytest.raises(ObjectTooLarge):
            await reader.tree(huge_tree)
        # An ordinary commit and tree still read whole, and the pool keeps its process for them.
        normal = await reader.commit(head)
        assert normal.message == "one" and len(await reader.tree(normal.tree)) == 3
        assert pool.stats()["processes"] == 1
        got = await pool.read(repo_id, blobs[0], max_size=1)
        assert got is not None and got[1] is None
    finally:
        await pool.close()
