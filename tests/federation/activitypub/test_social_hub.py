"""The social hub through its HTML forms (no JavaScript: PRG 303s) and its htmx partials."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.helpers.web import CSRF_FIELD, login, signup

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8000"
# The icon buttons' names (visually hidden) and their counts (templates/social/_note_actions.html).
LIKED = '<span aria-hidden="true">★</span> <span class="visually-hidden">Liked</span>'
BOOSTED = '<span class="visually-hidden">Boosted</span>'
ONE = ' <span class="count">1</span>'


async def _token(client: Any) -> str:
    page = await client.get("/social/")
    match = CSRF_FIELD.search(page.text)
    assert match, page.text[:300]
    return match.group(1)


async def _post(client: Any, path: str, data: dict[str, str], *, htmx: bool = False) -> Any:
    headers = {"HX-Request": "true"} if htmx else {}
    return await client.post(path, data={**data, "_csrf_token": await _token(client)}, headers=headers)


def _note_ids(html: str) -> list[str]:
    return re.findall(r'id="note-([0-9a-f-]{36})"', html)


class Browser:
    """Several people sharing one test client: each keeps their own cookie jar.

    (A second client on the same app would run on another event loop, which the Redis-backed
    stores used on the PostgreSQL/Redis leg do not allow.)
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self.jars: dict[str, httpx.Cookies] = {}
        self.current: str | None = None

    def switch(self, name: str) -> Any:
        if self.current is not None:
            self.jars[self.current] = httpx.Cookies(self.client.cookies)
        self.client.cookies = self.jars.get(name, httpx.Cookies())
        self.current = name
        return self.client


class Person:
    def __init__(self, browser: Browser, name: str) -> None:
        self.browser, self.name = browser, name

    async def get(self, *args: Any, **kwargs: Any) -> Any:
        return await self.browser.switch(self.name).get(*args, **kwargs)

    async def post(self, *args: Any, **kwargs: Any) -> Any:
        return await self.browser.switch(self.name).post(*args, **kwargs)


async def _people(client: Any, *names: str) -> list[Person]:
    browser = Browser(client)
    people = [Person(browser, n) for n in names]
    for person in people:
        assert (await signup(person, person.name)).status_code == 303
    return people


async def test_anonymous_and_csrf(client: Any) -> None:
    r = await client.get("/social/")
    assert r.status_code == 303 and r.headers["location"].startswith("/account/login")
    await signup(client, "alice")
    r = await client.post("/social/compose", data={"content": "no token"})
    assert r.status_code == 403


async def test_compose_timelines_like_boost_reply_delete(client: Any) -> None:
    alice, bob = await _people(client, "alice", "bob")
    client = alice
    r = await _post(client, "/social/compose", {"content": "Hello <b>world</b>", "visibility": "public",
                                                "summary": "spoilers", "next": "/social/"})
    assert r.status_code == 303 and r.headers["location"] == "/social/"
    home = (await client.get("/social/")).text
    assert "Hello &lt;b&gt;world&lt;/b&gt;" in home and "<summary>spoilers</summary>" in home
    await _post(client, "/social/compose", {"content": "quiet one", "visibility": "unlisted"})
    await _post(client, "/social/compose", {"content": "friends only", "visibility": "followers"})
    local = (await client.get("/social/local")).text
    assert "Hello &lt;b&gt;world" in local and "quiet one" not in local and "friends only" not in local
    federated = (await client.get("/social/federated")).text
    assert "friends only" not in federated
    home = (await client.get("/social/")).text
    assert "friends only" in home and "quiet one" in home

    bob_local = (await bob.get("/social/local")).text
    note = _note_ids(bob_local)[0]
    # htmx like: an in-place partial; no-JS boost: a 303 back
    r = await _post(bob, f"/social/notes/{note}/like", {"next": "/social/local"}, htmx=True)
    assert r.status_code == 200 and LIKED in r.text and "<html" not in r.text
    r = await _post(bob, f"/social/notes/{note}/boost", {"next": "/social/local"})
    assert r.status_code == 303 and r.headers["location"] == "/social/local"
    ap_id = re.search(r"reply_to=([^\"#]+)", bob_local)
    assert ap_id
    from urllib.parse import unquote

    r = await _post(bob, "/social/compose", {"content": "nice post @alice@127.0.0.1:8000",
                                             "in_reply_to": unquote(ap_id.group(1)), "visibility": "public",
                                             "next": f"/social/notes/{note}"})
    assert r.status_code == 303
    thread = (await bob.get(f"/social/notes/{note}")).text
    assert "nice post" in thread and LIKED + ONE in thread and BOOSTED + ONE in thread
    # bob cannot delete alice's post
    r = await _post(bob, f"/social/notes/{note}/delete", {"next": "/social/"})
    assert r.status_code == 303
    assert "Hello &lt;b&gt;world" in (await bob.get("/social/local")).text

    notes = (await client.get("/social/notifications")).text
    for text in ("liked your post", "boosted your post", "replied to your post"):
        assert text in notes, text
    r = await _post(client, f"/social/notes/{note}/delete", {"next": "/social/"})
    assert r.status_code == 303
    assert "Hello &lt;b&gt;world" not in (await client.get("/social/local")).text


async def test_follow_by_handle_and_locked_accounts(client: Any) -> None:
    alice, bob = await _people(client, "alice", "bob")
    client = alice
    r = await _post(bob, "/social/settings/locked", {"locked": "1"})
    assert r.status_code == 303
    r = await _post(client, "/social/follow", {"handle": "@bob@127.0.0.1:8000"})
    assert r.status_code == 303 and r.headers["location"] == "/social/following"
    assert "pending" in (await client.get("/social/following")).text
    followers = (await bob.get("/social/followers")).text
    fid = re.search(r"/social/followers/([0-9a-f-]{36})/approve", followers)
    assert fid and "asked to follow you" in (await bob.get("/social/notifications")).text
    r = await _post(bob, f"/social/followers/{fid.group(1)}/approve", {})
    assert r.status_code == 303
    assert "accepted" in (await client.get("/social/following")).text
    # bob's followers-only post now reaches alice's home timeline
    await _post(bob, "/social/compose", {"content": "for followers", "visibility": "followers"})
    assert "for followers" in (await client.get("/social/")).text
    r = await _post(client, "/social/unfollow", {"actor": f"{BASE}/@bob"})
    assert r.status_code == 303
    assert "for followers" not in (await client.get("/social/")).text
    # a bad handle is a flash message, not an error page
    r = await _post(client, "/social/follow", {"handle": "not a handle"})
    assert r.status_code == 303
    assert "Couldn" in (await client.get("/social/following")).text


async def test_login_helper_still_works(client: Any) -> None:
    await signup(client, "carol")
    await client.post("/account/logout", data={"_csrf_token": await _token(client)})
    assert (await login(client, "carol")).status_code == 303


async def test_notes_one_may_not_see_cannot_be_acted_on(client: Any) -> None:
    alice, bob, carol = await _people(client, "alice", "bob", "carol")
    await _post(alice, "/social/compose", {"content": "for followers", "visibility": "followers"})
    await _post(alice, "/social/compose", {"content": "psst @carol@127.0.0.1:8000", "visibility": "direct"})
    await _post(alice, "/social/compose", {"content": "for everyone", "visibility": "public"})
    followers_only, direct, public = _note_ids((await alice.get("/social/")).text)[::-1]
    for note in (followers_only, direct):
        assert (await bob.get(f"/social/notes/{note}")).status_code == 404
        for action in ("like", "boost", "unlike", "delete"):
            for htmx in (False, True):
                r = await _post(bob, f"/social/notes/{note}/{action}", {"next": "/social/"}, htmx=htmx)
                assert r.status_code == 404 and "for followers" not in r.text and "psst" not in r.text
    # a direct note reaches the home timelines of its author and the mentioned, no one else's
    assert "psst" in (await alice.get("/social/")).text and "psst" in (await carol.get("/social/")).text
    assert "psst" not in (await bob.get("/social/")).text
    # carol is mentioned in the direct note: she may see and like it
    r = await _post(carol, f"/social/notes/{direct}/like", {"next": "/social/"}, htmx=True)
    assert r.status_code == 200 and LIKED + ONE in r.text
    notes = (await alice.get("/social/notifications")).text
    assert notes.count("liked your post") == 1
    # an htmx action that fails sends the page to the flash message instead of swapping it in
    r = await _post(bob, f"/social/notes/{public}/delete", {"next": "/social/local"}, htmx=True)
    assert r.status_code == 200 and r.headers["hx-redirect"] == "/social/local"
    assert "You can only delete your own posts." in (await bob.get("/social/local")).text
    # the swap is the actions bar only, so the rest of the note (boost line, open CW) stays
    r = await _post(bob, f"/social/notes/{public}/like", {"next": "/social/"}, htmx=True)
    assert r.text.lstrip().startswith(f'<footer class="note-actions" id="actions-{public}">')


def _older_link(html: str) -> str:
    match = re.search(r'class="older"><a class="button button-quiet" href="([^"]+)" hx-get="\1" hx-select="([^"]+)"',
                      html)
    return match.group(1).replace("&amp;", "&") if match else ""


async def _every_page(person: Person, link: str, pattern: str) -> list[str]:
    """What ``pattern`` finds on a list's pages, following its Older links to the end."""
    found: list[str] = []
    while link:
        page = (await person.get(link)).text
        found += re.findall(pattern, page)
        link = _older_link(page)
    return found


async def test_timelines_page_by_keyset(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from federation.social import paging

    monkeypatch.setattr(paging, "TIMELINE_SIZE", 4)
    (alice,) = await _people(client, "alice")
    for i in range(10):
        await _post(alice, "/social/compose", {"content": f"post number {i}", "visibility": "public"})
    for tab in ("/social/", "/social/local", "/social/federated"):
        seen: list[str] = []
        page = (await alice.get(tab)).text
        assert "Back to the newest" not in page
        pages = 1
        while True:
            seen += re.findall(r"post number (\d+)", page)
            link = _older_link(page)
            if not link:
                break
            assert link.startswith(f"{tab.rstrip('/')}?before=")
            if pages == 1:  # a post written while reading does not shift the older pages
                await _post(alice, "/social/compose", {"content": f"later on {tab}", "visibility": "public"})
            page = (await alice.get(link)).text
            assert "Back to the newest" in page
            pages += 1
        assert pages == 3 and seen == [str(i) for i in range(9, -1, -1)], (tab, seen)
    r = await alice.get("/social/local?before=yesterday")
    assert r.status_code == 400 and "is not a page position" in r.text
    r = await alice.get("/social/local?before=99_not-a-uuid")
    assert r.status_code == 400


async def test_notifications_and_follow_lists_page(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from federation.social import paging

    monkeypatch.setattr(paging, "LIST_SIZE", 2)
    alice, bob, carol, dave = await _people(client, "alice", "bob", "carol", "dave")
    for person in (bob, carol, dave):
        r = await _post(person, "/social/follow", {"handle": "@alice@127.0.0.1:8000"})
        assert r.status_code == 303
    followers = await _every_page(alice, "/social/followers", r"@(bob|carol|dave)@127\.0\.0\.1:8000")
    assert followers == ["dave", "carol", "bob"]  # newest first, each once
    page = (await bob.get("/social/following")).text
    assert "@alice@127.0.0.1:8000" in page and not _older_link(page)

    kinds = await _every_page(alice, "/social/notifications", r"notification-(\w+)")
    assert kinds == ["follow", "follow", "follow"]
    r = await alice.get("/social/notifications?before=1_2")
    assert r.status_code == 400
