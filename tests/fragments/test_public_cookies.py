"""No response carrying ``public`` in Cache-Control sets a cookie (issue 11, item 5), walked over
the whole route table: every GET route, its path parameters filled with sample values that exist
(a member, a published post with a tag, a public repository), each asked as an anonymous visitor,
with a stale session cookie plus a CSRF cookie, and with a live session. A shared cache would
otherwise store, or strip, a cookie meant for one visitor (design/fragments.md §2)."""

from __future__ import annotations

import itertools
import re
import uuid
from typing import Any

import pytest
from litestar import Litestar
from litestar.routes import HTTPRoute
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.caching import CachePolicy
from fragments.registry import registry
from tests.helpers.web import CSRF_FIELD, signup

pytestmark = pytest.mark.anyio
PARAM = re.compile(r"\{([a-z_]+):[a-z]+\}")
STALE = "rose_ash_session=" + "0" * 64 + "; csrftoken=" + "ab" * 32
ACCEPTS = ("text/html", "application/activity+json")
# Sample values per path parameter; a route's own values (below) win.
SAMPLES: dict[str, list[str]] = {
    "handle": ["@alice"], "which": ["outbox", "followers", "following", "liked"], "username": ["alice"],
    "owner": ["alice"], "repo": ["demo", "demo.git"], "slug": ["first-post", "news"], "acct": ["alice"],
    "collaborator": ["alice"], "file_path": ["css/site.css", "js/csrf-header.js"], "path": ["openapi.json"],
}
QUERIES = {"/.well-known/webfinger": "?resource=acct:alice@127.0.0.1:8000",
           "/forge/{owner:str}/{repo:str}/info/refs": "?service=git-upload-pack"}
# Routes that must have answered ``public`` in the walk, or the test proves nothing about them.
EXPECTED_PUBLIC = {"/", "/@alice", "/@alice/outbox", "/@alice/followers", "/ap/actors/blog", "/ap/actors/blog/outbox",
                   "/blog", "/blog/first-post", "/blog/tag/news", "/blog/author/alice", "/forge", "/f/nav",
                   "/embed/members", "/.well-known/webfinger", "/.well-known/nodeinfo", "/nodeinfo/2.1"}


def route_values() -> dict[str, dict[str, list[str]]]:
    shared = [f for f in registry if f.policy is CachePolicy.SHARED_FRAGMENT]
    embeds = [f.embed for f in registry if f.embed]
    return {
        "/f/{name:str}": {"name": [f.name for f in shared if "." not in f.name]},
        "/f/me/{name:str}": {"name": ["account-menu", "cart-badge", "welcome"]},
        "/embed/{name:str}": {"name": [str(e) for e in embeds]},
        "/embed/{name:str}/frame": {"name": [str(e) for e in embeds]},
        "/ap/actors/{name:str}": {"name": ["blog", "instance"]},
        "/ap/actors/{name:str}/{which:str}": {"name": ["blog"]},
    }


def get_urls(app: Litestar, uuids: list[str]) -> list[str]:
    """A concrete URL for every GET route (several where the samples give several)."""
    own = route_values()
    dotted = [f.url for f in registry if f.policy is CachePolicy.SHARED_FRAGMENT and "." in f.name]
    urls: list[str] = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or not any("GET" in h.http_methods for h in route.route_handlers):
            continue
        if route.path == "/f/{area:str}/{name:str}":  # one name spans both parameters
            urls.extend(dotted)
            continue
        names = PARAM.findall(route.path)
        choices = [own.get(route.path, {}).get(n) or SAMPLES.get(n) or
                   (uuids if ":uuid}" in route.path else ["x"]) for n in names]
        for values in itertools.product(*choices):
            url = route.path
            for name, value in zip(names, values, strict=True):
                url = re.sub(r"\{" + name + r":[a-z]+\}", value, url, count=1)
            urls.append(url + QUERIES.get(route.path, ""))
    return urls


async def fill(client: Any, engine: AsyncEngine) -> str:
    """alice (admin, author) with a published post tagged News and a public repository; returns
    her live session cookie."""
    from domains.account.models import User
    from domains.account.services import AccountService, TokenService

    assert (await signup(client, "alice")).status_code == 303
    async with async_sessionmaker(engine, expire_on_commit=False)() as session, session.begin():
        user = (await session.execute(select(User).where(User.username == "alice"))).scalar_one()
        await AccountService(session).set_author(user, True)
        user.is_admin = True
        _row, token = await TokenService(session).issue(user, "t", ["repo:write", "api"])
    editor = await client.get("/blog/admin/new")
    match = CSRF_FIELD.search(editor.text)
    assert match, editor.status_code
    post = await client.post("/blog/admin/posts", data={"title": "First post", "markdown": "Hello.", "tags": "News",
                                                        "action": "publish", "_csrf_token": match.group(1)})
    assert post.status_code == 303, post.text[:300]
    repo = await client.post("/api/v1/user/repos", json={"name": "demo"}, headers={"Authorization": f"token {token}"})
    assert repo.status_code == 201, repo.text
    live = client.cookies.get("rose_ash_session")
    assert live
    return str(live)


async def test_no_public_response_sets_a_cookie(app: Litestar, client: Any, engine: AsyncEngine,
                                               db_session: AsyncSession) -> None:
    live = await fill(client, engine)
    client.cookies.clear()
    from federation.activitypub.models import APObject

    notes = [str(o.id) for o in (await db_session.scalars(select(APObject).limit(1))).all()]
    urls = get_urls(app, [*notes, str(uuid.uuid4())])
    public: set[str] = set()
    offenders: list[str] = []
    for url, accept, cookie in itertools.product(urls, ACCEPTS, ("", STALE, f"rose_ash_session={live}")):
        headers = {"Accept": accept, **({"Cookie": cookie} if cookie else {})}
        response = await client.get(url, headers=headers)
        assert response.status_code < 500, (url, accept, response.status_code)
        if "public" not in response.headers.get("cache-control", ""):
            continue
        public.add(url.split("?")[0])
        if response.headers.get_list("set-cookie"):
            offenders.append(f"{url} ({accept}, cookie={cookie[:20]!r}): {response.headers.get_list('set-cookie')}")
        client.cookies.clear()
    assert not offenders, "\n".join(offenders)
    assert public >= EXPECTED_PUBLIC, EXPECTED_PUBLIC - public


async def test_a_stale_session_cookie_is_ignored_everywhere(client: Any) -> None:
    """Not answered with ``Set-Cookie: rose_ash_session=null``, on public and private pages alike."""
    for url in ("/", "/@nobody", "/account/login", "/account", "/blog"):
        response = await client.get(url, headers={"Cookie": STALE})
        assert response.status_code < 500, url
        assert "rose_ash_session" not in response.headers.get("set-cookie", ""), url
