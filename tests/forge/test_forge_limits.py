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


async def test_gitea_api_archive_counts_against_the_limiter(app: Any, client: Any, db_session: AsyncSession) -> None:
    """The Gitea API archive spawns `git archive` per request: a saturated repository answers 429
    (as the browser's archive does) and a served archive gives its slot back."""
    await make_repo(app, db_session, "archived-busy")
    runtime = runtime_for(app.state.settings)
    repo = await RepoService(db_session, runtime.store).get_by_owner_and_name("limits", "archived-busy")
    assert repo is not None
    path = str(runtime.store.locate(repo.id))
    env = {**os.environ, **runtime.store.git_env(), "GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@example.org",
           "GIT_COMMITTER_NAME": "a", "GIT_COMMITTER_EMAIL": "a@example.org"}
    tree = subprocess.run(["git", "--git-dir", path, "mktree"], input=b"", capture_output=True, env=env,
                          check=True).stdout.decode().strip()
    commit = subprocess.run(["git", "--git-dir", path, "commit-tree", tree, "-m", "first"], capture_output=True,
                            env=env, check=True).stdout.decode().strip()
    subprocess.run(["git", "--git-dir", path, "update-ref", "refs/heads/main", commit], env=env, check=True)
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
