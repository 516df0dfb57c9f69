"""HEAD is answered like GET without a body (app/head.py, RFC 9110 §9.3.2), through a real server."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.anyio


async def test_head_matches_get_without_body(client) -> None:  # type: ignore[no-untyped-def]
    # Warm: a cold first page may be served degraded (fragment budget), with other headers.
    await client.get("/")
    for url in ("/", "/blog/", "/forge/", "/static/css/site.css", "/healthz"):
        got = await client.get(url)
        head = await client.head(url)
        assert head.status_code == got.status_code == 200, url
        assert head.content == b"", url
        for name in ("content-type", "cache-control", "content-length"):
            assert head.headers.get(name) == got.headers.get(name), (url, name)
        if "etag" in got.headers:
            assert head.headers["etag"] == got.headers["etag"], url


async def test_head_keeps_status_of_private_absent_and_wrong_method(client) -> None:  # type: ignore[no-untyped-def]
    signed_out = await client.head("/account")
    assert signed_out.status_code == (await client.get("/account")).status_code == 303
    assert signed_out.headers["location"] == (await client.get("/account")).headers["location"]
    assert (await client.head("/no/such/page")).status_code == 404
    # A POST-only route: HEAD is refused like GET would be, with the allowed methods named.
    refused = await client.head("/account/logout")
    assert refused.status_code == (await client.get("/account/logout")).status_code
    assert refused.content == b""


async def test_conditional_head_answers_304(client) -> None:  # type: ignore[no-untyped-def]
    await client.get("/")
    etag = (await client.get("/forge/")).headers["etag"]
    again = await client.head("/forge/", headers={"If-None-Match": etag})
    assert again.status_code == 304


async def test_no_request_leaves_a_database_connection_checked_out(client, app) -> None:  # type: ignore[no-untyped-def]
    """Every request's session goes back to the pool, HEAD included.

    HEAD once ran the GET route on a copy of the scope, while the hook that commits and closes the
    request's session looked in the original: each HEAD to a page that opened the session (the
    signed-in session lookup) left its connection to the garbage collector, which on SQLite warns
    "non-checked-in connection" in the server log.
    """
    import gc
    import warnings

    from sqlalchemy.exc import SAWarning

    from tests.helpers.web import post_form, signup

    await signup(client, "alice")
    for name, visibility in (("pubrepo", "public"), ("secret", "private")):
        created = await post_form(client, "/forge/new", {"name": name, "description": "", "default_branch": "main",
                                                         "visibility": visibility}, page="/forge/new")
        assert created.status_code == 303, name
    pool = app.state["alchemy"].get_engine().pool
    urls = ("/forge/alice/pubrepo", "/forge/alice/secret", "/", "/account")
    etags = {url: (await client.get(url)).headers.get("etag") for url in urls}
    gc.collect()
    with warnings.catch_warnings():
        warnings.simplefilter("error", SAWarning)  # a connection the collector has to check in fails here
        for signed_in in (True, False):
            if not signed_in:
                client.cookies.clear()
            for url in urls:
                for method, headers in (("GET", {}), ("HEAD", {}), ("GET", {"If-None-Match": etags[url] or "x"}),
                                        ("HEAD", {"If-None-Match": etags[url] or "x"})):
                    response = await client.request(method, url, headers=headers)
                    assert response.status_code < 500, (method, url)
                    # Checked out still (before any collection) is what a forgotten session looks like.
                    assert pool.checkedout() == 0, (signed_in, method, url, headers)
        gc.collect()


async def test_the_access_log_names_head(client, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    import logging

    logger = logging.getLogger("rose_ash.access")
    logger.addHandler(caplog.handler)  # rose_ash.* does not propagate (app/logs.py)
    try:
        await client.head("/forge/")
    finally:
        logger.removeHandler(caplog.handler)
    lines = [r.getMessage() for r in caplog.records if r.name == "rose_ash.access"]
    assert any(line.startswith("HEAD /forge") for line in lines), lines
    assert not any(line.startswith("GET /forge") for line in lines), lines
