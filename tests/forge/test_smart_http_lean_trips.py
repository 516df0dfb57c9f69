"""The lean path's database work per git request, in process (SQLite and PostgreSQL): one
statement and one ROLLBACK for an anonymous fetch, as on the full path, and a refusal handed to
the full application untouched (the same 404 as an absent repository)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from domains.account.models import User
from forge.runtime import runtime_for
from forge.services import RepoService
from forge.smart_http import GitFastPath, install_fast_path
from tests.forge.test_forge_git_db_trips import round_trips

pytestmark = pytest.mark.anyio
V2 = {"Git-Protocol": "version=2"}


async def test_lean_fetch_costs_one_statement_and_refusals_fall_through(app: Any, db_session: AsyncSession) -> None:
    owner = User(username="leantrips", email="leantrips@example.org", password_hash="x")
    db_session.add(owner)
    await db_session.flush()
    store = runtime_for(app.state.settings).store
    await RepoService(db_session, store).create(owner, "open")
    await RepoService(db_session, store).create(owner, "closed", private=True)
    await db_session.commit()
    install_fast_path(app, None)
    lean = app.asgi_handler
    assert isinstance(lean, GitFastPath)
    fell_through: list[str] = []
    inner = lean.inner

    async def counting(scope: Any, receive: Any, send: Any) -> None:
        fell_through.append(scope["path"])
        await inner(scope, receive, send)

    lean.inner = counting
    transport = httpx.ASGITransport(app=app)
    async with app.lifespan(), httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as client:
        with round_trips(app) as seen:
            refs = await client.get("/forge/leantrips/open.git/info/refs?service=git-upload-pack", headers=V2)
        assert refs.status_code == 200 and refs.content.startswith(b"000eversion 2\n")
        assert dict(seen) == {"statement": 1, "rollback": 1} and fell_through == []
        with round_trips(app) as seen:
            post = await client.post("/forge/leantrips/open.git/git-upload-pack", content=b"0014command=ls-refs\n0000",
                                     headers={**V2, "Content-Type": "application/x-git-upload-pack-request"})
        assert post.status_code == 200 and post.content.endswith(b"0000")
        assert dict(seen) == {"statement": 1, "rollback": 1} and fell_through == []

        private = await client.get("/forge/leantrips/closed.git/info/refs?service=git-upload-pack")
        absent = await client.get("/forge/leantrips/nothing.git/info/refs?service=git-upload-pack")
        assert private.status_code == absent.status_code == 401 and private.content == absent.content
        assert private.headers["www-authenticate"] == absent.headers["www-authenticate"]
        # a push, a HEAD and a foreign Host are the full application's
        await client.get("/forge/leantrips/open.git/info/refs?service=git-receive-pack")
        await client.head("/forge/leantrips/open.git/info/refs?service=git-upload-pack")
        foreign = await client.get("/forge/leantrips/open.git/info/refs?service=git-upload-pack",
                                   headers={"Host": "evil.example"})
        assert foreign.status_code == 400
    assert len(fell_through) == 5
