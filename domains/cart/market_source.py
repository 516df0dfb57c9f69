"""The market as a line source: its variants through ``domains.market.services`` (unchanged rules).

Stock is the market's: ``lock_stock``, ``allocate`` and ``release`` are its conditional UPDATEs,
and its availability already counts the cart's reservations (``register_reserved``, cart hooks).
Market orders are fulfilled by staff handing goods over, so payment and voiding issue nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from app.forms import InputProblems
from domains.cart.sources import Offer, OrderRef, SoldLine, TicketLink
from domains.market.services import allocate, lock_stock, offers, release

__all__ = ["MARKET", "MarketSource"]


class MarketSource:
    name: str = "market"
    ships: bool = True  # goods are collected or delivered

    async def offers(self, db: AsyncSession, *, ids: Iterable[UUID] = (),
                     skus: Iterable[str] = ()) -> dict[UUID, Offer]:
        found = await offers(db, ids=ids, skus=skus)
        return {k: Offer(id=v.id, source=self.name, sku=v.sku, title=v.title, price_minor=v.price_minor,
                         currency=v.currency, active=v.active, available=v.available,
                         url=f"/market/{v.product_slug}", tax_class=v.tax_class, weight_grams=v.weight_grams)
                for k, v in found.items()}

    async def lock(self, db: AsyncSession, ids: Iterable[UUID]) -> None:
        await lock_stock(db, ids)

    async def allocate(self, db: AsyncSession, item_id: UUID, quantity: int) -> bool:
        return await allocate(db, item_id, quantity)

    async def release(self, db: AsyncSession, item_id: UUID, quantity: int) -> int:
        return await release(db, item_id, quantity)

    async def check_details(self, db: AsyncSession, item_id: UUID, *, quantity: int, given: Mapping[str, Any],
                            kept: Mapping[str, Any], total: int) -> dict[str, Any]:
        """The market asks nothing per line: answers sent anyway are refused, not silently dropped."""
        if given:
            raise InputProblems({"details": "Products take no per-line details."})
        return dict(kept)

    async def paid(self, db: AsyncSession, order: OrderRef, lines: Sequence[SoldLine]) -> None:
        return None

    async def voided(self, db: AsyncSession, order: OrderRef, lines: Sequence[SoldLine]) -> None:
        return None

    async def issued(self, db: AsyncSession, order_id: UUID) -> list[TicketLink]:
        return []


MARKET: Final = MarketSource()
