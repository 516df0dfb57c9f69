"""Market pages (issue 16 item 4): staff curate them, visitors see them, edges cache and purge them.

Through HTTP as an administrator: a hand-picked page keeps its order and leaves out products that
are not public; a saved-filter page shows what the search would; bad input is a 422 naming each
problem with nothing written; members who are not staff get 403. Each page is public and
edge-cacheable with its own keys, and every change to it, or to a product it shows, purges a key
the page carries.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from httpx import Cookies
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.jobs import Job
from domains.account.models import User
from domains.market.page_models import MarketPage, MarketPageItem
from domains.market.services.catalogue import CatalogueService
from fragments.purge import PURGE_KIND
from tests.domains.market.view_world import World, build, stock
from tests.helpers.web import post_form, signup

pytestmark = pytest.mark.anyio

FORM = "/market/admin/pages/new"


@pytest.fixture
def sm(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@pytest.fixture
async def world(sm: async_sessionmaker[AsyncSession]) -> World:
    return await build(sm)


@pytest.fixture
async def staff(client: Any, sm: async_sessionmaker[AsyncSession]) -> Cookies:
    assert (await signup(client, "ada")).status_code == 303
    async with sm() as session, session.begin():
        await session.execute(update(User).where(User.username == "ada").values(is_admin=True))
    return Cookies(client.cookies)


async def purges(sm: Any, change: Any) -> set[str]:
    async with sm() as session:
        before = set((await session.scalars(select(Job.id).where(Job.kind == PURGE_KIND))).all())
    await change()
    async with sm() as session:
        jobs = (await session.scalars(select(Job).where(Job.kind == PURGE_KIND))).all()
    return {k for job in jobs if job.id not in before for k in job.payload["keys"]}


def titles(html: str) -> list[str]:
    return re.findall(r'class="product-card-title"><a href="/market/([^"]+)"', html)


async def test_a_hand_picked_page(client: Any, sm: Any, world: World, staff: Cookies) -> None:
    async def create() -> None:
        response = await post_form(client, "/market/admin/pages/", {
            "title": "Saturday Market", "slug": "saturday-market", "intro": "Come **early**. <script>x</script>",
            "starts_on": "2026-12-12", "ends_on": "2026-12-12", "place": "The Green", "mode": "list",
            "products": "carrots\n/market/oat-biscuits\nhoney-mustard\nwildflower-honey", "published": "1",
        }, page=FORM)
        assert response.status_code == 303, response.text[:2000]
        assert response.headers["location"] == "/market/admin/pages/saturday-market"

    purged = await purges(sm, create)
    async with sm() as session:
        page = (await session.execute(select(MarketPage))).scalar_one()
    assert {f"market-page:{page.id}", "market-pages"} <= purged

    client.cookies = Cookies()  # a visitor
    listing = await client.get("/market/pages/")
    assert listing.status_code == 200 and "Saturday Market" in listing.text and "The Green" in listing.text
    assert "market-pages" in listing.headers["surrogate-key"].split()
    response = await client.get("/market/pages/saturday-market")
    assert response.status_code == 200 and "set-cookie" not in response.headers
    assert response.headers["etag"].startswith('W/"') and "s-maxage" in response.headers["cache-control"]
    assert titles(response.text) == ["carrots", "oat-biscuits", "wildflower-honey"]  # the draft is left out
    assert "<strong>early</strong>" in response.text and "<script>x" not in response.text
    assert "Sat 12 December 2026" in response.text
    keys = set(response.headers["surrogate-key"].split())
    assert {f"market-page:{page.id}", f"market-product:{world.ids['carrots']}",
            f"market-product:{world.ids['wildflower-honey']}"} <= keys
    # The draft is not shown, but publishing it must purge the page: its key is there too.
    assert f"market-product:{world.ids['honey-mustard']}" in keys
    # A stock change of a product on the page purges a key the page carries.
    stocked = await purges(sm, lambda: stock(sm, {"CARROT-1KG": 1}))
    assert stocked & keys
    again = await client.get("/market/pages/saturday-market", headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304


async def test_a_saved_filter_page(client: Any, sm: Any, world: World, staff: Cookies) -> None:
    response = await post_form(client, "/market/admin/pages/", {
        "title": "Bakery stall", "mode": "filter", "filter_category": "bakery", "filter_in_stock": "1",
        "published": "1", "filter_limit": "10"}, page=FORM)
    assert response.status_code == 303, response.text[:2000]
    client.cookies = Cookies()
    page = await client.get("/market/pages/bakery-stall")
    assert titles(page.text) == ["sourdough-loaf"]  # the biscuits are out of stock
    assert "market-products" in page.headers["surrogate-key"].split()
    await stock(sm, {"OAT-12": 3})
    assert titles((await client.get("/market/pages/bakery-stall")).text) == ["sourdough-loaf", "oat-biscuits"]


async def test_bad_input_is_422_and_writes_nothing(client: Any, sm: Any, world: World, staff: Cookies) -> None:
    response = await post_form(client, "/market/admin/pages/", {
        "title": "", "slug": "Not A Slug", "starts_on": "2026-12-12", "ends_on": "2026-12-01", "mode": "list",
        "products": "carrots\nno-such-product", "filter_category": "nope", "filter_limit": "0"}, page=FORM)
    assert response.status_code == 422
    for message in ("Give the page a title", "lower-case letters", "before the start date", "no-such-product",
                    "no such category", "from 1 to 60"):
        assert message.lower() in response.text.lower(), message
    async with sm() as session:
        assert (await session.scalar(select(func.count()).select_from(MarketPage))) == 0
        assert (await session.scalar(select(func.count()).select_from(MarketPageItem))) == 0
    ok = await post_form(client, "/market/admin/pages/", {"title": "Box", "slug": "box", "mode": "list"}, page=FORM)
    assert ok.status_code == 303
    taken = await post_form(client, "/market/admin/pages/", {"title": "Box", "slug": "box", "mode": "list"}, page=FORM)
    assert taken.status_code == 422 and "box-2" in taken.text


async def test_edit_unpublish_delete_and_who_may(client: Any, sm: Any, world: World, staff: Cookies) -> None:
    assert (await post_form(client, "/market/admin/pages/", {
        "title": "Winter box", "slug": "winter-box", "mode": "list", "products": "carrots", "published": "1"},
        page=FORM)).status_code == 303
    edit = await client.get("/market/admin/pages/winter-box")
    assert edit.status_code == 200 and "carrots" in edit.text and "private" in edit.headers["cache-control"]
    saved = await post_form(client, "/market/admin/pages/winter-box", {
        "title": "Winter box", "slug": "winter-box", "mode": "list", "products": "wildflower-honey\ncarrots"},
        page="/market/admin/pages/winter-box")
    assert saved.status_code == 303
    jar = Cookies(client.cookies)
    client.cookies = Cookies()
    assert (await client.get("/market/pages/winter-box")).status_code == 404  # unpublished looks absent
    assert (await signup(client, "bob")).status_code == 303
    assert (await client.get("/market/admin/pages/")).status_code == 403
    client.cookies = Cookies()
    assert (await client.get("/market/admin/pages/")).status_code in (302, 303, 401)
    client.cookies = jar
    deleted = await post_form(client, "/market/admin/pages/winter-box/delete", {},
                              page="/market/admin/pages/winter-box")
    assert deleted.status_code == 303
    async with sm() as session:
        assert (await session.scalar(select(func.count()).select_from(MarketPage))) == 0


async def test_archiving_a_product_purges_the_page_that_shows_it(client: Any, sm: Any, world: World,
                                                                 staff: Cookies) -> None:
    assert (await post_form(client, "/market/admin/pages/", {
        "title": "Honey week", "mode": "list", "products": "wildflower-honey", "published": "1"},
        page=FORM)).status_code == 303
    client.cookies = Cookies()
    page = await client.get("/market/pages/honey-week")
    keys = set(page.headers["surrogate-key"].split())

    async def archive() -> None:
        async with sm() as session, session.begin():
            service = CatalogueService(session)
            product = await service.get(world.ids["wildflower-honey"])
            assert product is not None
            await service.set_status(None, product, "archived")

    assert (await purges(sm, archive)) & keys
    assert titles((await client.get("/market/pages/honey-week")).text) == []
