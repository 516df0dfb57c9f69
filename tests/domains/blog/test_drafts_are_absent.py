"""Unpublished work looks absent (issue 11 item 3): a tag whose posts are all drafts or scheduled
answers 404 exactly like a tag that does not exist, and stays out of feeds and the sitemap; draft
and scheduled posts answer 404 like absent ones, to readers and to other authors in the editor."""

from __future__ import annotations

from typing import Any

import pytest
from httpx import Response

from tests.domains.blog.conftest import make_author, write
from tests.helpers.web import post_form

pytestmark = pytest.mark.anyio
VARYING = {"date", "x-request-id"}


def shape(response: Response, *names: str) -> tuple[int, list[tuple[str, str]], str]:
    """Status, headers and body with the asked-for names masked: all a reader could compare."""
    def mask(text: str) -> str:
        for name in names:
            text = text.replace(name, "<name>")
        return text

    headers = sorted((k.lower(), mask(v)) for k, v in response.headers.multi_items() if k.lower() not in VARYING)
    return response.status_code, headers, mask(response.text)


async def assert_same(client: Any, hidden: str, absent: str, *names: str) -> None:
    first, second = await client.get(hidden), await client.get(absent)
    assert first.status_code == 404
    assert shape(first, *names) == shape(second, *names), (hidden, absent)


async def test_draft_only_tags_and_unpublished_posts_are_absent(client: Any, sessionmaker: Any) -> None:
    await make_author(client, sessionmaker, "alice")
    draft = await write(client, {"title": "Secret merger", "markdown": "Hush.", "tags": "Merger talks",
                                 "action": "save"})
    assert draft.status_code == 303
    draft_edit = draft.headers["location"]
    scheduled = await write(client, {"title": "Launch day", "markdown": "Soon.", "tags": "Launch",
                                     "published_at": "2099-01-01T09:00", "action": "schedule"})
    assert scheduled.status_code == 303
    live = await write(client, {"title": "Plain news", "markdown": "Out.", "tags": "News", "action": "publish"})
    assert live.status_code == 303
    await post_form(client, "/account/logout", {}, page="/account")
    client.cookies.clear()

    # Same-length slugs, so even Content-Length and the masked body match.
    await assert_same(client, "/blog/tag/merger-talks", "/blog/tag/absent-tagxy", "merger-talks", "absent-tagxy")
    await assert_same(client, "/blog/tag/launch", "/blog/tag/nopeno", "launch", "nopeno")
    await assert_same(client, "/blog/tag/merger-talks/feed.rss", "/blog/tag/absent-tagxy/feed.rss",
                      "merger-talks", "absent-tagxy")
    await assert_same(client, "/blog/secret-merger", "/blog/absent-slugxy", "secret-merger", "absent-slugxy")
    await assert_same(client, "/blog/launch-day", "/blog/nopeno-day", "launch-day", "nopeno-day")
    assert (await client.get("/blog/tag/news")).status_code == 200
    for feed in ("/blog/feed.rss", "/blog/feed.atom", "/sitemap.xml", "/blog/", "/f/blog.latest"):
        response = await client.get(feed)
        assert response.status_code == 200, feed
        body = response.text
        assert "Plain news" in body or feed == "/sitemap.xml", feed
        for secret in ("merger", "Merger", "launch", "Launch"):
            assert secret not in body, (feed, secret)
    assert "/blog/tag/news" in (await client.get("/sitemap.xml")).text
    card = await client.get("/f/blog.post-card?slug=secret-merger")
    absent_card = await client.get("/f/blog.post-card?slug=absent-slugxy")
    assert card.status_code == absent_card.status_code == 200
    assert card.text.replace("secret-merger", "<slug>") == absent_card.text.replace("absent-slugxy", "<slug>")

    # Another author: the draft in the editor is as absent as a post that never existed.
    await make_author(client, sessionmaker, "bert")
    unknown = "/blog/admin/posts/00000000-0000-7000-8000-000000000000"
    theirs, nothing = await client.get(draft_edit), await client.get(unknown)
    assert theirs.status_code == nothing.status_code == 404
    assert shape(theirs, draft_edit, unknown)[2] == shape(nothing, draft_edit, unknown)[2]

    # Once a post carrying the tag is published, the tag appears.
    await post_form(client, "/account/logout", {}, page="/account")
    await make_author(client, sessionmaker, "carl", admin=True)
    published = await write(client, {"title": "Secret merger", "markdown": "Hush.", "tags": "Merger talks",
                                     "authors": "alice", "action": "publish"}, path=draft_edit)
    assert published.status_code == 303
    client.cookies.clear()
    assert (await client.get("/blog/tag/merger-talks")).status_code == 200
    assert "/blog/tag/merger-talks" in (await client.get("/sitemap.xml")).text


async def test_a_slug_with_a_nul_is_refused(client: Any) -> None:
    # PostgreSQL refuses NUL in text: post, tag and tag-feed lookups answered 500. A NUL in a URL is
    # malformed input, refused before routing (app/strict_input.py) with the HTML 400 page.
    for path in ("/blog/a%00b", "/blog/tag/a%00b", "/blog/tag/a%00b/feed.rss", "/blog/%00"):
        answer = await client.get(path, headers={"Accept": "text/html"})
        assert answer.status_code == 400 and answer.headers["content-type"].startswith("text/html"), path
