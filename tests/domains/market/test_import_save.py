"""Listing import through the browser's forms: read a fixture shop's page on loopback, review the
proposed draft, save it (images fetched through the guarded client and stored by the media
service), and every refusal writing nothing (issue 16 item 7). Both databases."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.settings import Settings
from domains.market.models import Media, Product, ProductImage, StockLevel, Variant
from tests.domains.market.conftest import form_token, make_producer
from tests.domains.market.shop_server import ShopServer, shop_server

pytestmark = pytest.mark.anyio

FIELD = re.compile(r'<(?:input|textarea)[^>]*name="([^"]+)"[^>]*?(?:value="([^"]*)")?[^>]*>(?:([^<]*)</textarea>)?')


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The test allowance (loopback only, as the federation tests use it); GBP like the fixture shops.
    return msgspec.structs.replace(settings, federation_allow_private_addresses=True, market_currency="GBP")


@pytest.fixture
def shop() -> Iterator[ShopServer]:
    with shop_server() as server:
        yield server


def review_fields(html: str) -> dict[str, Any]:
    """The review form as a browser would submit it: inputs (checked boxes only) and textareas."""
    import html as html_lib

    data: dict[str, Any] = {}
    for tag in re.findall(r"<input[^>]*>", html):
        name = re.search(r'name="([^"]+)"', tag)
        if not name:
            continue
        value = re.search(r'value="([^"]*)"', tag)
        if 'type="checkbox"' in tag and "checked" not in tag:
            continue
        text = html_lib.unescape(value.group(1)) if value else ""
        key = name.group(1)
        if key in data:
            data[key] = [*(data[key] if isinstance(data[key], list) else [data[key]]), text]
        else:
            data[key] = text
    for name, body in re.findall(r'<textarea[^>]*name="([^"]+)"[^>]*>(.*?)</textarea>', html, re.S):
        data[name] = html_lib.unescape(body)
    data["status"] = "draft"
    return data


async def read_page(client: Any, url: str) -> Any:
    token = await form_token(client, "/market/admin/import")
    return await client.post("/market/admin/import/url", data={"url": url, "_csrf_token": token})


async def count(sessionmaker: async_sessionmaker[AsyncSession], model: Any) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_shopify_page_reviewed_and_saved(client: Any, sessionmaker: async_sessionmaker[AsyncSession],
                                               shop: ShopServer) -> None:
    await make_producer(client, sessionmaker)
    review = await read_page(client, shop.url("/shopify.html"))
    assert review.status_code == 200, review.text[:500]
    assert 'value="Heritage Apple Juice"' in review.text
    assert 'value="OLF-JUICE-75-COX"' in review.text and 'value="4.50"' in review.text
    assert await count(sessionmaker, Product) == 0  # reading proposes; it writes nothing
    fields = review_fields(review.text)
    fields["v0_stock"] = "12"
    response = await client.post("/market/admin/import/save", data=fields)
    assert response.status_code == 303, response.text[:2000]
    async with sessionmaker() as session:
        product = (await session.scalars(select(Product))).one()
        assert product.title == "Heritage Apple Juice" and product.status == "draft"
        assert product.source_url == shop.url("/shopify.html")
        assert "<strong>heritage</strong>" in product.description_html
        assert product.tags == ["Orchard Lane Farm"]
        variants = (await session.scalars(select(Variant).order_by(Variant.position))).all()
        assert [(v.sku, v.price_minor, v.currency, v.options, v.barcode) for v in variants] == [
            ("OLF-JUICE-75-COX", 450, "GBP", {"size": "75cl", "color": "Cox"}, "5012345678900"),
            ("OLF-JUICE-75-BRA", 475, "GBP", {"size": "75cl", "color": "Bramley"}, "5012345678917"),
            ("OLF-JUICE-3L-COX", 1500, "GBP", {"size": "3 litre box", "color": "Cox"}, "5012345678924"),
        ]
        stock = (await session.scalars(select(StockLevel).where(StockLevel.variant_id == variants[0].id))).one()
        assert stock.on_hand == 12
        images = (await session.scalars(select(ProductImage).order_by(ProductImage.position))).all()
        assert len(images) == 3
        assert await session.scalar(select(func.count()).select_from(Media)) >= 2  # content-addressed: same bytes once
    assert {"/cdn/shop/files/juice-front.png", "/cdn/shop/files/juice-box.png"} <= set(shop.hits)

    # Importing the same page again updates that product instead of adding another.
    again = review_fields((await read_page(client, shop.url("/shopify.html"))).text)
    again["title"] = "Heritage Apple Juice (2026 pressing)"
    again["v1_price"] = "4.95"
    assert (await client.post("/market/admin/import/save", data=again)).status_code == 303
    async with sessionmaker() as session:
        product = (await session.scalars(select(Product))).one()
        assert product.title == "Heritage Apple Juice (2026 pressing)"
        prices = dict((await session.execute(select(Variant.sku, Variant.price_minor))).all())
        assert prices["OLF-JUICE-75-BRA"] == 495 and len(prices) == 3


@pytest.mark.parametrize("page", ["woocommerce.html", "opengraph.html", "shopify_offers.html"])
async def test_other_platforms_saved(page: str, client: Any, sessionmaker: async_sessionmaker[AsyncSession],
                                     shop: ShopServer) -> None:
    await make_producer(client, sessionmaker)
    review = await read_page(client, shop.url(f"/{page}"))
    assert review.status_code == 200, review.text[:500]
    fields = review_fields(review.text)
    if page == "shopify_offers.html":  # priced in EUR on a GBP market: the producer enters GBP prices
        assert "priced in EUR" in review.text
        fields["v0_price"], fields["v1_price"] = "10.00", "19.00"
    response = await client.post("/market/admin/import/save", data=fields)
    assert response.status_code == 303, response.text[:2000]
    async with sessionmaker() as session:
        product = (await session.scalars(select(Product))).one()
        assert product.title in {"Wildflower Honey", "Hand-thrown mug", "Beeswax Candle"}
        assert await session.scalar(select(func.count()).select_from(ProductImage)) >= 1


async def test_hostile_page_saved_clean(client: Any, sessionmaker: async_sessionmaker[AsyncSession],
                                        shop: ShopServer) -> None:
    await make_producer(client, sessionmaker)
    review = await read_page(client, shop.url("/hostile.html"))
    assert review.status_code == 200
    for bad in ("<script", "onerror=", "onclick=", "javascript:alert", "evil.test"):
        assert bad not in review.text.lower().replace('<script defer src="/static', "")
    assert "EVIL-HUGE" in review.text  # named in the warnings: skipped, not silently dropped
    fields = review_fields(review.text)
    response = await client.post("/market/admin/import/save", data=fields)
    assert response.status_code == 303, response.text[:1500]
    async with sessionmaker() as session:
        product = (await session.scalars(select(Product))).one()
        for bad in ("<script", "onerror", "onclick", "javascript:", "<iframe", "<style", "<img"):
            assert bad not in product.description_html.lower()
            assert bad not in product.title.lower()
        assert sorted((await session.scalars(select(Variant.sku))).all()) == ["EVIL-1", "EVIL-TAG"]


@pytest.mark.parametrize(("url", "message"), [
    ("http://10.0.0.7/products/x", "not on the public internet"),
    ("ftp://127.0.0.1/x", "Only http:// and https://"),
])
async def test_refusals_write_nothing(url: str, message: str, client: Any,
                                      sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    await make_producer(client, sessionmaker)
    response = await read_page(client, url)
    assert response.status_code == 422
    assert message in response.text and "Nothing was saved" in response.text
    assert await count(sessionmaker, Product) == 0


async def test_redirect_to_private_refused(client: Any, sessionmaker: async_sessionmaker[AsyncSession],
                                           shop: ShopServer) -> None:
    await make_producer(client, sessionmaker)
    response = await read_page(client, shop.url("/redirect-private"))
    assert response.status_code == 422 and "not on the public internet" in response.text


async def test_bad_image_or_price_writes_nothing(client: Any, sessionmaker: async_sessionmaker[AsyncSession],
                                                 shop: ShopServer) -> None:
    await make_producer(client, sessionmaker)
    fields = review_fields((await read_page(client, shop.url("/woocommerce.html"))).text)
    fields["images"] = [shop.url("/not-an-image.png")]  # says PNG, is HTML: the media service refuses it
    fields["offered_images"] = fields["images"]
    response = await client.post("/market/admin/import/save", data=fields)
    assert response.status_code == 422 and "Untick it" in response.text
    fields["images"] = []
    fields["v0_price"] = "-3"
    response = await client.post("/market/admin/import/save", data=fields)
    assert response.status_code == 422 and "enter a price like 12.50" in response.text
    assert await count(sessionmaker, Product) == 0
    assert await count(sessionmaker, Media) == 0


async def test_not_a_producer(client: Any, sessionmaker: async_sessionmaker[AsyncSession], shop: ShopServer) -> None:
    await make_producer(client, sessionmaker, producer=False)
    assert (await client.get("/market/admin/import")).status_code == 403
