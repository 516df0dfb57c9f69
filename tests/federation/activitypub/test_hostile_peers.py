"""Issue 11 item 12: the instance attacked by two hostile peers with real signed requests.

Mallory (mallory.example) and Trent (trent.example) run their own servers and sign with their
own keys; Eve (eve.example) is an ordinary peer. The remote servers are an httpx MockTransport
behind the real :class:`SafeClient`; everything else (inbox, verification, the job worker, the
processor, the database) is the real thing, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import httpx
import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.jobs import JobContext, Worker
from app.params import MAX_PAGE
from app.safe_http import MalformedJSON, SafeClient, decode_json
from domains.account.schemas import SignupInput
from domains.account.services import AccountService
from federation.activitypub import core
from federation.activitypub.core import Federation
from federation.activitypub.models import Activity, Actor, Announce, APObject, Block, DomainBlock, Notification
from federation.activitypub.outbox import MAX_MENTIONS, Outbox
from federation.activitypub.signatures import sign_cavage
from federation.activitypub.urls import host_of, http_url
from tests.federation.activitypub.test_social_hub import _people

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8000"
AS2 = "application/activity+json"
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"
ALICE = f"{BASE}/@alice"
MALLORY = "https://mallory.example/users/mallory"
TRENT = "https://trent.example/users/trent"
EVE = "https://eve.example/users/eve"
KEYS = {uri: rsa.generate_private_key(public_exponent=65537, key_size=2048) for uri in (MALLORY, TRENT, EVE)}


def _pem(key: rsa.RSAPrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


class Origins:
    """The remote servers: what each URL serves, and every request they were sent."""

    def __init__(self) -> None:
        self.documents: dict[str, dict[str, Any]] = {}
        self.requests: list[httpx.Request] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.method == "POST":
            return httpx.Response(202)
        doc = self.documents.get(str(request.url))
        if doc is None:
            return httpx.Response(404)
        return httpx.Response(200, content=json.dumps(doc).encode(), headers={"Content-Type": AS2})

    def client(self, *, allow_private: bool = False) -> SafeClient:
        """The real client (URL and literal-address checks included) over the mock transport."""
        return SafeClient(allow_private=allow_private, transport=httpx.MockTransport(self.handler))

    def fetched(self) -> list[str]:
        return [str(r.url) for r in self.requests if r.method == "GET"]


@pytest.fixture
def origins(monkeypatch: pytest.MonkeyPatch) -> Origins:
    """Every Federation made by a request handler talks to these origins (never the network)."""
    found = Origins()
    monkeypatch.setattr(core, "SafeClient", found.client)
    return found


@pytest.fixture
async def world(db_session: AsyncSession, app: Any, origins: Origins) -> AsyncSession:
    for name in ("alice", "carol"):
        await AccountService(db_session).signup(SignupInput(username=name, email=f"{name}@example.org",
                                                            password="correct horse battery staple"))
    await db_session.commit()
    for uri, key in KEYS.items():
        host = uri.split("/")[2]
        db_session.add(Actor(uri=uri, local=False, type="Person", username=uri.rsplit("/", 1)[-1], domain=host,
                             inbox=f"{uri}/inbox", shared_inbox=f"https://{host}/inbox",
                             followers_url=f"{uri}/followers", key_id=f"{uri}#main-key",
                             public_key_pem=_pem(key), fetched_at=datetime.now(UTC)))
    await db_session.commit()
    return db_session


def _signed_post(path: str, activity: dict[str, Any] | bytes, signer: str) -> tuple[bytes, dict[str, str]]:
    body = activity if isinstance(activity, bytes) else json.dumps(activity).encode()
    req = httpx.Request("POST", BASE + path, content=body, headers={"Content-Type": AS2})
    sign_cavage(req, f"{signer}#main-key", KEYS[signer])
    return body, {k: v for k, v in req.headers.items() if k.lower() not in ("content-length", "host")}


def _signed_get(path: str, signer: str, key_id: str | None = None) -> dict[str, str]:
    req = httpx.Request("GET", BASE + path, headers={"Accept": AS2})
    sign_cavage(req, key_id or f"{signer}#main-key", KEYS[signer])
    return {k: v for k, v in req.headers.items() if k.lower() != "host"}


async def _work(session: AsyncSession, settings: Any, origins: Origins) -> None:
    """Run the queued jobs (inbox processing and what it queues) against the origins."""
    maker = async_sessionmaker(session.bind, expire_on_commit=False)
    ctx = JobContext(sessionmaker=maker, settings=settings, services={"federation_client": origins.client()})
    worker = Worker(maker, context=ctx)
    for _ in range(10):
        if not await worker.run_once():
            break
    session.expire_all()


async def _count(session: AsyncSession, model: Any, *conds: Any) -> int:
    session.expire_all()
    return int(await session.scalar(select(func.count()).select_from(model).where(*conds)) or 0)


async def _note(session: AsyncSession, settings: Any, text: str, visibility: str = "public",
                author: str = "alice") -> APObject:
    async with Federation(session, settings) as fed:
        user = await fed.user_by_name(author)
        assert user is not None
        obj = await Outbox(fed).post_note(await fed.local_actor_for_user(user), text, visibility=visibility)
    await session.commit()
    return obj


async def _state(session: AsyncSession, ap_id: str) -> tuple[str, str]:
    session.expire_all()
    row = (await session.scalars(select(Activity).where(Activity.ap_id == ap_id))).one()
    return row.state, row.error


# --- spoofed actors: Announce -----------------------------------------------------------------


async def test_an_announce_signed_by_one_actor_naming_another_is_checked_at_the_named_origin(
        client: Any, world: AsyncSession, settings: Any, origins: Origins) -> None:
    note = await _note(world, settings, "boost me")

    def announce(aid: str, actor: str = TRENT, obj: str = note.ap_id) -> dict[str, Any]:
        return {"@context": "https://www.w3.org/ns/activitystreams", "id": aid, "type": "Announce",
                "actor": actor, "object": obj, "to": [PUBLIC]}

    # Each is processed before the next arrives (one job at a time, as the worker's retries on a
    # busy SQLite file are not what this test is about).
    async def deliver(activity: dict[str, Any], signer: str) -> None:
        body, headers = _signed_post("/inbox", activity, signer)
        assert (await client.post("/inbox", content=body, headers=headers)).status_code == 202
        await _work(world, settings, origins)

    # 1. Mallory signs an Announce in Trent's name that Trent's server never made: dropped.
    forged = announce(f"{TRENT}/announces/1")
    await deliver(forged, MALLORY)
    # 2. ... and one whose id is on Mallory's own server: dropped without asking anyone.
    off_origin = announce(f"{MALLORY}/announces/2")
    await deliver(off_origin, MALLORY)
    # 3. Trent's server serves that id, but as a boost of something else: dropped.
    other = announce(f"{TRENT}/announces/3")
    origins.documents[other["id"]] = announce(other["id"], obj=f"{TRENT}/notes/elsewhere")
    await deliver(other, MALLORY)

    assert await _count(world, Announce) == 0
    assert await _count(world, Notification, Notification.kind == "boost") == 0
    for aid in (forged["id"], off_origin["id"], other["id"]):
        state, error = await _state(world, aid)
        assert state == "rejected", (aid, state)
        assert error
    assert forged["id"] in origins.fetched() and other["id"] in origins.fetched()
    assert not [u for u in origins.fetched() if u.startswith("https://mallory.example")]

    # 4. Eve forwards an Announce that Trent really made (his server serves it): believed.
    real = announce(f"{TRENT}/announces/4")
    origins.documents[real["id"]] = real
    await deliver(real, EVE)
    assert (await _state(world, real["id"]))[0] == "processed"
    assert (await world.scalars(select(Announce.actor))).all() == [TRENT]
    assert (await world.scalars(select(Notification.actor).where(Notification.kind == "boost"))).all() == [TRENT]


# --- spoofed actors: every other activity type ----------------------------------------------------


@pytest.mark.parametrize("kind", ["Follow", "Like", "Delete", "Undo", "Block", "Flag", "Accept", "Reject", "Move",
                                  "Add", "Remove", "EmojiReact"])
async def test_activities_signed_by_someone_other_than_their_actor_are_refused(
        client: Any, world: AsyncSession, origins: Origins, kind: str) -> None:
    """Only Create/Update/Announce may be forwarded (their object is then fetched from its origin);
    any other activity Mallory signs in Trent's name is refused at the door and stores nothing."""
    activity = {"id": f"{TRENT}/activities/{kind.lower()}", "type": kind, "actor": TRENT,
                "object": {"id": f"{TRENT}/follows/1", "type": "Follow", "actor": TRENT, "object": ALICE}
                if kind in ("Undo", "Accept", "Reject") else ALICE, "target": f"{MALLORY}/new"}
    body, headers = _signed_post("/inbox", activity, MALLORY)
    r = await client.post("/inbox", content=body, headers=headers)
    assert r.status_code == 401 and "signer does not match" in r.json()["detail"]
    assert await _count(world, Activity) == 0
    assert origins.requests == []


async def test_forwarded_creates_and_updates_use_only_the_origin_copy(
        client: Any, world: AsyncSession, settings: Any, origins: Origins) -> None:
    """Mallory forwards a Create and an Update of Trent's note with her own text in them: what is
    stored is what Trent's server serves, and an object it doesn't serve stores nothing."""
    real = {"id": f"{TRENT}/notes/1", "type": "Note", "attributedTo": TRENT, "content": "<p>the real one</p>",
            "to": [PUBLIC]}
    origins.documents[real["id"]] = real
    for n, (kind, oid) in enumerate([("Create", real["id"]), ("Update", real["id"]),
                                     ("Create", f"{TRENT}/notes/never-written")]):
        forged = {"id": f"{TRENT}/activities/{n}", "type": kind, "actor": TRENT,
                  "object": {"id": oid, "type": "Note", "attributedTo": TRENT, "content": "forged", "to": [PUBLIC]}}
        body, headers = _signed_post("/inbox", forged, MALLORY)
        assert (await client.post("/inbox", content=body, headers=headers)).status_code == 202
        await _work(world, settings, origins)
    assert (await world.scalars(select(APObject.content).where(APObject.local.is_(False)))).all() == [
        "<p>the real one</p>"]
    assert (await _state(world, f"{TRENT}/activities/2"))[0] == "rejected"


async def test_a_signed_activity_whose_id_is_on_another_origin_is_refused(client: Any, world: AsyncSession) -> None:
    activity = {"id": f"{MALLORY}/likes/1", "type": "Like", "actor": TRENT, "object": f"{BASE}/ap/objects/x"}
    body, headers = _signed_post("/inbox", activity, TRENT)
    r = await client.post("/inbox", content=body, headers=headers)
    assert r.status_code == 422 and "origin" in r.json()["detail"]
    assert await _count(world, Activity) == 0


# --- mention floods ---------------------------------------------------------------------------


async def test_mentions_are_deduplicated_and_capped(client: Any, world: AsyncSession, settings: Any,
                                                    origins: Origins) -> None:
    strangers = [f"https://crowd{i}.example/users/u" for i in range(MAX_MENTIONS)]
    tags = [{"type": "Mention", "href": ALICE}] * 200 + [{"type": "Mention", "href": s} for s in strangers] + [
        {"type": "Mention", "href": f"{BASE}/@carol"}, {"type": "Mention", "href": "http://bad.example:99999/x"}]
    note = {"id": f"{TRENT}/notes/flood", "type": "Note", "attributedTo": TRENT, "content": "<p>hi</p>",
            "to": [PUBLIC], "tag": tags}
    create = {"id": f"{TRENT}/notes/flood/activity", "type": "Create", "actor": TRENT, "object": note}
    body, headers = _signed_post("/inbox", create, TRENT)
    assert (await client.post("/inbox", content=body, headers=headers)).status_code == 202
    await _work(world, settings, origins)
    assert (await _state(world, create["id"]))[0] == "processed"
    stored = (await world.scalars(select(APObject).where(APObject.ap_id == note["id"]))).one()
    assert stored.mentions == [ALICE, *strangers[:MAX_MENTIONS - 1]]
    # one notification for alice, none for carol (the 22nd distinct account is past the cap)
    assert (await world.scalars(select(Notification.kind))).all() == ["mention"]


# --- authorized fetch: suspended domains and blocked accounts ----------------------------------------


async def test_authorized_fetch_refuses_suspended_domains_and_blocked_accounts(
        app: Any, world: AsyncSession, settings: Any, origins: Origins) -> None:
    from app import create_app

    note = await _note(world, settings, "for the right eyes")
    create = (await world.scalars(select(Activity).where(Activity.direction == "out",
                                                         Activity.type == "Create"))).one()
    world.add_all([DomainBlock(domain="mallory.example", reason="hostile", severity="suspend"),
                   Block(actor=ALICE, target=TRENT, activity_id=f"{BASE}/ap/activities/{uuid4()}")])
    await world.commit()
    paths = ["/@alice", "/@alice/outbox", "/@alice/outbox?page=1", "/@alice/followers", "/@alice/following",
             "/@alice/liked", f"/ap/objects/{note.id}", f"/ap/objects/{note.id}/activity",
             f"/ap/activities/{create.id}"]
    strict = create_app(msgspec.structs.replace(settings, federation_authorized_fetch=True))
    async with AsyncTestClient(app=strict, base_url=BASE) as c:
        for path in paths:
            r = await c.get(path, headers=_signed_get(path, EVE))
            assert r.status_code == 200, (path, r.text)
            assert "Signature" in r.headers["vary"], path
            # the account alice blocks: as if there were nothing there
            r = await c.get(path, headers=_signed_get(path, TRENT))
            assert r.status_code == 404, (path, r.status_code)
            # a suspended domain, by a key we know and by one we would have to fetch
            r = await c.get(path, headers=_signed_get(path, MALLORY))
            assert r.status_code == 403 and "domain blocked" in r.text, (path, r.status_code)
            r = await c.get(path, headers=_signed_get(path, MALLORY, "https://mallory.example/users/x#main-key"))
            assert r.status_code == 403, path
            unsigned = await c.get(path, headers={"Accept": AS2})
            assert unsigned.status_code == (200 if path == "/@alice" else 401), (path, unsigned.status_code)
        absent = f"/ap/objects/{uuid4()}"
        assert (await c.get(absent, headers=_signed_get(absent, TRENT))).status_code == 404
        # a domain actor blocks nobody; trent may read it
        assert (await c.get("/ap/actors/blog", headers=_signed_get("/ap/actors/blog", TRENT))).status_code == 200
    assert origins.requests == []  # no key was fetched for a suspended domain, nothing else either
    # without authorized fetch nothing is checked (and nothing is fetched)
    async with AsyncTestClient(app=create_app(settings), base_url=BASE) as c:
        assert (await c.get("/@alice/outbox", headers=_signed_get("/@alice/outbox", MALLORY))).status_code == 200


# --- private notes look absent -----------------------------------------------------------------


async def test_private_notes_answer_exactly_like_absent_ones(client: Any, db_session: AsyncSession,
                                                             settings: Any, origins: Origins) -> None:
    alice, bob = await _people(client, "alice", "bob")
    hidden = [await _note(db_session, settings, f"{v} secret", visibility=v) for v in ("followers", "direct")]
    absent = uuid4()
    for accept in (AS2, "text/html"):
        gone = await client.get(f"/ap/objects/{absent}", headers={"Accept": accept})
        assert gone.status_code == 404
        for obj in hidden:
            r = await client.get(f"/ap/objects/{obj.id}", headers={"Accept": accept})
            assert (r.status_code, r.text) == (gone.status_code, gone.text.replace(str(absent), str(obj.id)))
            assert "secret" not in r.text
    gone = await client.get(f"/ap/objects/{absent}/activity", headers={"Accept": AS2})
    for obj in hidden:
        r = await client.get(f"/ap/objects/{obj.id}/activity", headers={"Accept": AS2})
        assert (r.status_code, r.text) == (404, gone.text)
    creates = (await db_session.scalars(select(Activity.id).where(Activity.direction == "out",
                                                                  Activity.type == "Create"))).all()
    assert len(creates) == 2
    gone = await client.get(f"/ap/activities/{absent}", headers={"Accept": AS2})
    for aid in creates:
        r = await client.get(f"/ap/activities/{aid}", headers={"Accept": AS2})
        assert (r.status_code, r.text) == (404, gone.text)
    # the hub's note page: bob may see neither; alice sees her own
    gone = await bob.get(f"/social/notes/{absent}")
    assert gone.status_code == 404
    for obj in hidden:
        r = await bob.get(f"/social/notes/{obj.id}")
        assert r.status_code == 404 and "secret" not in r.text
        assert r.text.replace(str(obj.id), "") == gone.text.replace(str(absent), "")
        mine = await alice.get(f"/social/notes/{obj.id}")
        assert mine.status_code == 200 and "secret" in mine.text


# --- malformed input: 4xx with a reason, never 500 -------------------------------------------------


def _nested(depth: int, kind: str) -> bytes:
    if kind == "array":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


FOLLOW = {"id": f"{TRENT}/follows/1", "type": "Follow", "actor": TRENT, "object": ALICE}
MALFORMED: list[tuple[str, bytes, str]] = [
    ("not UTF-8", b'{"id": "\xff\xfe"}', "not valid UTF-8"),
    ("UTF-16", json.dumps(FOLLOW).encode("utf-16"), "not valid UTF-8"),
    ("Latin-1 text", json.dumps({**FOLLOW, "summary": "caf\u00e9"}, ensure_ascii=False).encode("latin-1"),
     "not valid UTF-8"),
    ("deep arrays", _nested(200_000, "array"), "nests deeper"),
    ("deep objects", _nested(100_000, "object"), "nests deeper"),
    ("deep, under the decoder's own limit", json.dumps({**FOLLOW, "x": json.loads(_nested(40, "object"))}).encode(),
     "nests deeper"),
    ("NUL in a string", json.dumps({**FOLLOW, "type": "Follow\u0000"}).encode(), "NUL"),
    ("lone surrogate", b'{"id": "\\ud800", "type": "Follow"}', "not valid JSON"),
    ("number out of range", json.dumps(FOLLOW).encode()[:-1] + b', "n": 1e999}', "not valid JSON"),
    ("invalid port in actor", json.dumps({**FOLLOW, "actor": "http://a.test:99999/x"}).encode(), "valid host and port"),
    ("non-numeric port", json.dumps({**FOLLOW, "actor": "http://a.test:abc/x"}).encode(), "valid host and port"),
    ("broken IPv6 actor", json.dumps({**FOLLOW, "actor": "http://[::1/x"}).encode(), "valid host and port"),
    ("invalid port in id", json.dumps({**FOLLOW, "id": "https://trent.example:70000/f"}).encode(),
     "valid host and port"),
    ("actor not http", json.dumps({**FOLLOW, "actor": "javascript:alert(1)"}).encode(), "http(s)"),
    ("empty type", json.dumps({**FOLLOW, "type": ""}).encode(), "needs an id, a type and an actor"),
    ("over-long id", json.dumps({**FOLLOW, "id": "https://trent.example/" + "a" * 5000}).encode(), "http(s)"),
]


@pytest.mark.parametrize(("label", "body", "reason"), MALFORMED, ids=[m[0] for m in MALFORMED])
async def test_malformed_inbox_bodies_are_400_before_any_signature_or_database_work(
        client: Any, world: AsyncSession, origins: Origins, caplog: pytest.LogCaptureFixture,
        label: str, body: bytes, reason: str) -> None:
    caplog.set_level("INFO", "rose_ash.federation")
    for path in ("/inbox", "/@alice/inbox", "/ap/actors/blog/inbox"):
        # unsigned, and signed by a key on a server nobody knows: either way the body is judged first
        r = await client.post(path, content=body, headers={"Content-Type": AS2})
        assert r.status_code == 400, (label, path, r.status_code, r.text[:200])
        assert reason in r.json()["detail"], r.json()
        headers = _signed_get(path, EVE, "https://unknown.example/actor#main-key")
        r = await client.post(path, content=body, headers={**headers, "Content-Type": AS2})
        assert r.status_code == 400, (label, path, r.status_code)
    assert await _count(world, Activity) == 0
    assert origins.requests == []  # no key was fetched
    assert not any("signature" in rec.getMessage().lower() for rec in caplog.records)


async def test_a_well_formed_unsigned_body_is_401(client: Any, world: AsyncSession) -> None:
    """The contrast for the test above: the same route, a sound body, no signature."""
    r = await client.post("/inbox", content=json.dumps(FOLLOW), headers={"Content-Type": AS2})
    assert r.status_code == 401
    assert await _count(world, Activity) == 0  # refused before anything was stored or queued


def test_decode_json_and_url_helpers() -> None:
    assert decode_json(b'{"a": [1, {"b": "c\\u00e9"}]}') == {"a": [1, {"b": "c\u00e9"}]}
    for bad in (b"\xff", _nested(33, "array"), b'"\\u0000"', b"1e400", b"{"):
        with pytest.raises(MalformedJSON):
            decode_json(bad)
    decode_json(_nested(32, "array"))
    assert host_of("http://a.test:99999/x") == "a.test:99999"
    assert host_of("http://[::1]:8080/x") == "[::1]:8080" and host_of("https://Example.ORG/") == "example.org"
    assert host_of("http://[::1/x") == "[::1"
    for url in ("http://a.test:99999/x", "http://[::1/x", "http:///x", "http://a .test/", "ftp://a.test/",
                # a remote actor's url that would break out of the href we put it in (a mention link)
                'https://evil.test/a"><img/src=https://evil.test/t>', "https://evil.test/<form>",
                "https://evil.test/a`b", "https://evil.test/a\\b"):
        assert http_url(url) == "", url
    assert http_url("https://ok.test/a?b=c&d='e'#f") == "https://ok.test/a?b=c&d='e'#f"
    assert http_url("https://[2001:db8::1]:8443/u") == "https://[2001:db8::1]:8443/u"


# --- the hub's account lookup -----------------------------------------------------------------------

LOOKUPS = ["http://[::1]/users/x", "http://[::1]:99999/users/x", "http://[::1/users/x", "https://[fe80::1%25eth0]/u",
           "https://[::ffff:10.0.0.1]/u", "alice@[::1]", "@alice@[2001:db8::1]:8443", "http://a.test:99999/u",
           "acct:x@[::1]", "https://[", "http://" + "a" * 3000 + ".test/u"]


@pytest.mark.parametrize("q", LOOKUPS)
async def test_hub_lookup_of_ipv6_literals_and_bad_urls_is_a_4xx_page(client: Any, db_session: AsyncSession,
                                                                       origins: Origins, q: str) -> None:
    (bob,) = await _people(client, "bob")
    r = await bob.get("/social/accounts", params={"q": q})
    assert 400 <= r.status_code < 500, (q, r.status_code)
    assert "text/html" in r.headers["content-type"]
    assert "not a" in r.text or "not allowed" in r.text or "not a server" in r.text, r.text[-800:]
    r = await bob.get(f"/social/accounts/{q.replace('/', '%2F')}")
    assert r.status_code in (404, 422), (q, r.status_code)
    assert origins.requests == []


KEY_IDS = ["http://a.test:99999/x#main-key", "http://[::1/x#main-key", "acct:trent@trent.example", "",
           "https://trent.example/\u0000#k", "https://" + "a" * 3000 + ".example/#k", "ftp://trent.example/k",
           "https://[fe80::1%25eth0]/k", "http://a.test:abc/k"]


@pytest.mark.parametrize("key_id", KEY_IDS)
async def test_malformed_key_ids_are_401_not_500(client: Any, world: AsyncSession, origins: Origins,
                                                 key_id: str) -> None:
    body = json.dumps(FOLLOW).encode()
    req = httpx.Request("POST", BASE + "/inbox", content=body, headers={"Content-Type": AS2})
    sign_cavage(req, key_id, KEYS[TRENT])
    headers = {k: v for k, v in req.headers.items() if k.lower() not in ("content-length", "host")}
    r = await client.post("/inbox", content=body, headers=headers)
    assert r.status_code == 401, (key_id, r.status_code, r.text[:300])
    for garbage in ('keyId="', "Signature ", 'keyId="a",signature="%%%"', "a" * 10_000, 'headers="(request-target)"'):
        r = await client.post("/inbox", content=body, headers={"Content-Type": AS2, "Signature": garbage})
        assert r.status_code == 401, (garbage[:40], r.status_code)
    assert await _count(world, Activity) == 0
    assert [u for u in origins.fetched() if "a.test" in u or "[" in u] == []


@pytest.mark.parametrize(("page", "status"), [("99999999999999999999", 400), (str(MAX_PAGE + 1), 400), ("0", 400),
                                              ("-3", 400), ("abc", 400), (str(MAX_PAGE), 200)])
async def test_collection_pages_out_of_range_are_400(client: Any, world: AsyncSession, page: str, status: int) -> None:
    for path in ("/@alice/outbox", "/@alice/followers", "/ap/actors/blog/following", "/@alice/liked"):
        r = await client.get(path, params={"page": page}, headers={"Accept": AS2})
        assert r.status_code == status, (path, page, r.status_code)
        if status == 200:
            assert r.json()["orderedItems"] == []


async def test_nul_and_control_characters_in_names_are_4xx(client: Any, world: AsyncSession) -> None:
    """PostgreSQL refuses NUL in text: such a name must never reach a query (it would be a 500)."""
    for resource in ("acct:al\u0000ice@127.0.0.1:8000", "acct:alice\n@127.0.0.1:8000", f"{BASE}/@al\u0000ice",
                     "acct:" + "a" * 3000 + "@127.0.0.1:8000"):
        r = await client.get("/.well-known/webfinger", params={"resource": resource})
        assert r.status_code == 400, (resource[:40], r.status_code)
    # A NUL anywhere in a URL is malformed input, refused before routing (app/strict_input.py).
    for path in ("/@al%00ice/outbox", "/@al%00ice/followers?page=1"):
        assert (await client.get(path, headers={"Accept": AS2})).status_code == 400, path
    assert (await client.get("/@ali%0Ace/liked", headers={"Accept": AS2})).status_code == 404
    body, headers = _signed_post("/@al%00ice/inbox", {**FOLLOW, "object": f"{BASE}/@alice"}, TRENT)
    assert (await client.post("/@al%00ice/inbox", content=body, headers=headers)).status_code == 400
    assert await _count(world, Activity) == 0


async def test_a_post_with_a_nul_is_refused_with_a_message(client: Any, db_session: AsyncSession) -> None:
    from tests.federation.activitypub.test_social_hub import _post

    (bob,) = await _people(client, "bob")
    for field in ("content", "summary", "in_reply_to"):
        data = {"content": "fine", "visibility": "public", "next": "/social/", field: "a\x00b"}
        r = await _post(bob, "/social/compose", data)
        # The kernel's form decoder refuses it before the handler runs: the HTML 400 page says why.
        assert r.status_code == 400 and "NUL" in r.text, r.text[:300]
        assert r.headers["content-type"].startswith("text/html")
    assert await _count(db_session, APObject) == 0


async def test_an_actor_with_a_nul_in_a_social_form_is_a_400(client: Any, db_session: AsyncSession) -> None:
    """Block, unblock and unfollow take an actor id from the form: one with a NUL answered
    PostgreSQL's 500; the kernel's form decoder now refuses it before the handler."""
    from tests.federation.activitypub.test_social_hub import _post

    (bob,) = await _people(client, "bob")
    for path in ("/social/block", "/social/unblock", "/social/unfollow"):
        for actor in (f"{BASE}/@al\x00ice", "\x00"):
            r = await _post(bob, path, {"actor": actor, "next": "/social/"})
            assert r.status_code == 400 and "NUL" in r.text, (path, r.status_code)  # the kernel's form decoder
    assert await _count(db_session, Activity) == 0


async def test_a_mentioned_actors_stored_url_cannot_break_out_of_its_link(world: AsyncSession, settings: Any,
                                                                          origins: Origins) -> None:
    """An actor row stored before its url was checked (or by any other path) is still only an
    attribute value in the mention link of a note we write, store, show and federate."""
    await _note(world, settings, "first")  # alice's actor exists before the mention's WebFinger
    origins.documents["https://trent.example/.well-known/webfinger?resource=acct%3Atrent%40trent.example"] = {
        "subject": "acct:trent@trent.example",
        "links": [{"rel": "self", "type": "application/activity+json", "href": TRENT}]}
    trent = (await world.scalars(select(Actor).where(Actor.uri == TRENT))).one()
    trent.url = 'https://trent.example/@t"><img/src=https://trent.example/track>'
    await world.commit()
    note = await _note(world, settings, "hello @trent@trent.example")
    assert "<img" not in note.content
    assert 'href="https://trent.example/@t&quot;&gt;&lt;img/src=https://trent.example/track&gt;"' in note.content
    assert ">@trent@trent.example</a>" in note.content
