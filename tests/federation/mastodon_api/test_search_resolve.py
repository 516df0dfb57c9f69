"""``GET /api/v2/search?q=<url>&resolve=true`` (federation/mastodon/discovery.py): a pasted note
URL is fetched from its origin through the federation layer (never while the transaction holds
write locks), stored, and answered in ``statuses``; an account URL in ``accounts``; anything that
does not resolve is an empty answer, never a 500. The one stand-in is the remote server: the
federation layer's fetch (``Federation.prefetch``) answers from a dict instead of the network."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import wrote_in_transaction
from app.safe_http import FetchError
from federation.activitypub.core import Federation, NeedsFetch
from federation.activitypub.models import APObject
from tests.federation.mastodon_api.test_mastodon_api import bearer, sign_in

pytestmark = pytest.mark.anyio

RITA = "https://remote.example/users/rita"
NOTE = f"{RITA}/statuses/1"
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"
DOCS: dict[str, dict[str, Any]] = {
    RITA: {"id": RITA, "type": "Person", "preferredUsername": "rita", "name": "Rita Remote",
           "inbox": f"{RITA}/inbox", "followers": f"{RITA}/followers", "url": "https://remote.example/@rita"},
    NOTE: {"id": NOTE, "type": "Note", "attributedTo": RITA, "content": "<p>A pasted note</p>",
           "to": [PUBLIC], "cc": [f"{RITA}/followers"], "published": "2026-01-02T03:04:05Z",
           "url": "https://remote.example/@rita/1"},
    # A page URL answering with the note's document (Mastodon's content negotiation).
    "https://remote.example/@rita/2": {"id": f"{RITA}/statuses/2", "type": "Note", "attributedTo": RITA,
                                       "content": "<p>Found by its page</p>", "to": [PUBLIC], "cc": []},
    f"{RITA}/statuses/secret": {"id": f"{RITA}/statuses/secret", "type": "Note", "attributedTo": RITA,
                                "content": "<p>followers only</p>", "to": [f"{RITA}/followers"], "cc": []},
    "https://remote.example/claims-foreign": {"id": "https://elsewhere.example/notes/1", "type": "Note",
                                              "attributedTo": "https://elsewhere.example/u", "content": "x",
                                              "to": [PUBLIC]},
    "https://remote.example/not-a-note": {"id": "https://remote.example/not-a-note", "type": "Collection"},
}


@pytest.fixture
def fetched(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The remote server: documents from DOCS, anything else unreachable. Records each fetch and
    fails the test if one would wait while the transaction holds write locks."""
    log: list[str] = []

    async def prefetch(self: Federation, uri: str, *, clean: bool = False) -> None:
        if wrote_in_transaction(self.session):
            if not clean:
                raise NeedsFetch(uri)
            await self.session.commit()
        assert not wrote_in_transaction(self.session)
        log.append(uri)
        doc = DOCS.get(uri)
        self._fetched[uri] = (uri, doc) if doc is not None else FetchError(f"{uri} is unreachable", 502)

    monkeypatch.setattr(Federation, "prefetch", prefetch)
    return log


async def search(client: Any, token: str, q: str, **params: str) -> dict[str, Any]:
    answer = await client.get("/api/v2/search", params={"q": q, **params}, headers=bearer(token))
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def test_a_pasted_note_url_is_fetched_stored_and_found(client: Any, db_session: AsyncSession,
                                                             fetched: list[str]) -> None:
    alice = await sign_in(client, "alice")
    # Without resolve nothing is fetched.
    assert (await search(client, alice, NOTE))["statuses"] == [] and fetched == []
    found = await search(client, alice, NOTE, resolve="true")
    (status,) = found["statuses"]
    assert status["uri"] == NOTE and status["content"] == "<p>A pasted note</p>"
    assert status["account"]["acct"] == "rita@remote.example" and status["visibility"] == "public"
    assert NOTE in fetched
    # Stored: the status opens by its id, and a second search finds it without fetching again.
    opened = await client.get(f"/api/v1/statuses/{status['id']}", headers=bearer(alice))
    assert opened.status_code == 200 and opened.json()["uri"] == NOTE
    fetched.clear()
    again = await search(client, alice, NOTE, resolve="true", type="statuses")
    assert [s["id"] for s in again["statuses"]] == [status["id"]] and NOTE not in fetched
    # By its page URL too (held: by the note's url; new: the page answers with the document).
    assert [s["id"] for s in (await search(client, alice, "https://remote.example/@rita/1", resolve="true",
                                           type="statuses"))["statuses"]] == [status["id"]]
    by_page = await search(client, alice, "https://remote.example/@rita/2", resolve="true", type="statuses")
    assert [s["uri"] for s in by_page["statuses"]] == [f"{RITA}/statuses/2"]
    count = await db_session.scalar(select(func.count()).select_from(APObject).where(APObject.ap_id == NOTE))
    assert count == 1
    # The account's URL resolves to the account (and no status).
    account = await search(client, alice, RITA, resolve="true")
    assert [a["acct"] for a in account["accounts"]] == ["rita@remote.example"] and account["statuses"] == []


async def test_what_does_not_resolve_is_an_empty_answer(client: Any, db_session: AsyncSession,
                                                        fetched: list[str]) -> None:
    alice = await sign_in(client, "alice")
    for url in ("https://down.example/notes/1", "https://remote.example/claims-foreign",
                "https://remote.example/not-a-note", f"{RITA}/statuses/secret"):
        answer = await search(client, alice, url, resolve="true")
        assert answer["statuses"] == [] and answer["accounts"] == [], url
    # Nothing from a foreign-claiming document was stored; the followers-only note was (it is
    # rita's), but alice, who does not follow rita, is not shown it.
    assert await db_session.scalar(select(APObject.id).where(
        APObject.ap_id == "https://elsewhere.example/notes/1")) is None
    # http is not fetched outside private networks (as WebFinger), and words with a space are no URL.
    fetched.clear()
    for q in ("http://remote.example/users/rita/statuses/1", "https://remote.example/a b"):
        assert (await search(client, alice, q, resolve="true"))["statuses"] == []
    assert fetched == []


async def test_a_local_note_url_resolves_without_a_fetch(client: Any, fetched: list[str]) -> None:
    alice = await sign_in(client, "alice")
    posted = (await client.post("/api/v1/statuses", headers=bearer(alice), json={"status": "here"})).json()
    bob = await sign_in(client, "bob")
    found = await search(client, bob, posted["uri"], resolve="true", type="statuses")
    assert [s["id"] for s in found["statuses"]] == [posted["id"]] and fetched == []
    secret = (await client.post("/api/v1/statuses", headers=bearer(alice),
                                json={"status": "diary", "visibility": "direct"})).json()
    assert (await search(client, bob, secret["uri"], resolve="true", type="statuses"))["statuses"] == []
