"""Database round trips of a git request (in process, SQLite and PostgreSQL).

A clone is three requests (gitprotocol-http(5): the ref advertisement, then ``ls-refs`` and
``fetch`` under protocol v2), each authorized in the database before git starts. On SQLite every
round trip is a hand-off to the connection's thread and back, milliseconds each on a loaded host,
so an anonymous fetch of a public repository must cost one statement (owner and repository in
one lookup) and one ROLLBACK to end the read (forge/smart_http.py ``_release_db``): no COMMIT,
and no second ROLLBACK from the pool's reset.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from domains.account.models import User
from forge.runtime import runtime_for
from forge.services import RepoService

pytestmark = pytest.mark.anyio


@contextmanager
def round_trips(app: Any) -> Iterator[Counter[str]]:
    """Count statements, COMMITs and ROLLBACKs (the pool's reset only when it really rolls back)."""
    engine = app.state.alchemy.get_engine().sync_engine
    seen: Counter[str] = Counter()

    def statement(*_: Any) -> None:
        seen["statement"] += 1

    def commit(*_: Any) -> None:
        seen["commit"] += 1

    def rollback(*_: Any) -> None:
        seen["rollback"] += 1

    def reset(_dbapi: Any, _record: Any, state: Any) -> None:
        if not state.transaction_was_reset:
            seen["rollback"] += 1  # the pool's reset-on-return is a ROLLBACK

    hooks = [(engine, "before_cursor_execute", statement), (engine, "commit", commit),
             (engine, "rollback", rollback), (engine.pool, "reset", reset)]
    for target, name, fn in hooks:
        event.listen(target, name, fn)
    try:
        yield seen
    finally:
        for target, name, fn in hooks:
            event.remove(target, name, fn)


async def test_an_anonymous_fetch_costs_one_statement_and_one_rollback_per_request(
        app: Any, client: Any, db_session: AsyncSession) -> None:
    owner = User(username="trips", email="trips@example.org", password_hash="x")
    db_session.add(owner)
    await db_session.flush()
    await RepoService(db_session, runtime_for(app.state.settings).store).create(owner, "Repo")
    await db_session.commit()
    headers = {"Git-Protocol": "version=2"}

    with round_trips(app) as seen:
        refs = await client.get("/forge/Trips/repo.git/info/refs", params={"service": "git-upload-pack"},
                                headers=headers)
    assert refs.status_code == 200 and refs.content.startswith(b"000eversion 2\n")
    assert dict(seen) == {"statement": 1, "rollback": 1}

    with round_trips(app) as seen:
        ls_refs = await client.post("/forge/trips/repo.git/git-upload-pack", content=b"0014command=ls-refs\n0000",
                                    headers={**headers, "Content-Type": "application/x-git-upload-pack-request"})
    assert ls_refs.status_code == 200 and ls_refs.content.endswith(b"0000")
    assert dict(seen) == {"statement": 1, "rollback": 1}

