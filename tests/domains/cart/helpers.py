"""Cart test helpers: an active product with stock, made through the market's own service."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

import domains.cart.hooks  # noqa: F401  (registers the reservation term, as the app's setup does)
from domains.market.models import StockLevel, Variant
from domains.market.schemas import StockAdjust
from domains.market.services import CatalogueService
from tests.domains.blog.test_roles import member
from tests.domains.market.conftest import product_input

__all__ = ["allocated", "stocked", "variant_id"]


async def stocked(session: AsyncSession, *, stock: dict[str, int], title: str = "Heritage tomatoes",
                  skus: tuple[str, ...] = ("TOM-S", "TOM-M", "TOM-L"), seller: str = "alice",
                  status: str = "active") -> Any:
    """An active product with ``skus`` (prices 250, 350, 450) and ``stock`` set per SKU; committed."""
    user = await member(session, seller)
    user.is_producer = True
    catalogue = CatalogueService(session)
    product = await catalogue.save(user, product_input(title, skus=skus, status=status))
    for sku, quantity in stock.items():
        await catalogue.adjust_stock(user, StockAdjust(sku=sku, set=quantity))
    await session.commit()
    return product


async def variant_id(session: AsyncSession, sku: str) -> Any:
    return (await session.execute(select(Variant.id).where(Variant.sku == sku))).scalar_one()


async def allocated(session: AsyncSession, sku: str) -> tuple[int, int]:
    """``(on_hand, allocated)`` of the SKU over its locations."""
    row = (await session.execute(
        select(func.coalesce(func.sum(StockLevel.on_hand), 0), func.coalesce(func.sum(StockLevel.allocated), 0))
        .join(Variant, Variant.id == StockLevel.variant_id).where(Variant.sku == sku))).one()
    return int(row[0]), int(row[1])
