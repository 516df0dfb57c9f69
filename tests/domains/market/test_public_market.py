"""The market's public pages (issue 16 item 5): what visitors, edges and scrapers get.

Every page is the public route class: no session, a weak ETag answered with 304, a
``Surrogate-Key`` naming what it shows. The product page carries schema.org JSON-LD (parsed back
here) and Open Graph tags, its variant picker works as a plain GET (``?variant=`` or option
params) and as an htmx swap of the offer block; old slugs answer 301; drafts and archived products
are absent. Availability is read fresh, and a stock change purges the keys the page carries.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.jobs import Job
from domains.market.schemas import ProductInput, VariantInput
from domains.market.services.catalogue import CatalogueService
from fragments.purge import PURGE_KIND
from tests.domains.market.view_world import World, build, stock

pytestmark = pytest.mark.anyio


@pytest.fixture
def sm(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@pytest.fixture
async def world(sm: async_sessionmaker[AsyncSession]) -> World:
    return await build(sm)


class Head(HTMLParser):
    """The meta properties and JSON-LD scripts of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.meta: dict[str, list[str]] = {}
        self.ld: list[str] = []
        self._in_ld = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "meta" and (a.get("property") or a.get("name")):
            self.meta.setdefault(str(a.get("property") or a.get("name")), []).append(str(a.get("content")))
        self._in_ld = tag == "script" and a.get("type") == "application/ld+json"

    def handle_data(self, data: str) -> None:
        if self._in_ld:
            self.ld.append(data)

    def handle_endtag(self, tag: str) -> None:
        self._in_ld = False


def head_of(html: str) -> Head:
    parser = Head()
    parser.feed(html)
    return parser


def assert_public(response: Any) -> None:
    assert response.status_code == 200, response.text[:500]
    assert "set-cookie" not in response.headers
    cc = response.headers["cache-control"]
    assert cc.startswith("public") and "s-maxage" in cc and "stale-while-revalidate" in cc
    assert response.headers["etag"].startswith('W/"')
    assert response.headers["surrogate-key"]


async def test_index_shows_featured_newest_and_categories(client: Any, world: World) -> None:
    response = await client.get("/market/")
    assert_public(response)
    html = response.text
    assert "Wildflower Honey" in html and "Carrots" in html and "Sourdough Loaf" in html
    assert "Honey Mustard" not in html and "Old Honey" not in html  # draft, archived
    assert 'href="/market/category/preserves"' in html and 'href="/market/category/roots"' not in html  # top level
    assert "market-products" in response.headers["surrogate-key"].split()
    featured = html.split('id="featured-title"')[1].split("</section>")[0]
    assert "Wildflower Honey" in featured and "Carrots" not in featured
    again = await client.get("/market/", headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == response.headers["etag"]
    assert again.headers["surrogate-key"] == response.headers["surrogate-key"]


async def test_product_page_json_ld_and_open_graph(client: Any, world: World) -> None:
    response = await client.get("/market/wildflower-honey")
    assert_public(response)
    keys = response.headers["surrogate-key"].split()
    assert f"market-product:{world.ids['wildflower-honey']}" in keys
    assert f"market-producer:{world.producers['hill-farm']}" in keys
    head = head_of(response.text)
    assert len(head.ld) == 1
    data = json.loads(head.ld[0])
    assert data["@context"] == "https://schema.org" and data["@type"] == "Product"
    assert data["name"] == "Wildflower Honey"
    assert data["brand"] == {"@type": "Brand", "name": "Hill Farm"}
    assert data["url"] == "http://127.0.0.1:8000/market/wildflower-honey"
    offers = {o["sku"]: o for o in data["offers"]}
    assert offers["HONEY-250"]["price"] == "5.00" and offers["HONEY-250"]["priceCurrency"] == "EUR"
    assert offers["HONEY-250"]["availability"] == "https://schema.org/InStock"
    assert offers["HONEY-250"]["gtin"] == "4006381333931"
    assert offers["HONEY-500"]["price"] == "9.00"
    assert offers["HONEY-500"]["availability"] == "https://schema.org/OutOfStock"
    assert "gtin" not in offers["HONEY-500"]
    assert head.meta["og:type"] == ["product"]
    assert head.meta["og:title"] == ["Wildflower Honey"]
    assert head.meta["product:price:amount"] == ["5.00"]  # the chosen (first in-stock) variant
    assert head.meta["product:price:currency"] == ["EUR"]
    assert head.meta["product:availability"] == ["in stock"]
    assert head.meta["og:url"] == ["http://127.0.0.1:8000/market/wildflower-honey"]
    assert 'class="variant-picker" method="get" action="/market/wildflower-honey"' in response.text
    again = await client.get("/market/wildflower-honey", headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304 and again.headers["surrogate-key"] == response.headers["surrogate-key"]


async def test_the_variant_picker_without_javascript(client: Any, world: World) -> None:
    chosen = await client.get("/market/wildflower-honey?variant=HONEY-500")
    assert chosen.status_code == 200
    offer = chosen.text.split('id="offer"')[1].split("</div>")[0]
    assert "€9.00" in offer and "Out of stock" in offer and "HONEY-500" in offer
    assert re.search(r'value="HONEY-500" checked', chosen.text)
    assert head_of(chosen.text).meta["product:availability"] == ["out of stock"]
    by_option = await client.get("/market/wildflower-honey?size=500+g")
    assert "€9.00" in by_option.text.split('id="offer"')[1].split("</div>")[0]
    unknown = await client.get("/market/wildflower-honey?variant=NOPE")  # falls back to the first in stock
    assert "€5.00" in unknown.text.split('id="offer"')[1].split("</div>")[0]


async def test_the_offer_block_for_htmx(client: Any, world: World) -> None:
    response = await client.get("/market/wildflower-honey/offer?variant=HONEY-500", headers={"HX-Request": "true"})
    assert_public(response)
    assert response.text.lstrip().startswith('<div id="offer"')
    assert "€9.00" in response.text and "Out of stock" in response.text and "<html" not in response.text
    assert response.headers["hx-replace-url"] == "/market/wildflower-honey?variant=HONEY-500"
    assert f"market-product:{world.ids['wildflower-honey']}" in response.headers["surrogate-key"].split()


async def test_old_slug_answers_301_and_hidden_products_404(client: Any, sm: Any, world: World) -> None:
    async with sm() as session, session.begin():
        service = CatalogueService(session)
        product = await service.get(world.ids["carrots"])
        assert product is not None
        await service.save(None, ProductInput(
            title="Carrots", slug="orange-carrots", description_md=product.description_md, status="active",
            variants=[VariantInput(id=product.variants[0].id, sku="CARROT-1KG", price_minor=250)]), product=product)
    moved = await client.get("/market/carrots?variant=CARROT-1KG")
    assert moved.status_code == 301
    assert moved.headers["location"] == "/market/orange-carrots?variant=CARROT-1KG"
    assert (await client.get("/market/orange-carrots")).status_code == 200
    for slug in ("honey-mustard", "old-honey", "no-such-thing"):
        assert (await client.get(f"/market/{slug}")).status_code == 404, slug
        assert (await client.get(f"/market/{slug}/offer")).status_code == 404, slug


async def test_category_and_producer_pages(client: Any, world: World) -> None:
    category = await client.get("/market/category/vegetables")
    assert_public(category)
    assert "Carrots" in category.text and "Honey" not in category.text.split("<main")[1].split("</main>")[0]
    assert "market-category:vegetables" in category.headers["surrogate-key"].split()
    producer = await client.get("/market/producer/town-bakery")
    assert_public(producer)
    assert "Sourdough Loaf" in producer.text and "Oat Biscuits" in producer.text and "Carrots" not in producer.text
    assert f"market-producer:{world.producers['town-bakery']}" in producer.headers["surrogate-key"].split()
    assert (await client.get("/market/category/nope")).status_code == 404
    assert (await client.get("/market/producer/nope")).status_code == 404


async def test_availability_follows_stock_and_the_purge_names_the_page_s_keys(client: Any, sm: Any,
                                                                             world: World) -> None:
    page = await client.get("/market/oat-biscuits")
    assert "Out of stock" in page.text.split('id="offer"')[1].split("</div>")[0]
    page_keys = set(page.headers["surrogate-key"].split())
    async with sm() as session:
        before = set((await session.scalars(select(Job.id).where(Job.kind == PURGE_KIND))).all())
    await stock(sm, {"OAT-12": 7})
    async with sm() as session:
        jobs = (await session.scalars(select(Job).where(Job.kind == PURGE_KIND))).all()
    purged = {k for job in jobs if job.id not in before for k in job.payload["keys"]}
    assert f"market-product:{world.ids['oat-biscuits']}" in purged & page_keys
    fresh = await client.get("/market/oat-biscuits", headers={"If-None-Match": page.headers["etag"]})
    assert fresh.status_code == 200  # the ETag moved with the stock
    offer = fresh.text.split('id="offer"')[1].split("</div>")[0]
    assert "In stock" in offer and 'data-available="7"' in offer
    index = await client.get("/market/")
    assert "market-products" in purged and "market-products" in index.headers["surrogate-key"].split()


async def test_hostile_titles_cannot_break_out_of_the_json_ld(client: Any, sm: Any, world: World) -> None:
    title = 'Jam </script><script>alert(1)</script> & "quotes"'
    async with sm() as session, session.begin():
        await CatalogueService(session).save(None, ProductInput(
            title=title, slug="hostile-jam", description_md="<script>alert(2)</script> **Sweet**", status="active",
            variants=[VariantInput(sku="HOSTILE-1", price_minor=100)], producer_id=world.producers["hill-farm"]))
    response = await client.get("/market/hostile-jam")
    assert response.status_code == 200
    assert "<script>alert" not in response.text
    data = json.loads(head_of(response.text).ld[0])
    assert data["name"] == title


@pytest.mark.parametrize("q", ['"', "NEAR(", "*", "x" * 5000, "a:b", "", "   ", "honey"])
async def test_search_page_and_results_never_fail(client: Any, world: World, q: str) -> None:
    for path in ("/market/search", "/market/search/results"):
        response = await client.get(path, params={"q": q})
        assert_public(response)
    results = await client.get("/market/search/results", params={"q": "honey", "in_stock": "1"})
    assert results.text.lstrip().startswith('<section id="search-results"')
    assert results.headers["hx-replace-url"] == "/market/search?q=honey&in_stock=1"
    assert (await client.get("/market/search", params={"cursor": "forged"})).status_code == 400
    bad_price = await client.get("/market/search", params={"q": "honey", "min": "lots"})
    assert bad_price.status_code == 200 and "not an amount" in bad_price.text


async def test_search_pages_by_cursor_link(client: Any, sm: Any, world: World) -> None:
    for i in range(30):
        async with sm() as session, session.begin():
            await CatalogueService(session).save(None, ProductInput(
                title=f"Jar {i}", status="active", variants=[VariantInput(sku=f"JAR-{i}", price_minor=100 + i)],
                producer_id=world.producers["hill-farm"], tags=["jar"]))
    seen: list[str] = []
    url = "/market/search?q=jar"
    while url:
        response = await client.get(url)
        assert response.status_code == 200
        seen += re.findall(r'class="product-card-title"><a href="/market/(jar-\d+)"', response.text)
        found = re.search(r'<a rel="next" href="([^"]+)"', response.text)
        url = found.group(1).replace("&amp;", "&") if found else ""
    assert len(seen) == 30 and len(set(seen)) == 30


def _forge(payload: list[Any]) -> str:
    import base64

    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


@pytest.mark.parametrize("payload", [
    [1, "2020-01-01T00:00:00", "00000000-0000-0000-0000-000000000000"],  # naive time: was a 500
    [2**31 + 1, "", "00000000-0000-0000-0000-000000000000"],
    [-1, "2020-01-01T00:00:00+00:00", "00000000-0000-0000-0000-000000000000"],
    [10**30, "", "00000000-0000-0000-0000-000000000000"],
])
async def test_forged_cursor_is_400_everywhere(client: Any, world: World, payload: list[Any]) -> None:
    cursor = _forge(payload)
    for path in ("/market/search", "/market/search/results", "/market/category/vegetables",
                 "/market/producer/town-bakery"):
        response = await client.get(path, params={"q": "honey", "cursor": cursor})
        assert response.status_code == 400, (path, response.status_code)
