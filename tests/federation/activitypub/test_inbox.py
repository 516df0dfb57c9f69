"""In-process: actors, discovery, collections, and every bad inbox input (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.jobs import JobContext, Worker
from app.safe_http import SafeClient
from domains.account.schemas import SignupInput
from domains.account.services import AccountService
from federation.activitypub.models import Activity, Actor, APObject, Follow, Notification
from federation.activitypub.signatures import sign_cavage, sign_rfc9421

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8000"
AS2 = "application/activity+json"
REMOTE = "https://remote.example/users/bob"
REMOTE_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER = "https://remote.example/users/eve"
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key: rsa.RSAPrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


async def _remote_actor(session: AsyncSession, uri: str, key: rsa.RSAPrivateKey) -> None:
    session.add(Actor(uri=uri, local=False, type="Person", username=uri.rsplit("/", 1)[-1], domain="remote.example",
                      inbox=f"{uri}/inbox", shared_inbox="https://remote.example/inbox",
                      followers_url=f"{uri}/followers", key_id=f"{uri}#main-key", public_key_pem=_pem(key),
                      fetched_at=datetime.now(UTC)))
    await session.commit()


@pytest.fixture
async def world(db_session: AsyncSession, app: Any) -> AsyncSession:
    await AccountService(db_session).signup(SignupInput(username="alice", email="alice@example.org",
                                                        password="correct horse battery staple"))
    await db_session.commit()
    await _remote_actor(db_session, REMOTE, REMOTE_KEY)
    await _remote_actor(db_session, OTHER, OTHER_KEY)
    return db_session


def _signed(path: str, activity: dict[str, Any] | bytes, *, key: rsa.RSAPrivateKey = REMOTE_KEY,
            key_id: str = f"{REMOTE}#main-key", spec: str = "cavage", now: datetime | None = None
            ) -> tuple[bytes, dict[str, str]]:
    body = activity if isinstance(activity, bytes) else json.dumps(activity).encode()
    req = httpx.Request("POST", BASE + path, content=body, headers={"Content-Type": AS2})
    (sign_cavage if spec == "cavage" else sign_rfc9421)(req, key_id, key, now=now)
    return body, {k: v for k, v in req.headers.items() if k.lower() not in ("content-length", "host")}


def _follow(n: int = 1, actor: str = REMOTE) -> dict[str, Any]:
    return {"@context": "https://www.w3.org/ns/activitystreams", "id": f"{actor}/follows/{n}", "type": "Follow",
            "actor": actor, "object": f"{BASE}/@alice"}


async def _count(session: AsyncSession, model: Any) -> int:
    session.expire_all()
    return int(await session.scalar(select(func.count()).select_from(model)) or 0)


def _worker(engine_session: AsyncSession, settings: Any, sent: list[httpx.Request]) -> Worker:
    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(202)

    maker = async_sessionmaker(engine_session.bind, expire_on_commit=False)
    client = SafeClient(allow_private=True, transport=httpx.MockTransport(handler))
    ctx = JobContext(sessionmaker=maker, settings=settings, services={"federation_client": client})
    return Worker(maker, context=ctx)


async def test_actor_negotiation_and_key_round_trip(client: Any, world: AsyncSession) -> None:
    html = await client.get("/@alice", headers={"Accept": "text/html"})
    assert html.status_code == 200 and "text/html" in html.headers["content-type"]
    assert "Accept" in html.headers.get("vary", "")
    for accept in (AS2, 'application/ld+json; profile="https://www.w3.org/ns/activitystreams"'):
        r = await client.get("/@alice", headers={"Accept": accept})
        assert r.status_code == 200 and r.headers["content-type"].startswith(AS2)
        assert "Accept" in r.headers["vary"]
        doc = r.json()
        assert doc["id"] == f"{BASE}/@alice" and doc["type"] == "Person"
        assert doc["publicKey"]["id"] == f"{BASE}/@alice#main-key" and doc["publicKey"]["owner"] == doc["id"]
        assert doc["publicKey"]["publicKeyPem"].startswith("-----BEGIN PUBLIC KEY-----")
        assert doc["inbox"] == f"{BASE}/@alice/inbox" and doc["endpoints"]["sharedInbox"] == f"{BASE}/inbox"
    for name, kind in (("blog", "Service"), ("market", "Service"), ("events", "Service"), ("forge", "Application"),
                       ("instance", "Application")):
        r = await client.get(f"/ap/actors/{name}", headers={"Accept": AS2})
        assert r.status_code == 200 and r.json()["type"] == kind
        assert r.json()["publicKey"]["id"] == f"{BASE}/ap/actors/{name}#main-key"
    assert (await client.get("/@nobody", headers={"Accept": AS2})).status_code == 404


async def test_discovery(client: Any, world: AsyncSession) -> None:
    r = await client.get("/.well-known/webfinger", params={"resource": "acct:alice@127.0.0.1:8000"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/jrd+json")
    self_link = next(link for link in r.json()["links"] if link["rel"] == "self")
    assert self_link == {"rel": "self", "type": AS2, "href": f"{BASE}/@alice"}
    r = await client.get("/.well-known/webfinger", params={"resource": "acct:blog@127.0.0.1:8000"})
    assert r.json()["links"][0]["href"] == f"{BASE}/ap/actors/blog"
    assert (await client.get("/.well-known/webfinger", params={"resource": "acct:x@elsewhere.org"})).status_code == 404
    assert (await client.get("/.well-known/webfinger")).status_code == 400
    r = await client.get("/.well-known/host-meta")
    assert "lrdd" in r.text and r.headers["content-type"].startswith("application/xrd+xml")
    assert (await client.get("/.well-known/host-meta.json")).json()["links"][0]["rel"] == "lrdd"
    links = (await client.get("/.well-known/nodeinfo")).json()["links"]
    assert {link["rel"] for link in links} >= {"http://nodeinfo.diaspora.software/ns/schema/2.1",
                                               "https://www.w3.org/ns/activitystreams#Application"}
    for version in ("2.1", "2.0"):
        info = (await client.get(f"/nodeinfo/{version}")).json()
        assert info["version"] == version and info["protocols"] == ["activitypub"]
        assert info["usage"]["users"]["total"] == 1


@pytest.mark.parametrize("spec", ["cavage", "rfc9421"])
async def test_follow_is_stored_processed_and_accepted(client: Any, world: AsyncSession, settings: Any,
                                                       spec: str) -> None:
    body, headers = _signed("/@alice/inbox", _follow(), spec=spec)
    r = await client.post("/@alice/inbox", content=body, headers=headers)
    assert r.status_code == 202, r.text
    # de-duplicated by activity id: a second delivery is also 202 and stores nothing new
    body2, headers2 = _signed("/inbox", _follow())
    assert (await client.post("/inbox", content=body2, headers=headers2)).status_code == 202
    assert await _count(world, Activity) == 1
    stored = (await world.scalars(select(Activity))).one()
    assert stored.trusted and stored.signer == REMOTE and stored.verification.startswith(spec)
    sent: list[httpx.Request] = []
    await _worker(world, settings, sent).run_once()
    world.expire_all()
    follow = (await world.scalars(select(Follow))).one()
    assert follow.state == "accepted" and follow.follower == REMOTE
    assert [req.url for req in sent] == [httpx.URL("https://remote.example/inbox")]
    accept = json.loads(sent[0].content)
    assert accept["type"] == "Accept" and accept["object"]["id"] == _follow()["id"]
    assert "signature" in sent[0].headers and "digest" in sent[0].headers
    assert await _count(world, Notification) == 1
    followers = (await client.get("/@alice/followers?page=1", headers={"Accept": AS2})).json()
    assert followers["orderedItems"] == [REMOTE] and followers["type"] == "OrderedCollectionPage"
    top = (await client.get("/@alice/followers", headers={"Accept": AS2})).json()
    assert top["type"] == "OrderedCollection" and top["totalItems"] == 1 and top["first"].endswith("?page=1")


async def test_create_note_then_delete(client: Any, world: AsyncSession, settings: Any) -> None:
    note = {"id": f"{REMOTE}/notes/1", "type": "Note", "attributedTo": REMOTE,
            "to": ["https://www.w3.org/ns/activitystreams#Public"],
            "content": '<p>hi <script>alert(1)</script><a href="javascript:x">x</a> <span class="mention">'
                       '@alice</span></p>', "tag": [{"type": "Mention", "href": f"{BASE}/@alice"}],
            "published": "2026-01-01T00:00:00Z"}
    create = {"id": f"{REMOTE}/notes/1/activity", "type": "Create", "actor": REMOTE, "object": note}
    body, headers = _signed("/inbox", create)
    assert (await client.post("/inbox", content=body, headers=headers)).status_code == 202
    await _worker(world, settings, []).run_once()
    world.expire_all()
    obj = (await world.scalars(select(APObject))).one()
    assert "<script" not in obj.content and "javascript:" not in obj.content and 'class="mention"' in obj.content
    assert obj.visibility == "public"
    assert (await world.scalars(select(Notification.kind))).all() == ["mention"]
    delete = {"id": f"{REMOTE}/notes/1#delete", "type": "Delete", "actor": REMOTE,
              "object": {"id": note["id"], "type": "Tombstone"}}
    body, headers = _signed("/inbox", delete)
    assert (await client.post("/inbox", content=body, headers=headers)).status_code == 202
    await _worker(world, settings, []).run_once()
    world.expire_all()
    assert (await world.scalars(select(APObject))).one().deleted


async def test_bad_inbox_inputs(client: Any, world: AsyncSession, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING", "rose_ash.federation.inbox")
    follow = _follow(7)
    # unsigned
    r = await client.post("/@alice/inbox", content=json.dumps(follow), headers={"Content-Type": AS2})
    assert r.status_code == 401
    # wrongly signed (another key under bob's key id)
    body, headers = _signed("/@alice/inbox", follow, key=OTHER_KEY)
    assert (await client.post("/@alice/inbox", content=body, headers=headers)).status_code == 401
    # expired
    body, headers = _signed("/@alice/inbox", follow, now=datetime.now(UTC) - timedelta(hours=3))
    assert (await client.post("/@alice/inbox", content=body, headers=headers)).status_code == 401
    # digest mismatch: the body changed after signing
    body, headers = _signed("/@alice/inbox", follow)
    tampered = body.replace(b"follows/7", b"follows/8")
    assert (await client.post("/@alice/inbox", content=tampered, headers=headers)).status_code == 401
    body, headers = _signed("/@alice/inbox", follow, spec="rfc9421")
    assert (await client.post("/@alice/inbox", content=body + b" ", headers=headers)).status_code == 401
    # key/actor mismatch: eve signs a Follow claiming to be bob
    body, headers = _signed("/@alice/inbox", follow, key=OTHER_KEY, key_id=f"{OTHER}#main-key")
    r = await client.post("/@alice/inbox", content=body, headers=headers)
    assert r.status_code == 401 and "actor" in r.json()["detail"]
    # oversized
    big = {**follow, "padding": "x" * 1_100_000}
    body, headers = _signed("/@alice/inbox", big)
    assert (await client.post("/@alice/inbox", content=body, headers=headers)).status_code == 413
    # malformed JSON and malformed JSON-LD shapes
    for raw in (b"{not json", b"[]", json.dumps({"type": "Follow"}).encode(),
                json.dumps({**follow, "@context": 5}).encode(), json.dumps({**follow, "id": 7}).encode()):
        body, headers = _signed("/@alice/inbox", raw)
        assert (await client.post("/@alice/inbox", content=body, headers=headers)).status_code == 400, raw
    # a key id that resolves to a private address is never fetched (default: private addresses refused)
    for key_id in ("http://127.0.0.1:9/actor#main-key", "http://10.1.2.3/actor#main-key",
                   "http://169.254.169.254/latest#main-key", "http://[::1]/actor#main-key",
                   "http://[64:ff9b::7f00:1]/a#main-key", "http://[2002:7f00:1::1]/a#main-key"):
        body, headers = _signed("/@alice/inbox", {**follow, "actor": key_id.split("#")[0]}, key_id=key_id)
        assert (await client.post("/@alice/inbox", content=body, headers=headers)).status_code == 401, key_id
    # unknown recipient
    body, headers = _signed("/@ghost/inbox", follow)
    assert (await client.post("/@ghost/inbox", content=body, headers=headers)).status_code == 404
    assert await _count(world, Activity) == 0  # nothing stored at all, let alone as trusted
    assert any("refused" in rec.getMessage() for rec in caplog.records)


async def test_untrusted_create_uses_the_origin_copy(client: Any, world: AsyncSession, settings: Any) -> None:
    """eve forwards a Create claiming bob's note: it is stored untrusted and the processor
    fetches the note from its origin instead of believing the embedded copy."""
    forged = {"id": f"{REMOTE}/notes/9", "type": "Note", "attributedTo": REMOTE, "content": "forged",
              "to": ["https://www.w3.org/ns/activitystreams#Public"]}
    create = {"id": f"{REMOTE}/notes/9/activity", "type": "Create", "actor": REMOTE, "object": forged}
    body, headers = _signed("/inbox", create, key=OTHER_KEY, key_id=f"{OTHER}#main-key")
    assert (await client.post("/inbox", content=body, headers=headers)).status_code == 202
    stored = (await world.scalars(select(Activity))).one()
    assert not stored.trusted and stored.signer == OTHER

    def origin(request: httpx.Request) -> httpx.Response:
        if str(request.url) == forged["id"]:
            return httpx.Response(200, json={**forged, "content": "<p>the real one</p>"},
                                  headers={"Content-Type": AS2})
        return httpx.Response(404)

    maker = async_sessionmaker(world.bind, expire_on_commit=False)
    ctx = JobContext(sessionmaker=maker, settings=settings, services={
        "federation_client": SafeClient(allow_private=True, transport=httpx.MockTransport(origin))})
    await Worker(maker, context=ctx).run_once()
    world.expire_all()
    assert (await world.scalars(select(APObject.content))).one() == "<p>the real one</p>"


async def test_authorized_fetch_setting(client: Any, world: AsyncSession, app: Any) -> None:
    from msgspec import structs

    app.state.settings = structs.replace(app.state.settings, federation_authorized_fetch=True)
    # the settings dependency reads the closure, so build a fresh app for this check
    from litestar.testing import AsyncTestClient

    from app import create_app

    strict = create_app(app.state.settings)
    async with AsyncTestClient(app=strict, base_url=BASE) as c:
        assert (await c.get("/@alice/outbox", headers={"Accept": AS2})).status_code == 401
        req = httpx.Request("GET", f"{BASE}/@alice/outbox", headers={"Accept": AS2})
        sign_cavage(req, f"{REMOTE}#main-key", REMOTE_KEY)
        r = await c.get("/@alice/outbox", headers=dict(req.headers))
        assert r.status_code == 200 and r.json()["type"] == "OrderedCollection"
        assert "Signature" in r.headers["vary"]
        # the actor document itself stays public, or nobody could verify anything
        assert (await c.get("/@alice", headers={"Accept": AS2})).status_code == 200


async def test_inbox_rate_limit(app: Any, world: AsyncSession) -> None:
    from litestar.testing import AsyncTestClient

    from app import create_app

    limited = msgspec.structs.replace(app.state.settings, federation_inbox_rate_limit=2)
    async with AsyncTestClient(app=create_app(limited), base_url=BASE) as c:
        statuses = []
        for n in range(3):
            body, headers = _signed("/inbox", _follow(100 + n))
            response = await c.post("/inbox", content=body, headers=headers)
            statuses.append(response.status_code)
    assert statuses == [202, 202, 429] and response.headers["retry-after"] == "60"


async def test_inbox_rate_limit_is_counted_in_the_shared_store(app: Any, world: AsyncSession) -> None:
    """Two app processes behind one Redis (here: two apps on the suite's store) share the count."""
    from litestar.testing import AsyncTestClient

    from app import create_app

    settings = app.state.settings
    limited = msgspec.structs.replace(settings, federation_inbox_rate_limit=3)
    statuses = []
    async with AsyncTestClient(app=create_app(limited), base_url=BASE) as one, \
            AsyncTestClient(app=create_app(limited), base_url=BASE) as two:
        for n, c in enumerate([one, two, one, two]):
            body, headers = _signed("/inbox", _follow(100 + n))
            statuses.append((await c.post("/inbox", content=body, headers=headers)).status_code)
    if settings.redis_url:
        assert statuses == [202, 202, 202, 429]
    else:  # each process counts for itself
        assert statuses == [202] * 4


async def test_key_refetch_is_rate_limited(world: AsyncSession, settings: Any) -> None:
    """A failed verification re-fetches a key at most once a minute per key (here: just fetched)."""
    from federation.activitypub.core import Federation

    async with Federation(world, settings) as fed:
        assert await fed.resolve_key(f"{REMOTE}#main-key", False) is not None
        assert await fed.resolve_key(f"{REMOTE}#main-key", True) is None  # fetched seconds ago


async def test_domain_actor_inbox_and_follow(client: Any, world: AsyncSession, settings: Any) -> None:
    """Domain actors have their own inboxes (CSRF-exempt machine endpoints) and take follows."""
    follow = {**_follow(42), "object": f"{BASE}/ap/actors/blog"}
    body, headers = _signed("/ap/actors/blog/inbox", follow)
    r = await client.post("/ap/actors/blog/inbox", content=body, headers=headers)
    assert r.status_code == 202, r.text
    await _worker(world, settings, []).run_once()
    world.expire_all()
    assert (await world.scalars(select(Follow.followee))).all() == [f"{BASE}/ap/actors/blog"]
    page = (await client.get("/ap/actors/blog/followers?page=1", headers={"Accept": AS2})).json()
    assert page["orderedItems"] == [REMOTE]
    assert (await client.post("/ap/actors/nope/inbox", content=body, headers=headers)).status_code == 404


@pytest.mark.parametrize("spec", ["cavage", "rfc9421"])
async def test_blocked_domains_are_refused_by_actor_or_by_key(client: Any, world: AsyncSession, spec: str) -> None:
    from federation.activitypub.models import DomainBlock

    world.add(DomainBlock(domain="evil.example", reason="spam"))
    await world.commit()
    # the activity's actor is on a blocked domain
    evil = "https://evil.example/users/mallory"
    body, headers = _signed("/inbox", _follow(1, actor=evil), key_id=f"{evil}#main-key", spec=spec)
    r = await client.post("/inbox", content=body, headers=headers)
    assert r.status_code == 403 and "domain blocked" in r.text
    # the actor is elsewhere, but the key it is signed with lives on the blocked domain
    body, headers = _signed("/inbox", _follow(2), key_id=f"{evil}#main-key", spec=spec)
    r = await client.post("/inbox", content=body, headers=headers)
    assert r.status_code == 403 and "domain blocked" in r.text
    assert await _count(world, Activity) == 0
    # the unblocked signer still gets through
    body, headers = _signed("/inbox", _follow(3), spec=spec)
    assert (await client.post("/inbox", content=body, headers=headers)).status_code == 202
