"""Ghost import: the documented export format, idempotent re-import, dry runs, bad files, hostile HTML."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.jobs.models import Job
from domains.account.models import User
from domains.blog.importer import GhostImportError, import_ghost
from domains.blog.models import Post, PostAuthor, PostTag, SlugRedirect, Tag
from tests.domains.blog.conftest import FIXTURES
from tests.domains.blog.test_renderer import assert_inert

pytestmark = pytest.mark.anyio

EXPORT = (FIXTURES / "ghost-6-export.json").read_bytes()
GHOST_URL = "https://old-ghost.example"


async def snapshot(session: AsyncSession) -> dict[str, Any]:
    """Everything an import writes, minus row timestamps (which must not matter)."""
    posts = (await session.execute(select(Post).order_by(Post.slug))).scalars().all()
    skip = {"created_at", "updated_at", "sa_orm_sentinel"}
    rows = [{c: getattr(p, c) for c in [c.key for c in Post.__table__.columns] if c not in skip} for p in posts]
    tags = [(t.id, t.name, t.slug, t.visibility, t.ghost_id, t.description)
            for t in (await session.execute(select(Tag).order_by(Tag.slug))).scalars()]
    links = sorted((r.post_id, r.tag_id, r.sort_order) for r in (await session.execute(select(PostTag))).scalars())
    authors = sorted((r.post_id, r.author_id, r.sort_order)
                     for r in (await session.execute(select(PostAuthor))).scalars())
    users = [(u.id, u.username, u.email, u.is_author, u.password_hash)
             for u in (await session.execute(select(User).order_by(User.username))).scalars()]
    return {"posts": rows, "tags": tags, "post_tags": links, "post_authors": authors, "users": users}


async def run_import(sessionmaker: async_sessionmaker[AsyncSession], raw: bytes, **kw: Any) -> Any:
    async with sessionmaker() as session, session.begin():
        return await import_ghost(session, raw, ghost_url=GHOST_URL, base_url="http://127.0.0.1:8000", **kw)


async def test_import_twice_gives_identical_results(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    first = await run_import(sessionmaker, EXPORT)
    assert (first.posts_created, first.pages_created, first.tags_created) == (4, 1, 3)
    assert first.authors_created == 2 and first.authors_matched == 0
    assert any("lexical-only" in s or "Lexical only" in s for s in first.skipped)
    async with sessionmaker() as session:
        before = await snapshot(session)
    second = await run_import(sessionmaker, EXPORT)
    assert (second.posts_created, second.posts_updated, second.pages_created) == (0, 0, 0)
    assert second.posts_unchanged == 4 and second.pages_unchanged == 1
    assert second.authors_matched == 2 and second.authors_created == 0
    async with sessionmaker() as session:
        assert await snapshot(session) == before


async def test_import_maps_the_ghost_format(sessionmaker: async_sessionmaker[AsyncSession], client: Any) -> None:
    await run_import(sessionmaker, EXPORT)
    async with sessionmaker() as session:
        from domains.blog.services import BlogService

        service = BlogService(session)
        welcome = await service.by_slug("welcome")
        assert welcome is not None
        assert welcome.status == "published" and welcome.type == "post" and welcome.featured
        assert welcome.ghost_id == "6650a1b2c3d4e5f600000001"
        assert welcome.ghost_uuid == "5f2c8b1e-0001-4a5b-9c3d-000000000001"
        assert welcome.comment_id == "6650a1b2c3d4e5f600000001"
        assert welcome.published_at is not None and welcome.published_at.isoformat() == "2024-05-01T09:00:00+00:00"
        assert welcome.markdown == "" and welcome.legacy_html is not None
        html = welcome.body_html
        assert "__GHOST_URL__" not in html and f"{GHOST_URL}/content/images/2024/05/market.jpg" in html
        assert 'class="kg-card kg-image-card kg-card-hascaption"' in html and "srcset=" in html
        assert 'src="https://www.youtube.com/embed/dQw4w9WgXcQ?feature=oembed"' in html
        assert "<figcaption>" in html and "kg-btn" in html
        assert welcome.feature_image == f"{GHOST_URL}/content/images/2024/05/cover.jpg"
        assert welcome.meta_title == "Welcome | Co-op" and welcome.og_title == "Welcome (OG)"
        assert welcome.og_image == f"{GHOST_URL}/content/images/og.jpg"
        assert welcome.feature_image_alt == "A sunny market" and welcome.custom_excerpt == "We moved the blog."
        assert [t.slug for t in welcome.tags] == ["news", "getting-started", "hash-migrated"]
        assert [t.slug for t in welcome.public_tags] == ["news", "getting-started"]
        assert [a.email for a in welcome.authors] == ["writer@example.org", "jamie@example.org"]
        writer = welcome.authors[0]
        assert writer.username == "ghost-writer" and writer.is_author and writer.password_hash == "!locked"
        draft = await service.by_slug("half-written")
        assert draft is not None and draft.status == "draft"
        scheduled = await service.by_slug("coming-soon")
        assert scheduled is not None and scheduled.status == "scheduled"
        jobs = (await session.execute(select(Job.kind).where(Job.kind == "blog.publish-scheduled"))).scalars().all()
        assert len(jobs) == 1
        page = await service.by_slug("about")
        assert page is not None and page.type == "page"
        assert await service.by_slug("lexical-only") is None
    # Imported posts are live on the public site and in the feed.
    response = await client.get("/blog/welcome")
    assert response.status_code == 200 and "Saturday market" in response.text
    assert "Welcome to our new home" in (await client.get("/blog/feed.rss")).text
    assert (await client.get("/blog/half-written")).status_code == 404
    # The imported locked user cannot sign in.
    from tests.helpers.web import login

    assert (await login(client, "writer@example.org", "anything at all 123")).status_code == 401


async def test_hostile_import_is_inert_and_keeps_the_rest(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    await run_import(sessionmaker, EXPORT)
    async with sessionmaker() as session:
        post = (await session.execute(select(Post).where(Post.slug == "hostile"))).scalar_one()
    html = post.body_html
    assert_inert(html)
    assert "Safe paragraph stays." in html and "Callout kept" in html and 'alt="bad image"' in html
    assert '<a href="https://evil.example/frame" rel="noopener noreferrer nofollow">' in html  # iframe → link
    assert "evil-class" not in html and "position:fixed" not in html


async def test_dry_run_reports_and_writes_nothing(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    report = await run_import(sessionmaker, EXPORT, dry_run=True)
    assert report.dry_run and report.posts_created == 4 and report.tags_created == 3
    assert report.authors_created == 2
    assert "dry run" in report.lines()[-1]
    async with sessionmaker() as session:
        for model in (Post, Tag, User, Job):
            assert (await session.execute(select(func.count()).select_from(model))).scalar_one() == 0


def _mutate(fn: Any) -> bytes:
    data = json.loads(EXPORT)
    fn(data)
    return json.dumps(data).encode()


BAD_EXPORTS = {
    "truncated": EXPORT[: len(EXPORT) // 2],
    "not an object": b"[1, 2, 3]",
    "no data": b'{"db": [{"meta": {"version": "6.0.0"}}]}',
    "empty db": b'{"db": []}',
    "unknown shape": b'{"posts": []}',
    "posts not a list": _mutate(lambda d: d["db"][0]["data"].__setitem__("posts", {"id": 1})),
    "post without id": _mutate(lambda d: d["db"][0]["data"]["posts"][2].pop("id")),
    "post without title or slug": _mutate(lambda d: d["db"][0]["data"]["posts"][3].update(title=None, slug=None)),
    "bad date": _mutate(lambda d: d["db"][0]["data"]["posts"][4].update(published_at="yesterday-ish")),
    "duplicate ids": _mutate(lambda d: d["db"][0]["data"]["posts"][1].update(id="6650a1b2c3d4e5f600000001")),
}


@pytest.mark.parametrize("case", sorted(BAD_EXPORTS))
async def test_malformed_or_partial_export_imports_nothing(sessionmaker: async_sessionmaker[AsyncSession],
                                                           case: str) -> None:
    with pytest.raises(GhostImportError) as info:
        await run_import(sessionmaker, BAD_EXPORTS[case])
    assert str(info.value)
    async with sessionmaker() as session:
        for model in (Post, Tag, User, Job, PostTag, SlugRedirect):
            assert (await session.execute(select(func.count()).select_from(model))).scalar_one() == 0


async def test_unwrapped_old_format(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    report = await run_import(sessionmaker, (FIXTURES / "ghost-unwrapped-old.json").read_bytes())
    assert report.ghost_version == "003" and report.pages_created == 1 and report.posts_created == 1
    async with sessionmaker() as session:
        from domains.blog.services import BlogService

        page = await BlogService(session).by_slug("old-page")
        post = await BlogService(session).by_slug("old-post")
        assert page is not None and page.type == "page" and page.meta_title == "Old meta"
        assert post is not None and [t.slug for t in post.tags] == ["archive"]
        assert post.published_at is not None and post.published_at.isoformat() == "2014-01-02T10:00:00+00:00"


async def test_upsert_by_slug_adopts_an_existing_post(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as session, session.begin():
        session.add(Post(title="Local welcome", slug="welcome", markdown="local", status="draft"))
    report = await run_import(sessionmaker, EXPORT)
    assert report.posts_created == 3 and report.posts_updated == 1
    async with sessionmaker() as session:
        assert (await session.execute(select(func.count()).select_from(Post).where(Post.slug == "welcome"))
                ).scalar_one() == 1


async def test_admin_upload_form(author_client: Any, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    page = await author_client.get("/blog/admin/import")
    assert page.status_code == 200
    from tests.helpers.web import CSRF_FIELD

    token = CSRF_FIELD.search(page.text)
    assert token
    dry = await author_client.post("/blog/admin/import", data={"_csrf_token": token.group(1), "dry_run": "1"},
                                   files={"export": ("export.json", EXPORT, "application/json")})
    assert dry.status_code == 200 and "Dry run" in dry.text and "posts: 4 created" in dry.text
    async with sessionmaker() as session:
        assert (await session.execute(select(func.count()).select_from(Post))).scalar_one() == 0
    bad = await author_client.post("/blog/admin/import", data={"_csrf_token": token.group(1)},
                                   files={"export": ("export.json", EXPORT[:100], "application/json")})
    assert bad.status_code == 422 and "not valid JSON" in bad.text and "Nothing was imported" in bad.text
    done = await author_client.post("/blog/admin/import", data={"_csrf_token": token.group(1)},
                                    files={"export": ("export.json", EXPORT, "application/json")})
    assert done.status_code == 200 and "import committed" in done.text
    async with sessionmaker() as session:
        assert (await session.execute(select(func.count()).select_from(Post))).scalar_one() == 5


async def test_members_only_posts_show_a_teaser(sessionmaker: async_sessionmaker[AsyncSession], client: Any) -> None:
    def members_only(data: dict[str, Any]) -> None:
        data["db"][0]["data"]["posts"][0]["visibility"] = "members"

    await run_import(sessionmaker, _mutate(members_only))
    page = await client.get("/blog/welcome")
    assert page.status_code == 200
    assert "This post is for members" in page.text and "Saturday market" not in page.text
    feed = (await client.get("/blog/feed.atom")).text
    assert "Saturday market" not in feed and "We moved the blog." in feed


async def test_dry_run_of_changes_writes_nothing(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    await run_import(sessionmaker, EXPORT)
    async with sessionmaker() as session:
        before = await snapshot(session)

    def edit(data: dict[str, Any]) -> None:
        data["db"][0]["data"]["tags"][0]["description"] = "Changed in Ghost"
        data["db"][0]["data"]["posts"][0]["title"] = "Renamed in Ghost"
        data["db"][0]["data"]["posts"][0]["updated_at"] = 1714726800000

    report = await run_import(sessionmaker, _mutate(edit), dry_run=True)
    assert report.tags_updated == 1 and report.posts_updated == 1 and report.posts_unchanged == 3
    async with sessionmaker() as session:
        assert await snapshot(session) == before
    real = await run_import(sessionmaker, _mutate(edit))
    assert real.tags_updated == 1 and real.posts_updated == 1
    async with sessionmaker() as session:
        post = (await session.execute(select(Post).where(Post.slug == "welcome"))).scalar_one()
        assert post.title == "Renamed in Ghost"
        jobs = (await session.execute(select(Job.payload).where(Job.kind == "edge.purge"))).scalars().all()
        assert any(f"post:{post.id}" in j["keys"] for j in jobs)


async def test_convert_imported_html_to_markdown_in_the_editor(
        author_client: Any, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    from tests.domains.blog.conftest import write

    await run_import(sessionmaker, EXPORT)
    async with sessionmaker() as session:
        post = (await session.execute(select(Post).where(Post.slug == "welcome"))).scalar_one()
    edit = f"/blog/admin/posts/{post.id}"
    page = await author_client.get(edit)
    assert page.status_code == 200 and 'value="convert"' in page.text and "Saturday market" in page.text
    converted = await write(author_client, {"title": post.title, "slug": "welcome", "action": "convert"}, path=edit)
    assert converted.status_code == 200 and "lossy" in converted.text
    assert f"![The market]({GHOST_URL}/content/images/2024/05/market.jpg)" in converted.text
    assert "## What next" in converted.text
    async with sessionmaker() as session:
        unchanged = (await session.execute(select(Post).where(Post.id == post.id))).scalar_one()
        assert unchanged.legacy_html == post.legacy_html and unchanged.markdown == ""
    from domains.blog.html2md import html_to_markdown

    markdown = html_to_markdown(post.legacy_html or "")
    saved = await write(author_client, {"title": post.title, "slug": "welcome", "markdown": markdown,
                                        "action": "save"}, path=edit)
    assert saved.status_code == 303
    async with sessionmaker() as session:
        edited = (await session.execute(select(Post).where(Post.id == post.id))).scalar_one()
    assert edited.legacy_html is None and edited.markdown == markdown
    assert "<h2>What next</h2>" in edited.html and f'src="{GHOST_URL}/content/images/2024/05/market.jpg"' in edited.html
    assert "<h2>What next</h2>" in (await author_client.get("/blog/welcome")).text
