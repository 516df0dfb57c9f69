"""Feeds parsed by feedparser, the sitemap, scheduled publishing through the job queue, fragments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from xml.etree import ElementTree as ET

import feedparser
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.jobs import JobContext, Worker, job_handler
from app.jobs.models import Job
from app.settings import Settings
from domains.blog import events
from domains.blog.models import Post
from domains.blog.schemas import PostEvent
from tests.domains.blog.conftest import write

pytestmark = pytest.mark.anyio
RECEIVED: list[PostEvent] = []


@job_handler("test.blog-events")
async def record_event(ctx: JobContext, event: PostEvent) -> None:
    """A stand-in subscriber (as federation/activitypub/blog.py is a real one)."""
    RECEIVED.append(event)


async def publish_some(client: Any) -> None:
    for title, body, tags in (("First post", "One *two* three.\n\n<script>alert(1)</script>", "News"),
                              ("Second & best", "Footnote[^1].\n\n[^1]: Here.", "News, Other")):
        response = await write(client, {"title": title, "markdown": body, "tags": tags, "action": "publish"})
        assert response.status_code == 303


async def test_atom_feed(author_client: Any) -> None:
    await publish_some(author_client)
    response = await author_client.get("/blog/feed.atom")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/atom+xml")
    assert "public" in response.headers["cache-control"] and "posts" in response.headers["surrogate-key"]
    assert "set-cookie" not in response.headers
    feed = feedparser.parse(response.content)
    assert not feed.bozo, feed.bozo_exception
    assert feed.version == "atom10"
    assert feed.feed.title and feed.feed.id and feed.feed.updated
    assert any(link.rel == "self" for link in feed.feed.links)
    assert [e.title for e in feed.entries] == ["Second & best", "First post"]
    for entry in feed.entries:
        assert entry.id.startswith("urn:uuid:") and entry.link.startswith("http://127.0.0.1:8000/blog/")
        assert entry.updated and entry.published and entry.author == "alice"
    first = feed.entries[1]
    assert "<em>two</em>" in first.content[0].value  # full content
    assert "<script" not in first.content[0].value
    assert {t.term for t in feed.entries[0].tags} == {"news", "other"}
    again = await author_client.get("/blog/feed.atom", headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304


async def test_rss_feeds(author_client: Any) -> None:
    await publish_some(author_client)
    for path, titles in (("/blog/feed.rss", ["Second & best", "First post"]),
                         ("/blog/tag/other/feed.rss", ["Second & best"]),
                         ("/blog/author/alice/feed.rss", ["Second & best", "First post"])):
        response = await author_client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("application/rss+xml")
        feed = feedparser.parse(response.content)
        assert not feed.bozo, feed.bozo_exception
        assert feed.version == "rss20"
        assert feed.feed.title and feed.feed.link and feed.feed.description
        assert [e.title for e in feed.entries] == titles
        for entry in feed.entries:
            assert entry.link and entry.id and entry.published_parsed and entry.description
        assert 'href="#fn1"' in feed.entries[0].content[0].value
    assert (await author_client.get("/blog/tag/missing/feed.rss")).status_code == 404


async def test_sitemap(author_client: Any) -> None:
    await publish_some(author_client)
    response = await author_client.get("/sitemap.xml")
    assert response.status_code == 200 and "set-cookie" not in response.headers
    root = ET.fromstring(response.content)
    ns = {"s": "http://www.sitemaps.org/schemas/sitemap/0.9"}
    locs = [el.text for el in root.findall("s:url/s:loc", ns)]
    assert "http://127.0.0.1:8000/blog/first-post" in locs and "http://127.0.0.1:8000/blog/tag/news" in locs
    assert "http://127.0.0.1:8000/blog/author/alice" in locs


async def test_scheduled_post_is_published_by_the_worker(author_client: Any, settings: Settings,
                                                         sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    events.subscribe("test.blog-events")
    try:
        await Worker(sessionmaker, settings=settings).run_once()  # the author's sign-up mail, sent first
        when = (datetime.now(UTC) + timedelta(hours=2)).replace(second=0, microsecond=0)
        response = await write(author_client, {"title": "Later", "markdown": "Soon.", "action": "schedule",
                                               "published_at": when.strftime("%Y-%m-%dT%H:%M")})
        assert response.status_code == 303
        assert (await author_client.get("/blog/later")).status_code == 404
        past = await write(author_client, {"title": "Past", "markdown": "x", "action": "schedule",
                                           "published_at": "2001-01-01T00:00"})
        assert past.status_code == 422 and "in the future" in past.text

        worker = Worker(sessionmaker, settings=settings)
        assert await worker.run_once() == 0  # not due yet
        assert (await author_client.get("/blog/later")).status_code == 404

        later = Worker(sessionmaker, settings=settings, clock=lambda: when + timedelta(seconds=5))
        RECEIVED.clear()
        ran = await later.run_once()
        assert ran >= 1
        published = await author_client.get("/blog/later")
        assert published.status_code == 200 and "Soon." in published.text
        async with sessionmaker() as session:
            post = (await session.execute(select(Post).where(Post.slug == "later"))).scalar_one()
            assert post.status == "published" and post.published_at == when
            jobs = (await session.execute(select(Job).order_by(Job.created_at))).scalars().all()
            kinds = [(j.kind, j.payload) for j in jobs]
        assert ("blog.publish-scheduled" in {k for k, _ in kinds})
        purges = [set(p["keys"]) for k, p in kinds if k == "edge.purge"]
        assert any({f"post:{post.id}", "posts"} <= keys for keys in purges)
        assert [p["action"] for k, p in kinds if k == "test.blog-events"] == ["published"]
        await later.run_once()  # the subscriber's job runs like any other durable job (if not already)
        assert [(e.action, e.post_id, e.slug) for e in RECEIVED] == [("published", post.id, "later")]
    finally:
        events.unsubscribe("test.blog-events")


async def test_rescheduled_job_is_a_no_op(author_client: Any, settings: Settings,
                                          sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    first = (datetime.now(UTC) + timedelta(hours=1)).replace(second=0, microsecond=0)
    created = await write(author_client, {"title": "Moved", "markdown": "x", "action": "schedule",
                                          "published_at": first.strftime("%Y-%m-%dT%H:%M")})
    second = first + timedelta(days=1)
    moved = await write(author_client, {"title": "Moved", "slug": "moved", "markdown": "x", "action": "schedule",
                                        "published_at": second.strftime("%Y-%m-%dT%H:%M")},
                        path=created.headers["location"])
    assert moved.status_code == 303
    await Worker(sessionmaker, settings=settings, clock=lambda: first + timedelta(minutes=1)).run_once()
    assert (await author_client.get("/blog/moved")).status_code == 404
    await Worker(sessionmaker, settings=settings, clock=lambda: second + timedelta(minutes=1)).run_once()
    assert (await author_client.get("/blog/moved")).status_code == 200


async def test_post_events_for_subscribers(author_client: Any,
                                           sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    events.subscribe("test.blog-events")
    try:
        created = await write(author_client, {"title": "Evented", "markdown": "a", "action": "save"})
        edit = created.headers["location"]
        await write(author_client, {"title": "Evented", "slug": "evented", "markdown": "a", "action": "publish"},
                    path=edit)
        await write(author_client, {"title": "Evented", "slug": "evented", "markdown": "b", "action": "save"},
                    path=edit)
        await write(author_client, {"title": "Evented", "slug": "evented", "markdown": "b", "action": "unpublish"},
                    path=edit)
        await write(author_client, {"title": "Evented", "slug": "evented", "markdown": "b", "action": "publish"},
                    path=edit)
        await write(author_client, {}, path=f"{edit}/delete")
        async with sessionmaker() as session:
            rows = (await session.execute(select(Job.payload).where(Job.kind == "test.blog-events")
                                          .order_by(Job.created_at, Job.id))).scalars().all()
        assert [r["action"] for r in rows] == ["published", "updated", "unpublished", "published", "deleted"]
    finally:
        events.unsubscribe("test.blog-events")


async def test_get_published_for_other_domains(author_client: Any,
                                               sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    from domains.blog.services import BlogService

    created = await write(author_client, {"title": "For AP", "markdown": "Body", "tags": "News", "action": "publish"})
    post_id = created.headers["location"].rsplit("/", 1)[1]
    async with sessionmaker() as session:
        from uuid import UUID

        read = await BlogService(session, base_url="https://coop.example").get_published(UUID(post_id))
    assert read is not None
    assert read.url == "https://coop.example/blog/for-ap" and read.html == "<p>Body</p>\n"
    assert [t.slug for t in read.tags] == ["news"] and read.authors[0].username == "alice"


async def test_latest_fragment_embed_and_home(author_client: Any) -> None:
    await publish_some(author_client)
    fragment = await author_client.get("/f/blog/latest?limit=1")
    assert fragment.status_code == 200 and "Second &amp; best" in fragment.text and "First post" not in fragment.text
    assert fragment.headers["cache-control"].startswith("public, max-age=0, must-revalidate, s-maxage=300")
    assert "posts" in fragment.headers["surrogate-key"] and "set-cookie" not in fragment.headers
    assert (await author_client.get("/f/blog/latest?limit=1",
                                    headers={"If-None-Match": fragment.headers["etag"]})).status_code == 304
    card = await author_client.get("/f/blog/post-card?slug=first-post")
    assert card.status_code == 200 and "First post" in card.text
    for path in ("/embed/blog/latest", "/embed/blog-latest"):
        embed = await author_client.get(path)
        assert embed.status_code == 200, path
        assert embed.headers["access-control-allow-origin"] == "*"
        assert 'href="http://127.0.0.1:8000/blog/first-post"' in embed.text
    frame = await author_client.get("/embed/blog/latest/frame")
    assert frame.status_code == 200 and "frame-ancestors" in frame.headers["content-security-policy"]


async def test_navigation_editor(author_client: Any, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    from tests.helpers.web import CSRF_FIELD

    before = await author_client.get("/f/nav")
    assert 'href="/forge/"' in before.text  # the default menu (the installed sections) until one is saved
    page = await author_client.get("/blog/admin/navigation")
    assert page.status_code == 200
    token = CSRF_FIELD.search(page.text)
    assert token
    data = {"_csrf_token": token.group(1),
            "primary_label": ["Blog", "Events", "Shop", ""],
            "primary_url": ["/blog/", "/events/", "https://shop.example", ""],
            "primary_position": ["2", "3", "1", "4"],
            "secondary_label": ["Privacy", ""], "secondary_url": ["/blog/privacy", ""],
            "secondary_position": ["1", "2"]}
    saved = await author_client.post("/blog/admin/navigation", data=data)
    assert saved.status_code == 303
    from domains.blog.services import NavigationService

    async with sessionmaker() as session:
        nav = await NavigationService(session).current()
        jobs = (await session.execute(select(Job.payload).where(Job.kind == "edge.purge"))).scalars().all()
    assert [link.label for link in nav.primary] == ["Shop", "Blog", "Events"]
    # The site's nav fragment (inline in every page, and at /f/nav) shows the saved menu.
    fragment = await author_client.get("/f/nav")
    assert fragment.status_code == 200 and "nav" in fragment.headers["surrogate-key"].split()
    assert fragment.text.index("https://shop.example") < fragment.text.index("/events/")
    assert 'href="/forge/"' not in fragment.text
    assert "https://shop.example" in (await author_client.get("/blog/")).text
    assert [link.url for link in nav.secondary] == ["/blog/privacy"]
    assert any(j["keys"] == ["nav"] for j in jobs)
    bad = await author_client.post("/blog/admin/navigation", data={
        "_csrf_token": token.group(1), "primary_label": "Evil", "primary_url": "javascript:alert(1)",
        "primary_position": "1"})
    assert bad.status_code == 422 and "http(s)" in bad.text
