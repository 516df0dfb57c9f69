"""The shared-fragment cache (fragments/cache.py): fast, and never stale, personal or degraded.

On both databases, and on Redis when ROSE_ASH_TEST_REDIS_URL is set: an edit is on the next page;
two app instances on one database and Redis see each other's edits on their next request (the
invalidation travels by Redis pub/sub); personal fragments never touch the shared cache; a fragment
that raises or hangs falls back alone and its fallback is never kept.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import msgspec
import pytest
from litestar import Litestar, Request, Response, get
from litestar.testing import AsyncTestClient
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine

import fragments.registry
from app.caching import DEGRADED_CACHE_CONTROL, CachePolicy, conditional_response, render_state, route_opt
from app.settings import Settings
from fragments.registry import FragmentContext, FragmentData, fragment, registry, resolve_placeholders
from tests.conftest import REDIS_URL
from tests.helpers.web import signup

pytestmark = pytest.mark.anyio


def lookups(result: str) -> float:
    return REGISTRY.get_sample_value("rose_ash_fragment_cache_lookups_total", {"result": result}) or 0.0


def fallbacks(name: str) -> float:
    return REGISTRY.get_sample_value("rose_ash_fragment_fallbacks_total", {"fragment": name}) or 0.0


async def test_an_edit_is_on_the_next_page(client: Any) -> None:
    first = await client.get("/")
    assert first.status_code == 200 and "No members yet" in first.text
    hits = lookups("hit")
    # Another URL of the same page is a page-cache miss whose fragments all come from the cache.
    other = await client.get("/?from=elsewhere")
    assert other.text == first.text
    assert lookups("hit") >= hits + 4  # nav, welcome, sections, members (and the latest posts): all cached
    # The same URL again is one hit: the whole page (fragments/page_cache.py).
    hits = lookups("hit")
    again = await client.get("/")
    assert again.text == first.text and again.headers["etag"] == first.headers["etag"]
    assert lookups("hit") == hits + 1
    await signup(client, "carol")  # commits a purge of "members"
    after = await client.get("/")
    assert "carol" in after.text and "No members yet" not in after.text


@pytest.fixture
async def second_app(settings: Settings, engine: AsyncEngine) -> Litestar:
    """Another app on the same database (and Redis), as a second process would be."""
    from app import create_app

    return create_app(msgspec.structs.replace(settings))  # its own Settings: no direct invalidation


@pytest.fixture
async def second_client(second_app: Litestar) -> AsyncIterator[Any]:
    async with AsyncTestClient(app=second_app, base_url="http://127.0.0.1:8000") as c:
        c.follow_redirects = False
        yield c


@pytest.mark.skipif(not REDIS_URL, reason="two processes share invalidations through Redis")
async def test_an_edit_through_one_app_is_on_the_other_apps_next_page(client: Any, second_client: Any) -> None:
    assert "No members yet" in (await second_client.get("/")).text
    hits = lookups("hit")
    assert "No members yet" in (await second_client.get("/")).text
    assert lookups("hit") > hits  # the second app serves its members list from its cache
    assert "No members yet" in (await client.get("/")).text
    await signup(client, "dave")  # through the first app
    assert "dave" in (await second_client.get("/")).text  # the very next request of the second
    assert "dave" in (await client.get("/")).text


async def test_personal_fragments_never_touch_the_shared_cache(client: Any) -> None:
    await signup(client, "erin")
    erin_cookies = dict(client.cookies)
    client.cookies.clear()
    await signup(client, "frank")
    frank_cookies = dict(client.cookies)
    before = lookups("hit") + lookups("miss")
    for _ in range(2):
        client.cookies.clear()
        client.cookies.update(erin_cookies)
        erin = await client.get("/f/me/account-menu")
        client.cookies.clear()
        client.cookies.update(frank_cookies)
        frank = await client.get("/f/me/account-menu")
        assert "erin" in erin.text and "frank" not in erin.text
        assert "frank" in frank.text and "erin" not in frank.text
    assert lookups("hit") + lookups("miss") == before  # never looked up, so never stored


# A shared fragment whose behaviour the test chooses: ok, raise or hang.
MODE: dict[str, str] = {}


async def flaky(ctx: FragmentContext) -> FragmentData:
    mode = MODE.get(ctx.params.get("n", ""), "ok")
    if mode == "raise":
        raise RuntimeError("the data source is down")
    if mode == "hang":
        await asyncio.sleep(30)
    return FragmentData({"links": (("/flaky", "FLAKY-" + ctx.params.get("n", "")),)}, keys=("testcache",))


@get("/test-cache-page", opt=route_opt(CachePolicy.PUBLIC))
async def flaky_page(request: Request[Any, Any, Any], n: str) -> Response[bytes]:
    env = request.app.template_engine.engine  # type: ignore[union-attr]
    html = env.from_string('<main>{{ fragment("testcache.flaky", n=n) }}{{ fragment("site.sections") }}'
                           '{{ fragment("nav") }}</main>').render({"request": request, "n": n})
    html = await resolve_placeholders(request, html)
    degraded = bool(render_state(request.scope).fallbacks)
    return conditional_response(request, html, CachePolicy.PUBLIC,
                                cache_control=DEGRADED_CACHE_CONTROL if degraded else None)


@pytest.fixture
def flaky_fragment() -> Iterator[None]:
    """Registered for this test only: other tests walk the registry (every key has a purge path)."""
    fragment("testcache.flaky", title="Flaky part", template="fragments/site/sections.html")(flaky)
    try:
        yield
    finally:
        registry.remove("testcache.flaky")


@pytest.mark.usefixtures("flaky_fragment")
async def test_a_failing_fragment_falls_back_alone_and_its_fallback_is_not_kept(
        app: Litestar, client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    app.register(flaky_page)
    spec = registry.get("testcache.flaky")
    assert spec is not None
    monkeypatch.setattr(spec, "inline_timeout", 0.2)
    monkeypatch.setattr(fragments.registry, "TIMEOUT_FLOOR", 0.0)
    for mode in ("raise", "hang"):
        n = f"{mode}-{uuid.uuid4().hex[:6]}"
        MODE[n] = mode
        counted = fallbacks("testcache.flaky")
        for _ in range(2):  # a fallback is not cached: it is built (and fails) again
            page = await client.get("/test-cache-page", params={"n": n})
            assert page.status_code == 200
            assert "Flaky part is temporarily unavailable" in page.text
            assert f"FLAKY-{n}" not in page.text
            assert 'class="cards"' in page.text  # the other fragments rendered
            assert page.headers["cache-control"] == DEGRADED_CACHE_CONTROL
        assert fallbacks("testcache.flaky") == counted + 2
        MODE[n] = "ok"  # the data source is back: the next page has the fragment, not a kept fallback
        healed = await client.get("/test-cache-page", params={"n": n})
        assert f"FLAKY-{n}" in healed.text and "temporarily unavailable" not in healed.text
        assert healed.headers["cache-control"] != DEGRADED_CACHE_CONTROL
