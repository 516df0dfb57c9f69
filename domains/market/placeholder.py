"""A minimal public ``/market/`` (the navigation links it) until the public views replace it.

The full index (newest and featured, categories, search) is built in the public-views work; this
lists the active products, newest first, so the link in the navigation never leads to a 404.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response
from sqlalchemy import select

from domains.market import keys
from domains.market.deps import dependencies
from domains.market.models import ACTIVE, Product
from domains.market.services import CatalogueService, with_relations
from fragments.pages import public_get, render_page

__all__ = ["placeholder_handlers"]


@public_get("/market/", name="market:index", dependencies=dependencies)
async def market_index(request: Request[Any, Any, Any], catalogue: CatalogueService) -> Response[bytes]:
    stmt = with_relations(select(Product).where(Product.status == ACTIVE)
                          .order_by(Product.published_at.desc(), Product.id.desc()).limit(48))
    products = list((await catalogue.db.execute(stmt)).scalars().all())
    return await render_page(request, "market/placeholder.html", {"products": await catalogue.reads(products)},
                             keys=(keys.PRODUCTS,))


placeholder_handlers = [market_index]
