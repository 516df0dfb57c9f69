"""No remote fetch waits while our transaction holds write locks, and reading actors writes nothing.

Two instances that each held their own database's write lock while fetching from the other
would wait for each other (on SQLite until the busy timeout). Each remote GET here is answered
by a peer that first probes the database from another connection: on SQLite it tries to take
the write lock itself (``BEGIN IMMEDIATE``, no waiting); on PostgreSQL it looks for another
transaction that has written (one that holds a transaction id).
"""

from __future__ import annotations

import sqlite3
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.jobs import JobContext, Worker, enqueue
from app.safe_http import SafeClient
from domains.account.models import User
from federation.activitypub.core import Federation, NeedsFetch
from federation.activitypub.models import Activity, Actor, APObject, Follow
from federation.activitypub.outbox import Outbox
from federation.activitypub.processor import InboxPayload

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8000"
AS2 = "application/activity+json"
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"


def person(uri: str, name: str) -> dict[str, Any]:
    return {"id": uri, "type": "Person", "preferredUsername": name, "inbox": f"{uri}/inbox",
            "followers": f"{uri}/followers"}


class LockProbingPeer:
    """Remote servers (documents by URL, WebFinger by account) that probe our database first."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.docs: dict[str, dict[str, Any]] = {}
        self.gets: list[str] = []
        self.fetched_under_lock: list[str] = []

    def add_person(self, host: str, name: str) -> str:
        uri = f"https://{host}/users/{name}"
        self.docs[uri] = person(uri, name)
        self.docs[f"acct:{name}@{host}"] = {"subject": f"acct:{name}@{host}", "links": [
            {"rel": "self", "type": AS2, "href": uri}]}
        return uri

    async def locked(self) -> bool:
        if self.database_url.startswith("sqlite"):
            conn = sqlite3.connect(self.database_url.split(":///", 1)[1], timeout=0, isolation_level=None)
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("ROLLBACK")
                return False
            except sqlite3.OperationalError:
                return True
            finally:
                conn.close()
        pg = await asyncpg.connect(self.database_url.replace("+asyncpg", ""))
        try:
            writers = await pg.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_xid IS NOT NULL "
                "AND pid <> pg_backend_pid() AND datname = current_database()")
            return bool(writers)
        finally:
            await pg.close()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method != "GET":
            return httpx.Response(202)
        url = str(request.url)
        self.gets.append(url)
        if await self.locked():
            self.fetched_under_lock.append(url)
        if request.url.path == "/.well-known/webfinger":
            doc = self.docs.get(parse_qs(urlsplit(url).query)["resource"][0])
            return httpx.Response(200, json=doc, headers={"Content-Type": "application/jrd+json"}) if doc \
                else httpx.Response(404)
        doc = self.docs.get(url)
        return httpx.Response(200, json=doc, headers={"Content-Type": AS2}) if doc else httpx.Response(404)

    def client(self) -> SafeClient:
        return SafeClient(allow_private=True, transport=httpx.MockTransport(self))


@pytest.fixture
async def alice(db_session: AsyncSession) -> User:
    # A bare session (no app settings): no actor or key is made at sign-up, so the processor has
    # to make them on first use, which writes before it fetches: the worst order for locks.
    user = User(username="alice", email="alice@example.org", display_name="Alice", password_hash="!locked")
    db_session.add(user)
    await db_session.commit()
    return user


async def test_inbox_processor_fetches_with_no_write_lock_held(db_session: AsyncSession, settings: Any,
                                                               alice: User) -> None:
    peer = LockProbingPeer(settings.database_url)
    bob = peer.add_person("remote.example", "bob")
    carol = peer.add_person("other.example", "carol")
    note = {"id": "https://other.example/notes/1", "type": "Note", "attributedTo": carol,
            "content": "<p>boosted</p>", "to": [PUBLIC]}
    peer.docs[note["id"]] = note
    for n, activity in enumerate([
        {"type": "Follow", "object": f"{BASE}/@alice"},
        {"type": "Announce", "object": note["id"], "to": [PUBLIC]},
    ]):
        row = Activity(ap_id=f"{bob}/activities/{n}", direction="in", type=activity["type"], actor_uri=bob,
                       object_id=activity["object"], raw={"id": f"{bob}/activities/{n}", "actor": bob, **activity},
                       trusted=True, signer=bob, verification="cavage:rsa-sha256", state="received")
        db_session.add(row)
        await db_session.flush()
        await enqueue(db_session, "ap.inbox", InboxPayload(activity_id=str(row.id)))
    await db_session.commit()

    maker = async_sessionmaker(db_session.bind, expire_on_commit=False)
    context = JobContext(sessionmaker=maker, settings=settings, services={"federation_client": peer.client()})
    assert await Worker(maker, context=context, concurrency=1).run_once() == 3  # Follow, Accept, Announce

    db_session.expire_all()
    states = (await db_session.scalars(select(Activity.state).where(Activity.direction == "in"))).all()
    assert states == ["processed", "processed"]
    assert (await db_session.scalars(select(Follow.follower))).all() == [bob]
    assert (await db_session.scalars(select(APObject.attributed_to))).all() == [carol]
    assert set(peer.gets) == {bob, note["id"], carol}
    assert peer.fetched_under_lock == []


async def test_compose_resolves_every_mention_before_writing(db_session: AsyncSession, settings: Any,
                                                             alice: User) -> None:
    peer = LockProbingPeer(settings.database_url)
    bob = peer.add_person("remote.example", "bob")
    carol = peer.add_person("other.example", "carol")
    text = "hello @bob@remote.example and @carol@other.example"
    async with Federation(db_session, settings, peer.client()) as fed:
        # Called directly, the second mention would be fetched after the first was stored:
        # the guard refuses that instead of waiting on the network with the lock held.
        with pytest.raises(NeedsFetch):
            me = await fed.local_actor(f"{BASE}/@alice")
            assert me is not None
            await Outbox(fed).post_note(me, text)
        await db_session.rollback()
        assert peer.fetched_under_lock == []

    async with Federation(db_session, settings, peer.client()) as fed:
        async def compose() -> APObject:
            me = await fed.local_actor(f"{BASE}/@alice")
            assert me is not None
            return await Outbox(fed).post_note(me, text)

        note = await fed.settle(compose)
        await db_session.commit()
    assert sorted(note.mentions) == sorted([bob, carol]) and {bob, carol} <= set(note.cc)
    assert await db_session.scalar(select(func.count()).select_from(Actor).where(Actor.local.is_(False))) == 2
    assert peer.fetched_under_lock == []


async def test_reading_actor_documents_writes_nothing(client: Any, app: Any) -> None:
    from tests.helpers.web import signup

    await signup(client, "alice")
    writes: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().split(" ", 1)[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            writes.append(statement)

    engine = app.state.alchemy.get_engine().sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        for path, accept in [
            ("/@alice", AS2), ("/ap/actors/blog", AS2), ("/ap/actors/instance", AS2),
            ("/.well-known/webfinger?resource=acct:alice@127.0.0.1:8000", "application/jrd+json"),
            ("/.well-known/webfinger?resource=acct:blog@127.0.0.1:8000", "application/jrd+json"),
            ("/@alice/outbox", AS2), ("/@alice/followers", AS2), ("/ap/actors/forge/following", AS2),
        ]:
            response = await client.get(path, headers={"Accept": accept})
            assert response.status_code == 200, (path, response.text)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert writes == []


async def test_settle_runs_the_work_again_when_another_writer_commits_first(
        db_session: AsyncSession, settings: Any) -> None:
    """The inbox processor reads inside a SAVEPOINT, then writes, while another connection commits
    between the two. A SAVEPOINT that began a deferred SQLite transaction would fail the write at
    once (SQLITE_BUSY_SNAPSHOT) and need a second round; app.db holds the SAVEPOINT back until the
    first write (BEGIN IMMEDIATE), so both databases take it in one round, and nothing is lost."""
    other = async_sessionmaker(db_session.bind, expire_on_commit=False)
    rounds = 0

    async def work() -> str:
        nonlocal rounds
        rounds += 1
        async with db_session.begin_nested():
            await db_session.scalar(select(func.count()).select_from(Actor))  # the snapshot starts here
            if rounds == 1:
                async with other() as session, session.begin():
                    session.add(Actor(uri="https://elsewhere.example/users/first", local=False))
            db_session.add(Actor(uri=f"https://elsewhere.example/users/second-{rounds}", local=False))
        return "done"

    fed = Federation(db_session, settings)
    assert await fed.settle(work) == "done"
    await db_session.commit()
    assert rounds == 1
    uris = set((await db_session.scalars(select(Actor.uri))).all())
    assert uris == {"https://elsewhere.example/users/first", f"https://elsewhere.example/users/second-{rounds}"}
