"""The admin home (issue 14 item 8): ``/admin`` for administrators, absent (404) for everybody
else; its sidebar lists every installed domain's administration pages and nothing else, each
answers an administrator, and each carries the one tab component with itself marked current."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from httpx import Cookies

from app.installed import INSTALLED
from app.kit import Domain, NavEntry, admin_pages
from tests.app.test_access_matrix import build

pytestmark = pytest.mark.anyio


class NavLinks(HTMLParser):
    """The links inside the first ``<nav>`` with the given class, and which one is current."""

    def __init__(self, cls: str) -> None:
        super().__init__()
        self.cls, self.depth, self.done = cls, 0, False
        self.hrefs: list[str] = []
        self.current: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "nav" and not self.done and self.cls in (a.get("class") or "").split():
            self.depth = 1
        elif self.depth and tag == "a" and a.get("href"):
            self.hrefs.append(a["href"] or "")
            if a.get("aria-current") == "page":
                self.current.append(a["href"] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "nav" and self.depth:
            self.depth, self.done = 0, True


class AllTabs(HTMLParser):
    """The links of every ``<nav class="tabs">`` on a page, and how many such navs there are."""

    def __init__(self) -> None:
        super().__init__()
        self.inside, self.navs = False, 0
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "nav" and "tabs" in (a.get("class") or "").split():
            self.inside, self.navs = True, self.navs + 1
        elif self.inside and tag == "a" and a.get("href"):
            self.hrefs.append(a["href"] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "nav":
            self.inside = False


def nav_links(html: str, cls: str) -> NavLinks:
    parser = NavLinks(cls)
    parser.feed(html)
    return parser


def test_admin_pages_follow_the_installed_domains() -> None:
    mail = Domain(name="mail", admin=(NavEntry("/mail/admin", "Mail", 50),))
    assert ("/mail/admin", "Mail") not in admin_pages(INSTALLED)
    assert admin_pages((*INSTALLED, mail))[-1] == ("/mail/admin", "Mail")
    hrefs = [href for href, _label in admin_pages(INSTALLED)]
    assert {"/account/admin/users", "/account/admin/audit", "/account/admin/mail", "/account/admin/newsletters",
            "/account/newsletters/campaigns", "/blog/admin/",
            "/blog/admin/navigation", "/oauth/admin/clients", "/social/admin/domain-blocks",
            "/social/admin/reports", "/market/admin/",
            "/market/admin/pages/", "/events/admin/",
            "/events/admin/calendars", "/cart/admin/orders/"} == set(hrefs)


async def test_admin_home_and_every_sidebar_link(client, db_session) -> None:  # type: ignore[no-untyped-def]
    world = await build(client, db_session)
    client.cookies = Cookies()
    anonymous = await client.get("/admin")
    assert anonymous.status_code in (302, 303) and anonymous.headers["location"].startswith("/account/login?")
    for member in ("alice", "bob"):  # an author and a plain member: no such page
        client.cookies = Cookies(world.jars[member])
        absent = await client.get("/admin")
        assert absent.status_code == 404, member
        assert "Administration" not in absent.text

    client.cookies = Cookies(world.jars["ada"])
    home = await client.get("/admin")
    assert home.status_code == 200 and home.headers["content-type"] == "text/html; charset=utf-8"
    sidebar = nav_links(home.text, "admin-sidebar")
    assert sidebar.hrefs == ["/admin", *(href for href, _ in admin_pages(INSTALLED))]
    assert sidebar.current == ["/admin"]
    # Each page answers an administrator, and shows the admin tabs with itself current.
    for href in sidebar.hrefs[1:]:
        page = await client.get(href)
        assert page.status_code == 200, href
        tabs = nav_links(page.text, "tabs")
        assert tabs.hrefs == sidebar.hrefs, href
        assert tabs.current == [href], href
    # A page below a section's root keeps that section's tab current (the longest matching tab).
    for below, section in (("/market/admin/new", "/market/admin/"), ("/market/admin/pages/new", "/market/admin/pages/"),
                           ("/events/admin/new", "/events/admin/")):
        page = await client.get(below)
        assert page.status_code == 200, below
        assert nav_links(page.text, "tabs").current == [section], below
    # Beside the market's own tabs, the site's tabs do not link the market's low-stock and import
    # pages a second time: one tab for each page on the screen.
    for below in ("/market/admin/", "/market/admin/low-stock", "/market/admin/import", "/market/admin/new"):
        page = await client.get(below)
        links = AllTabs()
        links.feed(page.text)
        assert links.navs == 2, below  # the site's and the market's
        for href in ("/market/admin/low-stock", "/market/admin/import"):
            assert links.hrefs.count(href) == 1, (below, href, links.hrefs)
    # The dashboard leads an administrator there; a member's does not.
    assert 'href="/admin"' in (await client.get("/account")).text
    client.cookies = Cookies(world.jars["bob"])
    assert 'href="/admin"' not in (await client.get("/account")).text
