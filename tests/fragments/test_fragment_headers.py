"""Header contract for every route class (design/fragments.md §2, §5, §9), on every database."""

from __future__ import annotations

import re
from typing import Any

import pytest
from litestar import Litestar
from litestar.routes import HTTPRoute

from app.caching import CACHE_CONTROL, CACHEABLE, POLICY_OPT_KEY, CachePolicy, etag_matches, weak_etag
from fragments.registry import registry
from tests.helpers.web import signup

pytestmark = pytest.mark.anyio

PUBLIC_CC = CACHE_CONTROL[CachePolicy.PUBLIC]
SHARED_CC = CACHE_CONTROL[CachePolicy.SHARED_FRAGMENT]
EMBED_CC = CACHE_CONTROL[CachePolicy.EMBED]
WEAK_ETAG = re.compile(r'^W/"[0-9a-f]{16}"$')
PARAM = re.compile(r"\{[^}]+\}")
VOLATILE = {"x-request-id", "date"}


def cacheable_urls(app: Litestar) -> dict[str, CachePolicy]:
    """A concrete URL for every public/shared/embed route and every registered fragment/embed."""
    shared = [f for f in registry if f.policy is CachePolicy.SHARED_FRAGMENT]
    embeds = [f for f in registry if f.embed]
    expand: dict[str, list[str]] = {
        "/f/{name:str}": [f.url for f in shared if "." not in f.name],
        "/f/{area:str}/{name:str}": [f.url for f in shared if "." in f.name],
        "/embed/{name:str}": [f"/embed/{f.embed}" for f in embeds],
        "/embed/{name:str}/frame": [f"/embed/{f.embed}/frame" for f in embeds],
    }
    urls: dict[str, CachePolicy] = {}
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            policy = handler.opt.get(POLICY_OPT_KEY)
            if policy not in CACHEABLE or "GET" not in handler.http_methods:
                continue
            if PARAM.search(route.path):
                # Fragment and embed routes expand to every registered one; a domain's own
                # parametrised public routes may list paths that exist on an empty database in
                # opt["sample_paths"] (their content needs data the domain's tests create).
                found = expand.get(route.path, handler.opt.get("sample_paths", []))
                urls.update(dict.fromkeys(found, policy))
            else:
                urls[route.path] = policy
    return urls


def header_dict(response: Any) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k not in VOLATILE}


async def test_walk_every_public_route(app, client) -> None:  # type: ignore[no-untyped-def]
    urls = cacheable_urls(app)
    assert {"/", "/embed", "/f/nav", "/f/account/new-members", "/embed/members", "/embed/loader.js"} <= set(urls)
    for url, policy in urls.items():
        response = await client.get(url)
        assert response.status_code == 200, url
        assert "set-cookie" not in response.headers, url
        cc = response.headers["cache-control"]
        assert cc == CACHE_CONTROL[policy], (url, cc)
        for directive in ("public", "s-maxage=", "stale-while-revalidate=", "stale-if-error="):
            assert directive in cc, (url, directive)
        assert response.headers.get("surrogate-key"), url
        assert WEAK_ETAG.match(response.headers["etag"]), url
    assert not client.cookies, "a public route set a cookie"


async def test_exact_header_strings_per_class(client) -> None:  # type: ignore[no-untyped-def]
    home = await client.get("/")
    # Browsers revalidate every time (a member sees their own edit at once); only the edge keeps copies.
    assert home.headers["cache-control"] == (
        "public, max-age=0, must-revalidate, s-maxage=300, stale-while-revalidate=600, stale-if-error=86400")
    assert set(home.headers["surrogate-key"].split()) >= {"home", "nav", "members", "site"}
    nav = await client.get("/f/nav")
    assert nav.headers["cache-control"] == (
        "public, max-age=0, must-revalidate, s-maxage=300, stale-while-revalidate=600, stale-if-error=86400")
    assert nav.headers["surrogate-key"] == "nav"
    embed = await client.get("/embed/members")
    assert embed.headers["cache-control"] == (
        "public, max-age=300, s-maxage=3600, stale-while-revalidate=86400, stale-if-error=86400")
    me = await client.get("/f/me/account-menu")
    assert me.headers["cache-control"] == "private, no-cache"
    assert me.headers["vary"] == "Cookie"
    assert "surrogate-key" not in me.headers


async def test_public_pages_identical_with_and_without_a_session(app, client) -> None:  # type: ignore[no-untyped-def]
    await signup(client, "alice")
    assert client.cookies.get("rose_ash_session")
    jar = dict(client.cookies)
    for url in cacheable_urls(app):
        with_cookie = await client.get(url)
        client.cookies.clear()
        without = await client.get(url)
        client.cookies.update(jar)
        assert with_cookie.status_code == without.status_code == 200, url
        assert with_cookie.content == without.content, url
        assert header_dict(with_cookie) == header_dict(without), url
        assert "alice" not in with_cookie.text or url in {"/", "/f/account/new-members", "/embed/members",
                                                          "/embed/members/frame"}, url


async def test_new_members_lists_members_but_no_viewer(client) -> None:  # type: ignore[no-untyped-def]
    await signup(client, "bob")
    body = (await client.get("/f/account/new-members")).text
    assert "@bob" in body and 'href="/@bob"' in body
    assert "Sign out" not in body


@pytest.mark.parametrize("url", ["/", "/f/nav", "/f/account/new-members", "/embed/members", "/embed/members/frame",
                                 "/embed/loader.js", "/embed"])
async def test_conditional_get_round_trip(client, url: str) -> None:  # type: ignore[no-untyped-def]
    first = await client.get(url)
    etag = first.headers["etag"]
    again = await client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    for name in ("etag", "cache-control", "vary", "surrogate-key", "access-control-allow-origin"):
        assert again.headers.get(name) == first.headers.get(name), name
    stale = await client.get(url, headers={"If-None-Match": 'W/"0000000000000000"'})
    assert stale.status_code == 200 and stale.content == first.content
    star = await client.get(url, headers={"If-None-Match": "*"})
    assert star.status_code == 304
    strong_form = etag.removeprefix("W/")
    in_list = await client.get(url, headers={"If-None-Match": f'"nope", {strong_form}'})
    assert in_list.status_code == 304  # weak comparison: W/"x" matches "x"


@pytest.mark.parametrize("name", ["account-menu", "cart-badge"])
async def test_personal_fragments(client, name: str) -> None:  # type: ignore[no-untyped-def]
    anon = await client.get(f"/f/me/{name}")
    assert anon.status_code == 200  # a link fallback, never a 401 or a redirect
    assert anon.headers["cache-control"] == "private, no-cache"
    assert anon.headers["vary"] == "Cookie"
    assert WEAK_ETAG.match(anon.headers["etag"])
    assert 'href="/account/login"' in anon.text or 'href="/cart/"' in anon.text
    repeat = await client.get(f"/f/me/{name}", headers={"If-None-Match": anon.headers["etag"]})
    assert repeat.status_code == 304
    assert repeat.headers["cache-control"] == "private, no-cache" and repeat.headers["vary"] == "Cookie"

    await signup(client, "carol")
    # the sign-up's 303 lands on /account, which shows (and so takes) its welcome: without that, the
    # account menu would take it (a flash arrives once: domains/account/fragments.py) and change
    await client.get("/account")
    signed_in = await client.get(f"/f/me/{name}")
    assert signed_in.status_code == 200
    assert signed_in.headers["cache-control"] == "private, no-cache"
    if name == "account-menu":
        assert "@carol" in signed_in.text and "Sign out" in signed_in.text
        assert signed_in.headers["etag"] != anon.headers["etag"]
    repeat = await client.get(f"/f/me/{name}", headers={"If-None-Match": signed_in.headers["etag"]})
    assert repeat.status_code == 304


async def test_anonymous_holes_hold_plain_links(client) -> None:  # type: ignore[no-untyped-def]
    body = (await client.get("/")).text
    assert 'hx-get="/f/me/account-menu"' in body and 'href="/account"' in body
    # The cart's hole comes with the cart domain (installed): its link is the no-JS content.
    assert 'hx-get="/f/me/cart-badge"' in body and 'href="/cart/"' in body
    assert "csrf" not in body.lower().replace("csrf-header.js", "")


async def test_private_pages_are_private_no_store(client) -> None:  # type: ignore[no-untyped-def]
    await signup(client, "dora")
    for url in ("/account", "/account/settings/profile", "/account/settings/tokens", "/account/login"):
        response = await client.get(url)
        assert response.status_code == 200, url
        directives = {d.strip() for d in response.headers["cache-control"].split(",")}
        assert directives == {"private", "no-store"}, url
        assert "etag" not in response.headers and "surrogate-key" not in response.headers
        assert 'class="site-nav"' in response.text and 'href="/blog/"' in response.text  # nav filled in
        assert "rose-ash-fragment" not in response.text


@pytest.mark.parametrize("url", ["/embed/members", "/embed/members/frame", "/embed/loader.js"])
async def test_embed_headers(client, url: str) -> None:  # type: ignore[no-untyped-def]
    response = await client.get(url, headers={"Origin": "https://elsewhere.example"})
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["cross-origin-resource-policy"] == "cross-origin"
    assert "access-control-allow-credentials" not in response.headers
    assert "vary" not in response.headers
    assert "x-frame-options" not in response.headers
    if url.endswith("/frame"):
        assert "frame-ancestors" in response.headers["content-security-policy"]
        assert response.text.startswith("<!doctype html>")
    if url.endswith("members"):
        assert 'href="http://127.0.0.1:8000/account/signup"' in response.text  # absolute links off-site


async def test_embed_index_lists_embeds_with_preview(client) -> None:  # type: ignore[no-untyped-def]
    page = await client.get("/embed")
    assert '<rose-ash-embed src="/embed/members">' in page.text
    assert "/embed/members/frame" in page.text and "/embed/loader.js" in page.text


async def test_unknown_fragments_are_404(client) -> None:  # type: ignore[no-untyped-def]
    for url in ("/f/nope", "/f/me/nope", "/embed/nope", "/embed/nope/frame"):
        response = await client.get(url)
        assert response.status_code == 404, url
        assert "set-cookie" not in response.headers or url.startswith("/f/me/")
    # a personal fragment is not reachable as a shared one, and vice versa
    assert (await client.get("/f/me/nav")).status_code == 404


def test_etag_helpers() -> None:
    tag = weak_etag(b"body")
    assert WEAK_ETAG.match(tag)
    assert etag_matches(tag, tag)
    assert etag_matches("*", tag)
    assert etag_matches(f'"a", {tag}', tag)
    assert etag_matches(tag.removeprefix("W/"), tag)
    assert not etag_matches('W/"other"', tag)
    assert not etag_matches("", tag)
    assert not etag_matches(None, tag)
