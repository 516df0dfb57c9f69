"""Moderation: domain blocks (admin page, CLI, inbox, delivery), members' blocks (their own only),
reports (incoming Flag, members' reports, forwarding, the admin queue). SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.jobs import JobContext, Worker, enqueue
from app.safe_http import FetchError, SafeClient
from domains.account.models import User
from domains.account.schemas import SignupInput
from domains.account.services import AccountService
from federation.activitypub.core import Federation
from federation.activitypub.models import (
    Activity,
    Actor,
    Announce,
    APObject,
    Block,
    Delivery,
    DomainBlock,
    Follow,
    Like,
    Notification,
    Report,
)
from federation.activitypub.moderation import (
    DomainBlocks,
    Moderation,
    ModerationError,
    block_candidates,
    blocked_hosts,
    hidden_from,
    normalize_domain,
)
from federation.activitypub.outbox import Outbox, OutboxError
from federation.activitypub.processor import InboxPayload
from federation.activitypub.signatures import sign_cavage
from tests.federation.activitypub.test_social_hub import Browser
from tests.helpers.web import CSRF_FIELD, signup

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8000"
HOST = "127.0.0.1:8000"
ALICE, CAROL = f"{BASE}/@alice", f"{BASE}/@carol"
BOB = "https://remote.example/users/bob"
DAVE = "https://social.other.example/users/dave"
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"
AS2 = "application/activity+json"
BOB_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _remote(uri: str, *, shared: bool = True, key: rsa.RSAPrivateKey | None = None) -> Actor:
    host = uri.split("/")[2]
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode() if key else ""
    return Actor(uri=uri, local=False, type="Person", username=uri.rsplit("/", 1)[-1], domain=host,
                 inbox=f"{uri}/inbox", shared_inbox=f"https://{host}/inbox" if shared else "",
                 followers_url=f"{uri}/followers", key_id=f"{uri}#main-key", public_key_pem=pem,
                 fetched_at=datetime.now(UTC))


class Peers:
    """The remote servers: every POST is recorded (its JSON body with it)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(404)
        self.sent.append((str(request.url), json.loads(request.content)))
        return httpx.Response(202)

    def types(self) -> list[str]:
        return [body["type"] + (f"({body['object']['type']})" if isinstance(body.get("object"), dict) else "")
                for _url, body in self.sent]

    async def run(self, session: AsyncSession, settings: Any, rounds: int = 3) -> None:
        """Run queued jobs (inbox processing, then the deliveries it queued, ...)."""
        maker = async_sessionmaker(session.bind, expire_on_commit=False)
        client = SafeClient(allow_private=True, transport=httpx.MockTransport(self.handler))
        worker = Worker(maker, context=JobContext(sessionmaker=maker, settings=settings,
                                                  services={"federation_client": client}))
        for _ in range(rounds):
            if not await worker.run_once():
                break
        session.expire_all()


async def _count(session: AsyncSession, model: Any, *conds: Any) -> int:
    return int(await session.scalar(select(func.count()).select_from(model).where(*conds)) or 0)


# --- unit: domain names -------------------------------------------------------------------


def test_domains_are_normalised_and_validated() -> None:
    assert normalize_domain("  Evil.Example. ") == "evil.example"
    assert normalize_domain("evil.example:8443") == "evil.example:8443"
    assert normalize_domain("localhost") == "localhost"
    assert normalize_domain("203.0.113.9:80") == "203.0.113.9:80"
    assert normalize_domain("bücher.example") == "xn--bcher-kva.example"
    for bad, says in [("", "Enter a domain"), ("https://evil.example", "no https://"),
                      ("evil.example/path", "no https://"), ("bob@evil.example", "no https://"),
                      ("evil example", "no https://"), ("evil.example:0", "port"), ("evil.example:99999", "port"),
                      ("evil.example:x", "port"), ("-evil.example", "not a valid domain"),
                      ("evil..example", "not a valid domain"), ("ev_il.example", "not a valid domain"),
                      ("1.2.3", "neither"), ("[::1]", "no https://"), ("a:1:2", "port")]:
        with pytest.raises(ModerationError, match=re.escape(says)) as caught:
            normalize_domain(bad)
        assert caught.value.field == "domain"


def test_block_candidates_cover_parents_and_the_port() -> None:
    assert block_candidates("a.evil.example:8443") == ["a.evil.example:8443", "a.evil.example", "evil.example",
                                                       "example"]
    assert block_candidates("203.0.113.9") == ["203.0.113.9"]  # no "parent domains" of an address


# --- domain blocks: service, inbox, delivery ------------------------------------------------


@pytest.fixture
async def members(db_session: AsyncSession, settings: Any, app: Any) -> AsyncSession:
    """alice and carol here; bob (remote.example) and dave (social.other.example) elsewhere."""
    async with Federation(db_session, settings) as fed:
        for name in ("alice", "carol"):
            user = await AccountService(db_session).signup(SignupInput(
                username=name, email=f"{name}@example.org", password="correct horse battery staple"))
            await fed.local_actor_for_user(user)
        await fed.local_service_actor("instance")
    db_session.add_all([_remote(BOB, key=BOB_KEY), _remote(DAVE, shared=False)])
    await db_session.commit()
    return db_session


async def _actor(fed: Federation, uri: str) -> Actor:
    found = await fed.local_actor(uri) or await fed.session.scalar(select(Actor).where(Actor.uri == uri))
    assert found is not None
    return found


async def test_domain_block_ends_follows_fails_deliveries_and_covers_subdomains(
        members: AsyncSession, settings: Any) -> None:
    session = members
    session.add_all([Follow(follower=ALICE, followee=DAVE, state="accepted"),
                     Follow(follower=DAVE, followee=CAROL, state="accepted"),
                     Follow(follower=BOB, followee=ALICE, state="accepted")])
    await session.commit()
    async with Federation(session, settings) as fed:
        await Outbox(fed).post_note(await _actor(fed, CAROL), "before the block")
    await session.commit()
    assert await _count(session, Delivery, Delivery.state == "pending") == 1  # to dave's own inbox
    # "other.example" covers social.other.example (dave), not remote.example (bob)
    result = await DomainBlocks(session, HOST).add("Other.Example", "spam")
    await session.commit()
    assert result.created and result.follows_removed == 2 and result.deliveries_stopped == 1
    assert "removed 2 follows, stopped 1 pending delivery" in result.summary()
    assert (await session.scalars(select(Follow.follower))).all() == [BOB]
    delivery = (await session.scalars(select(Delivery))).one()
    assert delivery.state == "failed" and "blocked" in delivery.last_error
    async with Federation(session, settings) as fed:
        assert await fed.domain_blocked(DAVE) and await fed.domain_blocked("https://other.example:8443/x")
        assert not await fed.domain_blocked(BOB) and not await fed.domain_blocked("https://notother.example/u")
        # the outbox no longer addresses dave's inbox, even if he were still a follower
        session.add(Follow(follower=DAVE, followee=CAROL, state="accepted"))
        session.add(Follow(follower=BOB, followee=CAROL, state="accepted"))
        await session.flush()
        await Outbox(fed).post_note(await _actor(fed, CAROL), "after the block")
    await session.commit()
    pending = (await session.scalars(select(Delivery.inbox).where(Delivery.state == "pending"))).all()
    assert pending == ["https://remote.example/inbox"]
    # a block with a port covers that port only; the instance's own domain cannot be blocked
    await DomainBlocks(session, HOST).add("remote.example:8443")
    assert await blocked_hosts(session, ["remote.example:8443", "remote.example", "x.remote.example:8443"]) == {
        "remote.example:8443"}
    for own in (HOST, "127.0.0.1"):
        with pytest.raises(ModerationError, match="own domain"):
            await DomainBlocks(session, HOST).add(own)
    with pytest.raises(ModerationError, match="reason"):
        await DomainBlocks(session, HOST).add("x.example", "r" * 1001)
    # adding again keeps one row and updates the reason; removing works by domain
    again = await DomainBlocks(session, HOST).add("other.example", "still spam")
    assert not again.created and again.block.reason == "still spam"
    assert await DomainBlocks(session, HOST).remove("OTHER.example")
    assert not await DomainBlocks(session, HOST).remove("other.example")
    assert [b.domain for b in await DomainBlocks(session, HOST).all()] == ["remote.example:8443"]


def _signed(activity: dict[str, Any], key_id: str = f"{BOB}#main-key") -> tuple[bytes, dict[str, str]]:
    body = json.dumps(activity).encode()
    request = httpx.Request("POST", f"{BASE}/inbox", content=body, headers={"Content-Type": AS2})
    sign_cavage(request, key_id, BOB_KEY)
    return body, {k: v for k, v in request.headers.items() if k.lower() not in ("content-length", "host")}


async def test_inbox_refuses_subdomains_of_a_blocked_domain(client: Any, members: AsyncSession) -> None:
    members.add(DomainBlock(domain="example", reason="whole tld"))
    await members.commit()
    body, headers = _signed({"id": f"{BOB}/follows/1", "type": "Follow", "actor": BOB, "object": ALICE})
    r = await client.post("/inbox", content=body, headers=headers)
    assert r.status_code == 403 and "domain blocked" in r.text
    assert await _count(members, Activity) == 0


async def test_a_limited_domain_still_federates_but_its_follows_wait_for_approval(
        client: Any, members: AsyncSession, settings: Any) -> None:
    members.add(Follow(follower=DAVE, followee=ALICE, state="accepted"))
    await members.commit()
    result = await DomainBlocks(members, HOST).add("remote.example", "noisy", "limit")
    await members.commit()
    assert result.follows_removed == 0 and "Limited remote.example" in result.summary()
    assert await blocked_hosts(members, ["remote.example"]) == set()  # not suspended...
    assert await blocked_hosts(members, ["remote.example"], "limit") == {"remote.example"}
    # ...so bob's Follow of carol (whose account is not locked) is taken, but waits for her
    body, headers = _signed({"id": f"{BOB}/follows/1", "type": "Follow", "actor": BOB, "object": CAROL})
    assert (await client.post("/inbox", content=body, headers=headers)).status_code == 202
    peers = Peers()
    await peers.run(members, settings)
    follow = (await members.scalars(select(Follow).where(Follow.follower == BOB))).one()
    assert follow.state == "pending" and "Accept" not in peers.types()
    kinds = (await members.scalars(select(Notification.kind).where(Notification.actor == BOB))).all()
    assert kinds == ["follow_request"]
    # Suspending it later ends that follow and refuses the domain outright.
    again = await DomainBlocks(members, HOST).add("remote.example", severity="suspend")
    await members.commit()
    assert not again.created and again.follows_removed == 1 and again.block.reason == "noisy"
    body, headers = _signed({"id": f"{BOB}/follows/2", "type": "Follow", "actor": BOB, "object": CAROL})
    assert (await client.post("/inbox", content=body, headers=headers)).status_code == 403
    with pytest.raises(ModerationError, match="is not a severity"):
        await DomainBlocks(members, HOST).add("remote.example", severity="silence")


async def test_a_limited_domain_is_out_of_sight_of_those_who_dont_follow_it(
        client: Any, db_session: AsyncSession) -> None:
    people = await _hub(client, db_session, "alice", "carol")
    alice = await AccountService(db_session).by_username("alice")
    assert alice is not None
    now = datetime.now(UTC)
    db_session.add_all([
        APObject(ap_id=f"{BOB}/notes/1", attributed_to=BOB, content="<p>bob on a limited server</p>",
                 visibility="public", published=now, to=[PUBLIC]),
        APObject(ap_id=f"{DAVE}/notes/1", attributed_to=DAVE, content="<p>dave elsewhere</p>",
                 visibility="public", published=now, to=[PUBLIC]),
        Follow(follower=f"{BASE}/@alice", followee=BOB, state="accepted"),
        Notification(user_id=alice.id, kind="like", actor=BOB, object_id=""),
        Notification(user_id=alice.id, kind="boost", actor="https://remote.example/users/eve", object_id=""),
        Notification(user_id=alice.id, kind="follow_request", actor="https://remote.example/users/finn"),
    ])
    db_session.add_all([_remote("https://remote.example/users/eve"), _remote("https://remote.example/users/finn")])
    await db_session.commit()
    await DomainBlocks(db_session, HOST).add("remote.example", severity="limit")
    await db_session.commit()
    federated = {name: (await people.as_(name).get("/social/federated")).text for name in ("alice", "carol")}
    assert "bob on a limited server" in federated["alice"]  # she follows him
    assert "bob on a limited server" not in federated["carol"] and "dave elsewhere" in federated["carol"]
    # the unread count leaves out what the list will not show: bob's like and finn's request
    assert "Notifications (2)</a>" in (await people.as_("alice").get("/social/")).text
    notes = (await people.as_("alice").get("/social/notifications")).text
    assert "liked your post" in notes  # from bob, whom she follows
    assert "boosted your post" not in notes  # eve: limited, not followed
    assert "asked to follow you" in notes  # a request waits for an answer, so it still shows


# --- reports: incoming Flag ------------------------------------------------------------------


async def test_incoming_flag_is_verified_and_becomes_reports(client: Any, members: AsyncSession,
                                                             settings: Any) -> None:
    async with Federation(members, settings) as fed:
        note_id = (await Outbox(fed).post_note(await _actor(fed, ALICE), "rude words")).ap_id
    await members.commit()
    flag = {"@context": "https://www.w3.org/ns/activitystreams", "id": f"{BOB}/flags/1", "type": "Flag",
            "actor": BOB, "content": "<p>Spam &amp; abuse</p>",
            "object": [ALICE, note_id, CAROL, "https://elsewhere.example/notes/1", f"{BASE}/ap/actors/blog"]}
    # unsigned: refused at the door, nothing stored
    r = await client.post("/inbox", content=json.dumps(flag).encode(), headers={"Content-Type": AS2})
    assert r.status_code == 401 and await _count(members, Activity, Activity.direction == "in") == 0
    body, headers = _signed(flag)
    assert (await client.post("/inbox", content=body, headers=headers)).status_code == 202
    await Peers().run(members, settings)
    reports = {r.target: r for r in (await members.scalars(select(Report))).all()}
    assert set(reports) == {ALICE, CAROL}  # members only: not the remote note, not the blog actor
    assert reports[ALICE].object_ids == [note_id] and reports[CAROL].object_ids == []
    assert reports[ALICE].comment == "Spam & abuse" and reports[ALICE].origin == "remote"
    assert reports[ALICE].reporter == BOB and reports[ALICE].activity_id == f"{BOB}/flags/1"
    assert reports[ALICE].state == "open"


# --- members' blocks: the processor ----------------------------------------------------------


async def _receive(session: AsyncSession, settings: Any, peers: Peers, activity: dict[str, Any],
                   actor: str = BOB) -> str:
    activity = {"id": f"{actor}/activities/{uuid4()}", "actor": actor, **activity}
    row = Activity(ap_id=activity["id"], direction="in", type=activity["type"], actor_uri=actor, raw=activity,
                   trusted=True, signer=actor, verification="cavage:rsa-sha256", state="received")
    session.add(row)
    await session.flush()
    await enqueue(session, "ap.inbox", InboxPayload(activity_id=str(row.id)))
    row_id = row.id
    await session.commit()
    await peers.run(session, settings)
    found = await session.get(Activity, row_id)
    assert found is not None and found.state == "processed", found and found.error
    return found.ap_id


async def test_a_members_block_is_theirs_alone(members: AsyncSession, settings: Any) -> None:
    session, peers = members, Peers()
    session.add_all([Follow(follower=ALICE, followee=BOB, state="accepted", activity_id=f"{BASE}/ap/activities/f1"),
                     Follow(follower=BOB, followee=ALICE, state="accepted", activity_id=f"{BOB}/follows/1"),
                     Notification(user_id=(await session.scalars(select(Actor.user_id).where(Actor.uri == ALICE)))
                                  .one(), kind="like", actor=BOB)])
    await session.commit()
    async with Federation(session, settings) as fed:
        alice, carol = await _actor(fed, ALICE), await _actor(fed, CAROL)
        await Moderation(fed).block(alice, await _actor(fed, BOB))
        await Moderation(fed).block(alice, await _actor(fed, BOB))  # twice is once
        mine = (await Outbox(fed).post_note(alice, "alice's")).ap_id
        theirs = (await Outbox(fed).post_note(carol, "carol's")).ap_id
        with pytest.raises(ModerationError, match="yourself"):
            await Moderation(fed).block(alice, alice)
        with pytest.raises(ModerationError, match="can't be blocked"):
            await Moderation(fed).block(alice, await fed.local_service_actor("blog"))
    await session.commit()
    await peers.run(session, settings)
    # Mastodon's order of things: unfollow (Undo Follow), remove the follower (Reject), Block
    assert sorted(peers.types()) == ["Block", "Reject(Follow)", "Undo(Follow)"]
    block = next(body for _url, body in peers.sent if body["type"] == "Block")
    assert block["actor"] == ALICE and block["object"] == BOB
    assert await _count(session, Follow) == 0 and await _count(session, Block) == 1
    assert await _count(session, Notification) == 0  # her notifications from bob are gone
    peers.sent.clear()

    # bob's follow of alice is rejected; of carol, accepted
    await _receive(session, settings, peers, {"type": "Follow", "object": ALICE})
    await _receive(session, settings, peers, {"type": "Follow", "object": CAROL})
    assert (await session.scalars(select(Follow.followee))).all() == [CAROL]
    assert sorted(peers.types()) == ["Accept(Follow)", "Reject(Follow)"]
    # likes and boosts of alice's note are dropped; of carol's, kept and notified
    for kind in ("Like", "Announce"):
        await _receive(session, settings, peers, {"type": kind, "object": mine, "to": [PUBLIC]})
        await _receive(session, settings, peers, {"type": kind, "object": theirs, "to": [PUBLIC]})
    assert (await session.scalars(select(Like.object_id))).all() == [theirs]
    assert (await session.scalars(select(Announce.object_id))).all() == [theirs]
    # a reply to alice mentioning both: stored (carol sees it), only carol is told
    await _receive(session, settings, peers, {"type": "Create", "object": {
        "id": f"{BOB}/notes/1", "type": "Note", "attributedTo": BOB, "content": "hi both", "to": [PUBLIC],
        "inReplyTo": mine, "tag": [{"type": "Mention", "href": ALICE}, {"type": "Mention", "href": CAROL}]}})
    assert await _count(session, APObject, APObject.ap_id == f"{BOB}/notes/1") == 1
    told = (await session.execute(select(User.username, Notification.kind).join(
        User, User.id == Notification.user_id).order_by(Notification.kind))).all()
    assert [tuple(t) for t in told] == [("carol", "boost"), ("carol", "follow"), ("carol", "like"),
                                        ("carol", "mention")]
    # timelines leave out whom a member blocks (and who blocks them) with hidden_from
    visible = (await session.scalars(select(APObject.ap_id).where(
        APObject.attributed_to.not_in(hidden_from(ALICE))))).all()
    assert f"{BOB}/notes/1" not in visible and mine in visible
    assert f"{BOB}/notes/1" in (await session.scalars(select(APObject.ap_id).where(
        APObject.attributed_to.not_in(hidden_from(CAROL))))).all()
    assert (await session.scalars(select(Announce.actor).where(Announce.actor.not_in(hidden_from(ALICE))))).all() == []

    # unblock: Undo(Block) goes out, and bob's likes reach alice again
    peers.sent.clear()
    async with Federation(session, settings) as fed:
        assert await Moderation(fed).unblock(await _actor(fed, ALICE), await _actor(fed, BOB))
        assert not await Moderation(fed).unblock(await _actor(fed, ALICE), await _actor(fed, BOB))
    await session.commit()
    await peers.run(session, settings)
    assert peers.types() == ["Undo(Block)"] and peers.sent[0][1]["object"]["id"] == block["id"]
    await _receive(session, settings, peers, {"type": "Like", "object": mine})
    assert await _count(session, Like, Like.object_id == mine) == 1
    assert await _count(session, Notification, Notification.kind == "like", Notification.actor == BOB) == 2


async def test_remote_undo_block_lifts_only_that_block(members: AsyncSession, settings: Any) -> None:
    peers = Peers()
    first = await _receive(members, settings, peers, {"type": "Block", "object": ALICE})
    await _receive(members, settings, peers, {"type": "Block", "object": CAROL})
    assert await _count(members, Block, Block.actor == BOB) == 2
    await _receive(members, settings, peers, {"type": "Undo", "object": first})
    assert (await members.scalars(select(Block.target))).all() == [CAROL]
    await _receive(members, settings, peers, {"type": "Undo", "object": {"type": "Block", "actor": BOB,
                                                                          "object": CAROL}})
    assert await _count(members, Block) == 0


async def test_local_members_blocks_stop_follows_and_notifications(members: AsyncSession, settings: Any) -> None:
    session = members
    async with Federation(session, settings) as fed:
        alice, carol = await _actor(fed, ALICE), await _actor(fed, CAROL)
        await Outbox(fed).follow(carol, alice)
        await Moderation(fed).block(alice, carol)
        assert await _count(session, Follow) == 0
        note = await Outbox(fed).post_note(alice, "hello")
        await Outbox(fed).like(carol, note)  # stored, but alice is not told
        for follower, followee, why in ((carol, alice, "can't follow"), (alice, carol, "unblock it first")):
            with pytest.raises(OutboxError, match=why):
                await Outbox(fed).follow(follower, followee)
        assert await _count(session, Follow) == 0
    await session.commit()
    kinds = (await session.scalars(select(Notification.kind))).all()
    assert kinds == []  # carol's earlier follow notification went with the block; the like never came
    assert await _count(session, Delivery) == 0  # all local: nothing to deliver


# --- the hub: members' blocks and reports ------------------------------------------------------


class People(Browser):
    """Several people on one test client (each with their own cookie jar), posting forms by name."""

    def as_(self, name: str) -> Any:
        return self.switch(name)

    async def post(self, name: str, path: str, data: dict[str, str], page: str = "/social/") -> Any:
        client = self.as_(name)
        match = CSRF_FIELD.search((await client.get(page)).text)
        assert match, page
        return await client.post(path, data={**data, "_csrf_token": match.group(1)})


async def _hub(client: Any, db_session: AsyncSession, *names: str) -> People:
    people = People(client)
    for name in names:
        assert (await signup(people.as_(name), name)).status_code == 303
    db_session.add_all([_remote(BOB), _remote(DAVE, shared=False)])
    await db_session.commit()
    return people


async def test_member_guards(client: Any, db_session: AsyncSession) -> None:
    for path in ("/social/blocks", "/social/reports/new?actor=x"):
        r = await client.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/account/login")
    people = await _hub(client, db_session, "alice")
    r = await people.as_("alice").post("/social/block", data={"actor": BOB})
    assert r.status_code == 403  # no CSRF token
    assert await _count(db_session, Block) == 0
    assert (await people.as_("alice").get("/social/reports/new")).status_code == 404
    assert (await people.as_("alice").get(f"/social/reports/new?actor={BASE}/@nobody")).status_code == 404


async def test_hub_block_and_unblock(client: Any, db_session: AsyncSession, settings: Any) -> None:
    people, peers = await _hub(client, db_session, "alice", "carol"), Peers()
    db_session.add(Follow(follower=BOB, followee=ALICE, state="accepted", activity_id=f"{BOB}/follows/1"))
    await db_session.commit()
    r = await people.post("alice", "/social/block", {"actor": BOB, "next": "/social/federated"})
    assert r.status_code == 303 and r.headers["location"] == "/social/federated"
    page = (await people.as_("alice").get("/social/blocks")).text
    assert "@bob@remote.example" in page and f'value="{BOB}"' in page and "Blocked @bob@remote.example." in page
    assert "You haven't blocked anyone" in (await people.as_("carol").get("/social/blocks")).text
    await peers.run(db_session, settings)
    assert sorted(peers.types()) == ["Block", "Reject(Follow)"]
    assert {url for url, _ in peers.sent} == {"https://remote.example/inbox"}
    # by handle, a local member; bad input is a message, not an error page
    r = await people.post("alice", "/social/block", {"handle": "@carol@127.0.0.1:8000"})
    assert r.status_code == 303 and r.headers["location"] == "/social/blocks"
    for data, says in (({"handle": "@alice@127.0.0.1:8000"}, "You can&#39;t block yourself."),
                       ({"handle": "not a handle"}, "Couldn&#39;t block not a handle"),
                       ({}, "Say whom to block")):
        r = await people.post("alice", "/social/block", data)
        assert r.status_code == 303
        assert says in (await people.as_("alice").get("/social/blocks")).text, says
    assert (await db_session.scalars(select(Block.target).where(Block.actor == ALICE).order_by(
        Block.target))).all() == sorted([BOB, CAROL])
    # carol now cannot follow alice; alice can't follow carol until she unblocks
    r = await people.post("carol", "/social/follow", {"handle": "@alice@127.0.0.1:8000"})
    assert "You can&#39;t follow this account." in (await people.as_("carol").get("/social/following")).text
    peers.sent.clear()
    r = await people.post("alice", "/social/unblock", {"actor": BOB}, page="/social/blocks")
    assert r.status_code == 303
    await peers.run(db_session, settings)
    assert peers.types() == ["Undo(Block)"]
    r = await people.post("alice", "/social/unblock", {"actor": BOB}, page="/social/blocks")
    assert "You weren&#39;t blocking that account." in (await people.as_("alice").get("/social/blocks")).text
    assert (await db_session.scalars(select(Block.target))).all() == [CAROL]


def _note_ids(html: str) -> list[str]:
    return re.findall(r'id="note-([0-9a-f-]{36})"', html)


async def test_hub_reports_and_forwarding(client: Any, db_session: AsyncSession, settings: Any) -> None:
    people, peers = await _hub(client, db_session, "alice", "carol"), Peers()
    db_session.add(APObject(ap_id=f"{BOB}/notes/7", local=False, type="Note", attributed_to=BOB,
                            content="<p>buy my pills</p>", visibility="public", to=[PUBLIC],
                            published=datetime.now(UTC)))
    await db_session.commit()
    await people.post("carol", "/social/compose", {"content": "secret", "visibility": "direct"})
    await people.post("carol", "/social/compose", {"content": "carol's public", "visibility": "public"})
    federated = (await people.as_("alice").get("/social/federated")).text
    ids = _note_ids(federated)
    bob_note = (await db_session.scalars(select(APObject.id).where(APObject.ap_id == f"{BOB}/notes/7"))).one()
    carol_note = next(i for i in ids if UUID(i) != bob_note)
    direct = (await db_session.scalars(select(APObject.id).where(APObject.visibility == "direct"))).one()

    form = await people.as_("alice").get(f"/social/reports/new?note={bob_note}&next=/social/federated")
    assert form.status_code == 200 and "buy my pills" in form.text and 'name="forward"' in form.text
    r = await people.post("alice", "/social/reports", {"note": str(bob_note), "comment": "spam <b>!</b>",
                                                       "forward": "on", "next": "/social/federated"})
    assert r.status_code == 303 and r.headers["location"] == "/social/federated"
    report = (await db_session.scalars(select(Report))).one()
    assert (report.origin, report.target, report.object_ids, report.comment) == (
        "local", BOB, [f"{BOB}/notes/7"], "spam <b>!</b>")
    assert report.reporter == ALICE and report.forwarded_activity
    forwarded = report.forwarded_activity
    await peers.run(db_session, settings)
    url, flag = peers.sent[0]
    assert url == "https://remote.example/inbox" and flag["type"] == "Flag"
    assert flag["actor"] == f"{BASE}/ap/actors/instance" and flag["object"] == [BOB, f"{BOB}/notes/7"]
    assert flag["content"] == "spam <b>!</b>" and flag["id"] == forwarded
    # an account, local, not forwarded (no forward box for a local account)
    form = await people.as_("alice").get(f"/social/reports/new?actor={CAROL}")
    assert form.status_code == 200 and 'name="forward"' not in form.text
    r = await people.post("alice", "/social/reports", {"note": carol_note, "forward": "on"})
    assert r.status_code == 303 and r.headers["location"] == "/social/"
    assert await _count(db_session, Report, Report.target == CAROL) == 1
    assert await _count(db_session, Delivery) == 1  # only the Flag about bob
    # bad input: re-shown with the message and a 422; notes one may not see are 404
    r = await people.post("alice", "/social/reports", {"actor": BOB, "comment": "x" * 1001})
    assert r.status_code == 422 and "Keep the comment under 1000 characters." in r.text
    r = await people.post("alice", "/social/reports", {"actor": ALICE})
    assert r.status_code == 422 and "You can&#39;t report yourself." in r.text
    for data in ({"note": str(direct)}, {"note": "not-a-uuid"}, {"actor": "https://x/"}, {}):
        assert (await people.post("alice", "/social/reports", data)).status_code == 404, data
    assert (await people.as_("alice").get(f"/social/reports/new?note={direct}")).status_code == 404
    assert await _count(db_session, Report) == 2


# --- the admin pages ------------------------------------------------------------------------


async def _make_admin(db_session: AsyncSession, username: str) -> None:
    await db_session.execute(update(User).where(User.username == username).values(is_admin=True))
    await db_session.commit()


async def test_admin_pages_are_for_admins_only(client: Any, db_session: AsyncSession) -> None:
    pages = ("/social/admin/domain-blocks", "/social/admin/reports")
    for path in pages:
        r = await client.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/account/login")
    people = await _hub(client, db_session, "alice", "ada")
    await _make_admin(db_session, "ada")
    for path in pages:
        assert (await people.as_("alice").get(path)).status_code == 403
        assert (await people.as_("ada").get(path)).status_code == 200
    block = DomainBlock(domain="kept.example")
    report = Report(origin="local", reporter=ALICE, target=BOB)
    db_session.add_all([block, report])
    await db_session.commit()
    for path, data in (("/social/admin/domain-blocks", {"domain": "evil.example"}),
                       (f"/social/admin/domain-blocks/{block.id}/delete", {}),
                       (f"/social/admin/reports/{report.id}/resolve", {})):
        r = await people.post("alice", path, data)
        assert r.status_code == 403, path
    assert (await db_session.scalars(select(DomainBlock.domain))).all() == ["kept.example"]
    assert (await db_session.scalars(select(Report.state))).all() == ["open"]
    # an admin: what does not exist is 404
    for path in (f"/social/admin/domain-blocks/{UUID(int=1)}/delete", f"/social/admin/reports/{UUID(int=1)}/resolve"):
        assert (await people.post("ada", path, {})).status_code == 404


async def test_admin_domain_blocks_page(client: Any, db_session: AsyncSession) -> None:
    people = await _hub(client, db_session, "ada")
    await _make_admin(db_session, "ada")
    db_session.add_all([Follow(follower=DAVE, followee=f"{BASE}/@ada", state="accepted"),
                        Follow(follower=BOB, followee=f"{BASE}/@ada", state="accepted")])
    await db_session.commit()
    page = "/social/admin/domain-blocks"
    for bad, says in (("https://evil.example/about", "no https://"), ("evil.example:70000", "port"),
                      ("", "Enter a domain"), (HOST, "own domain")):
        r = await people.post("ada", page, {"domain": bad, "reason": "keep me"}, page=page)
        assert r.status_code == 422 and says in r.text and 'aria-invalid="true"' in r.text, bad
        assert "keep me" in r.text  # what was typed stays in the form
    r = await people.post("ada", page, {"domain": "x.example", "reason": "r" * 1001}, page=page)
    assert r.status_code == 422 and "Keep the reason under" in r.text
    r = await people.post("ada", page, {"domain": "Other.Example", "reason": "<script>spam</script>"}, page=page)
    assert r.status_code == 303 and r.headers["location"] == page
    listing = (await people.as_("ada").get(page)).text
    assert "Blocked other.example: removed 1 follow, stopped 0 pending deliveries." in listing
    assert "<code>other.example</code>" in listing and "&lt;script&gt;spam&lt;/script&gt;" in listing
    assert (await db_session.scalars(select(Follow.follower))).all() == [BOB]
    block_id = (await db_session.scalars(select(DomainBlock.id))).one()
    r = await people.post("ada", f"{page}/{block_id}/delete", {}, page=page)
    assert r.status_code == 303 and await _count(db_session, DomainBlock) == 0
    assert "Unblocked other.example." in (await people.as_("ada").get(page)).text
    # Limit: nothing ends; the choice and the severity show; a made-up severity is refused.
    r = await people.post("ada", page, {"domain": "remote.example", "severity": "obliterate"}, page=page)
    assert r.status_code == 422 and "is not a severity" in r.text and await _count(db_session, DomainBlock) == 0
    r = await people.post("ada", page, {"domain": "remote.example", "severity": "limit"}, page=page)
    assert r.status_code == 303
    listing = (await people.as_("ada").get(page)).text
    assert "Limited remote.example: its accounts&#39; posts show only to their followers" in listing
    assert "<td>Limit</td>" in listing and ">Lift limit</button>" in listing
    assert (await db_session.scalars(select(Follow.follower))).all() == [BOB]


async def test_admin_reports_queue(client: Any, db_session: AsyncSession) -> None:
    people = await _hub(client, db_session, "alice", "ada")
    await _make_admin(db_session, "ada")
    note = APObject(ap_id=f"{BOB}/notes/7", local=False, type="Note", attributed_to=BOB,
                    content="<p>buy my pills</p>", visibility="followers", to=[], published=datetime.now(UTC))
    db_session.add(note)
    db_session.add(Report(origin="remote", activity_id=f"{DAVE}/flags/1", reporter=DAVE, target=BOB,
                          object_ids=[note.ap_id, f"{BOB}/notes/gone"], comment="<i>pills</i> again"))
    await db_session.commit()
    page = (await people.as_("ada").get("/social/admin/reports")).text
    assert "@bob@remote.example" in page and "@dave@social.other.example" in page
    assert "&lt;i&gt;pills&lt;/i&gt; again" in page and "(another server)" in page
    assert f'href="/social/notes/{note.id}"' in page and "buy my pills" in page  # our stored copy
    assert f"{BOB}/notes/gone" in page and "not stored here" in page
    report = (await db_session.scalars(select(Report))).one()
    r = await people.post("ada", f"/social/admin/reports/{report.id}/resolve", {}, page="/social/admin/reports")
    assert r.status_code == 303
    db_session.expire_all()
    report = (await db_session.scalars(select(Report))).one()
    assert report.state == "resolved" and report.resolved_at is not None and report.resolved_by_id is not None
    assert "No open reports." in (await people.as_("ada").get("/social/admin/reports")).text
    resolved = (await people.as_("ada").get("/social/admin/reports?state=resolved")).text
    assert "pills" in resolved and "by @ada" in resolved
    r = await people.post("ada", f"/social/admin/reports/{report.id}/reopen", {})
    assert r.status_code == 303
    db_session.expire_all()
    assert (await db_session.scalars(select(Report.state))).one() == "open"


# --- the CLI --------------------------------------------------------------------------------


async def test_cli_domain_blocks(settings: Any, db_session: AsyncSession) -> None:
    from functools import partial

    import anyio
    from click.testing import CliRunner

    from app import create_app
    from federation.activitypub.cli import federation_group

    class Obj:
        app = create_app(settings)

    async def cli(*args: str) -> Any:  # the command runs its own event loop: give it a thread
        return await anyio.to_thread.run_sync(partial(CliRunner().invoke, federation_group, list(args), obj=Obj))

    async def follows_and_blocks() -> tuple[list[str], list[str]]:
        db_session.expire_all()
        return (list((await db_session.scalars(select(Follow.follower))).all()),
                list((await db_session.scalars(select(DomainBlock.domain))).all()))

    db_session.add_all([_remote(DAVE), Follow(follower=DAVE, followee=BOB, state="accepted")])
    await db_session.commit()
    ok = await cli("block-domain", "Social.Other.Example", "--reason", "spam  wave")
    assert ok.exit_code == 0, ok.output
    assert "Blocked social.other.example: removed 1 follow" in ok.output
    assert await follows_and_blocks() == ([], ["social.other.example"])
    limited = await cli("block-domain", "remote.example", "--severity", "limit")
    assert limited.exit_code == 0 and "Limited remote.example" in limited.output
    assert (await cli("block-domain", "x.example", "--severity", "gone")).exit_code == 2  # click's usage error
    listed = await cli("blocked-domains")
    assert listed.exit_code == 0
    assert listed.output == "remote.example\tlimit\t\nsocial.other.example\tsuspend\tspam wave\n"
    assert (await cli("unblock-domain", "remote.example")).exit_code == 0
    bad = await cli("block-domain", "https://evil.example/")
    assert bad.exit_code == 1 and "error: domain:" in bad.output and "no https://" in bad.output
    assert (await cli("unblock-domain", "social.other.example")).exit_code == 0
    missing = await cli("unblock-domain", "social.other.example")
    assert missing.exit_code == 1 and "social.other.example is not blocked" in missing.output
    assert (await cli("unblock-domain", "a b")).exit_code == 1
    assert (await follows_and_blocks())[1] == []


async def test_a_blocked_account_cannot_be_followed_and_blocked_servers_are_not_fetched(
        members: AsyncSession, settings: Any) -> None:
    session = members
    asked: list[str] = []

    def peer(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        return httpx.Response(200, json={"id": str(request.url), "type": "Note"},
                              headers={"Content-Type": AS2})

    client = SafeClient(allow_private=True, transport=httpx.MockTransport(peer))
    async with Federation(session, settings, client) as fed:
        alice = await _actor(fed, ALICE)
        await Moderation(fed).block(alice, await _actor(fed, BOB))
        with pytest.raises(OutboxError, match="unblock it first"):
            await Outbox(fed).follow(alice, await _actor(fed, BOB))
        await session.commit()
        await DomainBlocks(session, HOST).add("other.example", "spam")
        await session.commit()
        with pytest.raises(FetchError) as refused:
            await fed.fetch_object("https://social.other.example/notes/1")  # a subdomain of the block
        assert refused.value.status == 403 and "blocked" in str(refused.value)
        assert (await fed.fetch_object("https://remote.example/notes/1"))["type"] == "Note"
    assert asked == ["https://remote.example/notes/1"]


async def test_blocked_accounts_vanish_from_the_blockers_timelines_only(client: Any, db_session: AsyncSession) -> None:
    people = await _hub(client, db_session, "alice", "bob", "carol")
    await people.post("carol", "/social/compose", {"content": "carol says hi", "visibility": "public"})
    await people.post("alice", "/social/compose", {"content": "alice says hi", "visibility": "public"})
    alice_note = re.findall(r'id="note-([0-9a-f-]{36})"', (await people.as_("alice").get("/social/local")).text)
    mine = [n for n in alice_note if "alice says hi" in (await people.as_("alice").get(f"/social/notes/{n}")).text]
    assert "carol says hi" in (await people.as_("alice").get("/social/local")).text
    page = (await people.as_("alice").get(f"/social/accounts/carol@{HOST}")).text
    assert 'action="/social/block"' in page and "/social/reports/new?actor=" in page

    r = await people.post("alice", "/social/block", {"actor": CAROL, "next": f"/social/accounts/carol@{HOST}"})
    assert r.status_code == 303
    page = (await people.as_("alice").get(f"/social/accounts/carol@{HOST}")).text
    assert "Blocked" in page and 'action="/social/unblock"' in page
    for tab in ("/social/", "/social/local", "/social/federated"):
        assert "carol says hi" not in (await people.as_("alice").get(tab)).text, tab
    assert "carol says hi" in (await people.as_("bob").get("/social/local")).text  # bob is not alice
    # carol's like still happens on her side, but alice hears nothing of it
    await people.post("carol", f"/social/notes/{mine[0]}/like", {"next": "/social/local"})
    assert "liked your post" not in (await people.as_("alice").get("/social/notifications")).text
    # and carol no longer sees alice either (blocks hide both ways)
    assert "alice says hi" not in (await people.as_("carol").get("/social/local")).text

    r = await people.post("alice", "/social/unblock", {"actor": CAROL, "next": "/social/local"})
    assert r.status_code == 303
    assert "carol says hi" in (await people.as_("alice").get("/social/local")).text


async def test_a_blocked_member_cannot_see_or_act_on_the_blockers_notes(client: Any, db_session: AsyncSession) -> None:
    people = await _hub(client, db_session, "alice", "carol")
    await people.post("alice", "/social/compose", {"content": "alice's note", "visibility": "public"})
    note = re.findall(r'id="note-([0-9a-f-]{36})"', (await people.as_("alice").get("/social/local")).text)[0]
    assert (await people.post("alice", "/social/block", {"actor": CAROL})).status_code == 303
    assert (await people.as_("carol").get(f"/social/notes/{note}")).status_code == 404
    for action in ("like", "boost"):
        r = await people.post("carol", f"/social/notes/{note}/{action}", {"next": "/social/"})
        assert r.status_code == 404
    assert await _count(db_session, Like) == 0 and await _count(db_session, Announce) == 0
