"""``Link`` paging of every list the Mastodon API pages (federation.mastodon.params.link_header):
``rel="next"`` only when older rows exist (one row past the page is read, nothing counted), so a
page that ends the list exactly at ``limit`` carries none; ``rel="prev"`` on every page with rows,
as Mastodon answers; an empty page carries no header at all."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.federation.mastodon_api.test_mastodon_api import bearer, sign_in

pytestmark = pytest.mark.anyio

ORIGIN = "http://127.0.0.1:8000"
NEXT = re.compile(r'<([^>]+)>; rel="next"')
PREV = re.compile(r'<([^>]+)>; rel="prev"')


async def walk(client: Any, token: str, path: str, limit: int, *, cursor_is_id: bool = True) -> list[list[str]]:
    """Every page of ``path`` by its next links; asserts each page's links as it goes
    (``cursor_is_id``: the links name the items' own ids, not rows behind them, as favourites')."""
    pages: list[list[str]] = []
    url: str | None = f"{path}{'&' if '?' in path else '?'}limit={limit}"
    while url is not None:
        answer = await client.get(url, headers=bearer(token))
        assert answer.status_code == 200, (url, answer.text)
        ids = [item["id"] for item in answer.json()]
        assert ids, f"{url}: a next link led to an empty page"
        pages.append(ids)
        link = answer.headers["link"]
        prev = PREV.search(link)
        assert prev and (f"min_id={ids[0]}" in prev.group(1) or not cursor_is_id)
        nxt = NEXT.search(link)
        url = nxt.group(1).removeprefix(ORIGIN) if nxt else None
        assert len(pages) < 20
    return pages


async def test_next_link_only_while_older_rows_exist(client: Any) -> None:
    alice = await sign_in(client, "alice")
    bob = await sign_in(client, "bob")
    me = (await client.get("/api/v1/accounts/verify_credentials", headers=bearer(alice))).json()
    ids = []
    for i in range(4):
        posted = await client.post("/api/v1/statuses", headers=bearer(alice), json={"status": f"#paging note {i}"})
        assert posted.status_code == 200, posted.text
        ids.append(posted.json()["id"])
    newest = ids[::-1]
    # Four rows two a page: the second page ends the list exactly, and says so (no next link).
    assert await walk(client, alice, "/api/v1/timelines/home", 2) == [newest[:2], newest[2:]]
    assert await walk(client, alice, "/api/v1/timelines/home", 4) == [newest]
    assert await walk(client, alice, "/api/v1/timelines/home", 3) == [newest[:3], newest[3:]]
    assert await walk(client, bob, "/api/v1/timelines/public?local=true", 2) == [newest[:2], newest[2:]]
    assert await walk(client, bob, "/api/v1/timelines/tag/paging", 3) == [newest[:3], newest[3:]]
    assert await walk(client, bob, f"/api/v1/accounts/{me['id']}/statuses", 2) == [newest[:2], newest[2:]]
    assert await walk(client, bob, f"/api/v1/accounts/{me['id']}/statuses", 4) == [newest]
    # min_id pages forward from a row: older rows exist (that one at least), so a next link.
    after = await client.get("/api/v1/timelines/home", params={"min_id": ids[0], "limit": 2}, headers=bearer(alice))
    assert [s["id"] for s in after.json()] == [ids[2], ids[1]]
    assert f"max_id={ids[1]}" in NEXT.search(after.headers["link"]).group(1)  # type: ignore[union-attr]
    # Nothing newer than the newest: an empty page, no header.
    top = await client.get("/api/v1/timelines/home", params={"min_id": ids[3]}, headers=bearer(alice))
    assert top.json() == [] and "link" not in top.headers

    # Bob likes all four (oldest first); his favourites list is newest like first, paged by like rows.
    for sid in ids:
        assert (await client.post(f"/api/v1/statuses/{sid}/favourite", headers=bearer(bob))).status_code == 200
    pages = await walk(client, bob, "/api/v1/favourites", 3, cursor_is_id=False)
    assert [len(p) for p in pages] == [3, 1]
    first = await client.get("/api/v1/favourites", params={"limit": 3}, headers=bearer(bob))
    assert [s["id"] for s in first.json()] == newest[:3]
    assert all(s["favourited"] for s in first.json())
    last = await client.get(NEXT.search(first.headers["link"]).group(1).removeprefix(ORIGIN),  # type: ignore[union-attr]
                            headers=bearer(bob))
    assert [s["id"] for s in last.json()] == [ids[0]] and "next" not in last.headers["link"]
    back = await client.get(PREV.search(last.headers["link"]).group(1).removeprefix(ORIGIN),  # type: ignore[union-attr]
                            headers=bearer(bob))
    assert [s["id"] for s in back.json()] == newest[:3]
    assert (await client.get("/api/v1/favourites", headers=bearer(alice))).json() == []
    # Alice's notifications (four favourites) page the same way.
    assert [len(p) for p in await walk(client, alice, "/api/v1/notifications", 2)] == [2, 2]
    assert [len(p) for p in await walk(client, alice, "/api/v1/notifications", 4)] == [4]
    # Unliked or deleted notes leave the list; bookmarks are not kept: always empty, no Link.
    assert (await client.post(f"/api/v1/statuses/{ids[3]}/unfavourite", headers=bearer(bob))).status_code == 200
    assert (await client.delete(f"/api/v1/statuses/{ids[2]}", headers=bearer(alice))).status_code == 200
    assert [s["id"] for s in (await client.get("/api/v1/favourites", headers=bearer(bob))).json()] == \
        [ids[1], ids[0]]
    bookmarks = await client.get("/api/v1/bookmarks", headers=bearer(bob))
    assert bookmarks.json() == [] and "link" not in bookmarks.headers


async def test_favourites_bad_input_and_scope(client: Any) -> None:
    reader = await sign_in(client, "alice", "read:statuses")
    refused = await client.get("/api/v1/favourites", headers=bearer(reader))
    assert refused.status_code == 403 and set(refused.json()) == {"error"}
    alice = await sign_in(client, "bob")
    for bad in ({"max_id": "x"}, {"min_id": "1; drop"}, {"limit": "many"}):
        answer = await client.get("/api/v1/favourites", params=bad, headers=bearer(alice))
        assert answer.status_code == 400 and set(answer.json()) == {"error"}, bad
    assert (await client.get("/api/v1/favourites")).status_code == 401
