"""Limits in process (AsyncTestClient, SQLite and PostgreSQL): 429 + Retry-After, body caps."""

from __future__ import annotations

import gzip
import os
import subprocess
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from domains.account.models import User
from forge.runtime import runtime_for
from forge.services import RepoService

pytestmark = pytest.mark.anyio


async def make_repo(app: Any, db_session: AsyncSession, name: str) -> None:
    owner = User(username="limits", email="limits@example.org", password_hash="x")
    db_session.add(owner)
    await db_session.flush()
    await RepoService(db_session, runtime_for(app.state.settings).store).create(owner, name)
    await db_session.commit()


async def test_saturated_repository_answers_429_with_retry_after(app: Any, client: Any,
                                                                 db_session: AsyncSession) -> None:
    await make_repo(app, db_session, "busy")
    runtime = runtime_for(app.state.settings)
    ok = await client.get("/forge/limits/busy.git/info/refs", params={"service": "git-upload-pack"})
    assert ok.status_code == 200 and runtime.limiter.running == 0
    repo = await RepoService(db_session, runtime.store).get_by_owner_and_name("limits", "busy")
    assert repo is not None
    held = [runtime.limiter.try_acquire(repo.id) for _ in range(runtime.config.max_per_repo)]
    try:
        busy = await client.get("/forge/limits/busy.git/info/refs", params={"service": "git-upload-pack"})
        assert busy.status_code == 429 and busy.headers["retry-after"] == str(runtime.config.retry_after)
        busy = await client.post("/forge/limits/busy.git/git-upload-pack", content=b"0000",
                                 headers={"Content-Type": "application/x-git-upload-pack-request"})
        assert busy.status_code == 429
    finally:
        for slot in held:
            assert slot is not None
            slot.release()
    assert runtime.limiter.running == 0


async def test_fetch_body_cap_and_gzip_errors(app: Any, client: Any, db_session: AsyncSession,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    await make_repo(app, db_session, "capped")
    runtime = runtime_for(app.state.settings)
    monkeypatch.setattr(runtime, "config", runtime.config.__class__(max_fetch_body_bytes=1000,
                                                                    state_dir=runtime.config.state_dir))
    url = "/forge/limits/capped.git/git-upload-pack"
    headers = {"Content-Type": "application/x-git-upload-pack-request"}
    big = await client.post(url, content=b"0" * 1001, headers=headers)
    assert big.status_code == 413
    bomb = await client.post(url, content=gzip.compress(b"0" * 100_000),
                             headers={**headers, "Content-Encoding": "gzip"})
    assert bomb.status_code == 413
    corrupt = await client.post(url, content=b"\x1f\x8b garbage", headers={**headers, "Content-Encoding": "gzip"})
    assert corrupt.status_code == 400
    empty = await client.post(url, content=b"", headers=headers)
    assert empty.status_code == 200  # git itself answers (and fails) on an empty request
    assert runtime.limiter.running == 0


def commit_files(path: str, git_env: dict[str, str], files: dict[str, bytes]) -> str:
    """One commit on refs/heads/main of the bare repository at ``path`` holding ``files`` (flat)."""
    env = {**os.environ, **git_env, "GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@example.org",
           "GIT_COMMITTER_NAME": "a", "GIT_COMMITTER_EMAIL": "a@example.org"}

    def git(*args: str, data: bytes = b"") -> str:
        return subprocess.run(["git", "--git-dir", path, *args], input=data, capture_output=True, env=env,
                              check=True).stdout.decode().strip()

    lines = "".join(f"100644 blob {git('hash-object', '-w', '--stdin', data=body)}\t{name}\n"
                    for name, body in sorted(files.items()))
    commit = git("commit-tree", git("mktree", data=lines.encode()), "-m", "files")
    git("update-ref", "refs/heads/main", commit)
    return commit


async def test_gitea_api_archive_counts_against_the_limiter(app: Any, client: Any, db_session: AsyncSession) -> None:
    """The Gitea API archive spawns `git archive` per request: a saturated repository answers 429
    (as the browser's archive does) and a served archive gives its slot back."""
    await make_repo(app, db_session, "archived-busy")
    runtime = runtime_for(app.state.settings)
    repo = await RepoService(db_session, runtime.store).get_by_owner_and_name("limits", "archived-busy")
    assert repo is not None
    commit_files(str(runtime.store.locate(repo.id)), runtime.store.git_env(), {})
    url = "/api/v1/repos/limits/archived-busy/archive/main.tar.gz"
    ok = await client.get(url)
    assert ok.status_code == 200 and ok.content[:2] == b"\x1f\x8b"
    assert runtime.limiter.running == 0
    held = [runtime.limiter.try_acquire(repo.id) for _ in range(runtime.config.max_per_repo)]
    try:
        busy = await client.get(url)
        assert busy.status_code == 429 and busy.headers["retry-after"] == str(runtime.config.retry_after)
        assert "Too many git processes" in busy.json()["message"]
    finally:
        for slot in held:
            assert slot is not None
            slot.release()
    assert runtime.limiter.running == 0


async def test_gitea_api_raw_streams_large_blobs(app: Any, client: Any, db_session: AsyncSession) -> None:
    """raw/media answer a small blob from the cat-file pool and stream a large one from its own
    `git cat-file blob` child (a counted git process: 429 when the repository is saturated)."""
    await make_repo(app, db_session, "rawfiles")
    runtime = runtime_for(app.state.settings)
    repo = await RepoService(db_session, runtime.store).get_by_owner_and_name("limits", "rawfiles")
    assert repo is not None
    large = bytes(range(256)) * (3 * 1024 * 1024 // 256)  # 3 MiB, above the inline limit, binary
    commit_files(str(runtime.store.locate(repo.id)), runtime.store.git_env(),
                 {"small.txt": b"hello\n", "big.bin": large})
    small = await client.get("/api/v1/repos/limits/rawfiles/raw/small.txt")
    assert small.status_code == 200 and small.content == b"hello\n"
    assert small.headers["content-type"].startswith("text/plain")
    for kind in ("raw", "media"):
        got = await client.get(f"/api/v1/repos/limits/rawfiles/{kind}/big.bin")
        assert got.status_code == 200 and got.content == large
        assert got.headers["content-length"] == str(len(large))
        assert got.headers["content-type"] == "application/octet-stream"
        assert got.headers["x-content-type-options"] == "nosniff"
    assert runtime.limiter.running == 0
    held = [runtime.limiter.try_acquire(repo.id) for _ in range(runtime.config.max_per_repo)]
    try:
        busy = await client.get("/api/v1/repos/limits/rawfiles/raw/big.bin")
        assert busy.status_code == 429
        assert (await client.get("/api/v1/repos/limits/rawfiles/raw/small.txt")).content == b"hello\n"
    finally:
        for slot in held:
            assert slot is not None
            slot.release()
    assert runtime.limiter.running == 0
    assert (await client.get("/api/v1/repos/limits/rawfiles/raw/nope.txt")).status_code == 404


async def test_statuses_are_capped_per_commit_and_combined_reads_latest(
        app: Any, db_session: AsyncSession, monkeypatch: pytest.MonkeyPatch) -> None:
    """A commit takes at most MAX_STATUSES_PER_SHA statuses (then a clear 422 problem, nothing
    written); the combined status is the newest per context, picked by the database."""
    from app.forms import InputProblems
    from forge import statuses

    await make_repo(app, db_session, "statuses")
    runtime = runtime_for(app.state.settings)
    repo = await RepoService(db_session, runtime.store).get_by_owner_and_name("limits", "statuses")
    assert repo is not None
    sha = "a" * 40
    monkeypatch.setattr(statuses, "MAX_STATUSES_PER_SHA", 4)
    for state, context in (("pending", "build"), ("success", "build"), ("failure", "lint"), ("success", "lint")):
        await statuses.create_status(db_session, repo.id, sha, None, state=state, context=context)
    with pytest.raises(InputProblems) as refused:
        await statuses.create_status(db_session, repo.id, sha, None, state="error", context="deploy")
    assert refused.value.status == 422 and "already has 4 statuses" in str(refused.value)
    assert len(await statuses.statuses_for(db_session, repo.id, sha)) == 4
    combined = await statuses.combined_status(db_session, repo.id, sha)
    assert combined.state == "success" and combined.total_count == 2
    assert {s.context: s.status for s in combined.statuses} == {"build": "success", "lint": "success"}
    # Another commit has its own allowance.
    await statuses.create_status(db_session, repo.id, "b" * 40, None, state="error", context="deploy")
    assert (await statuses.combined_status(db_session, repo.id, "b" * 40)).state == "error"
