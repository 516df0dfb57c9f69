"""Account pages in the social hub (/social/accounts/...), over HTTP, for local and remote actors.

Remote servers are an ``httpx.MockTransport`` handed to the app as ``app.state.federation_client``
(the hub's requests use it instead of opening their own client). Every GET they answer first
checks that our database is not write-locked (see test_no_locks_across_fetches.py): account
pages fetch before they write.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.safe_http import SafeClient
from federation.activitypub.models import Actor, APObject, Delivery, DomainBlock, Follow
from tests.federation.activitypub.test_no_locks_across_fetches import PUBLIC, LockProbingPeer
from tests.federation.activitypub.test_social_hub import _people, _post
from tests.helpers.web import CSRF_FIELD

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8000"
HOST = "127.0.0.1:8000"
DANA = "https://remote.example/users/dana"
DANA_PAGE = "/social/accounts/dana@remote.example"


class Peer(LockProbingPeer):
    """Remote servers; hosts in ``down`` refuse connections, URLs in ``status`` answer with it."""

    def __init__(self, database_url: str) -> None:
        super().__init__(database_url)
        self.down: set[str] = set()
        self.status: dict[str, int] = {}

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.host in self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if str(request.url) in self.status:
            self.gets.append(str(request.url))
            return httpx.Response(self.status[str(request.url)])
        return await super().__call__(request)

    def add_account(self, username: str, **extra: Any) -> str:
        uri = self.add_person("remote.example", username)
        self.docs[uri] |= {"outbox": f"{uri}/outbox", "following": f"{uri}/following", **extra}
        return uri


def _create(actor: str, n: int, content: str, to: list[str], cc: list[str] | None = None,
            oid: str | None = None) -> dict[str, Any]:
    note = {"id": oid or f"{actor}/statuses/{n}", "type": "Note", "attributedTo": actor, "content": content,
            "published": f"2024-01-0{n}T12:00:00Z", "to": to, "cc": cc or []}
    return {"id": f"{actor}/statuses/{n}/activity", "type": "Create", "actor": actor, "object": note}


@pytest.fixture
def peer(app: Any, settings: Any) -> Peer:
    peer = Peer(settings.database_url)
    dana = peer.add_account(
        "dana", name="Dana <b>R</b>", url="https://remote.example/@dana",
        summary='<p>Hi there<script>alert(1)</script> <a href="javascript:alert(2)">x</a></p>',
        icon={"type": "Image", "mediaType": "image/png", "url": "https://remote.example/avatars/dana.png"})
    assert dana == DANA
    peer.docs[f"{DANA}/followers"] = {"id": f"{DANA}/followers", "type": "OrderedCollection", "totalItems": 42}
    peer.docs[f"{DANA}/following"] = {"id": f"{DANA}/following", "type": "OrderedCollection", "totalItems": 7}
    peer.docs[f"{DANA}/outbox"] = {"id": f"{DANA}/outbox", "type": "OrderedCollection", "totalItems": 5,
                                   "first": f"{DANA}/outbox?page=true"}
    peer.docs[f"{DANA}/outbox?page=true"] = {"type": "OrderedCollectionPage", "orderedItems": [
        _create(DANA, 1, "<p>Fetched <strong>public</strong> note<script>alert(3)</script></p>", [PUBLIC]),
        _create(DANA, 2, "<p>Fetched unlisted note</p>", [f"{DANA}/followers"], [PUBLIC]),
        _create(DANA, 3, "<p>Fetched followers-only note</p>", [f"{DANA}/followers"]),
        _create(DANA, 4, "<p>Fetched foreign note</p>", [PUBLIC], oid="https://other.example/notes/4"),
        {"id": f"{DANA}/boosts/1", "type": "Announce", "actor": DANA, "object": "https://other.example/notes/9"},
    ]}
    # The production address policy (no private addresses); the transport is the mock.
    app.state.federation_client = SafeClient(transport=httpx.MockTransport(peer))
    return peer


async def _token(person: Any, page: str = "/social/") -> str:
    match = CSRF_FIELD.search((await person.get(page)).text)
    assert match
    return match.group(1)


async def test_remote_account_page_by_handle(client: Any, peer: Peer, db_session: AsyncSession) -> None:
    (alice,) = await _people(client, "alice")
    r = await alice.get("/social/accounts", params={"q": "@dana@remote.example"})
    assert r.status_code == 303 and r.headers["location"] == DANA_PAGE
    page = await alice.get(DANA_PAGE)
    assert page.status_code == 200, page.text[:500]
    html = page.text
    assert "<h1>Dana R</h1>" in html and "@dana@remote.example" in html
    assert 'src="https://remote.example/avatars/dana.png"' in html
    assert "Hi there" in html and "alert(1)" not in html and "javascript:" not in html
    for count, what in ((5, "posts"), (7, "following"), (42, "followers")):
        assert f"<strong>{count}</strong> {what}" in html
    # The first outbox page: public and unlisted notes by dana, sanitised; nothing else.
    assert "Fetched <strong>public</strong> note" in html and "alert(3)" not in html and "Fetched unlisted note" in html
    assert "followers-only" not in html and "foreign note" not in html
    assert html.index("Fetched unlisted note") < html.index("Fetched <strong>public</strong> note")  # newest first
    assert f'name="handle" value="{DANA}"' in html and ">Follow</button>" in html
    assert peer.fetched_under_lock == []

    # Follow from the page (no JavaScript): back to it, the request is pending until dana accepts.
    r = await alice.post("/social/follow", data={"handle": DANA, "next": DANA_PAGE,
                                                 "_csrf_token": await _token(alice, DANA_PAGE)})
    assert r.status_code == 303 and r.headers["location"] == DANA_PAGE
    html = (await alice.get(DANA_PAGE)).text
    assert "Follow request sent to @dana@remote.example." in html
    assert "Follow requested" in html and ">Cancel request</button>" in html
    db_session.expire_all()
    follow = await db_session.scalar(select(Follow).where(Follow.followee == DANA))
    assert follow is not None and follow.state == "pending" and follow.follower == f"{BASE}/@alice"
    assert await db_session.scalar(select(Delivery.id).where(Delivery.inbox == f"{DANA}/inbox")) is not None

    # Notes we store for dana show with their actions; followers-only ones once alice is accepted,
    # direct ones never, not even to the mentioned.
    for n, (text, visibility) in enumerate((("stored public", "public"), ("stored secret", "followers"),
                                            ("stored direct", "direct"))):
        db_session.add(APObject(ap_id=f"{DANA}/stored/{n}", attributed_to=DANA, content=f"<p>{text}</p>",
                                visibility=visibility, mentions=[f"{BASE}/@alice"],
                                published=datetime(2024, 2, 1 + n, tzinfo=UTC)))
    await db_session.commit()
    html = (await alice.get(DANA_PAGE)).text
    assert "stored public" in html and "stored secret" not in html and "stored direct" not in html
    assert re.search(r'/social/notes/[0-9a-f-]{36}/like', html)
    await db_session.execute(update(Follow).where(Follow.followee == DANA).values(state="accepted"))
    await db_session.commit()
    html = (await alice.get(DANA_PAGE)).text
    assert "stored public" in html and "stored secret" in html and "stored direct" not in html
    assert ">Unfollow</button>" in html

    # With enough stored notes the outbox's first page is not fetched any more.
    for n in range(10):
        db_session.add(APObject(ap_id=f"{DANA}/more/{n}", attributed_to=DANA, content=f"<p>more {n}</p>",
                                visibility="public", published=datetime(2024, 3, 1 + n, tzinfo=UTC)))
    await db_session.commit()
    before = peer.gets.count(f"{DANA}/outbox?page=true")
    html = (await alice.get(DANA_PAGE)).text
    assert "more 9" in html and "Fetched unlisted note" not in html
    assert peer.gets.count(f"{DANA}/outbox?page=true") == before
    assert peer.fetched_under_lock == []


async def test_lookup_by_profile_url_and_bad_input(client: Any, peer: Peer, db_session: AsyncSession) -> None:
    (alice,) = await _people(client, "alice")
    r = await alice.get("/social/accounts", params={"q": DANA})
    assert r.status_code == 303 and r.headers["location"] == DANA_PAGE
    # The lookup box is on the hub's pages; empty, it is just the form.
    assert 'action="/social/accounts"' in (await alice.get("/social/")).text
    r = await alice.get("/social/accounts")
    assert r.status_code == 200 and 'id="f-lookup"' in r.text

    for q in ("not a handle", "dana@", "@dana", "dana@remote example", "https://"):
        r = await alice.get("/social/accounts", params={"q": q})
        assert r.status_code == 422, (q, r.status_code)
        assert "is not a handle" in r.text or "is not a valid profile URL" in r.text
    r = await alice.get("/social/accounts/garbage")
    assert r.status_code == 422 and "is not a handle" in r.text and "/social/accounts/user@host" in r.text

    # Unknown accounts are 404: WebFinger says so, the actor is gone, or no such member here.
    peer.add_account("ghost")
    peer.status["https://remote.example/users/ghost"] = 410
    for q in ("nobody@remote.example", "ghost@remote.example", f"nobody@{HOST}"):
        r = await alice.get("/social/accounts", params={"q": q})
        assert r.status_code == 404, (q, r.status_code, r.text[-500:])
        assert "no account" in r.text.lower() or "no member" in r.text.lower()
    assert (await alice.get(f"/social/accounts/nobody@{HOST}")).status_code == 404

    # A server that can't be reached: a page that says so (502), not a 500.
    peer.down.add("down.example")
    r = await alice.get("/social/accounts", params={"q": "someone@down.example"})
    assert r.status_code == 502 and "could not be reached" in r.text
    assert (await alice.get("/social/accounts/someone@down.example")).status_code == 502
    r = await alice.get("/social/accounts", params={"q": "https://down.example/users/someone"})
    assert r.status_code == 502 and "could not be reached" in r.text
    # Addresses we never connect to are bad input.
    r = await alice.get("/social/accounts", params={"q": "someone@localhost"})
    assert r.status_code == 422

    # An account we know whose server is down now: shown as stored, with a notice.
    db_session.add(Actor(uri="https://down.example/users/eve", local=False, type="Person", username="eve",
                         domain="down.example", name="Eve", inbox="https://down.example/users/eve/inbox",
                         fetched_at=datetime.now(UTC) - timedelta(days=3)))
    await db_session.commit()
    r = await alice.get("/social/accounts/eve@down.example")
    assert r.status_code == 200 and "<h1>Eve</h1>" in r.text and "Couldn&#39;t refresh this account" in r.text

    # A known account whose outbox fails: the page, with a notice where the posts would be.
    peer.add_account("frank")
    peer.status["https://remote.example/users/frank/outbox"] = 500
    r = await alice.get("/social/accounts/frank@remote.example")
    assert r.status_code == 200 and "Couldn&#39;t load recent posts from remote.example" in r.text

    # Blocked domains are not looked up at all.
    db_session.add(DomainBlock(domain="blocked.example"))
    await db_session.commit()
    gets = len(peer.gets)
    r = await alice.get("/social/accounts", params={"q": "someone@blocked.example"})
    assert r.status_code == 403 and "blocked" in r.text and len(peer.gets) == gets
    assert peer.fetched_under_lock == []


async def test_local_accounts_links_and_follow_buttons(client: Any, peer: Peer) -> None:
    alice, bob, carol = await _people(client, "alice", "bob", "carol")
    bob_page = f"/social/accounts/bob@{HOST}"
    r = await bob.post("/account/settings/profile", data={
        "display_name": "Bob B", "bio": "I <3 <script>x</script> gardens\n\nhttps://example.org/",
        "_csrf_token": await _token(bob, "/account/settings/profile")})
    assert r.status_code == 303
    for text, visibility in (("bob public", "public"), ("bob unlisted", "unlisted"),
                             ("bob followers", "followers"), (f"bob direct @alice@{HOST}", "direct")):
        await _post(bob, "/social/compose", {"content": text, "visibility": visibility})

    # Author names link to the account page.
    local = (await alice.get("/social/local")).text
    assert f'<a class="note-author" href="{bob_page}"><strong>Bob B</strong>' in local
    for q in (f"bob@{HOST}", f"@bob@{HOST}", f"acct:bob@{HOST}", f"{BASE}/@bob", f"BOB@{HOST}"):
        r = await alice.get("/social/accounts", params={"q": q})
        assert r.status_code == 303 and r.headers["location"] == bob_page, q

    html = (await alice.get(bob_page)).text
    assert "<h1>Bob B</h1>" in html and f"@bob@{HOST}" in html and f'href="{BASE}/@bob">Public profile' in html
    assert "I &lt;3 &lt;script&gt;x&lt;/script&gt; gardens" in html and '<a href="https://example.org/"' in html
    assert "bob public" in html and "bob unlisted" in html
    assert "bob followers" not in html and "bob direct" not in html
    assert "<strong>0</strong> followers" in html and "<strong>3</strong> posts" in html
    assert ">Follow</button>" in html and "Follows you" not in html
    assert peer.gets == []  # local accounts need no fetching

    # Follow without JavaScript: a 303 back to the account page.
    r = await alice.post("/social/follow", data={"handle": f"{BASE}/@bob", "next": bob_page,
                                                 "_csrf_token": await _token(alice, bob_page)})
    assert r.status_code == 303 and r.headers["location"] == bob_page
    html = (await alice.get(bob_page)).text
    assert f"Following @bob@{HOST}." in html and ">Unfollow</button>" in html
    assert "bob followers" in html and "bob direct" not in html and "<strong>1</strong> follower<" in html
    # bob sees that alice follows him, and his own followers-only note; never a direct one.
    alice_page = f"/social/accounts/alice@{HOST}"
    assert "Follows you" in (await bob.get(alice_page)).text
    own = (await bob.get(bob_page)).text
    assert "This is you." in own and "bob followers" in own and "bob direct" not in own
    assert ">Follow</button>" not in own
    # Names in notifications and follow lists link to account pages too.
    notifications = (await bob.get("/social/notifications")).text
    assert f'<strong><a href="{alice_page}">alice</a></strong>' in notifications and "followed you" in notifications
    assert f'<strong><a href="{bob_page}">Bob B</a></strong>' in (await alice.get("/social/following")).text
    assert f'<strong><a href="{alice_page}">alice</a></strong>' in (await bob.get("/social/followers")).text
    # Boosts show on the booster's page, with a link to the author.
    note = re.search(r'id="note-([0-9a-f-]{36})"', (await alice.get("/social/local")).text)
    assert note
    await _post(alice, f"/social/notes/{note.group(1)}/boost", {"next": "/social/local"})
    html = (await alice.get(alice_page)).text
    assert f'</svg> <a href="{alice_page}">alice</a> boosted' in html and "bob public" in html
    assert f'href="{bob_page}"' in html

    # With htmx the follow box is swapped in place; bob's account is locked now.
    await _post(bob, "/social/settings/locked", {"locked": "1"})
    token = await _token(carol, bob_page)
    r = await carol.post("/social/follow", data={"handle": f"{BASE}/@bob", "next": bob_page, "_csrf_token": token},
                         headers={"HX-Request": "true"})
    assert r.status_code == 200 and r.text.lstrip().startswith('<div class="relation" id="relation">')
    assert "<html" not in r.text and "Follow requested" in r.text and ">Cancel request</button>" in r.text
    assert f"Follow request sent to @bob@{HOST}." in r.text and CSRF_FIELD.search(r.text)
    r = await carol.post("/social/unfollow", data={"actor": f"{BASE}/@bob", "next": bob_page, "_csrf_token": token},
                         headers={"HX-Request": "true"})
    assert r.status_code == 200 and "Follow request withdrawn." in r.text and ">Request to follow</button>" in r.text
    # A failed htmx follow sends the browser to the page with the message.
    r = await carol.post("/social/follow", data={"handle": f"{BASE}/@carol", "next": f"/social/accounts/carol@{HOST}",
                                                 "_csrf_token": token}, headers={"HX-Request": "true"})
    assert r.status_code == 200 and r.headers["hx-redirect"] == f"/social/accounts/carol@{HOST}"
    assert "You can&#39;t follow yourself." in (await carol.get(f"/social/accounts/carol@{HOST}")).text
    # next must stay on this site.
    r = await carol.post("/social/unfollow", data={"actor": f"{BASE}/@bob", "next": "https://evil.example/",
                                                   "_csrf_token": token})
    assert r.status_code == 303 and r.headers["location"] == "/social/following"


async def test_account_pages_need_a_member(client: Any) -> None:
    for path in (f"/social/accounts/bob@{HOST}", "/social/accounts?q=bob@remote.example"):
        r = await client.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/account/login?next=" + quote("/social/"))


async def test_unknown_authors_link_to_a_lookup(client: Any, peer: Peer, db_session: AsyncSession) -> None:
    """A note whose author we have no row for links to the lookup of the author's URI."""
    (alice,) = await _people(client, "alice")
    uri = peer.add_account("gil")
    db_session.add(APObject(ap_id=f"{uri}/notes/1", attributed_to=uri, content="<p>by gil</p>",
                            visibility="public", published=datetime.now(UTC)))
    await db_session.commit()
    html = (await alice.get("/social/federated")).text
    href = f"/social/accounts?q={quote(uri, safe='')}"
    assert f'href="{href}"' in html
    r = await alice.get(href)
    assert r.status_code == 303 and r.headers["location"] == "/social/accounts/gil@remote.example"
    assert "by gil" in (await alice.get(r.headers["location"])).text
    assert uri in peer.gets  # the actor came from its server


async def test_a_token_on_the_social_hub_is_nobody(
        client: Any, db_session: AsyncSession, peer: Peer) -> None:
    """Tokens count only where a scope governs them (issue 11): on the hub a token-only request is
    anonymous, so it is sent to sign in, and the token is not even looked up (no bookkeeping write
    for settle() to meet)."""
    from domains.account.models import AccessToken
    from domains.account.services import AccountService, TokenService

    await _people(client, "alice")
    client.cookies.clear()
    user = await AccountService(db_session).by_username("alice")
    assert user is not None
    _row, secret = await TokenService(db_session).issue(user, "reader", ["api"])
    await db_session.commit()
    gets = len(peer.gets)
    r = await client.get("/social/accounts?q=dana@remote.example", headers={"Authorization": f"token {secret}"})
    assert r.status_code == 303 and r.headers["location"].startswith("/account/login?next=")
    db_session.expire_all()
    assert (await db_session.scalars(select(AccessToken.last_used_at))).one() is None
    assert len(peer.gets) == gets  # nothing was fetched for nobody


async def test_answering_a_follow_request_when_the_followers_server_is_down(
        client: Any, db_session: AsyncSession, peer: Peer) -> None:
    alice, bob = await _people(client, "alice", "bob")
    assert (await _post(alice, "/social/settings/locked", {"locked": "1"})).status_code == 303
    dana = "https://remote.example/users/dana"
    db_session.add(Actor(uri=dana, local=False, type="Person", username="dana", domain="remote.example",
                         inbox=f"{dana}/inbox", fetched_at=datetime.now(UTC) - timedelta(days=3)))  # stale
    db_session.add(Follow(follower=dana, followee="http://127.0.0.1:8000/@alice", state="pending",
                          activity_id=f"{dana}/follows/1"))
    await db_session.commit()
    fid = (await db_session.scalars(select(Follow.id).where(Follow.follower == dana))).one()
    for bad, status in ((f"/social/followers/{fid}/maybe", 404), (f"/social/followers/{fid}/approve", 404)):
        person = alice if "maybe" in bad else bob  # a bogus decision; someone else's request
        assert (await _post(person, bad, {})).status_code == status
    peer.down.add("remote.example")
    r = await _post(alice, f"/social/followers/{fid}/approve", {})
    assert r.status_code == 303 and r.headers["location"] == "/social/followers"
    db_session.expire_all()
    assert (await db_session.scalars(select(Follow.state).where(Follow.follower == dana))).one() == "accepted"
    assert (await db_session.scalars(select(Delivery.inbox))).all() == [f"{dana}/inbox"]  # the Accept, queued


async def test_account_pages_page_own_posts_and_boosts(client: Any, peer: Peer,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from federation.social import paging
    from tests.federation.activitypub.test_social_hub import _every_page

    monkeypatch.setattr(paging, "PROFILE_SIZE", 3)
    alice, bob = await _people(client, "alice", "bob")
    for i in range(4):
        await _post(bob, "/social/compose", {"content": f"bob says {i}", "visibility": "public"})
    # alice posts 3, boosting bob's notes 0 and 2 in between: 5 entries on her page, newest first
    bob_notes = dict(zip(re.findall(r"bob says (\d)", (await alice.get("/social/local")).text),
                         re.findall(r'id="note-([0-9a-f-]{36})"', (await alice.get("/social/local")).text),
                         strict=True))
    for step in ("alice 0", "boost 0", "alice 1", "boost 2", "alice 2"):
        if step.startswith("boost"):
            await _post(alice, f"/social/notes/{bob_notes[step[-1]]}/boost", {"next": "/social/local"})
        else:
            await _post(alice, "/social/compose", {"content": f"{step} here", "visibility": "public"})
    page = f"/social/accounts/alice@{HOST}"
    seen = await _every_page(alice, page, r"(alice \d here|bob says \d)")
    assert seen == ["alice 2 here", "bob says 2", "alice 1 here", "bob says 0", "alice 0 here"]
    first = (await alice.get(page)).text
    assert f'href="{page}?before=' in first and "Back to the newest" not in first
    r = await alice.get(page, params={"before": "nope"})
    assert r.status_code == 400 and "is not a page position" in r.text
