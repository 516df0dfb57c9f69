"""The home timeline's statuses built from plain rows (federation/mastodon/render.py reads Core
rows through statements built once per dialect): what a client sees of replies to notes we do not
hold, mentions of accounts we do not know, and boosts without an activity id; and, on
PostgreSQL, statements whose SQL does not change with the page (one array parameter per list)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from federation.activitypub.models import Actor, Announce, APObject, Follow
from tests.federation.mastodon_api.test_mastodon_api import assert_status, bearer, sign_in
from tests.federation.mastodon_api.test_timeline_queries import statements

pytestmark = pytest.mark.anyio

PEER = "https://peer.example/users/rem"
STRANGER = "https://far.example/users/ghost"  # an author we hold notes of but no actor for
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"


async def _remote_notes(session: AsyncSession, member_uri: str) -> dict[str, str]:
    """A followed remote account's notes: a reply to a note nobody holds, a reply to a held note
    whose author we never fetched, a note (a reply too, so every page has one) mentioning a known,
    an unknown and a malformed account, and a boost (no activity id) of the stranger's note, the
    newest. Their ``ap_id``s by role."""
    now = datetime.now(UTC)
    await session.execute(insert(Actor), [{"uri": PEER, "local": False, "type": "Person", "username": "rem",
                                           "domain": "peer.example", "name": "Rem", "inbox": PEER + "/inbox",
                                           "followers_url": PEER + "/followers", "fetched_at": now,
                                           "icon_url": ""}])
    await session.execute(insert(Follow), [{"follower": member_uri, "followee": PEER, "state": "accepted",
                                            "activity_id": member_uri + "#follow-rem"}])
    notes = {"orphan": f"{PEER}/notes/1", "held_parent": f"{STRANGER}/notes/1", "stranger_reply": f"{PEER}/notes/2",
             "mentions": f"{PEER}/notes/3"}

    def note(ap_id: str, author: str, minutes: int, **extra: Any) -> dict[str, Any]:
        return {"ap_id": ap_id, "type": "Note", "local": False, "attributed_to": author, "content": "<p>hi</p>",
                "url": ap_id, "visibility": "public", "to": [PUBLIC], "cc": [], "mentions": [],
                "published": now - timedelta(minutes=minutes), "raw": {}, **extra}

    await session.execute(insert(APObject), [
        note(notes["orphan"], PEER, 4, in_reply_to="https://gone.example/notes/never-fetched"),
        note(notes["held_parent"], STRANGER, 1),  # the newest: its boost's wrapper leads every page
        note(notes["stranger_reply"], PEER, 3, in_reply_to=notes["held_parent"]),
        note(notes["mentions"], PEER, 2, in_reply_to="https://gone.example/notes/never-fetched",
             mentions=[member_uri, "https://nowhere.example/users/nobody", 42]),
    ])
    await session.execute(insert(Announce), [{"actor": PEER, "object_id": notes["held_parent"], "activity_id": "",
                                              "published": now - timedelta(seconds=30)}])
    await session.commit()
    return notes


async def test_replies_mentions_and_boosts_of_what_we_do_not_hold(client: Any, db_session: AsyncSession) -> None:
    alice = await sign_in(client, "alice")
    me = (await client.get("/api/v1/accounts/verify_credentials", headers=bearer(alice))).json()
    notes = await _remote_notes(db_session, me["uri"])
    answer = await client.get("/api/v1/timelines/home?limit=40", headers=bearer(alice))
    assert answer.status_code == 200, answer.text
    page = answer.json()
    for status in page:
        assert_status(status)
    by_uri = {s["uri"]: s for s in page if s["reblog"] is None}
    # A reply to a note nobody holds: no parent ids (clients show it as a plain status).
    orphan = by_uri[notes["orphan"]]
    assert orphan["in_reply_to_id"] is None and orphan["in_reply_to_account_id"] is None
    # A reply to a held note whose author we never fetched: the parent's id, no account id.
    reply = by_uri[notes["stranger_reply"]]
    assert reply["in_reply_to_id"] is not None and reply["in_reply_to_account_id"] is None
    # Mentions: the member (known), never the unknown account or the malformed entry.
    assert [(m["id"], m["acct"]) for m in by_uri[notes["mentions"]]["mentions"]] == [(me["id"], "alice")]
    # The boost of the stranger's note: a wrapper with an id-based uri, the note's author a stub.
    wrapper = next(s for s in page if s["reblog"] is not None)
    assert wrapper["uri"].startswith(f"{notes['held_parent']}#boost-") and wrapper["account"]["acct"] == \
        "rem@peer.example"
    assert wrapper["reblog"]["uri"] == notes["held_parent"] and wrapper["reblog"]["account"]["uri"] == STRANGER
    assert wrapper["reblog"]["replies_count"] == 1 and wrapper["reblog"]["reblogs_count"] == 1
    assert wrapper["account"]["statuses_count"] == 3 and wrapper["account"]["followers_count"] == 1


async def test_render_statements_do_not_change_with_the_page(client: Any, db_session: AsyncSession,
                                                            db_kind: str) -> None:
    """On PostgreSQL every list the renderer and the note views bind is one array parameter, so a
    10-status page and a 40-status one send the very same SQL (compiled, and prepared, once)."""
    alice = await sign_in(client, "alice")
    me = (await client.get("/api/v1/accounts/verify_credentials", headers=bearer(alice))).json()
    await _remote_notes(db_session, me["uri"])
    sent: dict[int, list[str]] = {}
    for limit in (2, 4, 2, 4):  # the second round counts: the first makes the member's rows
        with statements() as seen:
            answer = await client.get(f"/api/v1/timelines/home?limit={limit}", headers=bearer(alice))
        assert answer.status_code == 200 and len(answer.json()) == limit, answer.text
        sent[limit] = list(seen)
    assert len(sent[2]) == len(sent[4])
    if db_kind == "postgresql":
        arrays = [(small, large) for small, large in zip(sent[2], sent[4], strict=True) if "ANY (" in small]
        assert len(arrays) >= 4, sent[2]  # counts, note counts, authors, replies (at least)
        assert all(small == large for small, large in arrays)
