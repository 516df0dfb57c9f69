"""Whole public pages from the fragment cache (fragments/page_cache.py): like an edge, never stale,
never degraded, never personal, and each answer still gets its own per-response headers."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import REGISTRY

from fragments.registry import FragmentContext, FragmentData, registry
from tests.conftest import REDIS_URL
from tests.helpers.web import signup

pytestmark = pytest.mark.anyio


def page_hits() -> float:
    return REGISTRY.get_sample_value("rose_ash_fragment_cache_lookups_total", {"result": "hit"}) or 0.0


async def test_a_public_page_is_answered_from_the_cache_with_fresh_headers(client: Any) -> None:
    first = await client.get("/")
    hits = page_hits()
    again = await client.get("/")
    assert page_hits() == hits + 1  # one lookup: the whole page, none of its fragments
    assert again.text == first.text and again.headers["etag"] == first.headers["etag"]
    assert again.headers["surrogate-key"] == first.headers["surrogate-key"]
    assert again.headers["cache-control"] == first.headers["cache-control"]
    # Per-response headers are made for each answer, not replayed from the stored one.
    assert again.headers["x-request-id"] != first.headers["x-request-id"]
    assert again.headers.get_list("content-security-policy") == first.headers.get_list("content-security-policy")
    assert again.headers.get_list("x-request-id") == [again.headers["x-request-id"]]
    # A conditional request is answered 304 from the cache, without a body or its type.
    same = await client.get("/", headers={"If-None-Match": first.headers["etag"]})
    assert same.status_code == 304 and same.content == b"" and "content-type" not in same.headers
    # HEAD (served by the GET route) gets the cached page's headers and no body.
    head = await client.head("/")
    assert head.status_code == 200 and head.content == b"" and head.headers["etag"] == first.headers["etag"]


async def test_an_edit_purges_the_cached_page(client: Any) -> None:
    assert "No members yet" in (await client.get("/")).text
    assert "No members yet" in (await client.get("/")).text  # now cached
    await signup(client, "mallory")  # commits a purge of "members"
    assert "mallory" in (await client.get("/")).text
    # Again, now that the cache is warm and the invalidation is a per-key drop (not a first clear).
    assert "mallory" in (await client.get("/")).text
    await signup(client, "oscar")
    assert "oscar" in (await client.get("/")).text


async def test_a_degraded_page_is_never_kept(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = registry.get("account.new-members")
    assert spec is not None
    healthy_build = spec.build

    async def broken(ctx: FragmentContext) -> FragmentData:
        raise RuntimeError("the members fragment is down")

    monkeypatch.setattr(spec, "build", broken)
    degraded = await client.get("/?degraded=1")
    assert degraded.status_code == 200 and "etag" not in degraded.headers
    assert "s-maxage=15" in degraded.headers["cache-control"]
    monkeypatch.setattr(spec, "build", healthy_build)
    healed = await client.get("/?degraded=1")
    assert "etag" in healed.headers and "s-maxage=15" not in healed.headers["cache-control"]


async def test_private_pages_are_not_cached(client: Any) -> None:
    await signup(client, "trent")
    mine = await client.get("/account")
    assert mine.status_code == 200 and "trent" in mine.text
    client.cookies.clear()
    assert (await client.get("/account")).status_code == 303  # not the member's page from a cache


async def test_query_strings_cannot_fill_the_cache(app: Any, client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import fragments.cache

    monkeypatch.setattr(fragments.cache, "MAX_PAGES", 3)
    cache = app.state["fragment_cache"]
    for n in range(10):  # a crawler inventing URLs
        assert (await client.get(f"/?n={n}")).status_code == 200
    pages = [k for k in cache._entries if k.split("|", 2)[1] == fragments.cache.PAGE]
    assert len(pages) == 3 and all(f"n={n}" in k for k, n in zip(pages, (7, 8, 9), strict=True))
    assert len(cache._entries) > 3  # the fragments those pages were built from are still there


async def test_local_copies_expire_like_the_edges(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import fragments.cache

    await client.get("/")
    hits = page_hits()
    await client.get("/")
    assert page_hits() == hits + 1
    later = fragments.cache._now() + fragments.cache.TTL_SECONDS + 1
    monkeypatch.setattr(fragments.cache, "_now", lambda: later)
    hits = page_hits()
    await client.get("/")
    # The local copy is gone: the page and its fragments are built again, or, with Redis, come
    # from Redis's copy (which Redis itself expires after the same TTL).
    assert page_hits() == hits + (1 if REDIS_URL else 0)


async def test_a_repository_page_is_kept_only_while_public(client: Any) -> None:
    from tests.helpers.web import post_form

    await signup(client, "ada")
    for name, visibility in (("open", "public"), ("secret", "private")):
        made = await post_form(client, "/forge/new", {"name": name, "description": "", "visibility": visibility,
                                                      "default_branch": "main"}, page="/forge/new")
        assert made.status_code == 303, made.text[:300]
    public = await client.get("/forge/ada/open")
    hits = page_hits()
    assert (await client.get("/forge/ada/open")).text == public.text
    assert page_hits() == hits + 1  # kept whole
    mine = await client.get("/forge/ada/secret")
    assert mine.status_code == 200 and mine.headers["cache-control"].startswith("private")
    cookies = dict(client.cookies)
    client.cookies.clear()
    assert (await client.get("/forge/ada/secret")).status_code == 404  # not the owner's page from a cache
    assert (await client.get("/forge/ada/open")).text == public.text
    client.cookies.update(cookies)
    # Made private, the public copy is gone for everyone else.
    changed = await post_form(client, "/forge/ada/open/settings", {"description": "", "visibility": "private",
                                                                  "default_branch": "main"},
                              page="/forge/ada/open/settings")
    assert changed.status_code == 303, changed.text[:300]
    client.cookies.clear()
    assert (await client.get("/forge/ada/open")).status_code == 404
