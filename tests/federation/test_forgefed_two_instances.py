"""ForgeFed between two real Rose Ash instances (separate processes, databases and ports), on SQLite
and PostgreSQL: a member of B follows a repository of A (its ``Repository`` actor, by URL), the
repository's companion ``Service`` (by ``owner.repo@host``, as from Mastodon) and the pusher; a
``git push`` to A then reaches B as a verified ``Push`` from the repository, the pusher's
``Create{Note}`` (shown on B's home timeline) and the Service's ``Announce`` of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy import select

from tests.forge.forge_fixtures import DB_KINDS, PASSWORD, Forge, _make_forge
from tests.helpers.server import AppServer, app_server
from tests.helpers.web import login, post_form

pytestmark = [pytest.mark.e2e]

ENV = {
    "ROSE_ASH_WORKER_IN_PROCESS": "true",
    "ROSE_ASH_FEDERATION_ALLOW_PRIVATE_ADDRESSES": "true",
    "ROSE_ASH_FEDERATION_RETRY_SCALE": "0.01",
}


@pytest.fixture(scope="module", params=DB_KINDS)
def instances(request: pytest.FixtureRequest,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Forge, AppServer]]:
    tmp = tmp_path_factory.mktemp(f"forgefed-two-{request.param}")
    with ExitStack() as stack:
        b_url = None
        if request.param == "postgresql":
            from tests.helpers.pg import pg_database

            b_url = stack.enter_context(pg_database("forgefed_b"))
        forges = _make_forge(tmp / "a", str(request.param), ENV)
        a = next(forges)
        stack.callback(lambda: next(forges, None))
        b = stack.enter_context(app_server(tmp, name="b", database_url=b_url, extra_env=ENV))
        b.create_user("dana", PASSWORD)
        yield a, b


def eventually(check: Callable[[], Any], what: str, within: float = 90.0) -> Any:
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}: last={last!r}")


def follow_from_b(b: AppServer, handle: str) -> None:
    async def go() -> None:
        async with httpx.AsyncClient(base_url=b.base_url, timeout=60) as client:
            assert (await login(client, "dana", PASSWORD)).status_code == 303
            answer = await post_form(client, "/social/follow", {"handle": handle}, page="/social/")
            assert answer.status_code == 303, answer.text[:500]

    anyio.run(go)


def b_rows(b: AppServer, model: Any, *conditions: Any) -> list[Any]:
    async def work(session: Any) -> list[Any]:
        return list((await session.scalars(select(model).where(*conditions))).all())

    return b.in_process(work)


def test_push_reaches_another_rose_ash(instances: tuple[Forge, AppServer]) -> None:
    from federation.activitypub.models import Activity, Announce, APObject, Follow

    a, b = instances
    a.create_repo("alice", "shared")
    uri = f"{a.base}/ap/repos/{a.repo_uuid('alice', 'shared')}"
    a_host = a.base.removeprefix("http://")
    follow_from_b(b, uri)  # the Repository, by its URL
    follow_from_b(b, f"alice.shared@{a_host}")  # the companion Service, as Mastodon would
    follow_from_b(b, f"alice@{a_host}")  # the pusher
    dana = f"{b.base_url}/@dana"
    wanted = {uri, f"{uri}/service", f"{a.base}/@alice"}
    eventually(lambda: {f.followee for f in b_rows(b, Follow, Follow.follower == dana, Follow.state == "accepted")}
               == wanted, "three accepted follows on B")

    work = a.new_clone("alice", "shared", "alice")
    made = [a.commit(work, m) for m in ("One", "Two")]
    a.git("push", "-q", "origin", "HEAD:main", cwd=work)

    pushes = eventually(lambda: b_rows(b, Activity, Activity.type == "Push", Activity.direction == "in"),
                        "the Push on B")
    push = pushes[0]
    assert push.actor_uri == uri and push.trusted and push.verification.startswith(("cavage:", "rfc9421:"))
    assert push.raw["object"]["totalItems"] == 2
    assert [c["hash"] for c in push.raw["object"]["orderedItems"]] == made[::-1]
    assert push.raw["target"]["id"] == f"{uri}/branches/main" and push.raw["hashAfter"] == made[-1]
    assert "hashBefore" not in push.raw  # the branch was created by this push
    notes = eventually(lambda: b_rows(b, APObject, APObject.attributed_to == f"{a.base}/@alice"),
                       "the pusher's Note on B")
    assert "pushed" in notes[0].content and "2 commits" in notes[0].content and "alice/shared:main" in notes[0].content
    assert notes[0].url == f"{a.base}/forge/alice/shared/commit/{made[-1]}"
    eventually(lambda: b_rows(b, Announce, Announce.actor == f"{uri}/service", Announce.object_id == notes[0].ap_id),
               "the Service's Announce on B")

    async def timeline() -> str:
        async with httpx.AsyncClient(base_url=b.base_url, timeout=60) as client:
            assert (await login(client, "dana", PASSWORD)).status_code == 303
            return (await client.get("/social/")).text

    assert "alice/shared:main" in anyio.run(timeline)
