"""Members never see stale pages (issue 14, item 3): browsers may not reuse a public page or shared
fragment without revalidating it (``max-age=0, must-revalidate``; only the edge keeps copies), and
after creating a repository, pushing, publishing or editing, the revalidation of the page that shows
the change answers 200 with the new content instead of 304. A signed-in member's home page greets
them through a personal hole; the page itself stays public and cookie-free."""

from __future__ import annotations

import itertools
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.settings import Settings
from domains.account.models import User
from domains.account.services import AccountService
from tests.fragments.test_public_cookies import fill, get_urls
from tests.helpers.web import CSRF_FIELD, post_form, signup

pytestmark = pytest.mark.anyio
HOLE = re.compile(r'id="welcome-actions"[^>]*hx-get="/f/me/welcome"')


def directives(response: Any) -> dict[str, str]:
    cc = response.headers.get("cache-control", "")
    return {k.strip().lower(): v for k, _, v in (part.partition("=") for part in cc.split(",")) if k.strip()}


def assert_revalidated(response: Any, url: str) -> None:
    """A public HTML answer may be kept by browsers only as something to revalidate before use."""
    cc = directives(response)
    assert "public" in cc, (url, response.headers.get("cache-control"))
    assert cc.get("max-age") == "0" and "must-revalidate" in cc, (url, response.headers.get("cache-control"))


async def revalidate(client: Any, url: str, etag: str) -> Any:
    """What a browser holding ``etag`` gets for ``url`` (a 304 means it would show its old copy)."""
    response = await client.get(url, headers={"If-None-Match": etag})
    assert_revalidated(response, url)
    return response


async def fresh(client: Any, url: str) -> tuple[str, str]:
    """Fetch ``url``; check its headers and that its own ETag revalidates to a 304; (etag, body)."""
    response = await client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    assert_revalidated(response, url)
    assert not response.headers.get_list("set-cookie"), url
    etag = response.headers["etag"]
    assert (await revalidate(client, url, etag)).status_code == 304, url
    return etag, response.text


async def changed(client: Any, url: str, etag: str, needle: str) -> str:
    """The browser's revalidation after a change: a 200 with the change, under a new ETag."""
    response = await revalidate(client, url, etag)
    assert response.status_code == 200, (url, "the browser would keep showing its stale copy")
    assert response.headers["etag"] != etag and needle in response.text, url
    return str(response.headers["etag"])


async def editor_post(client: Any, path: str, data: dict[str, str]) -> Any:
    token = CSRF_FIELD.search((await client.get("/blog/admin/new")).text)
    assert token
    return await client.post(path, data={**data, "_csrf_token": token.group(1)})


async def test_after_each_change_the_next_page_shows_it(client: Any, engine: AsyncEngine, settings: Settings,
                                                         db_session: AsyncSession, tmp_path: Path) -> None:
    assert (await signup(client, "alice")).status_code == 303
    async with async_sessionmaker(engine, expire_on_commit=False)() as session, session.begin():
        user = (await session.execute(select(User).where(User.username == "alice"))).scalar_one()
        await AccountService(session).set_author(user, True)

    # Create a repository: the owner's forge page (and the forge index) change.
    owner_etag, body = await fresh(client, "/forge/alice")
    index_etag, _ = await fresh(client, "/forge")
    assert "sunflower" not in body
    created = await post_form(client, "/forge/new", {"name": "sunflower", "description": "", "default_branch": "main",
                                                     "visibility": "public"}, page="/forge/new")
    assert created.status_code == 303, created.text[:300]
    await changed(client, "/forge/alice", owner_etag, "sunflower")
    await changed(client, "/forge", index_etag, "sunflower")

    # Push: the repository page shows the README.
    from tests.forge.test_web import seed_commits

    repo_etag, body = await fresh(client, "/forge/alice/sunflower")
    assert "Petals all the way down" not in body
    await seed_commits(settings, db_session, "alice", "sunflower", tmp_path, {"README.md": "Petals all the way down"})
    await changed(client, "/forge/alice/sunflower", repo_etag, "Petals all the way down")

    # Publish a post: the home page and the blog index list it.
    home_etag, _ = await fresh(client, "/")
    blog_etag, _ = await fresh(client, "/blog")
    latest_etag, _ = await fresh(client, "/f/blog/latest")
    published = await editor_post(client, "/blog/admin/posts", {"title": "Seed catalogue", "slug": "seeds",
                                                                "markdown": "Old text.", "action": "publish"})
    assert published.status_code == 303, published.text[:300]
    edit_url = published.headers["location"]
    await changed(client, "/", home_etag, "Seed catalogue")
    await changed(client, "/blog", blog_etag, "Seed catalogue")
    await changed(client, "/f/blog/latest", latest_etag, "Seed catalogue")

    # Edit it: the post's own page changes.
    post_etag, body = await fresh(client, "/blog/seeds")
    assert "Old text." in body
    edited = await editor_post(client, edit_url, {"title": "Seed catalogue", "slug": "seeds",
                                                  "markdown": "New text.", "action": "publish"})
    assert edited.status_code == 303, edited.text[:300]
    await changed(client, "/blog/seeds", post_etag, "New text.")


async def test_no_public_page_or_fragment_lets_browsers_reuse_it(app: Litestar, client: Any, engine: AsyncEngine,
                                                                  db_session: AsyncSession) -> None:
    """Every public HTML answer of every GET route, anonymous and signed in (embeds excepted: third-party
    pages keep them for five minutes by design, §2)."""
    live = await fill(client, engine)
    client.cookies.clear()
    checked: set[str] = set()
    offenders: list[str] = []
    for url, cookie in itertools.product(get_urls(app, [str(uuid.uuid4())]), ("", f"rose_ash_session={live}")):
        if url.startswith(("/embed", "/static/")):
            continue
        response = await client.get(url, headers={"Accept": "text/html", **({"Cookie": cookie} if cookie else {})})
        client.cookies.clear()
        cc = directives(response)
        if "public" not in cc or not response.headers.get("content-type", "").startswith("text/html"):
            continue
        checked.add(url)
        if cc.get("max-age") != "0" or "must-revalidate" not in cc:
            offenders.append(f"{url}: {response.headers['cache-control']}")
    assert not offenders, "\n".join(offenders)
    assert {"/", "/blog", "/blog/first-post", "/forge", "/forge/alice", "/forge/alice/demo", "/f/nav"} <= checked


async def test_home_greets_a_member_through_a_personal_hole(client: Any) -> None:
    assert (await signup(client, "alice")).status_code == 303
    member = {"Cookie": f"rose_ash_session={client.cookies.get('rose_ash_session')}"}
    client.cookies.clear()

    anonymous = await client.get("/")
    assert anonymous.status_code == 200 and HOLE.search(anonymous.text)
    assert "Become a member" in anonymous.text  # the no-JS content of the hole is the sign-up offer
    hole = await client.get("/f/me/welcome")
    assert hole.status_code == 200 and hole.headers["cache-control"] == "private, no-cache"
    assert "Become a member" in hole.text and "Your repositories" not in hole.text

    page = await client.get("/", headers=member)
    assert page.status_code == 200 and page.text == anonymous.text  # one page for everybody
    assert_revalidated(page, "/")
    assert not page.headers.get_list("set-cookie") and "vary" not in page.headers
    hole = await client.get("/f/me/welcome", headers=member)
    assert hole.status_code == 200 and hole.headers["cache-control"] == "private, no-cache"
    assert "cookie" in hole.headers["vary"].lower()
    text = hole.text
    assert "@alice" in text and "Become a member" not in text
    for href, label in (("/social/#compose", "Write a post"), ("/forge/alice", "Your repositories"),
                        ("/social/", "Your timeline")):
        assert re.search(f'href="{re.escape(href)}"[^>]*>{label}<', text), label
    # Filled by htmx with outerHTML: the answer replaces the hole and carries no second hx-get.
    assert text.lstrip().startswith('<div id="welcome-actions"') and "hx-get" not in text


async def test_an_author_is_offered_the_editor(client: Any, engine: AsyncEngine) -> None:
    await signup(client, "ada")
    async with async_sessionmaker(engine, expire_on_commit=False)() as session, session.begin():
        user = (await session.execute(select(User).where(User.username == "ada"))).scalar_one()
        await AccountService(session).set_author(user, True)
    hole = await client.get("/f/me/welcome")
    assert re.search(r'href="/blog/admin/new"[^>]*>Write a post<', hole.text)
    assert (await client.get("/blog/admin/new")).status_code == 200  # the link is no dead end
