"""The data migration 1a2b3c4d5e21 (migrations/versions/1a2b3c4d5e21_backfill_hashtags.py): notes
stored before ``ap_hashtag`` existed get their tags indexed (received notes by their AS2 ``tag``,
our own old notes by the ``#words`` in their text), nothing else is touched, and running it twice
adds nothing. Then the tag timeline finds the old notes."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any
from uuid import uuid4

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from federation.activitypub.models import APObject, Hashtag
from tests.federation.mastodon_api.test_mastodon_api import bearer, sign_in

pytestmark = pytest.mark.anyio

MIGRATION = Path(__file__).resolve().parents[3] / "migrations" / "versions" / "1a2b3c4d5e21_backfill_hashtags.py"
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"


def migration() -> ModuleType:
    spec = importlib.util.spec_from_file_location("backfill_hashtags", MIGRATION)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def note(*, local: bool, content: str, raw: dict[str, Any], author: str, kind: str = "Note",
         deleted: bool = False) -> APObject:
    oid = uuid4()
    ap_id = f"http://127.0.0.1:8000/social/notes/{oid}" if local else f"https://remote.example/notes/{oid}"
    return APObject(id=oid, ap_id=ap_id, type=kind, local=local, attributed_to=author, content=content,
                    visibility="public", to=[PUBLIC], cc=[], mentions=[], raw=raw, deleted=deleted)


async def index_of(session: AsyncSession) -> set[tuple[str, str]]:
    rows = (await session.execute(select(APObject.content, Hashtag.name).join(
        Hashtag, Hashtag.object_id == APObject.id))).tuples().all()
    return {(content, name) for content, name in rows}


async def test_old_notes_are_indexed_once(client: Any, db_session: AsyncSession) -> None:
    alice = await sign_in(client, "alice")
    me = (await client.get("/api/v1/accounts/verify_credentials", headers=bearer(alice))).json()
    author = me["uri"]
    remote = "https://remote.example/users/rita"
    old_local = note(local=True, content="<p>Old #Gardening note, see a#b and <a href=\"/x#frag\">x</a> #123</p>",
                     raw={}, author=author)
    with_mention = note(local=True, content="<p>@bob #Roses</p>",
                        raw={"tag": [{"type": "Mention", "name": "@bob"}]}, author=author)
    received = note(local=False, content="<p>#ignored in text</p>",
                    raw={"tag": [{"type": "Hashtag", "name": "#Fediverse"}, {"type": "Hashtag", "name": "#fediverse"},
                                 {"type": "Hashtag", "name": "#"}, {"type": "Emoji", "name": ":x:"}]},
                    author=remote)
    received_plain = note(local=False, content="<p>#notatag for a remote note</p>", raw={}, author=remote)
    gone = note(local=True, content="<p>#deleted</p>", raw={}, author=author, deleted=True)
    article = note(local=True, content="<p>C# and #article-text</p>", raw={}, author=author, kind="Article")
    indexed = note(local=True, content="<p>#already</p>", raw={"tag": [{"type": "Hashtag", "name": "#already"}]},
                   author=author)
    db_session.add_all([old_local, with_mention, received, received_plain, gone, article, indexed])
    await db_session.flush()
    db_session.add(Hashtag(object_id=indexed.id, name="already"))
    await db_session.commit()

    backfill = migration().backfill
    added = await (await db_session.connection()).run_sync(backfill)
    await db_session.commit()
    expected = {(old_local.content, "gardening"), (with_mention.content, "roses"),
                (received.content, "fediverse"), (indexed.content, "already")}
    assert await index_of(db_session) == expected
    assert added == 3
    # Again: nothing more (and nothing doubled).
    assert await (await db_session.connection()).run_sync(backfill) == 0
    await db_session.commit()
    assert len((await db_session.scalars(select(Hashtag))).all()) == 4
    # The tag timeline now finds the old note.
    found = await client.get("/api/v1/timelines/tag/gardening", headers=bearer(alice))
    assert [s["id"] for s in found.json()] == [str(old_local.id)]


async def test_an_empty_database_is_a_no_op(db_session: AsyncSession) -> None:
    assert await (await db_session.connection()).run_sync(migration().backfill) == 0
