"""No dead links (issue 14, item 2): from the home page, its header and its footer, every same-site
link answers, and so does every link of the pages they lead to (one level further), anonymous and
signed in as an administrator (who sees the most links). Sections of domains that are not
installed are not linked at all (every announced domain is installed today: NOT_YET is empty).

The world is the access matrix's (tests/app/test_access_matrix.py): members, a published post,
public and private repositories, a note, an OAuth client, a report.
"""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from httpx import Cookies

from app.installed import INSTALLED
from app.kit import navigation
from tests.app.test_access_matrix import build

pytestmark = pytest.mark.anyio

ORIGIN = "http://127.0.0.1:8000"  # the test client's (tests/conftest.py)
# Announced sections whose packages do not exist yet: their paths must not be linked.
NOT_YET: tuple[str, ...] = ()


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.hrefs.append(href)


def same_site_links(page_url: str, html: str, hosts: set[str]) -> set[str]:
    parser = Links()
    parser.feed(html)
    found: set[str] = set()
    for href in parser.hrefs:
        absolute = urljoin(ORIGIN + page_url, href)
        parts = urlsplit(absolute)
        if parts.scheme not in ("http", "https") or parts.netloc not in hosts:
            continue
        found.add(parts.path + (f"?{parts.query}" if parts.query else ""))
    return found


async def crawl(client, hosts: set[str]) -> tuple[dict[str, int], dict[str, str]]:  # type: ignore[no-untyped-def]
    """Status of every URL reached from the home page within two clicks, and who linked it."""
    statuses: dict[str, int] = {}
    linked_from: dict[str, str] = {}
    frontier = {"/"}
    for _depth in range(3):  # the home page; its links (header, footer, cards); theirs
        following: set[str] = set()
        for url in sorted(frontier - statuses.keys()):
            response = await client.get(url, follow_redirects=True)
            statuses[url] = response.status_code
            if response.headers.get("content-type", "").startswith("text/html"):
                for link in same_site_links(str(response.url.path), response.text, hosts):
                    linked_from.setdefault(link, url)
                    following.add(link)
        frontier = following
    return statuses, linked_from


@pytest.mark.parametrize("who", ["anonymous", "admin"])
async def test_every_link_within_two_clicks_of_home_answers(app, client, db_session, who: str) -> None:  # type: ignore[no-untyped-def]
    world = await build(client, db_session)
    client.cookies = Cookies(world.jars["ada"]) if who == "admin" else Cookies()
    hosts = {urlsplit(ORIGIN).netloc, urlsplit(app.state.settings.base_url).netloc}

    home = (await client.get("/")).text
    for path in NOT_YET:
        assert f'href="{path}"' not in home, f"{path} is linked but its domain is not installed"
    for href, label in navigation(INSTALLED):  # every installed section is reachable from home
        assert f'href="{href}"' in home, label

    statuses, linked_from = await crawl(client, hosts)
    broken = sorted(f"{url} -> {status} (linked from {linked_from.get(url, '-')})"
                    for url, status in statuses.items() if status == 404 or status >= 500)
    print(f"{who}: {len(statuses)} pages crawled")
    assert len(statuses) > 20, sorted(statuses)  # the crawl went somewhere
    assert not broken, "\n".join(broken)


async def test_the_nav_fallback_lists_the_installed_sections(app, client) -> None:  # type: ignore[no-untyped-def]
    """When the nav fragment fails, its fallback shows the same installed sections, not a fixed list."""
    await client.get("/")  # the app has started: its template globals are set
    html = app.template_engine.engine.get_template("fragments/nav_fallback.html").render(link_base="")
    parser = Links()
    parser.feed(html)
    assert parser.hrefs == [href for href, _label in navigation(INSTALLED)]
    for path in NOT_YET:
        assert path not in html


# Every same-origin link of the rendered page (holes filled by htmx), without its fragment.
LINKS_JS = ("JSON.stringify([...new Set([...document.querySelectorAll('a[href]')]"
            ".filter(a => a.origin === location.origin).map(a => a.pathname + a.search))])")
HOLES_FILLED = "document.querySelector('#account-menu') && !document.querySelector('#account-menu[hx-get]')"


def browser_crawl(page: Any, base: str) -> dict[str, int]:
    """Open home and every page it links to in Chromium (JavaScript on); status of every link seen."""
    seen: dict[str, int] = {}
    redirected: set[str] = set()

    def links_here() -> list[str]:
        page.wait_for(HOLES_FILLED)
        found: list[str] = json.loads(page.eval(LINKS_JS))
        for url in found:
            if url not in seen:  # fetch follows redirects, as a click would
                status, moved = page.eval(f"fetch({json.dumps(url)}, {{credentials: 'same-origin'}})"
                                          ".then(r => [r.status, r.redirected])")
                seen[url] = int(status)
                if moved:
                    redirected.add(url)
        return found

    page.goto(base + "/")
    for url in links_here():
        if seen[url] == 200 and url not in redirected and not url.startswith("/static/"):
            page.goto(base + url)
            if page.eval("document.contentType") == "text/html":
                links_here()
    return seen


@pytest.mark.e2e
def test_chromium_finds_no_dead_link_anonymous_or_signed_in(tmp_path: Path, browser_binary: str) -> None:
    from tests.helpers.cdp import chromium
    from tests.helpers.server import app_server

    with app_server(tmp_path, extra_env={"ROSE_ASH_WORKER_IN_PROCESS": "false"}) as server, \
            chromium(tmp_path, browser_binary) as page:
        server.create_user("yara", "correct horse battery staple")
        httpx.get(server.base_url + "/")  # warm up: a cold first render may exceed the inline deadlines
        anonymous = browser_crawl(page, server.base_url)
        page.goto(server.base_url + "/account/login")
        page.eval("document.querySelector('input[name=login]').value = 'yara';"
                  "document.querySelector('input[name=password]').value = 'correct horse battery staple';"
                  "document.querySelector('form[action=\"/account/login\"]').submit()")
        page.wait_for("location.pathname === '/account'")
        signed_in = browser_crawl(page, server.base_url)
    for who, seen in (("anonymous", anonymous), ("signed in", signed_in)):
        assert len(seen) > 10, (who, seen)
        broken = {url: status for url, status in seen.items() if status == 404 or status >= 500}
        assert not broken, f"{who}: {broken}"
    assert "/account/settings/profile" in signed_in  # the signed-in crawl really was signed in
