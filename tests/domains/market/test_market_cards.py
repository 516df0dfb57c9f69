"""Card-only loading (domains/market/cards.py, issue 16): one query, the same cards and bytes.

Every list that shows only cards (search, category and producer listings, the index, market pages
and the fragments) now reads ``load_cards``. The reference is the path it replaces: full
``ProductRead`` objects through ``fragments.load_reads`` and ``fragments.card``. On the view
fixture plus images (two on one product, out of position order, one without alt text) both give
the same dicts and revisions, relative and absolute; availability follows the registered
reservation terms (the cart's) exactly as the catalogue's does; and the pages render to the same
bytes either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import ColumnElement, literal
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from domains.market import cards as cards_module
from domains.market import controllers, fragments
from domains.market.cards import Card, load_cards
from domains.market.fragments import card, load_reads
from domains.market.models import Media, ProductImage
from domains.market.services.stock import register_reserved, unregister_reserved
from tests.domains.market.view_world import World, build

pytestmark = pytest.mark.anyio


@pytest.fixture
def sm(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@pytest.fixture
async def world(sm: async_sessionmaker[AsyncSession]) -> World:
    world = await build(sm)
    async with sm() as session, session.begin():
        media = [Media(sha256=f"{n:064x}", format=fmt, width=1200, height=800, byte_size=1000, widths=widths)
                 for n, fmt, widths in ((1, "jpeg", [320, 640, 1200]), (2, "webp", [320]), (3, "png", []))]
        session.add_all(media)
        await session.flush()
        honey, loaf = world.ids["wildflower-honey"], world.ids["sourdough-loaf"]
        session.add_all([
            ProductImage(product_id=honey, media_id=media[1].id, position=1, alt="The second jar"),
            ProductImage(product_id=honey, media_id=media[0].id, position=0, alt="A jar in the sun"),
            ProductImage(product_id=loaf, media_id=media[2].id, position=0, alt=""),  # alt falls back to the title
        ])
    return world


async def reference(session: AsyncSession, ids: Sequence[UUID], *, link_base: str = "",
                    active_only: bool = True) -> list[Card]:
    """What the lists did before: full ProductReads, then ``card``."""
    reads = await load_reads(session, ids, active_only=active_only)
    return [Card(id=r.id, revision=r.revision, data=card(r, link_base)) for r in reads]


@pytest.mark.parametrize("link_base", ["", "http://127.0.0.1:8000"])
@pytest.mark.parametrize("active_only", [True, False])
async def test_the_same_cards_as_the_product_reads(sm: Any, world: World, link_base: str, active_only: bool) -> None:
    ids = [*world.ids.values(), world.ids["carrots"], world.producers["hill-farm"]]  # a repeat, an unknown id
    async with sm() as session:
        new = await load_cards(session, ids, link_base=link_base, active_only=active_only)
        old = await reference(session, ids, link_base=link_base, active_only=active_only)
    assert new == old
    assert len(new) == (5 if active_only else 7)  # 4 active (6 in all), carrots twice
    honey = new[0].data
    assert honey["price"] == "€5.00 - €9.00" and honey["in_stock"] is True
    assert honey["image"]["alt"] == "A jar in the sun"
    assert honey["image"]["srcset"].count(f"{link_base}/media/") == 3
    assert new[1].data["image"]["alt"] == "Sourdough Loaf"


async def test_no_ids_is_no_query_and_no_cards(sm: Any, world: World) -> None:
    async with sm() as session:
        assert await load_cards(session, []) == []


async def test_availability_counts_registered_reservations(sm: Any, world: World) -> None:
    def three_reserved(variant_id: Any) -> ColumnElement[int]:
        return literal(3)

    ids = [world.ids["wildflower-honey"], world.ids["sourdough-loaf"]]
    async with sm() as session:  # the statement is built and kept before the cart registers its term
        assert [c.data["in_stock"] for c in await load_cards(session, ids)] == [True, True]
    register_reserved(three_reserved)
    try:
        async with sm() as session:
            new = await load_cards(session, ids)
            assert new == await reference(session, ids)
    finally:
        unregister_reserved(three_reserved)
    assert [c.data["in_stock"] for c in new] == [True, False]  # 10 - 3 left of the honey, 3 - 3 of the loaf


PAGES = ["/market/search?q=honey", "/market/search?q=", "/market/search/results?q=o", "/market/",
         "/market/category/bakery", "/market/producer/hill-farm", "/f/market/latest?limit=6",
         "/embed/market?limit=6", "/f/market/product-card?slug=wildflower-honey",
         "/f/market/product-card?slug=honey-mustard", "/embed/market-product?slug=sourdough-loaf"]


async def test_pages_render_the_same_bytes(client: Any, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    new = [(await client.get(path)) for path in PAGES]
    monkeypatch.setattr(controllers, "load_cards", reference)
    monkeypatch.setattr(fragments, "load_cards", reference)
    old = [(await client.get(path)) for path in PAGES]
    for path, a, b in zip(PAGES, new, old, strict=True):
        assert a.status_code == b.status_code == 200, path
        assert a.content == b.content, path
        assert a.headers["etag"] == b.headers["etag"], path
    assert b"A jar in the sun" in new[0].content and b"-640.jpeg 640w" in new[0].content
    assert cards_module.load_cards is load_cards  # the patch reached only the call sites
