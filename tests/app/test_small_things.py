"""Small things of issue 14 item 10 that a page shows: one h1 and no skipped heading level on the
blog's index, tag and author pages; copyable values (clone URL, embed snippets) are readonly fields
reachable by keyboard, with a Copy button that JavaScript reveals; mirror intervals in words."""

from __future__ import annotations

import re
from itertools import pairwise

import pytest
from httpx import Cookies

from tests.app.test_access_matrix import build

pytestmark = pytest.mark.anyio
HEADING = re.compile(r"<h([1-6])\b")


def outline_problems(html: str) -> list[str]:
    levels = [int(n) for n in HEADING.findall(html)]
    problems = [] if levels.count(1) == 1 else [f"{levels.count(1)} h1"]
    problems += [f"h{a} → h{b}" for a, b in pairwise(levels) if b > a + 1]
    return problems


async def test_blog_listing_headings_and_copyable_values(client, db_session) -> None:  # type: ignore[no-untyped-def]
    world = await build(client, db_session)
    client.cookies = Cookies()
    for path in ("/blog/", "/blog/tag/news", "/blog/author/alice"):
        page = await client.get(path)
        assert page.status_code == 200 and "Hello world" in page.text, path
        assert outline_problems(page.text) == [], path

    repo = (await client.get("/forge/alice/pub")).text
    assert re.search(r'<input id="clone-url" class="clone-url" readonly value="[^"]+/forge/alice/pub.git">', repo)
    assert 'data-copy="clone-url" hidden>Copy</button>' in repo

    embed = (await client.get("/embed")).text
    snippets = re.findall(r'<textarea id="(snippet-[a-z0-9.-]+)" class="snippet" readonly', embed)
    assert snippets and all(f'data-copy="{s}" hidden>Copy</button>' in embed for s in snippets)
    assert all(f'<label for="{s}">' in embed for s in snippets)  # named, and a Tab stop (a textarea)

    client.cookies = Cookies(world.jars["alice"])
    settings = (await client.get("/forge/alice/pub/settings")).text
    assert '<option value="3600" selected>every hour</option>' in settings
    assert 'class="danger-zone"' in settings


def test_outline_problems_sees_skips() -> None:
    assert outline_problems("<h1>a</h1><h3>b</h3>") == ["h1 → h3"]
    assert outline_problems("<h2>a</h2>") == ["0 h1"]
    assert outline_problems("<h1>a</h1><h2>b</h2><h3>c</h3><h2>d</h2>") == []
