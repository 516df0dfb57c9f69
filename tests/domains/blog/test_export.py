"""Our Ghost-format export: export → import → export gives identical data (a co-op can leave)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.jobs.models import Job
from domains.account.models import User
from domains.account.schemas import SignupInput
from domains.account.services import AccountService
from domains.blog.exporter import export_ghost
from domains.blog.importer import decode_export, import_ghost
from domains.blog.models import Post, Tag
from domains.blog.schemas import PostInput
from domains.blog.services import BlogService
from tests.domains.blog.conftest import FIXTURES

pytestmark = pytest.mark.anyio
NOW = datetime(2030, 1, 1, tzinfo=UTC)


async def seed(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as session, session.begin():
        accounts = AccountService(session)
        ann = await accounts.signup(SignupInput(username="ann", email="ann@example.org",
                                                password="correct horse battery", display_name="Ann Author"))
        bo = await accounts.signup(SignupInput(username="bo", email="bo@example.org", password="correct horse battery"))
        for user in (ann, bo):
            await accounts.set_author(user)
        await accounts.set_editor(ann)  # only editors name co-authors
        service = BlogService(session)
        await service.save(ann, PostInput(
            title="Markdown everything",
            markdown="# Head\n\nText[^1] with **bold**.\n\n| a | b |\n|--:|:-|\n| 1 | 2 |\n\n"
            "```python\nprint(1)\n```\n\n[^1]: Note.", tags="News, #internal", authors="ann, bo",
            meta_title="Meta", og_description="OG", feature_image="https://img.example/a.jpg"), "publish")
        await service.save(bo, PostInput(title="A page", type="page", markdown="About."), "publish")
        await service.save(ann, PostInput(title="Still a draft", markdown="Draft.", tags="News"), "save")
        later = (datetime.now(UTC) + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M")
        await service.save(bo, PostInput(title="Later", markdown="Soon.", published_at=later), "schedule")
    async with sessionmaker() as session, session.begin():
        await import_ghost(session, (FIXTURES / "ghost-6-export.json").read_bytes(),
                           ghost_url="https://old-ghost.example")


async def wipe(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as session, session.begin():
        for model in (Post, Tag, Job, User):
            await session.execute(delete(model))


async def test_export_import_export_is_identical(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    await seed(sessionmaker)
    async with sessionmaker() as session:
        first = await export_ghost(session, now=NOW)
    data, version = decode_export(msgspec.json.encode(first))  # our own reader accepts it
    assert version == "6.0.0" and len(data.posts) == 9 and {u.email for u in data.users} >= {"ann@example.org"}
    markdown_post = next(p for p in first["db"][0]["data"]["posts"] if p["slug"] == "markdown-everything")
    assert '<sup class="footnote-ref">' in markdown_post["html"] and markdown_post["status"] == "published"
    roles = {u["slug"]: u["roles"] for u in first["db"][0]["data"]["users"]}
    assert roles["ann"] == ["Author"]

    await wipe(sessionmaker)
    async with sessionmaker() as session, session.begin():
        report = await import_ghost(session, msgspec.json.encode(first))
    assert report.posts_created == 7 and report.pages_created == 2 and not report.conflicts
    async with sessionmaker() as session:
        second = await export_ghost(session, now=NOW)
    assert json.dumps(second, sort_keys=True, indent=1) == json.dumps(first, sort_keys=True, indent=1)
    async with sessionmaker() as session:
        post = (await session.execute(select(Post).where(Post.slug == "markdown-everything"))).scalar_one()
    assert post.legacy_html == markdown_post["html"]


async def test_admin_export_download(author_client: Any, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    await seed(sessionmaker)
    response = await author_client.get("/blog/admin/export")
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store, private"
    assert response.headers["content-disposition"].startswith("attachment;")
    data, _ = decode_export(response.content)
    assert {p.slug for p in data.posts} >= {"markdown-everything", "welcome", "about"}
