"""The home timeline's SQL statements (issue 20's benchmark): a page costs the same few
statements whatever its size, every per-status lookup (authors, boosters, the member's likes and
boosts, counts, replied-to notes, mentions) batched into one statement per kind. Counted, never
timed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from tests.federation.mastodon_api.test_mastodon_api import assert_status, bearer, sign_in

pytestmark = pytest.mark.anyio

PLAIN = 40  # notes with nothing to look up, so the 40-page holds many more statuses than the 10-page
MOST = 12  # a home page with every lookup: 2 to authenticate (BEGIN, the token and its member), 3 to page, 7 to render


@contextmanager
def statements() -> Iterator[list[str]]:
    """Every SQL statement any engine in this process sends while the block runs."""
    seen: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(Engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", count)


async def _post(client: Any, token: str, text: str, **extra: Any) -> str:
    answer = await client.post("/api/v1/statuses", headers=bearer(token), json={"status": text, **extra})
    assert answer.status_code == 200, answer.text
    sid: str = answer.json()["id"]
    return sid


async def _home(client: Any, token: str, limit: int) -> tuple[list[dict[str, Any]], list[str]]:
    """A home page and the statements it cost (after one warm-up request, so lazily created
    rows, such as the member's actor, are not counted)."""
    await client.get(f"/api/v1/timelines/home?limit={limit}", headers=bearer(token))
    with statements() as seen:
        answer = await client.get(f"/api/v1/timelines/home?limit={limit}", headers=bearer(token))
    assert answer.status_code == 200, answer.text
    page: list[dict[str, Any]] = answer.json()
    return page, [" ".join(sql.split())[:100] for sql in seen]


async def test_home_page_statements_do_not_grow_with_the_page(client: Any) -> None:
    alice = await sign_in(client, "alice")
    bob = await sign_in(client, "bob")
    carol = await sign_in(client, "carol")
    await sign_in(client, "dave")
    bob_id = (await client.get("/api/v1/accounts/verify_credentials", headers=bearer(bob))).json()["id"]
    assert (await client.post(f"/api/v1/accounts/{bob_id}/follow", headers=bearer(alice))).status_code == 200
    for n in range(PLAIN):
        await _post(client, bob, f"plain note {n}")
    # The newest notes need every lookup: a reply (its parent and the parent's author), a mention
    # of an account on no other status, a hashtag, a like and a boost by the member, and a note
    # by an account she does not follow, on her home because bob boosted it (a wrapper).
    parent = await _post(client, alice, "a question")
    await _post(client, bob, "an answer", in_reply_to_id=parent)
    await _post(client, bob, "hello @dave #garden")
    liked = await _post(client, bob, "like this")
    assert (await client.post(f"/api/v1/statuses/{liked}/favourite", headers=bearer(alice))).status_code == 200
    boosted = await _post(client, bob, "boost this")
    assert (await client.post(f"/api/v1/statuses/{boosted}/reblog", headers=bearer(alice))).status_code == 200
    carols = await _post(client, carol, "carol speaks")
    assert (await client.post(f"/api/v1/statuses/{carols}/reblog", headers=bearer(bob))).status_code == 200

    small, small_cost = await _home(client, alice, 10)
    large, large_cost = await _home(client, alice, 40)
    assert len(small) == 10 and len(large) == 40
    assert large[:10] == small  # the same statuses, rendered the same
    for page in (small, large):
        for status in page:
            assert_status(status)
        wrapper = next(s for s in page if s["reblog"] is not None and s["reblog"]["id"] == carols)
        assert wrapper["account"]["acct"] == "bob" and wrapper["reblog"]["account"]["acct"] == "carol"
        assert any(s["in_reply_to_id"] == parent and s["in_reply_to_account_id"] for s in page)
        mention = next(s for s in page if s["mentions"])
        assert mention["mentions"][0]["acct"] == "dave" and mention["tags"][0]["name"] == "garden"
        assert next(s for s in page if s["id"] == liked)["favourited"] is True
        # The member's own boost shows as her wrapper of bob's note.
        own = next(s for s in page if s["reblog"] is not None and s["reblog"]["id"] == boosted)
        assert own["account"]["acct"] == "alice" and own["reblogged"] is True
        assert own["reblog"]["reblogged"] is True and own["reblog"]["reblogs_count"] == 1
    assert len(small_cost) == len(large_cost), (small_cost, large_cost)
    assert len(small_cost) <= MOST, small_cost


async def test_home_page_statements_without_a_token_or_with_a_bad_limit(client: Any) -> None:
    """No token is a 401 before any note is read, a limit that is not a number a 400, and an
    empty home costs no more statements than a full one."""
    with statements() as seen:
        answer = await client.get("/api/v1/timelines/home?limit=40")
    assert answer.status_code == 401 and not any("ap_object" in s for s in seen)
    alice = await sign_in(client, "alice")
    bad = await client.get("/api/v1/timelines/home?limit=forty", headers=bearer(alice))
    assert bad.status_code == 400, bad.text
    empty, cost = await _home(client, alice, 40)
    assert empty == [] and len(cost) <= MOST, cost
