"""A member's mention of another member here reads ``@bob`` on this instance's pages, but the note's
ActivityPub document (served at its URL, in the outbox, and in every Update) keeps the full
``@bob@host`` handle and the Mention tag other servers need to resolve it."""

from __future__ import annotations

import re
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from federation.activitypub.core import Federation
from federation.activitypub.models import Activity, Actor, APObject
from federation.activitypub.outbox import Outbox
from federation.social.schemas import NoteView
from tests.federation.activitypub.test_social_hub import _note_ids, _people, _post

pytestmark = pytest.mark.anyio

AS2 = "application/activity+json"


async def _member(session: AsyncSession, name: str) -> Actor:
    actor = await session.scalar(select(Actor).where(Actor.local, Actor.username == name))
    assert actor is not None
    return actor


def _full_mention(bob: Actor) -> str:
    """The link the outbox writes for a mention (``Outbox.post_note``), full handle as its text."""
    return (f'<span class="h-card"><a href="{bob.url or bob.uri}" class="u-url mention">'
            f"@bob@{bob.domain}</a></span>")


async def _served(client: Any, note: str) -> dict[str, Any]:
    """The note's document as another server fetches it."""
    r = await client.get(f"/ap/objects/{note}", headers={"Accept": AS2})
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


async def _outboxed(client: Any, note: str) -> dict[str, Any]:
    r = await client.get("/@alice/outbox", params={"page": 1}, headers={"Accept": AS2})
    assert r.status_code == 200, r.text
    (item,) = [i["object"] for i in r.json()["orderedItems"] if i["object"]["id"].endswith(note)]
    obj: dict[str, Any] = item
    return obj


def _keeps_the_handle(doc: dict[str, Any], bob: Actor) -> None:
    assert _full_mention(bob) in doc["content"], doc["content"]
    assert {"type": "Mention", "href": bob.uri} in doc["tag"], doc["tag"]


async def test_the_sent_document_keeps_the_full_handle_the_hub_shows_the_short_one(
        client: Any, db_session: AsyncSession, settings: Any) -> None:
    alice_person, _bob_person = await _people(client, "alice", "bob")
    r = await _post(alice_person, "/social/compose", {"content": "Tea at four, @bob?", "visibility": "public",
                                                      "next": "/social/"})
    assert r.status_code == 303
    (note,) = _note_ids((await alice_person.get("/social/")).text)
    bob, alice = await _member(db_session, "bob"), await _member(db_session, "alice")

    # What the note's URL and the outbox serve after posting.
    _keeps_the_handle(await _served(client, note), bob)
    _keeps_the_handle(await _outboxed(client, note), bob)

    # This instance's pages: the short name, still linked to bob (timeline and the note's page).
    for path in ("/social/", f"/social/notes/{note}"):
        html = (await alice_person.get(path)).text
        assert re.search(rf'<a href="{re.escape(bob.url or bob.uri)}" class="u-url mention">@bob</a>', html), html
        assert f"@bob@{bob.domain}" not in html

    # An edit (an Update to followers and the mentioned) sends and then serves the full handle.
    async with Federation(db_session, settings) as fed:
        obj = await db_session.get(APObject, UUID(note))
        assert obj is not None
        await Outbox(fed).update_note(alice, obj, {"summary": "tea"})
    await db_session.commit()
    update = await db_session.scalar(select(Activity).where(
        Activity.direction == "out", Activity.type == "Update", Activity.object_id == obj.ap_id))
    assert update is not None
    _keeps_the_handle(update.raw["object"], bob)
    _keeps_the_handle(await _served(client, note), bob)
    _keeps_the_handle(await _outboxed(client, note), bob)
    html = (await alice_person.get(f"/social/notes/{note}")).text
    assert re.search(r'class="u-url mention">@bob</a>', html) and f"@bob@{bob.domain}" not in html


def test_only_this_instances_handles_are_shortened() -> None:
    here, there = "https://here.example/@bob", "https://there.example/@bob"
    content = (f'<p><span class="h-card"><a href="{here}" class="u-url mention">@bob@here.example</a></span> and '
               f'<span class="h-card"><a href="{there}" class="u-url mention">@bob@there.example</a></span> '
               "say &lt;b&gt;hi&lt;/b&gt;</p>")
    obj = APObject(ap_id="https://here.example/ap/objects/1", type="Note", attributed_to="https://here.example/@ada",
                   content=content)
    view = NoteView(obj=obj, author=None, likes=0, boosts=0, liked=False, boosted=False, mine=False,
                    here="here.example")
    assert view.content_html == content.replace(">@bob@here.example</a>", ">@bob</a>")
    assert obj.content == content  # the stored (and federated) text is untouched
    assert NoteView(obj=obj, author=None, likes=0, boosts=0, liked=False, boosted=False,
                    mine=False).content_html == content  # no instance given: nothing shortened
