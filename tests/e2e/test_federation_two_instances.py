"""Two real Rose Ash instances (separate processes, databases and ports) federating over HTTP."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import DB_KINDS
from tests.helpers.server import AppServer, app_server
from tests.helpers.web import CSRF_FIELD, login, post_form

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

AS2 = "application/activity+json"
PASSWORD = "correct horse battery staple"
ENV = {
    "ROSE_ASH_FEDERATION_ALLOW_PRIVATE_ADDRESSES": "true",
    "ROSE_ASH_FEDERATION_RETRY_SCALE": "0.01",
}


@pytest.fixture(scope="module", params=DB_KINDS)
def peers(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, AppServer]]:
    tmp: Path = tmp_path_factory.mktemp(f"federation-{request.param}")
    with ExitStack() as stack:
        urls: list[str | None] = [None, None]
        if request.param == "postgresql":
            from tests.helpers.pg import pg_database

            urls = [stack.enter_context(pg_database("fed_a")), stack.enter_context(pg_database("fed_b"))]
        a = stack.enter_context(app_server(tmp, name="a", database_url=urls[0], extra_env=ENV))
        b = stack.enter_context(app_server(tmp, name="b", database_url=urls[1], extra_env=ENV))
        for server, users in ((a, ("alice",)), (b, ("bob", "carol"))):
            for user in users:
                _signup(server, user)
        yield {"a": a, "b": b}


def _signup(server: AppServer, user: str) -> None:
    """Sign up over HTTP (much faster than one ``rose-ash users create`` process per member)."""
    with httpx.Client(base_url=server.base_url, timeout=30) as c:
        token = CSRF_FIELD.search(c.get("/account/signup").text)
        assert token
        r = c.post("/account/signup", data={"username": user, "email": f"{user}@example.org", "password": PASSWORD,
                                             "_csrf_token": token.group(1)})
        assert r.status_code == 303, r.text[:300]


def _host(server: AppServer) -> str:
    return f"127.0.0.1:{server.port}"


async def _eventually(check: Callable[[], Awaitable[Any]], within: float = 45.0, what: str = "") -> Any:
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await _sleep(0.3)
    raise AssertionError(f"timed out waiting for {what or check}: last={last!r}")


async def _sleep(seconds: float) -> None:
    import anyio

    await anyio.sleep(seconds)


async def _session(server: AppServer, user: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=server.base_url, timeout=30)
    response = await login(client, user, PASSWORD)
    assert response.status_code == 303, response.text
    return client


async def _as2(server: AppServer, path: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as c:
        r = await c.get(path, headers={"Accept": AS2})
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data


async def _form(client: httpx.AsyncClient, path: str, data: dict[str, str]) -> httpx.Response:
    r = await post_form(client, path, data, page="/social/")
    assert r.status_code == 303, (path, r.status_code, r.text[:500])
    return r


async def _page(client: httpx.AsyncClient, path: str) -> str:
    r = await client.get(path)
    assert r.status_code == 200, (path, r.status_code)
    return r.text


def _note_link(html: str, needle: str) -> str:
    """The /social/notes/<uuid> of the article containing ``needle``."""
    for article in re.findall(r'<article class="note card" id="note-([0-9a-f-]+)">(.*?)</article>', html, re.S):
        if needle in article[1]:
            return f"/social/notes/{article[0]}"
    raise AssertionError(f"no note containing {needle!r}")


async def test_discovery_across_instances(peers: dict[str, AppServer]) -> None:
    a, b = peers["a"], peers["b"]
    async with httpx.AsyncClient(timeout=10) as c:
        jrd = (await c.get(f"{b.base_url}/.well-known/webfinger",
                           params={"resource": f"acct:bob@{_host(b)}"})).json()
        assert jrd["links"][0]["href"] == f"{b.base_url}/@bob"
        nodeinfo = (await c.get(f"{a.base_url}/.well-known/nodeinfo")).json()
        assert any(link["href"] == f"{a.base_url}/ap/actors/instance" for link in nodeinfo["links"])
    actor = await _as2(b, "/@bob")
    assert actor["publicKey"]["id"] == f"{b.base_url}/@bob#main-key"


async def test_follow_post_reply_like_boost_delete_unfollow(peers: dict[str, AppServer]) -> None:
    a, b = peers["a"], peers["b"]
    alice, bob = await _session(a, "alice"), await _session(b, "bob")
    try:
        alice_uri, bob_uri = f"{a.base_url}/@alice", f"{b.base_url}/@bob"
        # follow by handle through WebFinger; bob's account auto-accepts
        await _form(alice, "/social/follow", {"handle": f"bob@{_host(b)}"})

        async def accepted() -> bool:
            followers = await _as2(b, "/@bob/followers?page=1")
            following = await _as2(a, "/@alice/following?page=1")
            return alice_uri in followers["orderedItems"] and bob_uri in following["orderedItems"]

        await _eventually(accepted, what="Follow + Accept")
        assert "followed you" in await _page(bob, "/social/notifications")

        # bob posts; it reaches alice's home timeline
        await _form(bob, "/social/compose", {"content": "Hello from B, federated!", "visibility": "public",
                                             "next": "/social/"})

        async def on_alice_home() -> str | None:
            html = await _page(alice, "/social/")
            return html if "Hello from B, federated!" in html else None

        home = await _eventually(on_alice_home, what="bob's note on A")
        remote_note = _note_link(home, "Hello from B, federated!")
        outbox = await _as2(b, "/@bob/outbox?page=1")
        bob_note_id = outbox["orderedItems"][0]["object"]["id"]

        # alice replies, likes and boosts
        await _form(alice, "/social/compose", {"content": "Hi bob, replying from A", "visibility": "public",
                                               "in_reply_to": bob_note_id, "next": remote_note})
        await _form(alice, f"{remote_note}/like", {"next": remote_note})
        await _form(alice, f"{remote_note}/boost", {"next": remote_note})

        async def bob_notified() -> bool:
            html = await _page(bob, "/social/notifications")
            return all(s in html for s in ("replied to your post", "liked your post", "boosted your post"))

        await _eventually(bob_notified, what="reply, like and boost notifications on B")
        bob_home = await _page(bob, "/social/")
        local_note = _note_link(bob_home, "Hello from B, federated!")
        thread = await _page(bob, local_note)
        assert "Hi bob, replying from A" in thread
        # one like and one boost counted on bob's side (the counts beside the icons)
        assert thread.count('<span class="count">1</span>') == 2

        # bob deletes the note: alice's copy becomes a tombstone
        await _form(bob, f"{local_note}/delete", {"next": "/social/"})

        async def gone_on_a() -> bool:
            return "Hello from B, federated!" not in await _page(alice, "/social/")

        await _eventually(gone_on_a, what="Delete reaching A")

        # alice unfollows
        await _form(alice, "/social/unfollow", {"actor": bob_uri})

        async def unfollowed() -> bool:
            return alice_uri not in (await _as2(b, "/@bob/followers?page=1"))["orderedItems"]

        await _eventually(unfollowed, what="Undo(Follow) reaching B")
    finally:
        await alice.aclose()
        await bob.aclose()


async def _deliveries(server: AppServer) -> list[tuple[str, int, int | None]]:
    url = server.env.get("ROSE_ASH_DATABASE_URL") or f"sqlite+aiosqlite:///{server.data_dir / 'rose-ash.sqlite3'}"
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT state, tries, last_status FROM ap_delivery ORDER BY id"))).all()
            return [(r[0], int(r[1]), r[2]) for r in rows]
    finally:
        await engine.dispose()


async def test_delivery_retried_while_peer_is_down(peers: dict[str, AppServer]) -> None:
    a, b = peers["a"], peers["b"]
    carol, alice = await _session(b, "carol"), await _session(a, "alice")
    try:
        await _form(carol, "/social/follow", {"handle": f"alice@{_host(a)}"})

        async def following() -> bool:
            return f"{b.base_url}/@carol" in (await _as2(a, "/@alice/followers?page=1"))["orderedItems"]

        await _eventually(following, what="carol following alice")
        before = len(await _deliveries(a))
        b.stop()
        try:
            await _form(alice, "/social/compose", {"content": "Posted while B was down", "visibility": "public",
                                                   "next": "/social/"})

            async def failed_once() -> list[tuple[str, int, int | None]] | None:
                rows = (await _deliveries(a))[before:]
                return rows if rows and rows[-1][1] >= 2 and rows[-1][0] == "pending" else None

            await _eventually(failed_once, what="failed delivery attempts while B is down")
        finally:
            b.start()
        await carol.aclose()
        carol = await _session(b, "carol")

        async def arrived() -> bool:
            return "Posted while B was down" in await _page(carol, "/social/")

        await _eventually(arrived, within=60, what="the retried delivery")
        assert (await _deliveries(a))[-1][0] == "delivered"
    finally:
        await carol.aclose()
        await alice.aclose()
