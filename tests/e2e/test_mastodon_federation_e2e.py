"""The Mastodon client API across two real Rose Ash instances over HTTP (issue 20): a member on
instance B follows, replies to, likes and boosts a post of a member on instance A, and A's member,
signed in with Mastodon.py (unmodified, through the real OAuth consent page), reads all four as
notifications carrying the remote account. Then A's member edits their profile (from the app and
from the web form) and B receives the new name, bio and avatar through Update(Person)."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from mastodon import Mastodon
from PIL import Image
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.conftest import DB_KINDS
from tests.e2e.test_mastodon_api_e2e import sign_in
from tests.helpers.server import AppServer, app_server, free_port
from tests.helpers.web import CSRF_FIELD

pytestmark = pytest.mark.e2e

T = TypeVar("T")
PASSWORD = "correct horse battery staple"
AS2 = "application/activity+json"
ENV = {
    "ROSE_ASH_FEDERATION_ALLOW_PRIVATE_ADDRESSES": "true",
    "ROSE_ASH_FEDERATION_RETRY_SCALE": "0.01",
}


@pytest.fixture(scope="module", params=DB_KINDS)
def peers(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, AppServer]]:
    tmp: Path = tmp_path_factory.mktemp(f"mastodon-federation-{request.param}")
    with ExitStack() as stack:
        urls: list[str | None] = [None, None]
        if request.param == "postgresql":
            from tests.helpers.pg import pg_database

            urls = [stack.enter_context(pg_database("mfed_a")), stack.enter_context(pg_database("mfed_b"))]
        a = stack.enter_context(app_server(tmp, name="a", database_url=urls[0], extra_env=ENV))
        b = stack.enter_context(app_server(tmp, name="b", database_url=urls[1], extra_env=ENV))
        a.create_user("alice", PASSWORD)
        b.create_user("bob", PASSWORD)
        yield {"a": a, "b": b}


def _host(server: AppServer) -> str:
    return f"127.0.0.1:{server.port}"


def eventually(check: Callable[[], T | None], what: str, within: float = 60.0) -> T:
    """Poll until ``check`` answers something truthy (a deadline to give up, not a speed check)."""
    deadline = time.monotonic() + within
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}: last={last!r}")


@contextmanager
def browser(server: AppServer, user: str) -> Iterator[httpx.Client]:
    """A signed-in browser session on the server's web pages."""
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        token = CSRF_FIELD.search(client.get("/account/login").text)
        assert token
        r = client.post("/account/login", data={"login": user, "password": PASSWORD, "_csrf_token": token.group(1)})
        assert r.status_code == 303, r.text[:300]
        yield client


def form(client: httpx.Client, path: str, data: dict[str, str], page: str = "/social/") -> httpx.Response:
    token = CSRF_FIELD.search(client.get(page).text)
    assert token, page
    r = client.post(path, data={**data, "_csrf_token": token.group(1)})
    assert r.status_code == 303, (path, r.status_code, r.text[:500])
    return r


def as2(server: AppServer, path: str) -> dict[str, Any]:
    r = httpx.get(server.base_url + path, headers={"Accept": AS2}, timeout=10)
    r.raise_for_status()
    data: dict[str, Any] = r.json()
    return data


def note_link(html: str, needle: str) -> str | None:
    for uuid, body in re.findall(r'<article class="note card" id="note-([0-9a-f-]+)">(.*?)</article>', html, re.S):
        if needle in body:
            return f"/social/notes/{uuid}"
    return None


def stored_actor(server: AppServer, uri: str) -> tuple[str, str, str | None] | None:
    """The (name, summary, icon) the server stores for an actor, read from its database."""
    async def read(session: AsyncSession) -> tuple[str, str, str | None] | None:
        row = (await session.execute(text("SELECT name, summary, icon_url FROM ap_actor WHERE uri = :u"),
                                     {"u": uri})).first()
        return (row[0], row[1], row[2]) if row else None

    return server.in_process(read)


def updates_sent(server: AppServer, actor_uri: str) -> int:
    """How many Update activities of the actor itself the server recorded."""
    async def count(session: AsyncSession) -> int:
        return int((await session.execute(text(
            "SELECT count(*) FROM ap_activity WHERE direction = 'out' AND type = 'Update' AND actor_uri = :u "
            "AND object_id = :u"), {"u": actor_uri})).scalar_one())

    return server.in_process(count)


def png(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), colour).save(out, format="PNG")
    return out.getvalue()


def follow_alice(peers: dict[str, AppServer], bob: httpx.Client) -> None:
    a, b = peers["a"], peers["b"]
    form(bob, "/social/follow", {"handle": f"alice@{_host(a)}"})
    bob_uri = f"{b.base_url}/@bob"
    eventually(lambda: bob_uri in as2(a, "/@alice/followers?page=1")["orderedItems"], "bob following alice")


def test_remote_follow_mention_like_boost_are_mastodon_notifications(peers: dict[str, AppServer]) -> None:
    a, b = peers["a"], peers["b"]
    alice = sign_in(a, "alice")
    with browser(b, "bob") as bob:
        follow_alice(peers, bob)
        posted = alice.status_post("A note from A for the fediverse")

        def on_bobs_home() -> str | None:
            return note_link(bob.get("/social/").text, "A note from A for the fediverse")

        remote_note = eventually(on_bobs_home, "alice's note on B")
        form(bob, "/social/compose", {"content": f"@alice@{_host(a)} replying from B", "visibility": "public",
                                      "in_reply_to": posted.uri, "next": remote_note}, page=remote_note)
        form(bob, f"{remote_note}/like", {"next": remote_note}, page=remote_note)
        form(bob, f"{remote_note}/boost", {"next": remote_note}, page=remote_note)

    wanted = {"follow", "mention", "favourite", "reblog"}

    def all_four() -> list[Any] | None:
        found = alice.notifications()
        return found if wanted <= {n.type for n in found} else None

    found = eventually(all_four, "follow, mention, favourite and reblog notifications on A")
    by_type = {n.type: n for n in found if n.type in wanted}
    bob_uri = f"{b.base_url}/@bob"
    for kind, n in by_type.items():
        assert n.account.acct == f"bob@{_host(b)}", (kind, n.account.acct)
        assert n.account.uri == bob_uri and n.account.username == "bob"
        assert isinstance(n.account.id, str) and isinstance(n.id, str)
    assert by_type["follow"].status is None
    assert by_type["favourite"].status.id == posted.id
    assert by_type["reblog"].status.id == posted.id
    mention = by_type["mention"].status
    assert "replying from B" in mention.content
    assert mention.in_reply_to_id == posted.id and mention.account.acct == f"bob@{_host(b)}"
    # The remote account opens from the notification, as an app shows it.
    remote = alice.account(by_type["follow"].account.id)
    assert remote.acct == f"bob@{_host(b)}" and remote.url
    # Filtered by type, and dismissing one leaves the others.
    assert [n.type for n in alice.notifications(types=["favourite"])] == ["favourite"]
    alice.notifications_dismiss(by_type["reblog"].id)
    assert "reblog" not in {n.type for n in alice.notifications()}
    # The same notifications on A's web page.
    with browser(a, "alice") as web:
        page = web.get("/social/notifications").text
        assert "followed you" in page and "liked your post" in page


def test_profile_edit_reaches_followers_as_update_person(peers: dict[str, AppServer]) -> None:
    a, b = peers["a"], peers["b"]
    alice_uri = f"{a.base_url}/@alice"
    with browser(b, "bob") as bob:
        follow_alice(peers, bob)  # already following (the test above): nothing changes
    alice: Mastodon = sign_in(a, "alice")
    me = alice.account_update_credentials(display_name="Alice of A", note="Bio written in an app",
                                          avatar=png((200, 30, 30)), avatar_mime_type="image/png")
    assert me.display_name == "Alice of A" and "/social/avatars/" in me.avatar

    def arrived() -> tuple[str, str, str | None] | None:
        row = stored_actor(b, alice_uri)
        return row if row and row[0] == "Alice of A" and row[2] == me.avatar else None

    _name, summary, icon = eventually(arrived, "Update(Person) from the app reaching B")
    assert "Bio written in an app" in summary and icon == me.avatar
    # B serves the avatar's address A gave it, and A answers it.
    assert httpx.get(icon, timeout=10).headers["content-type"] == "image/png"

    # The web profile form sends the same Update.
    with browser(a, "alice") as web:
        form(web, "/account/settings/profile", {"display_name": "Alice, edited on the web",
                                                "bio": "Bio written on the web"}, page="/account/settings/profile")

    def web_edit() -> tuple[str, str, str | None] | None:
        row = stored_actor(b, alice_uri)
        return row if row and row[0] == "Alice, edited on the web" else None

    _name, summary, icon = eventually(web_edit, "Update(Person) from the web form reaching B")
    assert "Bio written on the web" in summary and icon == me.avatar  # the avatar stays
    # One Update per edit (the app's name, bio and avatar together), not one per field changed.
    assert updates_sent(a, alice_uri) == 2


def test_search_resolves_a_pasted_status_and_account_url_from_the_peer(peers: dict[str, AppServer]) -> None:
    a, b = peers["a"], peers["b"]
    a.create_user("dora", PASSWORD)  # nobody on B follows her: B holds none of her notes
    dora = sign_in(a, "dora")
    posted = dora.status_post("Dora's note, found by its URL")
    bob = sign_in(b, "bob")
    assert bob.search_v2(posted.uri, resolve=False).statuses == []  # no fetch without resolve
    found = bob.search_v2(posted.uri, resolve=True)
    (status,) = found.statuses
    assert status.uri == posted.uri and "found by its URL" in status.content
    assert status.account.acct == f"dora@{_host(a)}"
    assert bob.status(status.id).uri == posted.uri  # stored on B
    # By its web page's URL, and the account by its profile URL.
    assert [s.id for s in bob.search_v2(posted.url, resolve=True).statuses] == [status.id]
    accounts = bob.search_v2(f"{a.base_url}/@dora", resolve=True, result_type="accounts").accounts
    assert [x.acct for x in accounts] == [f"dora@{_host(a)}"]
    # A URL on the peer that names nothing, and one on a port nobody answers: empty, not an error.
    missing = f"{a.base_url}/social/notes/00000000-0000-7000-8000-000000000000"
    assert bob.search_v2(missing, resolve=True).statuses == []
    dead = f"http://127.0.0.1:{free_port()}/notes/1"
    assert bob.search_v2(dead, resolve=True).statuses == []
