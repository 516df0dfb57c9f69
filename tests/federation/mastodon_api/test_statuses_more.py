"""The Mastodon API's discovery methods (federation/mastodon/discovery.py): who favourited and
reblogged a status, the tag timeline (local notes and a received one), and v2 search; with the
bad input each must refuse and the scopes each needs."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import select

from federation.activitypub.models import Actor, Hashtag
from tests.federation.activitypub.test_processor import BOB, PUBLIC, World
from tests.federation.mastodon_api.test_mastodon_api import assert_account, assert_status, bearer, sign_in

pytestmark = pytest.mark.anyio

NEXT = re.compile(r'<([^>]+)>; rel="next"')
ORIGIN = "http://127.0.0.1:8000"


async def _post(client: Any, token: str, text: str, **extra: Any) -> dict[str, Any]:
    answer = await client.post("/api/v1/statuses", headers=bearer(token), json={"status": text, **extra})
    assert answer.status_code == 200, answer.text
    status: dict[str, Any] = answer.json()
    return status


async def test_favourited_by_and_reblogged_by_page_newest_first(client: Any) -> None:
    alice = await sign_in(client, "alice")
    bob = await sign_in(client, "bob")
    carol = await sign_in(client, "carol")
    status = await _post(client, alice, "like me")
    sid = status["id"]
    for token in (bob, carol):
        assert (await client.post(f"/api/v1/statuses/{sid}/favourite", headers=bearer(token))).status_code == 200
    assert (await client.post(f"/api/v1/statuses/{sid}/reblog", headers=bearer(bob))).status_code == 200
    likers = await client.get(f"/api/v1/statuses/{sid}/favourited_by", headers=bearer(alice))
    assert likers.status_code == 200
    assert [a["username"] for a in likers.json()] == ["carol", "bob"]
    for account in likers.json():
        assert_account(account)
    # Link paging: one a page, the next page by the header's URL; the last page has no next link.
    first = await client.get(f"/api/v1/statuses/{sid}/favourited_by", params={"limit": 1}, headers=bearer(alice))
    assert [a["username"] for a in first.json()] == ["carol"]
    nxt = NEXT.search(first.headers["link"])
    assert nxt and "limit=1" in nxt.group(1)
    second = await client.get(nxt.group(1).removeprefix(ORIGIN), headers=bearer(alice))
    assert [a["username"] for a in second.json()] == ["bob"]
    assert not NEXT.search(second.headers["link"]) and 'rel="prev"' in second.headers["link"]
    past = await client.get(f"/api/v1/statuses/{sid}/favourited_by", params={"max_id": NEXT.search(
        first.headers["link"]).group(1).split("max_id=")[1]}, headers=bearer(alice))
    assert [a["username"] for a in past.json()] == ["bob"] and not NEXT.search(past.headers["link"])
    boosters = await client.get(f"/api/v1/statuses/{sid}/reblogged_by", headers=bearer(carol))
    assert [a["username"] for a in boosters.json()] == ["bob"]
    # Unknown, malformed and hidden statuses.
    unknown = await client.get("/api/v1/statuses/01890000-0000-7000-8000-000000000000/favourited_by",
                               headers=bearer(alice))
    assert unknown.status_code == 404 and unknown.json() == {"error": "Record not found"}
    assert (await client.get("/api/v1/statuses/nope/reblogged_by", headers=bearer(alice))).status_code == 400
    private = await _post(client, alice, "followers only", visibility="private")
    hidden = await client.get(f"/api/v1/statuses/{private['id']}/favourited_by", headers=bearer(carol))
    assert hidden.status_code == 404  # carol does not follow alice: the note is not there for her
    writer = await sign_in(client, "dave", "write")
    refused = await client.get(f"/api/v1/statuses/{sid}/favourited_by", headers=bearer(writer))
    assert refused.status_code == 403 and set(refused.json()) == {"error"}


async def test_tag_timeline_has_local_and_received_public_notes(client: Any, db_session: Any, settings: Any) -> None:
    alice = await sign_in(client, "alice")
    first = await _post(client, alice, "A #Rose by any name")
    await _post(client, alice, "nothing tagged here, not even a#b or /page#rose")
    second = await _post(client, alice, "again #rose and #Thorns #rose")
    await _post(client, alice, "a secret #rose", visibility="private")
    assert sorted(t["name"] for t in second["tags"]) == ["rose", "thorns"]
    assert second["tags"][0]["url"].startswith(ORIGIN + "/api/v1/timelines/tag/")
    # A note received from another server, carrying Mastodon's Hashtag tag.
    db_session.add(Actor(uri=BOB, local=False, type="Person", username="bob", domain="remote.example",
                         inbox=f"{BOB}/inbox", followers_url=f"{BOB}/followers", fetched_at=datetime.now(UTC)))
    await db_session.commit()
    world = World(db_session, settings)
    note = f"{BOB}/notes/1"
    await world.receive({"type": "Create", "to": [PUBLIC], "object": {
        "id": note, "type": "Note", "attributedTo": BOB, "content": "<p>remote #ROSE</p>", "to": [PUBLIC],
        "published": "2020-01-01T00:00:00Z", "tag": [{"type": "Hashtag", "name": "#ROSE", "href": "x"},
                                                       {"type": "Hashtag", "name": "#bad tag"}]}})
    assert set((await db_session.scalars(select(Hashtag.name))).all()) == {"rose", "thorns"}
    answer = await client.get("/api/v1/timelines/tag/ROSE", headers=bearer(alice))
    assert answer.status_code == 200
    statuses = answer.json()
    for status in statuses:
        assert_status(status)
    assert [s["id"] for s in statuses[:2]] == [second["id"], first["id"]]
    assert statuses[2]["uri"] == note and statuses[2]["account"]["acct"] == "bob@remote.example"
    assert len(statuses) == 3  # not the followers-only note, nor the untagged ones
    local = await client.get("/api/v1/timelines/tag/rose", params={"local": "true"}, headers=bearer(alice))
    assert [s["id"] for s in local.json()] == [second["id"], first["id"]]
    paged = await client.get("/api/v1/timelines/tag/rose", params={"limit": 1}, headers=bearer(alice))
    nxt = NEXT.search(paged.headers["link"])
    assert nxt and f"max_id={second['id']}" in nxt.group(1)
    older = await client.get(nxt.group(1).removeprefix(ORIGIN), headers=bearer(alice))
    assert [s["id"] for s in older.json()] == [first["id"]]
    assert (await client.get("/api/v1/timelines/tag/unknown", headers=bearer(alice))).json() == []
    assert (await client.get("/api/v1/timelines/tag/no%20such", headers=bearer(alice))).json() == []
    assert (await client.get("/api/v1/timelines/tag/rose", params={"max_id": "x"},
                             headers=bearer(alice))).status_code == 400


async def test_search_accounts_statuses_and_hashtags(client: Any, db_session: Any) -> None:
    alice = await sign_in(client, "alice")
    bob = await sign_in(client, "bobby")
    await _post(client, bob, "Gardening with #roses today")
    await _post(client, bob, "gardening secrets for followers", visibility="private")
    await _post(client, alice, "my own gardening, just for me", visibility="direct")
    everything = await client.get("/api/v2/search", params={"q": "garden"}, headers=bearer(alice))
    assert everything.status_code == 200, everything.text
    body = everything.json()
    assert set(body) == {"accounts", "statuses", "hashtags"} and body["accounts"] == []
    texts = sorted(s["content"] for s in body["statuses"])
    assert texts == ['<p>Gardening with <a href="http://127.0.0.1:8000/social/tags/roses" class="mention hashtag" '
                     'rel="tag">#roses</a> today</p>', "<p>my own gardening, just for me</p>"]
    people = (await client.get("/api/v2/search", params={"q": "@bob", "type": "accounts"},
                               headers=bearer(alice))).json()
    assert [a["acct"] for a in people["accounts"]] == ["bobby"] and people["statuses"] == []
    assert_account(people["accounts"][0])
    tags = (await client.get("/api/v2/search", params={"q": "#ROS", "type": "hashtags"}, headers=bearer(alice))).json()
    assert [t["name"] for t in tags["hashtags"]] == ["roses"] and tags["hashtags"][0]["history"] == []
    # Wildcards are text: "%" finds nothing rather than everything.
    assert (await client.get("/api/v2/search", params={"q": "%"}, headers=bearer(alice))).json() == \
        {"accounts": [], "statuses": [], "hashtags": []}
    # A remote handle is not looked up without resolve=true (no request leaves the server).
    remote = await client.get("/api/v2/search", params={"q": "someone@remote.example"}, headers=bearer(alice))
    assert remote.status_code == 200 and remote.json()["accounts"] == []
    for params, status in (({"q": "x", "type": "people"}, 422), ({"q": ""}, 400), ({"q": "x", "limit": "lots"}, 400),
                           ({"q": "x" * 501}, 422)):
        bad = await client.get("/api/v2/search", params=params, headers=bearer(alice))
        assert bad.status_code == status and set(bad.json()) == {"error"}, params
    narrow = await sign_in(client, "carol", "read:accounts")
    assert (await client.get("/api/v2/search", params={"q": "x"}, headers=bearer(narrow))).status_code == 403
    granular = await sign_in(client, "dave", "read:search read:accounts")
    assert (await client.get("/api/v2/search", params={"q": "bob"}, headers=bearer(granular))).status_code == 200


def _jpeg_with_exif(width: int = 1600, height: int = 800) -> bytes:
    import io

    from PIL import Image

    image = Image.new("RGB", (width, height), (200, 30, 30))
    exif = Image.Exif()
    exif[0x010F] = "SpyCam"  # Make
    exif[0x0131] = "secret-software"  # Software
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif.tobytes())
    data = out.getvalue()
    assert b"SpyCam" in data
    return data


async def test_media_upload_attach_render_and_federate(client: Any, db_session: Any) -> None:
    import io

    from PIL import Image

    from domains.market.schemas import MAX_IMAGE_BYTES
    from federation.activitypub.models import APObject

    alice = await sign_in(client, "alice")
    # The name and declared type say PNG; the bytes are a JPEG: the content decides.
    up = await client.post("/api/v2/media", headers=bearer(alice), data={"description": "A red field"},
                           files={"file": ("photo.png", _jpeg_with_exif(), "image/png")})
    assert up.status_code == 200, up.text
    media = up.json()
    assert media["type"] == "image" and media["description"] == "A red field" and media["remote_url"] is None
    assert media["meta"]["original"]["width"] == 1280 and media["meta"]["original"]["height"] == 640
    assert media["meta"]["small"]["width"] == 320 and media["url"].endswith("-1280.jpeg")
    served = await client.get(media["url"].removeprefix(ORIGIN))
    assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg"
    assert b"SpyCam" not in served.content and b"secret-software" not in served.content
    with Image.open(io.BytesIO(served.content)) as image:
        assert image.size == (1280, 640) and not dict(image.getexif())
    assert (await client.get(media["preview_url"].removeprefix(ORIGIN))).status_code == 200
    # Alt text can change until a post carries the image; GET shows the member's own upload.
    changed = await client.put(f"/api/v1/media/{media['id']}", headers=bearer(alice), json={"description": "Poppies"})
    assert changed.status_code == 200 and changed.json()["description"] == "Poppies"
    again = await client.get(f"/api/v1/media/{media['id']}", headers=bearer(alice))
    assert again.status_code == 200 and again.json()["description"] == "Poppies"
    # Posted with media_ids[] (a form, as Mastodon.py sends it) and no text.
    posted = await client.post("/api/v1/statuses", headers=bearer(alice),
                               data={"status": "", "media_ids[]": [media["id"]]})
    assert posted.status_code == 200, posted.text
    status = posted.json()
    assert_status(status)
    [shown] = status["media_attachments"]
    assert shown["description"] == "Poppies" and shown["url"] == media["url"] and shown["type"] == "image"
    assert shown["id"] == media["id"]  # the posted status's attachment is the upload, by its id
    home = (await client.get("/api/v1/timelines/home", headers=bearer(alice))).json()
    assert home[0]["media_attachments"][0]["url"] == media["url"]
    assert home[0]["media_attachments"][0]["id"] == media["id"]
    # The attachment's AS2 id (the upload's address) leads to the file.
    by_id = await client.get(f"/social/media/{media['id']}")
    assert by_id.status_code == 302 and by_id.headers["location"] == media["url"]
    assert (await client.get("/social/media/01890000-0000-7000-8000-000000000000")).status_code == 404
    # The note's AS2 document (what followers' servers receive) carries a Document, alt text as name.
    note = await db_session.get(APObject, UUID(status["id"]))
    await db_session.refresh(note)
    [doc] = note.raw["attachment"]
    assert doc == {"id": f"{ORIGIN}/social/media/{media['id']}", "type": "Document", "mediaType": "image/jpeg",
                   "url": media["url"], "name": "Poppies", "width": 1280, "height": 640}
    # Attached: no second post with it, no alt-text change.
    reuse = await client.post("/api/v1/statuses", headers=bearer(alice),
                              json={"status": "x", "media_ids": [media["id"]]})
    assert reuse.status_code == 422 and set(reuse.json()) == {"error"}
    assert (await client.put(f"/api/v1/media/{media['id']}", headers=bearer(alice),
                             json={"description": "late"})).status_code == 422
    # Bad input: not an image, too large, no file, too long a description, unknown ids, another's upload.
    text_file = await client.post("/api/v2/media", headers=bearer(alice),
                                  files={"file": ("cat.jpg", b"just some text, not an image", "image/jpeg")})
    assert text_file.status_code == 422 and "not a JPEG, PNG or WebP" in text_file.json()["error"]
    huge = await client.post("/api/v2/media", headers=bearer(alice),
                             files={"file": ("big.jpg", b"\xff\xd8" + b"0" * MAX_IMAGE_BYTES, "image/jpeg")})
    assert huge.status_code == 413 and set(huge.json()) == {"error"}
    missing = await client.post("/api/v2/media", headers=bearer(alice), data={"description": "x"})
    assert missing.status_code == 422
    long_alt = await client.post("/api/v1/media", headers=bearer(alice), data={"description": "x" * 1501},
                                 files={"file": ("a.jpg", _jpeg_with_exif(20, 10), "image/jpeg")})
    assert long_alt.status_code == 422
    unknown = "01890000-0000-7000-8000-000000000000"
    assert (await client.get(f"/api/v1/media/{unknown}", headers=bearer(alice))).status_code == 404
    assert (await client.get("/api/v1/media/nope", headers=bearer(alice))).status_code == 400
    assert (await client.get("/social/media/" + "0" * 64 + "-320.jpeg")).status_code == 404
    assert (await client.get("/social/media/../../etc/passwd")).status_code == 404
    bob = await sign_in(client, "bob")
    theirs = await client.post("/api/v2/media", headers=bearer(bob),
                               files={"file": ("b.webp", _jpeg_with_exif(40, 40), "application/octet-stream")})
    assert theirs.status_code == 200 and theirs.json()["meta"]["original"]["width"] == 40
    assert (await client.get(f"/api/v1/media/{theirs.json()['id']}", headers=bearer(alice))).status_code == 404
    stolen = await client.post("/api/v1/statuses", headers=bearer(alice),
                               json={"status": "mine now", "media_ids": [theirs.json()["id"]]})
    assert stolen.status_code == 422
    five = await client.post("/api/v1/statuses", headers=bearer(bob), json={"status": "x", "media_ids": [unknown] * 5})
    assert five.status_code == 422
    reader = await sign_in(client, "carol", "read")
    refused = await client.post("/api/v2/media", headers=bearer(reader),
                                files={"file": ("a.jpg", _jpeg_with_exif(20, 10), "image/jpeg")})
    assert refused.status_code == 403 and set(refused.json()) == {"error"}
    instance = (await client.get("/api/v2/instance")).json()["configuration"]
    assert instance["statuses"]["max_media_attachments"] == 4
    assert "image/jpeg" in instance["media_attachments"]["supported_mime_types"]
