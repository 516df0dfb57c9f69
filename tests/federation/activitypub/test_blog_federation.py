"""Blog federation: publish -> Create(Article) from the author (+ Announce by the blog actor),
edit -> Update, delete -> Delete(Tombstone), driven by the blog's durable post events."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.jobs import JobContext, Worker
from app.safe_http import SafeClient
from domains.account.models import User
from domains.account.schemas import SignupInput
from domains.account.services import AccountService
from domains.blog.schemas import PostInput
from domains.blog.services import BlogService
from federation.activitypub.models import Actor, Follow

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8000"
REMOTE = "https://remote.example/users/bob"
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"


async def test_blog_post_lifecycle_federates(client: Any, db_session: AsyncSession, settings: Any) -> None:
    user = await AccountService(db_session).signup(SignupInput(username="alice", email="alice@example.org",
                                                               password="correct horse battery staple"))
    user.is_author = True
    db_session.add(Actor(uri=REMOTE, local=False, type="Person", username="bob", domain="remote.example",
                         inbox=f"{REMOTE}/inbox", shared_inbox="https://remote.example/inbox",
                         fetched_at=datetime.now(UTC)))
    db_session.add(Follow(follower=REMOTE, followee=f"{BASE}/@alice", state="accepted"))
    await db_session.commit()

    sent: list[dict[str, Any]] = []

    def peer(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(202)

    maker = async_sessionmaker(db_session.bind, expire_on_commit=False)
    worker = Worker(maker, context=JobContext(sessionmaker=maker, settings=settings, services={
        "federation_client": SafeClient(allow_private=True, transport=httpx.MockTransport(peer))}))

    async def act(action: str, **changes: str) -> None:
        async with maker() as session, session.begin():
            editor = (await session.scalars(select(User).where(User.username == "alice"))).one()
            service = BlogService(session, base_url=BASE)
            existing = await service.by_slug("hello-fediverse")
            if action == "delete":
                assert existing is not None
                await service.delete(existing)
            else:
                data = PostInput(title="Hello fediverse", slug="hello-fediverse", custom_excerpt="A short teaser",
                                 markdown=changes.get("md", "Body"), tags="News")
                await service.save(editor, data, action, post=existing)  # type: ignore[arg-type]
        await worker.run_once()

    await act("publish")
    creates = [a for a in sent if a["type"] == "Create"]
    assert len(creates) == 1
    article = creates[0]["object"]
    assert article["type"] == "Article" and article["name"] == "Hello fediverse"
    assert article["summary"] == "A short teaser" and "Body" in article["content"]
    assert article["url"] == f"{BASE}/blog/hello-fediverse" and article["attributedTo"] == f"{BASE}/@alice"
    assert PUBLIC in article["to"] and article["published"]
    assert any(t["type"] == "Hashtag" for t in article["tag"])
    assert creates[0]["actor"] == f"{BASE}/@alice"
    # the Article is dereferenceable at its id
    r = await client.get(article["id"].removeprefix(BASE), headers={"Accept": "application/activity+json"})
    assert r.status_code == 200 and r.json()["type"] == "Article"
    # the blog actor announced it (its followers would get it; it has none yet)
    outbox = (await client.get("/ap/actors/blog/outbox", headers={"Accept": "application/activity+json"})).json()
    assert outbox["type"] == "OrderedCollection"

    sent.clear()
    await act("save", md="Edited body")
    assert [a["type"] for a in sent] == ["Update"] and "Edited body" in sent[0]["object"]["content"]

    sent.clear()
    await act("delete")
    assert [a["type"] for a in sent] == ["Delete"]
    assert sent[0]["object"] == {"id": article["id"], "type": "Tombstone", "formerType": "Article"}
    r = await client.get(article["id"].removeprefix(BASE), headers={"Accept": "application/activity+json"})
    assert r.status_code == 410
