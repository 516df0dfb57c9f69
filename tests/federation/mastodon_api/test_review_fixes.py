"""The security review's findings on the Mastodon API, each pinned by a test: members' image
uploads held to a low pixel cap, rate-limited and swept when abandoned; hashtag search limited to
public and unlisted notes; follower lists closed to a blocked member; a deleted note's images gone;
avatars cached for an hour, not a year."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from PIL import Image
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.jobs import registry
from app.settings import Settings
from domains.account.models import User
from federation.activitypub.models import MediaAttachment
from federation.mastodon.jobs import SWEEP_MEDIA, sweep_unattached
from federation.mastodon.throttle import MEDIA_UPLOADS, SEARCH_RESOLVE
from federation.social.schemas import Lookup
from federation.social.services import AccountProblem, Accounts
from federation.social.services.profile import IMAGE_WORK
from tests.federation.mastodon_api.test_mastodon_api import bearer, sign_in

pytestmark = pytest.mark.anyio

ORIGIN = "http://127.0.0.1:8000"


def png(width: int, height: int, mode: str = "L") -> bytes:
    """A flat image: a few KB of PNG however many pixels it has (what a decompression bomb is)."""
    out = io.BytesIO()
    Image.new(mode, (width, height), 7).save(out, "PNG")
    return out.getvalue()


async def upload(client: Any, token: str, data: bytes, name: str = "a.png") -> Any:
    return await client.post("/api/v2/media", headers=bearer(token), files={"file": (name, data, "image/png")})


async def post(client: Any, token: str, text: str, **extra: Any) -> dict[str, Any]:
    answer = await client.post("/api/v1/statuses", headers=bearer(token), json={"status": text, **extra})
    assert answer.status_code == 200, answer.text
    status: dict[str, Any] = answer.json()
    return status


async def account_id(client: Any, token: str) -> str:
    answer = await client.get("/api/v1/accounts/verify_credentials", headers=bearer(token))
    assert answer.status_code == 200
    return str(answer.json()["id"])


# --- 1. image uploads: pixel caps, a small worker budget, a rate limit, the sweep ------------------


async def test_a_media_upload_over_16_megapixels_is_refused_before_decoding(client: Any,
                                                                             db_session: AsyncSession) -> None:
    alice = await sign_in(client, "alice")
    bomb = png(5000, 4000)  # 20 MP: under the market's 40 MP, over the members' 16 MP
    assert len(bomb) < 200_000
    refused = await upload(client, alice, bomb)
    assert refused.status_code == 422, refused.text
    assert set(refused.json()) == {"error"}
    assert "5,000 x 4,000 pixels" in refused.json()["error"] and "16 megapixels" in refused.json()["error"]
    assert (await db_session.scalars(select(MediaAttachment))).all() == []
    # Just under the cap passes (and is resized as before).
    fine = await upload(client, alice, png(4000, 4000))
    assert fine.status_code == 200, fine.text
    assert fine.json()["meta"]["original"]["width"] == 1280
    instance = (await client.get("/api/v2/instance")).json()["configuration"]
    assert instance["media_attachments"]["image_matrix_limit"] == 16_000_000
    assert IMAGE_WORK.total_tokens == 2  # members' decodes: two at a time


async def test_an_avatar_over_8_megapixels_is_refused(client: Any) -> None:
    alice = await sign_in(client, "alice")
    before = (await client.get("/api/v1/accounts/verify_credentials", headers=bearer(alice))).json()
    refused = await client.patch("/api/v1/accounts/update_credentials", headers=bearer(alice),
                                 data={"display_name": "Changed"},
                                 files={"avatar": ("me.png", png(3000, 3000), "image/png")})
    assert refused.status_code == 422, refused.text
    assert "8 megapixels" in refused.json()["error"] and "3,000 x 3,000" in refused.json()["error"]
    after = (await client.get("/api/v1/accounts/verify_credentials", headers=bearer(alice))).json()
    assert after["display_name"] == before["display_name"] and after["avatar"] == before["avatar"]
    ok = await client.patch("/api/v1/accounts/update_credentials", headers=bearer(alice),
                            files={"avatar": ("me.png", png(2000, 2000), "image/png")})
    assert ok.status_code == 200, ok.text
    served = await client.get(ok.json()["avatar"].removeprefix(ORIGIN))
    assert served.status_code == 200
    # Avatars are replaced under new names: an hour in caches, not a year and "immutable".
    assert served.headers["cache-control"] == "public, max-age=3600"


async def test_media_uploads_are_limited_per_member(client: Any) -> None:
    alice = await sign_in(client, "alice")
    bob = await sign_in(client, "bob")
    small = png(20, 10)
    for _ in range(MEDIA_UPLOADS.amount):
        assert (await upload(client, alice, small)).status_code == 200
    spent = await upload(client, alice, small)
    assert spent.status_code == 429
    assert spent.json() == {"error": "Too many media uploads: at most 30 every 30 minutes. Try again later."}
    assert spent.headers["retry-after"] == "1800"
    # The budget is the member's own: another member uploads as usual.
    assert (await upload(client, bob, small)).status_code == 200


async def test_search_with_resolve_is_limited_per_member(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    alice = await sign_in(client, "alice")
    bob = await sign_in(client, "bob")
    asked: list[str] = []

    async def unreachable(self: Accounts, user: User, wanted: Lookup) -> Any:
        # The one stand-in: the remote server (tests send no request off the machine).
        asked.append(str(wanted.host))
        raise AccountProblem(404, "not found")

    monkeypatch.setattr(Accounts, "resolve", unreachable)
    params = {"q": "rita@remote.example", "resolve": "true", "type": "accounts"}
    for _ in range(SEARCH_RESOLVE.amount):
        answer = await client.get("/api/v2/search", params=params, headers=bearer(alice))
        assert answer.status_code == 200 and answer.json()["accounts"] == []
    spent = await client.get("/api/v2/search", params=params, headers=bearer(alice))
    assert spent.status_code == 429, spent.text
    assert "at most 30 every 5 minutes" in spent.json()["error"] and spent.headers["retry-after"] == "300"
    assert len(asked) == SEARCH_RESOLVE.amount  # the refused search asked no server
    # Without resolve, or with nothing remote to resolve, search answers as usual; bob has his own budget.
    plain = await client.get("/api/v2/search", params={"q": "rita@remote.example"}, headers=bearer(alice))
    assert plain.status_code == 200 and plain.json()["accounts"] == []
    local = await client.get("/api/v2/search", params={"q": "alice", "resolve": "true"}, headers=bearer(alice))
    assert local.status_code == 200 and [a["acct"] for a in local.json()["accounts"]] == ["alice"]
    assert (await client.get("/api/v2/search", params=params, headers=bearer(bob))).status_code == 200


async def test_the_sweep_removes_abandoned_uploads_and_their_files(client: Any, db_session: AsyncSession,
                                                                   settings: Settings) -> None:
    alice = await sign_in(client, "alice")
    kept = (await upload(client, alice, png(30, 20, "RGB"), "kept.png")).json()
    left = (await upload(client, alice, png(40, 20, "RGB"), "left.png")).json()
    fresh = (await upload(client, alice, png(50, 20, "RGB"), "fresh.png")).json()
    await post(client, alice, "with a picture", media_ids=[kept["id"]])
    # A day later the upload no note took is still served (a member may still post it)...
    assert (await sweep_unattached(db_session, settings.data_dir, now=datetime.now(UTC) + timedelta(hours=23)))[0] == 0
    await db_session.commit()
    assert (await client.get(left["url"].removeprefix(ORIGIN))).status_code == 200
    # ...and gone after it: row and files; the posted one stays. The fresh upload too is older than
    # a day by then, so it goes: the test's clock moves everything together.
    rows, files = await sweep_unattached(db_session, settings.data_dir, now=datetime.now(UTC) + timedelta(hours=25))
    await db_session.commit()
    assert rows == 2 and files == 2  # left and fresh: one stored width each
    remaining = (await db_session.scalars(select(MediaAttachment.id))).all()
    assert remaining == [UUID(kept["id"])]
    assert (await client.get(left["url"].removeprefix(ORIGIN))).status_code == 404
    assert (await client.get(fresh["url"].removeprefix(ORIGIN))).status_code == 404
    assert (await client.get(kept["url"].removeprefix(ORIGIN))).status_code == 200
    assert not list((settings.data_dir / "media").glob(left["url"].rsplit("/", 1)[1]))
    # It runs by itself, hourly.
    [schedule] = [s for s in registry.schedules if s.unique_key == "mastodon:sweep-media"]
    assert schedule.kind.name == SWEEP_MEDIA and schedule.interval == timedelta(hours=1)


# --- 2. hashtag search: only tags of notes anybody may read ---------------------------------------


async def test_hashtag_search_finds_no_tag_of_a_private_direct_deleted_or_hidden_note(client: Any) -> None:
    stranger = await sign_in(client, "stranger")
    bob = await sign_in(client, "bobby")
    await post(client, bob, "out loud #zzopen")
    await post(client, bob, "quietly #zzquiet", visibility="unlisted")
    await post(client, bob, "to followers #zzfollowers", visibility="private")
    await post(client, bob, "@stranger just you #zzdirect", visibility="direct")
    gone = await post(client, bob, "soon gone #zzgone")
    assert (await client.delete(f"/api/v1/statuses/{gone['id']}", headers=bearer(bob))).status_code == 200
    eve = await sign_in(client, "eve")
    await post(client, eve, "eve's #zzeve")
    assert (await client.post(f"/api/v1/accounts/{await account_id(client, stranger)}/block",
                              headers=bearer(eve))).status_code == 200
    found = await client.get("/api/v2/search", params={"q": "#zz", "type": "hashtags"}, headers=bearer(stranger))
    assert found.status_code == 200, found.text
    assert sorted(t["name"] for t in found.json()["hashtags"]) == ["zzopen", "zzquiet"]
    for secret in ("zzfollowers", "zzdirect", "zzgone", "zzeve"):
        one = await client.get("/api/v2/search", params={"q": secret, "type": "hashtags"}, headers=bearer(stranger))
        assert one.status_code == 200 and one.json()["hashtags"] == [], secret


# --- 3. follower lists: closed to a blocked member, hidden accounts left off -----------------------


async def test_a_blocked_member_cannot_list_the_blockers_follows(client: Any) -> None:
    alice = await sign_in(client, "alice")
    bob = await sign_in(client, "bob")
    carol = await sign_in(client, "carol")
    dave = await sign_in(client, "dave")
    alice_id, bob_id, carol_id, dave_id = [await account_id(client, t) for t in (alice, bob, carol, dave)]
    for follower in (alice, carol):
        assert (await client.post(f"/api/v1/accounts/{dave_id}/follow", headers=bearer(follower))).status_code == 200
    assert (await client.post(f"/api/v1/accounts/{dave_id}/follow", headers=bearer(bob))).status_code == 200
    assert (await client.post(f"/api/v1/accounts/{bob_id}/block", headers=bearer(dave))).status_code == 200
    assert (await client.post(f"/api/v1/accounts/{alice_id}/block", headers=bearer(carol))).status_code == 200
    # Dave blocks bob: dave's lists are 404 to bob, exactly as an unknown account's.
    for which in ("followers", "following"):
        closed = await client.get(f"/api/v1/accounts/{dave_id}/{which}", headers=bearer(bob))
        assert closed.status_code == 404 and closed.json() == {"error": "Record not found"}
    unknown = await client.get("/api/v1/accounts/0190aaaa-0000-7000-8000-000000000000/followers",
                               headers=bearer(bob))
    assert unknown.status_code == 404 and unknown.json() == closed.json()
    # Carol blocks alice: alice sees dave's followers without carol; dave sees both.
    seen = await client.get(f"/api/v1/accounts/{dave_id}/followers", headers=bearer(alice))
    assert seen.status_code == 200 and [a["acct"] for a in seen.json()] == ["alice"]
    everyone = await client.get(f"/api/v1/accounts/{dave_id}/followers", headers=bearer(dave))
    assert sorted(a["acct"] for a in everyone.json()) == ["alice", "carol"]
    # A member always sees their own lists.
    assert (await client.get(f"/api/v1/accounts/{carol_id}/following", headers=bearer(carol))).status_code == 200


# --- 4. a deleted note's images ------------------------------------------------------------------


async def test_a_deleted_notes_images_answer_404_and_leave_the_disk(client: Any, db_session: AsyncSession,
                                                                    settings: Settings) -> None:
    alice = await sign_in(client, "alice")
    media = (await upload(client, alice, png(60, 30, "RGB"))).json()
    status = await post(client, alice, "a picture", media_ids=[media["id"]])
    path = media["url"].removeprefix(ORIGIN)
    assert (await client.get(path)).status_code == 200
    assert (await client.delete(f"/api/v1/statuses/{status['id']}", headers=bearer(alice))).status_code == 200
    assert (await client.get(path)).status_code == 404
    assert (await client.get(media["preview_url"].removeprefix(ORIGIN))).status_code == 404
    assert (await client.get(f"/api/v1/media/{media['id']}", headers=bearer(alice))).status_code == 404
    assert (await client.get(f"/social/media/{media['id']}")).status_code == 404  # the attachment's AS2 id too
    assert (await db_session.scalars(select(MediaAttachment))).all() == []
    # The file outlives the note by at most the sweep's hour (newer files are left alone).
    name = path.rsplit("/", 1)[1]
    assert (await sweep_unattached(db_session, settings.data_dir))[1] == 0
    assert (settings.data_dir / "media" / name).is_file()
    _, files = await sweep_unattached(db_session, settings.data_dir, now=datetime.now(UTC) + timedelta(hours=2))
    assert files == 1 and not (settings.data_dir / "media" / name).exists()
