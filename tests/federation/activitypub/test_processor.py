"""The inbox processor, activity by activity (stored activities run through the real job)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.jobs import JobContext, Worker, enqueue
from app.safe_http import FetchError, SafeClient
from domains.account.schemas import SignupInput
from domains.account.services import AccountService
from federation.activitypub.core import Federation
from federation.activitypub.models import Activity, Actor, Announce, APObject, Block, Follow, Like, Notification
from federation.activitypub.outbox import Outbox
from federation.activitypub.processor import InboxPayload, visibility_of

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8000"
BOB = "https://remote.example/users/bob"
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"
AS2 = "application/activity+json"


@dataclass(frozen=True)
class Received:
    id: UUID
    ap_id: str


class World:
    def __init__(self, session: AsyncSession, settings: Any) -> None:
        self.session = session
        self.settings = settings
        self.n = 0
        self.remote_docs: dict[str, dict[str, Any]] = {}
        self.sent: list[httpx.Request] = []

    async def receive(self, activity: dict[str, Any], *, trusted: bool = True) -> Received:
        self.n += 1
        activity = {"id": f"{BOB}/activities/{self.n}", "actor": BOB, **activity}
        obj = activity.get("object")
        row = Activity(ap_id=activity["id"], direction="in", type=activity["type"], actor_uri=activity["actor"],
                       object_id=obj if isinstance(obj, str) else (obj or {}).get("id", ""), raw=activity,
                       trusted=trusted, signer=BOB, verification="cavage:rsa-sha256", state="received")
        self.session.add(row)
        await self.session.flush()
        await enqueue(self.session, "ap.inbox", InboxPayload(activity_id=str(row.id)))
        received = Received(row.id, row.ap_id)
        await self.session.commit()
        await self.run()
        self.session.expire_all()
        return received

    async def run(self) -> None:
        def peer(request: httpx.Request) -> httpx.Response:
            if request.method == "GET":
                doc = self.remote_docs.get(str(request.url))
                return httpx.Response(200, json=doc, headers={"Content-Type": AS2}) if doc else httpx.Response(404)
            self.sent.append(request)
            return httpx.Response(202)

        maker = async_sessionmaker(self.session.bind, expire_on_commit=False)
        client = SafeClient(allow_private=True, transport=httpx.MockTransport(peer))
        await Worker(maker, context=JobContext(sessionmaker=maker, settings=self.settings,
                                               services={"federation_client": client})).run_once()

    async def count(self, model: Any, *conds: Any) -> int:
        return int(await self.session.scalar(select(func.count()).select_from(model).where(*conds)) or 0)


@pytest.fixture
async def world(db_session: AsyncSession, settings: Any, app: Any) -> World:
    user = await AccountService(db_session).signup(SignupInput(username="alice", email="alice@example.org",
                                                               password="correct horse battery staple"))
    async with Federation(db_session, settings) as fed:
        await fed.local_actor_for_user(user)
    db_session.add(Actor(uri=BOB, local=False, type="Person", username="bob", domain="remote.example",
                         inbox=f"{BOB}/inbox", followers_url=f"{BOB}/followers", fetched_at=datetime.now(UTC)))
    await db_session.commit()
    return World(db_session, settings)


async def _local_note(world: World, text: str = "mine") -> APObject:
    async with Federation(world.session, world.settings) as fed:
        me = await fed.local_actor(f"{BASE}/@alice")
        assert me is not None
        obj = await Outbox(fed).post_note(me, text)
    await world.session.commit()
    return obj


def test_visibility_mapping() -> None:
    assert visibility_of([PUBLIC], [], "f") == "public"
    assert visibility_of(["f"], [PUBLIC], "f") == "unlisted"
    assert visibility_of(["f"], [], "f") == "followers"
    assert visibility_of(["https://x/@a"], [], "f") == "direct"


async def test_locked_account_follow_request_then_undo(world: World) -> None:
    me = (await world.session.scalars(select(Actor).where(Actor.uri == f"{BASE}/@alice"))).one()
    me.manually_approves = True
    await world.session.commit()
    await world.receive({"type": "Follow", "object": f"{BASE}/@alice"})
    follow = (await world.session.scalars(select(Follow))).one()
    assert follow.state == "pending" and world.sent == []
    assert (await world.session.scalars(select(Notification.kind))).all() == ["follow_request"]
    await world.receive({"type": "Undo", "object": {"id": follow.activity_id, "type": "Follow", "actor": BOB}})
    assert await world.count(Follow) == 0


async def test_accept_and_reject_of_our_follow(world: World) -> None:
    async with Federation(world.session, world.settings) as fed:
        me = await fed.local_actor(f"{BASE}/@alice")
        bob = await fed.remote_actor(BOB)
        assert me is not None
        follow = await Outbox(fed).follow(me, bob)
        follow_id = follow.activity_id
    await world.session.commit()
    await world.run()
    assert [r.url.path for r in world.sent] == ["/users/bob/inbox"]
    await world.receive({"type": "Accept", "object": {"id": follow_id, "type": "Follow", "actor": f"{BASE}/@alice"}})
    assert (await world.session.scalars(select(Follow.state))).one() == "accepted"
    await world.receive({"type": "Reject", "object": follow_id})
    assert await world.count(Follow) == 0


async def test_like_announce_and_their_undo(world: World) -> None:
    note_id = (await _local_note(world)).ap_id
    like = await world.receive({"type": "Like", "object": note_id})
    boost = await world.receive({"type": "Announce", "object": note_id, "to": [PUBLIC]})
    assert await world.count(Like) == 1 and await world.count(Announce) == 1
    kinds = sorted((await world.session.scalars(select(Notification.kind))).all())
    assert kinds == ["boost", "like"]
    await world.receive({"type": "Undo", "object": {"id": like.ap_id, "type": "Like", "actor": BOB,
                                                     "object": note_id}})
    await world.receive({"type": "Undo", "object": boost.ap_id})
    assert await world.count(Like) == 0 and await world.count(Announce) == 0


async def test_announce_of_a_remote_note_fetches_it_from_origin(world: World) -> None:
    note = {"id": "https://other.example/notes/1", "type": "Note", "attributedTo": "https://other.example/u/c",
            "content": "<p>boosted <img src=x onerror=y></p>", "to": [PUBLIC]}
    world.remote_docs[note["id"]] = note
    world.remote_docs["https://other.example/u/c"] = {
        "id": "https://other.example/u/c", "type": "Person", "inbox": "https://other.example/u/c/inbox",
        "preferredUsername": "c", "name": "<b>Carol</b>"}
    await world.receive({"type": "Announce", "object": note["id"], "to": [PUBLIC]})
    obj = (await world.session.scalars(select(APObject))).one()
    assert obj.content == "<p>boosted </p>" and obj.attributed_to == "https://other.example/u/c"
    carol = (await world.session.scalars(select(Actor).where(Actor.uri == "https://other.example/u/c"))).one()
    assert carol.name == "Carol"


async def test_update_and_foreign_delete(world: World) -> None:
    note = {"id": f"{BOB}/notes/5", "type": "Note", "attributedTo": BOB, "content": "v1", "to": [PUBLIC]}
    await world.receive({"type": "Create", "object": note})
    await world.receive({"type": "Update", "object": {**note, "content": "<p>v2</p>"}})
    assert (await world.session.scalars(select(APObject.content))).one() == "<p>v2</p>"
    # someone else's Delete of bob's note is refused (activity rejected, note kept)
    forged = await world.receive({"type": "Delete", "actor": "https://remote.example/users/eve",
                                  "object": note["id"]})
    assert (await world.session.get(Activity, forged.id)).state == "rejected"  # type: ignore[union-attr]
    assert not (await world.session.scalars(select(APObject.deleted))).one()
    # a Create attributed to someone else by a trusted signer is refused too
    other = await world.receive({"type": "Create", "object": {**note, "id": f"{BOB}/notes/6",
                                                               "attributedTo": "https://remote.example/users/x"}})
    assert (await world.session.get(Activity, other.id)).state == "rejected"  # type: ignore[union-attr]


async def test_block_and_delete_actor(world: World) -> None:
    world.session.add(Follow(follower=f"{BASE}/@alice", followee=BOB, state="accepted"))
    world.session.add(Follow(follower=BOB, followee=f"{BASE}/@alice", state="accepted"))
    await world.session.commit()
    await world.receive({"type": "Block", "object": f"{BASE}/@alice"})
    assert await world.count(Block) == 1 and await world.count(Follow) == 0
    await world.receive({"type": "Create", "object": {"id": f"{BOB}/notes/9", "type": "Note", "attributedTo": BOB,
                                                      "content": "x", "to": [PUBLIC]}})
    await world.receive({"type": "Delete", "object": BOB})
    bob = (await world.session.scalars(select(Actor).where(Actor.uri == BOB))).one()
    assert bob.gone
    assert all(o.deleted for o in (await world.session.scalars(select(APObject))).all())


@pytest.mark.parametrize(("icon", "stored"), [
    ({"type": "Image", "mediaType": "image/png", "url": "https://remote.example/a.png"}, "https://remote.example/a.png"),
    ([{"type": "Image", "url": [{"type": "Link", "href": "https://remote.example/b.png"}]}],
     "https://remote.example/b.png"),
    ("https://remote.example/c.png", "https://remote.example/c.png"),
    ({"type": "Image", "url": "javascript:alert(1)"}, ""),
    (None, ""),
])
async def test_actor_icons_in_every_shape(world: World, icon: Any, stored: str) -> None:
    doc = {"id": "https://remote.example/users/iris", "type": "Person", "inbox": "https://remote.example/inbox",
           **({"icon": icon} if icon is not None else {})}
    async with Federation(world.session, world.settings) as fed:
        actor = await fed.store_actor(doc, doc["id"])
    assert actor.icon_url == stored


async def test_boosts_of_private_notes_are_not_stored(world: World) -> None:
    for visibility, to in (("followers", [f"{BOB}/followers"]), ("direct", [f"{BASE}/@alice"])):
        note = {"id": f"{BOB}/notes/{visibility}", "type": "Note", "attributedTo": BOB, "content": "secret",
                "to": to}
        await world.receive({"type": "Create", "object": note})
        stored = (await world.session.scalars(select(APObject).where(APObject.ap_id == note["id"]))).one()
        assert stored.visibility == visibility
        await world.receive({"type": "Announce", "object": note["id"], "to": [PUBLIC]})
    assert await world.count(Announce) == 0


@pytest.mark.parametrize("evil", ["javascript://remote.example/%0Aalert(1)", "data://remote.example/x"])
async def test_ids_that_are_not_http_urls_are_refused(world: World, evil: str) -> None:
    async with Federation(world.session, world.settings) as fed:
        with pytest.raises(FetchError):
            await fed.store_actor({"id": evil, "type": "Person", "inbox": "https://remote.example/inbox"},
                                  "https://remote.example/users/x")
    bad = await world.receive({"type": "Create", "object": {"id": evil, "type": "Note", "attributedTo": BOB,
                                                             "content": "x", "to": [PUBLIC]}})
    assert (await world.session.get(Activity, bad.id)).state == "rejected"  # type: ignore[union-attr]
    assert await world.count(APObject) == 0


async def test_compose_refuses_too_many_mentions_and_replies_to_notes_one_cannot_see(world: World) -> None:
    from federation.activitypub.outbox import MAX_MENTIONS, OutboxError

    await world.receive({"type": "Create", "object": {"id": f"{BOB}/notes/secret", "type": "Note",
                                                       "attributedTo": BOB, "content": "for bob's followers",
                                                       "to": [f"{BOB}/followers"]}})
    async with Federation(world.session, world.settings) as fed:
        me = await fed.local_actor(f"{BASE}/@alice")
        assert me is not None
        crowd = " ".join(f"@u{i}@h{i}.example" for i in range(MAX_MENTIONS + 1))
        with pytest.raises(OutboxError, match=f"at most {MAX_MENTIONS}"):
            await Outbox(fed).post_note(me, crowd)
        for parent in (f"{BOB}/notes/secret", f"{BOB}/notes/never-existed"):  # one answer for both
            with pytest.raises(OutboxError, match="is gone") as refused:
                await Outbox(fed).post_note(me, "a reply", in_reply_to=parent)
            assert refused.value.status == 404
    assert await world.count(APObject, APObject.local) == 0
