"""The Mastodon API's account side (federation/mastodon/accounts.py): update_credentials with an
avatar, followers and following with Link paging, relationships, block and mute (local and
remote accounts), the blocks and mutes lists, scopes and bad input."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from federation.activitypub.models import Actor, Block, Delivery, Follow
from tests.federation.mastodon_api.test_mastodon_api import RELATIONSHIP, assert_account, bearer, sign_in

pytestmark = pytest.mark.anyio

REMOTE = "https://remote.example/users/rita"
UNKNOWN = "0190aaaa-0000-7000-8000-000000000000"
LINK = re.compile(r'<([^>]+)>; rel="next"')


def png_with_exif(size: tuple[int, int] = (600, 300)) -> bytes:
    image = Image.new("RGB", size, (200, 30, 30))
    exif = Image.Exif()
    exif[0x010F] = "SpyCam"  # Make
    exif[0x8825] = {2: (51.0, 30.0, 0.0)}  # GPSInfo: a latitude
    out = io.BytesIO()
    image.save(out, "PNG", exif=exif)
    return out.getvalue()


async def me_of(client: Any, token: str) -> dict[str, Any]:
    answer = await client.get("/api/v1/accounts/verify_credentials", headers=bearer(token))
    assert answer.status_code == 200
    me: dict[str, Any] = answer.json()
    return me


async def rel(client: Any, token: str, account_id: str) -> dict[str, Any]:
    answer = await client.get("/api/v1/accounts/relationships", params={"id[]": account_id}, headers=bearer(token))
    assert answer.status_code == 200, answer.text
    (one,) = answer.json()
    assert set(one) >= RELATIONSHIP
    return dict(one)


async def home_texts(client: Any, token: str) -> list[str]:
    answer = await client.get("/api/v1/timelines/home", headers=bearer(token))
    assert answer.status_code == 200
    return [s["content"] for s in answer.json()]


async def test_update_credentials_changes_the_profile_and_the_actor(client: Any) -> None:
    alice = await sign_in(client, "alice")
    answer = await client.patch("/api/v1/accounts/update_credentials", headers=bearer(alice), data={
        "display_name": "Alice Liddell", "note": "Down the <rabbit> hole", "locked": "true"},
        files={"avatar": ("me.png", png_with_exif(), "image/png")})
    assert answer.status_code == 200, answer.text
    me = answer.json()
    assert_account(me)
    assert me["display_name"] == "Alice Liddell" and me["locked"] is True
    assert me["note"] == "<p>Down the &lt;rabbit&gt; hole</p>" and me["source"]["note"] == "Down the <rabbit> hole"
    assert re.fullmatch(r"http://127\.0\.0\.1:8000/social/avatars/[0-9a-f]{64}-400\.png", me["avatar"])
    # verify_credentials and accounts/:id say the same.
    again = await me_of(client, alice)
    assert again["display_name"] == "Alice Liddell" and again["avatar"] == me["avatar"]
    by_id = (await client.get(f"/api/v1/accounts/{me['id']}", headers=bearer(alice))).json()
    assert by_id["avatar"] == me["avatar"] and by_id["note"] == me["note"]
    # The avatar is served (public, immutable), resized to 400 px and without EXIF.
    path = me["avatar"].removeprefix("http://127.0.0.1:8000")
    served = await client.get(path)
    assert served.status_code == 200 and served.headers["content-type"] == "image/png"
    assert served.headers["cache-control"] == "public, max-age=3600"  # replaced avatars must leave caches
    with Image.open(io.BytesIO(served.content)) as image:
        assert image.size == (400, 200) and not image.getexif() and "exif" not in image.info
    assert (await client.get(path.replace(".png", ".webp"))).status_code == 404
    assert (await client.get("/social/avatars/../../etc/passwd")).status_code == 404
    # The ActivityPub actor carries the new name, bio and icon.
    actor = (await client.get("/@alice", headers={"Accept": "application/activity+json"})).json()
    assert actor["name"] == "Alice Liddell" and actor["icon"]["url"] == me["avatar"]
    assert "rabbit" in actor["summary"] and actor["manuallyApprovesFollowers"] is True
    # Only what is sent changes.
    partial = await client.patch("/api/v1/accounts/update_credentials", headers=bearer(alice),
                                 json={"display_name": "A. L."})
    assert partial.status_code == 200 and partial.json()["source"]["note"] == "Down the <rabbit> hole"
    assert partial.json()["avatar"] == me["avatar"]


async def test_update_credentials_refuses_bad_input_and_writes_nothing(client: Any) -> None:
    alice = await sign_in(client, "alice")
    before = await me_of(client, alice)

    async def refused(**kwargs: Any) -> str:
        answer = await client.patch("/api/v1/accounts/update_credentials", headers=bearer(alice), **kwargs)
        assert answer.status_code == 422, answer.text
        assert set(answer.json()) == {"error"}
        error: str = answer.json()["error"]
        return error

    big = b"\x89PNG\r\n\x1a\n" + b"\0" * (2 * 1024 * 1024 + 1)
    assert "2 MB at most" in await refused(data={"display_name": "Changed"}, files={"avatar": ("a.png", big)})
    forged = await refused(data={"display_name": "Changed"},
                           files={"avatar": ("a.png", b"<?php system($_GET['c']); ?>", "image/png")})
    assert "not a JPEG, PNG or WebP image" in forged
    gif = Image.new("RGB", (10, 10))
    out = io.BytesIO()
    gif.save(out, "JPEG")
    assert "really a JPEG" in await refused(files={"avatar": ("a.png", out.getvalue(), "image/png")})
    assert "100 characters" in await refused(json={"display_name": "x" * 101})
    assert "note" in await refused(json={"note": "y" * 2001})
    assert "header" in await refused(files={"header": ("h.png", png_with_exif(), "image/png")})
    assert "locked" in await refused(json={"locked": "maybe"})
    after = await me_of(client, alice)
    assert after["display_name"] == before["display_name"] and after["avatar"] == before["avatar"]
    reader = await sign_in(client, "bob", "read")
    denied = await client.patch("/api/v1/accounts/update_credentials", headers=bearer(reader),
                                json={"display_name": "Bob"})
    assert denied.status_code == 403 and set(denied.json()) == {"error"}


async def test_followers_and_following_page_by_link_header(client: Any) -> None:
    alice = await sign_in(client, "alice")
    alice_id = (await me_of(client, alice))["id"]
    fans = {}
    for name in ("bob", "carol", "dave"):
        token = await sign_in(client, name)
        fans[name] = (await me_of(client, token))["id"]
        assert (await client.post(f"/api/v1/accounts/{alice_id}/follow", headers=bearer(token))).status_code == 200
    first = await client.get(f"/api/v1/accounts/{alice_id}/followers?limit=2", headers=bearer(alice))
    assert first.status_code == 200
    assert [a["acct"] for a in first.json()] == ["dave", "carol"]  # newest follow first
    for account in first.json():
        assert_account(account)
    nxt = LINK.search(first.headers["link"])
    assert nxt and "limit=2" in nxt.group(1) and 'rel="prev"' in first.headers["link"]
    second = await client.get(nxt.group(1).removeprefix("http://127.0.0.1:8000"), headers=bearer(alice))
    assert [a["acct"] for a in second.json()] == ["bob"]
    assert not LINK.search(second.headers["link"])  # the short last page: no next link
    prev = re.search(r'<([^>]+)>; rel="prev"', second.headers["link"])
    assert prev
    newer = await client.get(prev.group(1).removeprefix("http://127.0.0.1:8000"), headers=bearer(alice))
    assert [a["acct"] for a in newer.json()] == ["dave", "carol"]
    following = await client.get(f"/api/v1/accounts/{fans['bob']}/following", headers=bearer(alice))
    assert [a["acct"] for a in following.json()] == ["alice"]
    assert (await client.get(f"/api/v1/accounts/{alice_id}/following", headers=bearer(alice))).json() == []
    missing = await client.get(f"/api/v1/accounts/{UNKNOWN}/followers", headers=bearer(alice))
    assert missing.status_code == 404 and missing.json() == {"error": "Record not found"}
    assert (await client.get("/api/v1/accounts/nope/following", headers=bearer(alice))).status_code == 400
    assert (await client.get(f"/api/v1/accounts/{alice_id}/followers?max_id=x",
                             headers=bearer(alice))).status_code == 400
    # Self-follow is a 422; an unknown account a 404.
    assert (await client.post(f"/api/v1/accounts/{alice_id}/follow", headers=bearer(alice))).status_code == 422
    assert (await client.post(f"/api/v1/accounts/{UNKNOWN}/follow", headers=bearer(alice))).status_code == 404


async def test_block_ends_follows_hides_notes_and_lifts(client: Any) -> None:
    alice = await sign_in(client, "alice")
    bob = await sign_in(client, "bob")
    alice_id, bob_id = (await me_of(client, alice))["id"], (await me_of(client, bob))["id"]
    await client.post(f"/api/v1/accounts/{bob_id}/follow", headers=bearer(alice))
    await client.post(f"/api/v1/accounts/{alice_id}/follow", headers=bearer(bob))
    await client.post("/api/v1/statuses", headers=bearer(bob), json={"status": "bob speaks"})
    assert "<p>bob speaks</p>" in await home_texts(client, alice)
    blocked = await client.post(f"/api/v1/accounts/{bob_id}/block", headers=bearer(alice))
    assert blocked.status_code == 200, blocked.text
    r = blocked.json()
    assert set(r) >= RELATIONSHIP
    assert r["blocking"] is True and r["following"] is False and r["followed_by"] is False
    assert (await rel(client, bob, alice_id))["blocked_by"] is True
    assert "<p>bob speaks</p>" not in await home_texts(client, alice)
    await client.post("/api/v1/statuses", headers=bearer(bob), json={"status": "hey @alice"})
    notes = (await client.get("/api/v1/notifications", headers=bearer(alice))).json()
    assert all(n["account"]["id"] != bob_id for n in notes)
    listed = await client.get("/api/v1/blocks", headers=bearer(alice))
    assert [a["id"] for a in listed.json()] == [bob_id]
    refollow = await client.post(f"/api/v1/accounts/{bob_id}/follow", headers=bearer(alice))
    assert refollow.status_code == 422 and "unblock" in refollow.json()["error"]
    lifted = await client.post(f"/api/v1/accounts/{bob_id}/unblock", headers=bearer(alice))
    assert lifted.status_code == 200 and lifted.json()["blocking"] is False
    assert (await client.get("/api/v1/blocks", headers=bearer(alice))).json() == []
    assert (await client.post(f"/api/v1/accounts/{bob_id}/unblock", headers=bearer(alice))).status_code == 200
    itself = await client.post(f"/api/v1/accounts/{alice_id}/block", headers=bearer(alice))
    assert itself.status_code == 422 and "yourself" in itself.json()["error"]
    assert (await client.post(f"/api/v1/accounts/{UNKNOWN}/block", headers=bearer(alice))).status_code == 404


async def test_mute_hides_from_home_and_notifications_only(client: Any) -> None:
    alice = await sign_in(client, "alice")
    bob = await sign_in(client, "bob")
    alice_id, bob_id = (await me_of(client, alice))["id"], (await me_of(client, bob))["id"]
    await client.post(f"/api/v1/accounts/{bob_id}/follow", headers=bearer(alice))
    await client.post("/api/v1/statuses", headers=bearer(bob), json={"status": "bob speaks"})
    muted = await client.post(f"/api/v1/accounts/{bob_id}/mute", headers=bearer(alice))
    assert muted.status_code == 200, muted.text
    r = muted.json()
    assert r["muting"] is True and r["muting_notifications"] is True and r["following"] is True  # follows stay
    assert "<p>bob speaks</p>" not in await home_texts(client, alice)
    await client.post("/api/v1/statuses", headers=bearer(bob), json={"status": "hey @alice"})
    notes = (await client.get("/api/v1/notifications", headers=bearer(alice))).json()
    assert all(n["account"]["id"] != bob_id for n in notes)
    # Still on his profile (a mute hides from home and notifications only), and nothing told bob.
    profile = (await client.get(f"/api/v1/accounts/{bob_id}/statuses", headers=bearer(alice))).json()
    assert len(profile) == 2
    assert (await rel(client, bob, alice_id))["blocked_by"] is False
    assert [a["id"] for a in (await client.get("/api/v1/mutes", headers=bearer(alice))).json()] == [bob_id]
    # Muting again without notifications: the mention shows, the notes stay hidden.
    softer = await client.post(f"/api/v1/accounts/{bob_id}/mute", headers=bearer(alice),
                               json={"notifications": False})
    assert softer.json()["muting"] is True and softer.json()["muting_notifications"] is False
    notes = (await client.get("/api/v1/notifications", headers=bearer(alice))).json()
    assert [n["type"] for n in notes if n["account"]["id"] == bob_id] == ["mention"]
    assert "<p>bob speaks</p>" not in await home_texts(client, alice)
    unmuted = await client.post(f"/api/v1/accounts/{bob_id}/unmute", headers=bearer(alice))
    assert unmuted.status_code == 200 and unmuted.json()["muting"] is False
    assert "<p>bob speaks</p>" in await home_texts(client, alice)
    assert (await client.get("/api/v1/mutes", headers=bearer(alice))).json() == []
    # Bad input.
    itself = await client.post(f"/api/v1/accounts/{alice_id}/mute", headers=bearer(alice))
    assert itself.status_code == 422 and "yourself" in itself.json()["error"]
    for body in ({"duration": "soon"}, {"duration": -5}, {"notifications": "perhaps"}):
        bad = await client.post(f"/api/v1/accounts/{bob_id}/mute", headers=bearer(alice), json=body)
        assert bad.status_code == 422 and set(bad.json()) == {"error"}, body
    assert (await rel(client, alice, bob_id))["muting"] is False  # nothing half-written
    assert (await client.post(f"/api/v1/accounts/{UNKNOWN}/mute", headers=bearer(alice))).status_code == 404
    timed = await client.post(f"/api/v1/accounts/{bob_id}/mute", headers=bearer(alice), data={"duration": "3600"})
    assert timed.status_code == 200 and timed.json()["muting"] is True


async def test_remote_accounts_block_mute_and_lists(client: Any, db_session: AsyncSession) -> None:
    alice = await sign_in(client, "alice")
    db_session.add(Actor(uri=REMOTE, local=False, type="Person", username="rita", domain="remote.example",
                         name="Rita", inbox=f"{REMOTE}/inbox", fetched_at=datetime.now(UTC)))
    await db_session.commit()
    remote = await db_session.scalar(select(Actor).where(Actor.uri == REMOTE))
    assert remote is not None
    rid = str(remote.id)
    me = await me_of(client, alice)
    db_session.add(Follow(follower=REMOTE, followee=me["uri"], state="accepted",
                          activity_id="https://remote.example/follows/1"))
    await db_session.commit()
    fans = (await client.get(f"/api/v1/accounts/{me['id']}/followers", headers=bearer(alice))).json()
    assert [a["acct"] for a in fans] == ["rita@remote.example"]
    assert (await client.get(f"/api/v1/accounts/{rid}/following", headers=bearer(alice))).json()[0]["id"] == me["id"]
    assert (await rel(client, alice, rid))["followed_by"] is True
    muted = await client.post(f"/api/v1/accounts/{rid}/mute", headers=bearer(alice))
    assert muted.status_code == 200 and muted.json()["muting"] is True
    blocked = await client.post(f"/api/v1/accounts/{rid}/block", headers=bearer(alice))
    assert blocked.status_code == 200, blocked.text
    assert blocked.json()["blocking"] is True and blocked.json()["followed_by"] is False
    db_session.expire_all()
    assert await db_session.scalar(select(Block.id).where(Block.target == REMOTE)) is not None
    # Rita's server is told (a Block, and a Reject of her follow), through the delivery queue.
    inboxes = (await db_session.scalars(select(Delivery.inbox))).all()
    assert f"{REMOTE}/inbox" in inboxes
    blocks = (await client.get("/api/v1/blocks", headers=bearer(alice))).json()
    assert [a["acct"] for a in blocks] == ["rita@remote.example"]


async def test_scopes_govern_the_account_routes(client: Any) -> None:
    bob = await sign_in(client, "bob")
    bob_id = (await me_of(client, bob))["id"]
    reader = await sign_in(client, "alice", "read")
    for path in ("block", "unblock", "mute", "unmute", "follow", "unfollow"):
        denied = await client.post(f"/api/v1/accounts/{bob_id}/{path}", headers=bearer(reader))
        assert denied.status_code == 403 and set(denied.json()) == {"error"}, path
    for path in ("/api/v1/blocks", "/api/v1/mutes", f"/api/v1/accounts/{bob_id}/followers"):
        assert (await client.get(path, headers=bearer(reader))).status_code == 200, path
    # The legacy ``follow`` scope: follows, blocks and mutes, but not the profile or account lists.
    follower = await sign_in(client, "carol", "follow")
    assert (await client.post(f"/api/v1/accounts/{bob_id}/block", headers=bearer(follower))).status_code == 200
    assert (await client.post(f"/api/v1/accounts/{bob_id}/mute", headers=bearer(follower))).status_code == 200
    assert (await client.get("/api/v1/blocks", headers=bearer(follower))).status_code == 200
    assert (await client.get(f"/api/v1/accounts/{bob_id}/followers", headers=bearer(follower))).status_code == 403
    assert (await client.patch("/api/v1/accounts/update_credentials", headers=bearer(follower),
                               json={"display_name": "C"})).status_code == 403
    granular = await sign_in(client, "dave", "read:mutes write:mutes")
    assert (await client.post(f"/api/v1/accounts/{bob_id}/mute", headers=bearer(granular))).status_code == 200
    assert (await client.post(f"/api/v1/accounts/{bob_id}/block", headers=bearer(granular))).status_code == 403
    assert (await client.get("/api/v1/blocks", headers=bearer(granular))).status_code == 403
    assert (await client.get("/api/v1/mutes")).status_code == 401


async def test_lookup_of_local_accounts_and_bad_input(client: Any) -> None:
    alice = await sign_in(client, "alice")
    bob = await sign_in(client, "bob")
    bob_id = (await me_of(client, bob))["id"]
    found = await client.get("/api/v1/accounts/lookup", params={"acct": "@bob"}, headers=bearer(alice))
    assert found.status_code == 200 and found.json()["id"] == bob_id and found.json()["acct"] == "bob"
    missing = await client.get("/api/v1/accounts/lookup", params={"acct": "nobody"}, headers=bearer(alice))
    assert missing.status_code == 404 and missing.json() == {"error": "Record not found"}
    empty = await client.get("/api/v1/accounts/lookup", headers=bearer(alice))
    assert empty.status_code == 400 and set(empty.json()) == {"error"}
    assert (await client.get("/api/v1/accounts/lookup", params={"acct": "bob"})).status_code == 401
