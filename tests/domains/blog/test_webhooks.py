"""Ghost webhooks: signature cases, idempotent apply, unpublish/delete, hostile content."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.jobs.models import Job
from domains.blog.models import Post
from domains.blog.webhooks import sign, verify_signature
from tests.domains.blog.conftest import WEBHOOK_SECRET
from tests.domains.blog.test_renderer import assert_inert

pytestmark = pytest.mark.anyio
URL = "/hooks/blog/ghost"


def ghost_post(**overrides: Any) -> dict[str, Any]:
    post = {
        "id": "66aa00000000000000000001", "uuid": "3c4d0000-0000-4000-8000-000000000001",
        "title": "From Ghost", "slug": "from-ghost", "status": "published", "type": "post",
        "html": '<p>Hello from Ghost.</p><img src="__GHOST_URL__/content/images/a.jpg" alt="a">',
        "comment_id": "66aa00000000000000000001", "feature_image": None, "featured": False,
        "visibility": "public", "created_at": "2024-06-01T10:00:00.000Z", "updated_at": "2024-06-01T10:00:00.000Z",
        "published_at": "2024-06-01T10:00:00.000Z", "custom_excerpt": None, "url": "https://old/from-ghost/",
        "tags": [{"id": "66aa000000000000000000t1", "name": "News", "slug": "news", "visibility": "public"}],
        "authors": [{"id": "66aa000000000000000000u1", "name": "Gina", "slug": "gina", "email": "gina@example.org"}],
        "primary_tag": None, "reading_time": 1, "lexical": "{}",
    }
    post.update(overrides)
    return post


async def deliver(client: Any, body: dict[str, Any], *, header: str | None = "current",
                  secret: str = WEBHOOK_SECRET) -> Any:
    raw = json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    if header == "current":
        headers["X-Ghost-Signature"] = sign(secret, raw, int(time.time() * 1000))
    elif header == "legacy":
        headers["X-Ghost-Signature"] = sign(secret, raw)
    elif header is not None:
        headers["X-Ghost-Signature"] = header
    return await client.post(URL, content=raw, headers=headers)


async def count_posts(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        return int((await session.execute(select(func.count()).select_from(Post))).scalar_one())


def test_signature_forms() -> None:
    body = b'{"post":{}}'
    now = 1_700_000_000_000
    assert verify_signature("s", body, sign("s", body, now), now_ms=now)
    assert verify_signature("s", body, sign("s", body), now_ms=now)  # older Ghost: body only
    assert not verify_signature("s", body, sign("other", body, now), now_ms=now)
    assert not verify_signature("s", body + b" ", sign("s", body, now), now_ms=now)
    assert not verify_signature("s", body, sign("s", body, now), now_ms=now + 3_600_000)  # stale
    assert not verify_signature("s", body, None) and not verify_signature("", body, sign("", body, now))
    assert not verify_signature("s", body, "sha256=zz, t=1") and not verify_signature("s", body, "garbage")


@pytest.mark.parametrize("header", [None, "sha256=" + "0" * 64 + ", t=1", "wrong-secret", "tampered"])
async def test_unsigned_or_wrongly_signed_is_401_and_changes_nothing(
        client: Any, sessionmaker: async_sessionmaker[AsyncSession], header: str | None) -> None:
    body = {"post": {"current": ghost_post(), "previous": {}}}
    if header == "wrong-secret":
        response = await deliver(client, body, secret="not-the-secret")
    elif header == "tampered":
        raw = json.dumps(body).encode()
        signature = sign(WEBHOOK_SECRET, raw, int(time.time() * 1000))
        response = await client.post(URL, content=raw.replace(b"From Ghost", b"Evil Ghost"),
                                     headers={"X-Ghost-Signature": signature, "content-type": "application/json"})
    else:
        response = await deliver(client, body, header=header)
    assert response.status_code == 401
    assert await count_posts(sessionmaker) == 0
    async with sessionmaker() as session:
        assert (await session.execute(select(func.count()).select_from(Job))).scalar_one() == 0


async def test_published_edited_unpublished_deleted(client: Any,
                                                    sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    created = await deliver(client, {"post": {"current": ghost_post(), "previous": {}}})
    assert created.status_code == 200 and created.json() == {"status": "created"}
    page = await client.get("/blog/from-ghost")
    assert page.status_code == 200 and "Hello from Ghost." in page.text
    assert "https://old-ghost.example/content/images/a.jpg" in page.text
    assert "author:gina" in page.headers["surrogate-key"]

    retry = await deliver(client, {"post": {"current": ghost_post(), "previous": {}}}, header="legacy")
    assert retry.json() == {"status": "unchanged"}
    assert await count_posts(sessionmaker) == 1

    edited = ghost_post(title="From Ghost, edited", updated_at="2024-06-02T10:00:00.000Z")
    response = await deliver(client, {"post": {"current": edited, "previous": {"title": "From Ghost"}}})
    assert response.json() == {"status": "updated"}
    assert "From Ghost, edited" in (await client.get("/blog/from-ghost")).text
    late = await deliver(client, {"post": {"current": ghost_post(title="Stale"), "previous": {}}})
    assert late.json() == {"status": "unchanged"}  # an older delivery arriving late changes nothing

    unpublished = ghost_post(status="draft", updated_at="2024-06-03T10:00:00.000Z")
    await deliver(client, {"post": {"current": unpublished, "previous": {"status": "published"}}})
    assert (await client.get("/blog/from-ghost")).status_code == 404

    deleted = await deliver(client, {"post": {"current": {}, "previous": ghost_post()}})
    assert deleted.json() == {"status": "deleted"}
    assert await count_posts(sessionmaker) == 0
    again = await deliver(client, {"post": {"current": {}, "previous": ghost_post()}})
    assert again.json() == {"status": "unchanged"}
    async with sessionmaker() as session:
        purges = (await session.execute(select(Job.payload).where(Job.kind == "edge.purge"))).scalars().all()
    purges = [p for p in purges if p["keys"] != ["members"]]  # the imported author joined the member list
    assert len(purges) >= 3 and all("posts" in p["keys"] for p in purges)


async def test_pages_and_hostile_content(client: Any, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    hostile = ('<p>Kept.</p><script>alert(1)</script><img src=x onerror=alert(1)><a href="javascript:alert(1)">j</a>'
               '<svg onload=alert(1)></svg><style>*{}</style><iframe src="https://evil.example"></iframe>'
               '<form><input name=a></form><a href="data:text/html,x">d</a>')
    page = ghost_post(id="66aa00000000000000000009", slug="a-page", title="A page", html=hostile, type="page")
    response = await deliver(client, {"page": {"current": page, "previous": {}}})
    assert response.status_code == 200
    async with sessionmaker() as session:
        post = (await session.execute(select(Post).where(Post.slug == "a-page"))).scalar_one()
    assert post.type == "page"
    assert_inert(post.body_html)
    assert "Kept." in post.body_html


async def test_malformed_body_is_400_and_changes_nothing(client: Any,
                                                         sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    raw = b'{"post": {"current": {"id": "x", "published_at": "not a date", "title": "t", "status": "published"}}}'
    response = await client.post(URL, content=raw, headers={
        "X-Ghost-Signature": sign(WEBHOOK_SECRET, raw, int(time.time() * 1000))})
    assert response.status_code == 400
    assert await count_posts(sessionmaker) == 0


async def test_with_an_admin_key_the_webhook_is_a_trigger_and_the_post_is_refetched(
        sessionmaker: async_sessionmaker[AsyncSession], settings: Any, engine: Any) -> None:
    import httpx
    import msgspec
    from joserfc import jwt
    from joserfc.jwk import OctKey
    from litestar.testing import AsyncTestClient

    from app import create_app
    from app.jobs import JobContext, Worker

    key_id, secret = "65f0c0ffee", "ab" * 32
    settings = msgspec.structs.replace(settings, ghost_admin_api_key=f"{key_id}:{secret}")
    ghost_state: dict[str, Any] = {"post": ghost_post(title="As Ghost has it now", html="<p>Fresh from Ghost.</p>")}
    seen: list[httpx.Request] = []

    def ghost_admin(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        token = request.headers["authorization"].removeprefix("Ghost ")
        decoded = jwt.decode(token, OctKey.import_key(bytes.fromhex(secret)))
        assert decoded.header["kid"] == key_id and decoded.claims["aud"] == "/admin/"
        assert decoded.claims["exp"] - decoded.claims["iat"] == 300
        assert str(request.url).startswith("https://old-ghost.example/ghost/api/admin/posts/66aa00000000000000000001/")
        assert request.url.params["formats"] == "html"
        if ghost_state["post"] is None:
            return httpx.Response(404, json={"errors": [{"message": "Post not found."}]})
        return httpx.Response(200, json={"posts": [ghost_state["post"]]})

    async with AsyncTestClient(app=create_app(settings), base_url="http://127.0.0.1:8000") as client, \
            httpx.AsyncClient(transport=httpx.MockTransport(ghost_admin)) as http:
        # The body claims something else: only the re-fetched post counts.
        body = {"post": {"current": ghost_post(title="Claimed by the body"), "previous": {}}}
        response = await deliver(client, body)
        assert response.json() == {"status": "queued"}
        assert (await deliver(client, body)).json() == {"status": "queued"}  # de-duplicated while queued
        assert await count_posts(sessionmaker) == 0
        worker = Worker(sessionmaker, context=JobContext(sessionmaker=sessionmaker, settings=settings,
                                                         services={"http": http}))
        assert await worker.run_once() >= 1
        page = await client.get("/blog/from-ghost")
        assert page.status_code == 200 and "As Ghost has it now" in page.text and "Fresh from Ghost." in page.text
        assert "Claimed by the body" not in page.text and len(seen) == 1

        ghost_state["post"] = None  # deleted in Ghost
        await deliver(client, {"post": {"current": {}, "previous": ghost_post()}})
        await worker.run_once()
    assert await count_posts(sessionmaker) == 0
