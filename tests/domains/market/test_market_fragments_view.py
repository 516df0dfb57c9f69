"""Market fragments and embeds (issue 16 item 8): ``market.latest`` (``/embed/market``),
``market.product-card`` (``/embed/market-product``) and ``market.page`` (``/embed/market-page``),
rendered by the one registry path, inlined on the home page, anonymous and CORS-open as embeds."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from domains.market.pages import MarketPageService, PageForm
from tests.domains.market.view_world import World, build

pytestmark = pytest.mark.anyio


@pytest.fixture
def sm(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@pytest.fixture
async def world(sm: async_sessionmaker[AsyncSession]) -> World:
    return await build(sm)


def shared(response: Any) -> None:
    assert response.status_code == 200
    assert "set-cookie" not in response.headers
    assert response.headers["etag"].startswith('W/"')
    assert "s-maxage" in response.headers["cache-control"]


async def test_latest_fragment_and_its_embed(client: Any, world: World) -> None:
    fragment = await client.get("/f/market/latest?limit=3")
    shared(fragment)
    assert fragment.headers["surrogate-key"] == "market-products"
    assert fragment.text.count('class="product-card"') == 3 and "Wildflower Honey" in fragment.text
    assert 'href="/market/wildflower-honey"' in fragment.text and "srcset" not in fragment.text  # no images yet
    again = await client.get("/f/market/latest?limit=3", headers={"If-None-Match": fragment.headers["etag"]})
    assert again.status_code == 304
    embed = await client.get("/embed/market")
    assert embed.status_code == 200 and embed.headers["access-control-allow-origin"] == "*"
    assert embed.headers["cross-origin-resource-policy"] == "cross-origin"
    assert "access-control-allow-credentials" not in embed.headers
    assert 'href="http://127.0.0.1:8000/market/wildflower-honey"' in embed.text  # absolute on other sites
    frame = await client.get("/embed/market/frame")
    assert frame.status_code == 200 and "frame-ancestors *" in frame.headers["content-security-policy"]
    assert "x-frame-options" not in frame.headers


async def test_product_card_fragment_and_embed(client: Any, world: World) -> None:
    card = await client.get("/f/market/product-card?slug=wildflower-honey")
    shared(card)
    assert card.headers["surrogate-key"] == f"market-product:{world.ids['wildflower-honey']}"
    assert "€5.00" in card.text and "€9.00" in card.text and "In stock" in card.text
    embed = await client.get("/embed/market-product?slug=oat-biscuits")
    assert embed.status_code == 200 and "Out of stock" in embed.text
    assert embed.headers["access-control-allow-origin"] == "*"
    hidden = await client.get("/f/market/product-card?slug=honey-mustard")  # a draft: absent
    assert hidden.status_code == 200 and "not available" in hidden.text and "Honey Mustard" not in hidden.text


async def test_page_fragment(client: Any, sm: Any, world: World) -> None:
    async with sm() as session, session.begin():
        await MarketPageService(session).save(PageForm(title="Saturday market", slug="saturday-market",
                                                       products="oat-biscuits\ncarrots", published="1"))
    fragment = await client.get("/f/market/page?slug=saturday-market")
    shared(fragment)
    assert fragment.text.index("Oat Biscuits") < fragment.text.index("Carrots")
    keys = fragment.headers["surrogate-key"].split()
    assert any(k.startswith("market-page:") for k in keys)
    assert f"market-product:{world.ids['carrots']}" in keys
    embed = await client.get("/embed/market-page?slug=saturday-market")
    assert embed.status_code == 200 and "Oat Biscuits" in embed.text
    missing = await client.get("/f/market/page?slug=nope")
    assert missing.status_code == 200 and "not available" in missing.text


async def test_the_home_page_shows_the_market(client: Any, world: World) -> None:
    home = await client.get("/")
    assert home.status_code == 200
    assert "New at the market" in home.text and "Wildflower Honey" in home.text
    assert "market-products" in home.headers["surrogate-key"].split()
