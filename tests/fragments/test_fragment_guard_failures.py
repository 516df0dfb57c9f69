"""The session-touch guard, failure isolation and the one-rendering-path rule."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from litestar import Request, Response

from app.caching import CACHE_CONTROL, CachePolicy
from fragments.cache import invalidate
from fragments.pages import public_get, render_page
from fragments.registry import FAILURES, FragmentContext, FragmentData, fragment, registry
from tests.helpers.web import signup

pytestmark = pytest.mark.anyio


@public_get("/test-leaky-session", name="test:leaky-session")
async def leaky_session(request: Request[Any, Any, Any]) -> Response[bytes]:
    """A deliberately wrong public handler: it personalises from the session."""
    uid = request.session.get("uid")
    return await render_page(request, "home.html", {"leak": uid}, keys=("leak",))


@public_get("/test-leaky-user", name="test:leaky-user")
async def leaky_user(request: Request[Any, Any, Any]) -> Response[bytes]:
    who = request.user
    return await render_page(request, "home.html", {"leak": who}, keys=("leak",))


@pytest.mark.parametrize("path", ["/test-leaky-session", "/test-leaky-user"])
async def test_guard_downgrades_a_session_reading_public_handler(app, client, guard_log, path: str) -> None:  # type: ignore[no-untyped-def]
    app.register(leaky_session)
    app.register(leaky_user)
    await signup(client, "mallory")
    guard_log.expected = True
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "private, no-store"
    assert "surrogate-key" not in response.headers
    assert "etag" not in response.headers
    assert guard_log.records, "the guard must log an error"
    assert path in guard_log.messages[0] and "downgraded" in guard_log.messages[0]
    # and it can never validate a cached copy
    again = await client.get(path, headers={"If-None-Match": "*"})
    assert again.status_code == 200 and again.headers["cache-control"] == "private, no-store"


async def test_guard_is_silent_on_correct_public_pages(client, guard_log) -> None:  # type: ignore[no-untyped-def]
    """Signed in, the public pages still answer as shared, cacheable responses: nothing personal
    in them, their public Cache-Control, ETag and Surrogate-Key kept, and the guard says nothing."""
    await signup(client, "olive")
    for url in ("/", "/f/nav", "/embed/members", "/embed"):
        response = await client.get(url)
        assert response.status_code == 200, url
        assert response.headers["cache-control"].startswith("public,"), (url, response.headers["cache-control"])
        assert "set-cookie" not in response.headers, url
        if url != "/embed":  # the embed index is a static page with no keys
            assert response.headers.get("surrogate-key"), url
        # The member's own menu (sign-out form) and CSRF token belong only in personal responses.
        assert 'action="/account/logout"' not in response.text, f"{url} carries olive's account menu"
        assert "_csrf_token" not in response.text, f"{url} carries a CSRF token: not a shared response"
    assert not guard_log.records


@pytest.fixture
def broken_members(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = registry.get("account.new-members")
    assert spec is not None

    async def explode(ctx: FragmentContext) -> FragmentData:
        raise ConnectionError("database is down")

    monkeypatch.setattr(spec, "build", explode)


async def test_fragment_failure_answers_200_fallback_no_store(client, broken_members) -> None:  # type: ignore[no-untyped-def]
    before = FAILURES["account.new-members"]
    response = await client.get("/f/account/new-members")
    assert response.status_code == 200
    assert "fragment-unavailable" in response.text and "unavailable right now" in response.text
    assert response.headers["cache-control"] == "no-store"
    assert "etag" not in response.headers and "surrogate-key" not in response.headers
    assert FAILURES["account.new-members"] == before + 1
    embed = await client.get("/embed/members")
    assert embed.status_code == 200 and embed.headers["cache-control"] == "no-store"
    assert embed.headers["access-control-allow-origin"] == "*"


async def test_inline_failure_degrades_the_page_not_breaks_it(client, broken_members) -> None:  # type: ignore[no-untyped-def]
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "public, max-age=0, must-revalidate, s-maxage=15"
    assert "etag" not in page.headers
    assert "Welcome to" in page.text and 'class="site-nav"' in page.text  # the other fragments still render
    assert "unavailable right now" in page.text
    # a conditional request cannot turn a degraded page into a 304
    assert (await client.get("/", headers={"If-None-Match": "*"})).status_code == 200


async def test_slow_fragment_times_out_to_its_fallback(client, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    spec = registry.get("account.new-members")
    assert spec is not None

    async def slow(ctx: FragmentContext) -> FragmentData:
        await asyncio.sleep(5)
        return FragmentData({})

    import fragments.registry

    monkeypatch.setattr(fragments.registry, "TIMEOUT_FLOOR", 0.0)
    monkeypatch.setattr(spec, "build", slow)
    monkeypatch.setattr(spec, "inline_timeout", 0.05)
    monkeypatch.setattr(spec, "route_timeout", 0.05)
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "public, max-age=0, must-revalidate, s-maxage=15"
    fragment_response = await client.get("/f/account/new-members")
    assert fragment_response.status_code == 200 and fragment_response.headers["cache-control"] == "no-store"


async def test_inline_and_url_renderings_are_identical(client) -> None:  # type: ignore[no-untyped-def]
    await signup(client, "pat")
    client.cookies.clear()
    page = (await client.get("/")).text
    for url in ("/f/nav", "/f/site/welcome", "/f/site/sections", "/f/account/new-members?limit=5"):
        body = (await client.get(url)).text
        assert body.strip() and body in page, url


async def test_one_decorator_registers_a_fragment(client) -> None:  # type: ignore[no-untyped-def]
    @fragment("test.hello", template="fragments/_test_hello.html", embed="test-hello")
    async def hello(ctx: FragmentContext) -> FragmentData:
        """Says hello."""
        return FragmentData({"who": ctx.params.get("who", "world")}, keys=("hello",), seed=ctx.params.get("who"))

    # The template lives in this app's Jinja loader, not in templates/: a file written into the
    # source tree would be seen by other test processes (xdist workers collect templates/*.html).
    from jinja2 import ChoiceLoader, DictLoader

    env = client.app.template_engine.engine
    env.loader = ChoiceLoader([DictLoader({"fragments/_test_hello.html": "<p>hello {{ who }}</p>"}), env.loader])
    try:
        response = await client.get("/f/test/hello?who=ann")
        assert response.text == "<p>hello ann</p>"
        assert response.headers["surrogate-key"] == "hello"
        again = await client.get("/f/test/hello?who=ann", headers={"If-None-Match": response.headers["etag"]})
        assert again.status_code == 304
        other = await client.get("/f/test/hello?who=bob", headers={"If-None-Match": response.headers["etag"]})
        assert other.status_code == 200 and other.text == "<p>hello bob</p>"
        assert (await client.get("/embed/test-hello")).status_code == 200
    finally:
        registry.remove("test.hello")


def test_decorator_validates_names_and_classes() -> None:
    async def build(ctx: FragmentContext) -> FragmentData:
        return FragmentData()

    with pytest.raises(ValueError, match="personal"):
        fragment("me.thing")(build)
    with pytest.raises(ValueError, match="personal"):
        fragment("thing.x", policy=CachePolicy.PERSONAL)(build)
    with pytest.raises(ValueError, match="anonymous"):
        fragment("me.thing", policy=CachePolicy.PERSONAL, embed="x")(build)
    with pytest.raises(ValueError, match="bad fragment name"):
        fragment("Bad Name")(build)
    with pytest.raises(ValueError, match="already registered"):
        fragment("nav")(build)


def test_policy_strings_match_the_design_table() -> None:
    assert CACHE_CONTROL[CachePolicy.PRIVATE] == "private, no-store"
    assert CACHE_CONTROL[CachePolicy.ACTION] == "no-store"
    assert CACHE_CONTROL[CachePolicy.PERSONAL] == "private, no-cache"
    for policy in (CachePolicy.PUBLIC, CachePolicy.SHARED_FRAGMENT):
        assert re.fullmatch(r"public, max-age=0, must-revalidate, s-maxage=\d+, stale-while-revalidate=\d+, "
                            r"stale-if-error=86400", CACHE_CONTROL[policy])
    assert re.fullmatch(r"public, max-age=\d+, s-maxage=\d+, stale-while-revalidate=\d+, stale-if-error=86400",
                        CACHE_CONTROL[CachePolicy.EMBED])


@public_get("/test-plain-template", name="test:plain-template")
async def plain_template(request: Request[Any, Any, Any]) -> Response[bytes]:
    """A public handler that renders its template itself and calls conditional_response (as forge does)."""
    from app.caching import conditional_response

    env = request.app.template_engine.engine  # type: ignore[union-attr]
    html = env.get_template("home.html").render({"request": request})
    return conditional_response(request, html, CachePolicy.PUBLIC, surrogate_keys=["plain"])


async def test_placeholders_filled_and_validated_after_assembly(app, client, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    app.register(plain_template)
    first = await client.get("/test-plain-template")
    assert first.status_code == 200 and "rose-ash-fragment" not in first.text
    assert "Welcome to" in first.text
    assert {"plain", "nav", "members"} <= set(first.headers["surrogate-key"].split())
    assert first.headers["etag"] == (await client.get("/test-plain-template")).headers["etag"]
    again = await client.get("/test-plain-template", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b"" and "content-length" not in again.headers
    assert again.headers["surrogate-key"] == first.headers["surrogate-key"]
    # The validator covers the inlined fragments: when one changes, so does the page's ETag.
    spec = registry.get("site.welcome")
    assert spec is not None

    async def changed(ctx: FragmentContext) -> FragmentData:
        return FragmentData({}, keys=("site",), seed="2")

    monkeypatch.setattr(spec, "template", "fragments/site/sections.html")
    monkeypatch.setattr(spec, "build", changed)
    # A changed fragment comes with a new release, whose processes start with an empty page cache.
    invalidate(None, ["plain"])
    after = await client.get("/test-plain-template", headers={"If-None-Match": first.headers["etag"]})
    assert after.status_code == 200 and after.headers["etag"] != first.headers["etag"]
