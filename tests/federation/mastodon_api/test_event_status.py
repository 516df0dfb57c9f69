"""A remote Event (Mobilizon's, Gancio's) as a Mastodon status: its name and summary are the
status's content, never a content warning (an Event's summary describes it, it warns of nothing);
a Note's summary stays its spoiler_text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from federation.activitypub.models import Actor, APObject, Follow
from tests.federation.mastodon_api.test_mastodon_api import assert_status, bearer, sign_in

pytestmark = pytest.mark.anyio

PEER = "https://mobilizon.example/@garden"
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"


async def _followed_peer_with(session: AsyncSession, member_uri: str, objects: list[dict[str, Any]]) -> None:
    now = datetime.now(UTC)
    await session.execute(insert(Actor), [{"uri": PEER, "local": False, "type": "Group", "username": "garden",
                                           "domain": "mobilizon.example", "name": "Garden", "inbox": PEER + "/inbox",
                                           "followers_url": PEER + "/followers", "fetched_at": now, "icon_url": ""}])
    await session.execute(insert(Follow), [{"follower": member_uri, "followee": PEER, "state": "accepted",
                                            "activity_id": member_uri + "#follow-garden"}])
    base = {"local": False, "attributed_to": PEER, "visibility": "public", "to": [PUBLIC], "cc": [],
            "mentions": [], "raw": {}, "content": "", "summary": "", "name": ""}
    await session.execute(insert(APObject), [
        {**base, "url": o["ap_id"], "published": now - timedelta(minutes=n), **o} for n, o in enumerate(objects)])
    await session.commit()


async def test_an_event_s_name_and_summary_are_content_not_a_warning(client: Any, db_session: AsyncSession) -> None:
    alice = await sign_in(client, "alice")
    me = (await client.get("/api/v1/accounts/verify_credentials", headers=bearer(alice))).json()
    await _followed_peer_with(db_session, me["uri"], [
        {"ap_id": f"{PEER}/events/1", "type": "Event", "name": "Seed swap & soup",
         "summary": "Bring seeds & stories", "content": "<p>In the hall.</p>"},
        {"ap_id": f"{PEER}/events/2", "type": "Event", "name": "", "summary": "", "content": "<p>Untitled.</p>"},
        {"ap_id": f"{PEER}/notes/1", "type": "Note", "summary": "spoilers", "content": "<p>the ending</p>"},
    ])
    answer = await client.get("/api/v1/timelines/home?limit=40", headers=bearer(alice))
    assert answer.status_code == 200, answer.text
    by_uri = {s["uri"]: s for s in answer.json()}
    for status in by_uri.values():
        assert_status(status)
    event = by_uri[f"{PEER}/events/1"]
    assert event["spoiler_text"] == "" and event["sensitive"] is False
    # The name escaped and first, then the summary (escaped: it is plain text), then the body.
    assert event["content"] == ("<p><strong>Seed swap &amp; soup</strong></p>"
                                "<p>Bring seeds &amp; stories</p><p>In the hall.</p>")
    bare = by_uri[f"{PEER}/events/2"]
    assert bare["content"] == "<p>Untitled.</p>" and bare["spoiler_text"] == ""
    note = by_uri[f"{PEER}/notes/1"]  # a Note's summary is still its content warning
    assert note["spoiler_text"] == "spoilers" and note["sensitive"] is True
    assert note["content"] == "<p>the ending</p>"
    # The status itself, by id, renders the same way.
    single = await client.get(f"/api/v1/statuses/{event['id']}", headers=bearer(alice))
    assert single.status_code == 200 and single.json()["content"] == event["content"]
    assert single.json()["spoiler_text"] == ""
