"""Market fragments: the newest products (embeddable at ``/embed/market``), one product card
(``/embed/market-product?slug=``) and a market page's products (``/embed/market-page?slug=``),
through the fragment registry (design/fragments.md §4). The card data here is also what the public
pages (controllers.py) render, so a card looks the same everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from domains.market import keys
from domains.market.cards import load_cards
from domains.market.models import ACTIVE, Product
from domains.market.page_models import FILTER
from domains.market.schemas import ProductRead
from domains.market.services.catalogue import CatalogueService, with_relations
from fragments.purge import SurrogateKey
from fragments.registry import FragmentContext, FragmentData, fragment

__all__ = ["card", "load_reads", "page_keys", "seed_of"]


def _absolute(url: str, link_base: str) -> str:
    return link_base + url if link_base and url.startswith("/") else url


def card(product: ProductRead, link_base: str = "") -> dict[str, Any]:
    """What a product card shows: plain data, links absolute when ``link_base`` is set (embeds)."""
    image = product.images[0] if product.images else None
    in_stock = any(v.available > 0 for v in product.variants)
    return {
        "id": str(product.id), "title": product.title, "slug": product.slug,
        "url": _absolute(f"/market/{product.slug}", link_base),
        "price": product.price_range, "in_stock": in_stock,
        "producer": {"name": product.producer.name,
                     "url": _absolute(f"/market/producer/{product.producer.slug}", link_base)},
        "image": {
            "src": _absolute(image.url, link_base),
            "srcset": ", ".join(_absolute(part.strip(), link_base) for part in image.srcset.split(",") if part.strip()),
            "width": image.width, "height": image.height, "alt": image.alt or product.title,
        } if image else None,
    }


async def load_reads(session: AsyncSession, ids: Sequence[UUID], *, base_url: str = "",
                     active_only: bool = True) -> list[ProductRead]:
    """The products ``ids`` as ``ProductRead`` (with availability), in the order given."""
    if not ids:
        return []
    stmt = with_relations(select(Product).where(Product.id.in_(list(ids))))
    if active_only:
        stmt = stmt.where(Product.status == ACTIVE)
    rows = {p.id: p for p in (await session.execute(stmt)).scalars()}
    reads = await CatalogueService(session, base_url=base_url).reads([rows[i] for i in ids if i in rows])
    return reads


class _Revised(Protocol):
    @property
    def id(self) -> UUID: ...
    @property
    def revision(self) -> int: ...


def seed_of(reads: Sequence[_Revised], extra: str = "") -> str:
    """The ETag seed: each product's revision (bumped by every change, its stock included)."""
    return extra + ";" + ",".join(f"{p.id}:{p.revision}" for p in reads)


async def _newest_ids(session: AsyncSession, limit: int) -> list[UUID]:
    stmt = (select(Product.id).where(Product.status == ACTIVE)
            .order_by(Product.published_at.desc().nulls_last(), Product.id.desc()).limit(limit))
    return list((await session.execute(stmt)).scalars())


def page_keys(page_id: UUID, mode: str, listed: Sequence[UUID]) -> tuple[SurrogateKey, ...]:
    """A market page's keys: its own, and each hand-picked product (``listed``, drafts included: when
    one is published its purge must reach the page) or, for a saved filter, every product list."""
    shown = {keys.PRODUCTS} if mode == FILTER else {keys.product(i) for i in listed}
    return tuple(sorted({keys.market_page(page_id), *shown}))


@fragment("market.latest", title="New at the market", embed="market", params={"limit": "4"})
async def latest(ctx: FragmentContext) -> FragmentData:
    """The newest products for sale, with price and whether they are in stock."""
    limit = ctx.int_param("limit", 4, maximum=12)
    cards = await load_cards(ctx.db, await _newest_ids(ctx.db, limit), link_base=ctx.link_base)
    return FragmentData({"products": [c.data for c in cards]}, keys=(keys.PRODUCTS,),
                        seed=seed_of(cards, str(limit)))


@fragment("market.product-card", title="Product card", embed="market-product", params={"slug": "honey"})
async def product_card(ctx: FragmentContext) -> FragmentData:
    """One product as a card (``?slug=``): picture, producer, price and availability."""
    slug = ctx.params.get("slug", "")[:191]
    # The active product at this slug (an old slug or a draft is nothing here, as before).
    found = (await ctx.db.execute(select(Product.id).where(Product.slug == slug, Product.status == ACTIVE))
             ).scalar_one_or_none() if slug else None
    if found is not None:
        cards = await load_cards(ctx.db, [found], link_base=ctx.link_base)
        if cards:
            return FragmentData({"product": cards[0].data}, keys=(keys.product(found),),
                                seed=seed_of(cards, slug))
    # Nothing (yet) at this slug: publishing a product there purges every product list.
    return FragmentData({"product": None}, keys=(keys.PRODUCTS,), seed=seed_of([], slug))


@fragment("market.page", title="Market page", embed="market-page", params={"slug": "saturday-market"})
async def market_page(ctx: FragmentContext) -> FragmentData:
    """A market page's products (``?slug=``): the hand-picked list or its saved filter."""
    from domains.market.pages import MarketPageService, page_view

    slug = ctx.params.get("slug", "")[:191]
    service = MarketPageService(ctx.db)
    page = await service.get_public(slug) if slug else None
    if page is None:
        return FragmentData({"page": None, "products": []}, keys=(keys.MARKET_PAGES,), seed=f"none;{slug}")
    cards = await load_cards(ctx.db, await service.product_ids(page), link_base=ctx.link_base)
    return FragmentData({"page": page_view(page), "products": [c.data for c in cards]},
                        keys=page_keys(page.id, page.mode, [item.product_id for item in page.items]),
                        seed=seed_of(cards, f"{page.id}:{page.revision}"))
