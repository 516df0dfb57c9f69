"""In process (AsyncTestClient, SQLite and PostgreSQL): HEAD on git's info/refs answers without
running git; the contents API survives a killed cat-file child (one retry on a new process) and
answers 503 + Retry-After, in Gitea's error shape, only when the retry fails too."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

import forge.process
import forge.smart_http
from forge import catfile
from forge.catfile import CatFilePool
from forge.runtime import runtime_for
from forge.services import RepoService
from tests.forge.test_forge_limits import commit_files, make_repo

pytestmark = pytest.mark.anyio


async def test_head_on_info_refs_answers_the_get_headers_without_git(app: Any, client: Any, db_session: AsyncSession,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    await make_repo(app, db_session, "heads")
    spawned: list[list[str]] = []
    real_spawn = forge.process.spawn

    async def counting_spawn(argv: Any, **kwargs: Any) -> Any:
        spawned.append(list(argv))
        return await real_spawn(argv, **kwargs)

    monkeypatch.setattr(forge.smart_http, "spawn", counting_spawn)
    url = "/forge/limits/heads.git/info/refs"
    runtime = runtime_for(app.state.settings)
    head = await client.head(url, params={"service": "git-upload-pack"})
    assert head.status_code == 200 and head.content == b""
    assert spawned == [] and runtime.limiter.running == 0
    get = await client.get(url, params={"service": "git-upload-pack"})
    assert get.status_code == 200 and get.content.startswith(b"001e# service=git-upload-pack\n0000")
    assert len(spawned) == 1  # the counter sees git when it runs
    for name in ("content-type", "cache-control", "pragma", "expires"):
        assert head.headers[name] == get.headers[name], name
    assert "content-length" not in head.headers and "content-length" not in get.headers
    # The refusals are the GET's too, and run nothing either.
    spawned.clear()
    assert (await client.head(url, params={"service": "git-frobnicate"})).status_code == 403
    absent = await client.head("/forge/limits/nope.git/info/refs", params={"service": "git-upload-pack"})
    assert absent.status_code == 401 and absent.headers["www-authenticate"].startswith("Basic")
    push = await client.head(url, params={"service": "git-receive-pack"})
    assert push.status_code == 401
    assert spawned == []


async def _repo_with_file(app: Any, db_session: AsyncSession, name: str) -> Any:
    await make_repo(app, db_session, name)
    runtime = runtime_for(app.state.settings)
    repo = await RepoService(db_session, runtime.store).get_by_owner_and_name("limits", name)
    assert repo is not None
    commit_files(str(runtime.store.locate(repo.id)), runtime.store.git_env(), {"README.md": b"hello\n"})
    return repo


async def test_contents_api_survives_a_killed_cat_file_child(app: Any, client: Any, db_session: AsyncSession) -> None:
    repo = await _repo_with_file(app, db_session, "killed")
    url = "/api/v1/repos/limits/killed/contents/README.md"
    first = await client.get(url)
    assert first.status_code == 200 and first.json()["size"] == 6
    # The app runs on the test client's own loop (a thread): its pool is that loop's.
    store = runtime_for(app.state.settings).store
    pool = next(pools[store.root] for pools in list(catfile._pools.values()) if store.root in pools)
    idle = pool._repos[repo.id].idle
    assert idle, "the read left its cat-file process in the pool"
    spawned = pool.stats()["spawned"]
    for proc in idle:
        os.kill(proc.child.pid, signal.SIGKILL)  # no pause: the pool may not have seen them die yet
    again = await client.get(url)
    assert again.status_code == 200 and again.json()["sha"] == first.json()["sha"]
    assert pool.stats()["spawned"] > spawned


async def test_contents_api_answers_503_when_cat_file_cannot_run(app: Any, client: Any, db_session: AsyncSession,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    await _repo_with_file(app, db_session, "broken")
    url = "/api/v1/repos/limits/broken/contents/README.md"
    real_spawn = CatFilePool._spawn
    attempts: list[int] = []

    async def dying_spawn(self: CatFilePool, repo_id: Any) -> Any:
        proc = await real_spawn(self, repo_id)
        attempts.append(proc.child.pid)
        os.kill(proc.child.pid, signal.SIGKILL)  # every child dies before it answers
        proc.child.popen.wait()
        return proc

    monkeypatch.setattr(CatFilePool, "_spawn", dying_spawn)
    failed = await client.get(url)
    assert failed.status_code == 503
    assert failed.headers["retry-after"] == "1"
    body = failed.json()
    assert body["message"] == "Service Unavailable" and "url" in body  # Gitea's shape; 5xx details stay in the log
    assert len(attempts) == 2  # the first child and one retry, no more
    monkeypatch.setattr(CatFilePool, "_spawn", real_spawn)
    assert (await client.get(url)).status_code == 200  # and the next request is served again
