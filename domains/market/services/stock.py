"""Stock: the availability rule (design/domains.md §2) as one SQL expression, and stock changes as
conditional UPDATEs.

Available = ``on_hand - allocated - Σ unexpired reservations held by others``, summed over the
variant's locations. There are no reservations yet: the cart registers its own term with
:func:`register_reserved`, and every caller of :func:`available_expr` (the product page's variant
picker, search's "in stock only", the API, the low-stock list) then counts them, with no change
here.

Changes never read, compare in Python and write: ``on_hand`` moves with ``UPDATE … SET on_hand =
on_hand + :n WHERE … AND on_hand + :n >= allocated`` and the rowcount says whether it happened,
so two concurrent adjustments cannot lose one another or push ``on_hand`` under ``allocated``
(the table's CHECK constraints are the backstop).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import ColumnElement, case, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from uuid_utils.compat import uuid7  # the ORM's id scheme (advanced-alchemy's UUIDv7 primary keys)

from app.forms import InputProblems
from domains.market.models import StockLevel, StockLocation
from domains.market.schemas import MAX_STOCK

__all__ = [
    "DEFAULT_LOCATION",
    "ReservedTerm",
    "StockRefused",
    "VariantOffer",
    "allocate",
    "availability",
    "available_expr",
    "change_on_hand",
    "default_location",
    "lock_stock",
    "offers",
    "register_reserved",
    "release",
    "unregister_reserved",
]

DEFAULT_LOCATION = "Main store"

# A term the cart adds: given the variant id column, the quantity reserved by unexpired
# reservations (a correlated scalar subquery, 0 when none).
ReservedTerm = Callable[[Any], ColumnElement[int]]
_reserved: list[ReservedTerm] = []


def register_reserved(term: ReservedTerm) -> ReservedTerm:
    """Subtract ``term`` from every availability from now on (idempotent; usable as a decorator).

    The cart registers ``lambda variant_id: select(coalesce(sum(qty), 0)).where(reservation.variant_id
    == variant_id, reservation.expires_at > now()).scalar_subquery()`` in its setup module.
    """
    if term not in _reserved:
        _reserved.append(term)
    return term


def unregister_reserved(term: ReservedTerm) -> None:
    if term in _reserved:
        _reserved.remove(term)


def on_hand_free(variant_id: Any) -> ColumnElement[int]:
    """``Σ (on_hand - allocated)`` over the variant's locations, 0 with no stock rows."""
    return (select(func.coalesce(func.sum(StockLevel.on_hand - StockLevel.allocated), 0))
            .where(StockLevel.variant_id == variant_id).scalar_subquery())


def available_expr(variant_id: Any) -> ColumnElement[int]:
    """What may be bought of the variant whose id is ``variant_id`` (a column, e.g. ``Variant.id``,
    or a bound value), as a correlated SQL expression, never below 0::

        select(Variant.id, available_expr(Variant.id))
        select(Product).where(exists().where(Variant.product_id == Product.id, available_expr(Variant.id) > 0))
    """
    total: ColumnElement[int] = on_hand_free(variant_id)
    for term in _reserved:
        total = total - term(variant_id)
    return case((total > 0, total), else_=0)


async def availability(session: AsyncSession, variant_ids: Iterable[UUID]) -> dict[UUID, int]:
    """``{variant_id: available}`` for each id (0 for a variant without stock rows)."""
    from domains.market.models import Variant

    ids = list(dict.fromkeys(variant_ids))
    if not ids:
        return {}
    found: dict[UUID, int] = {}
    for start in range(0, len(ids), 500):  # keep the IN list well under SQLite's variable limit
        chunk = ids[start:start + 500]
        rows = await session.execute(select(Variant.id, available_expr(Variant.id)).where(Variant.id.in_(chunk)))
        found.update({row[0]: int(row[1]) for row in rows})
    return {i: found.get(i, 0) for i in ids}


class StockRefused(InputProblems):
    """A stock change that would break a rule (negative stock, under what is allocated)."""


async def default_location(session: AsyncSession) -> StockLocation:
    """The location stock goes to when none is named (created on first use)."""
    return await location_named(session, DEFAULT_LOCATION, create=True)  # type: ignore[return-value]


async def location_named(session: AsyncSession, name: str, *, create: bool = False) -> StockLocation | None:
    name = " ".join(name.split())
    found = (await session.execute(select(StockLocation).where(StockLocation.name == name))).scalar_one_or_none()
    if found is not None or not create:
        return found
    async with session.begin_nested():  # a concurrent creator wins the unique name: read theirs
        try:
            location = StockLocation(name=name)
            session.add(location)
            await session.flush()
            return location
        except IntegrityError:
            pass
    return (await session.execute(select(StockLocation).where(StockLocation.name == name))).scalar_one()


async def change_on_hand(session: AsyncSession, variant_id: UUID, location_id: UUID, *,
                         set_to: int | None = None, add: int | None = None) -> int:
    """Set or change ``on_hand`` of one variant at one location by a conditional UPDATE; returns
    the new ``on_hand``. Refuses (StockRefused, nothing written) a result below 0 or below what is
    allocated there. A missing stock row is created (a concurrent creator's row is then updated).
    """
    if (set_to is None) == (add is None):
        raise StockRefused({"quantity": "Give either a new quantity or a change, not both."})
    if set_to is not None and not 0 <= set_to <= MAX_STOCK:
        raise StockRefused({"quantity": f"Stock is a whole number from 0 to {MAX_STOCK:,}."})
    if add is not None and abs(add) > MAX_STOCK:
        raise StockRefused({"quantity": f"Change stock by at most {MAX_STOCK:,} at once."})
    where = (StockLevel.variant_id == variant_id, StockLevel.location_id == location_id)
    new_on_hand: Any = set_to if set_to is not None else StockLevel.on_hand + (add or 0)
    stmt = (update(StockLevel).where(*where, new_on_hand >= StockLevel.allocated, new_on_hand >= 0,
                                     new_on_hand <= MAX_STOCK)
            .values(on_hand=new_on_hand).returning(StockLevel.on_hand)
            .execution_options(synchronize_session=False))
    result = (await session.execute(stmt)).scalar_one_or_none()
    if result is not None:
        return int(result)
    row = (await session.execute(select(StockLevel.on_hand, StockLevel.allocated).where(*where))).first()
    if row is None:
        start = set_to if set_to is not None else (add or 0)
        if start < 0:
            raise StockRefused({"quantity": "There is no stock here to take from: stock cannot go below 0."})
        try:
            async with session.begin_nested():
                await session.execute(insert(StockLevel).values(
                    id=uuid7(), variant_id=variant_id, location_id=location_id, on_hand=start, allocated=0,
                    created_at=datetime.now(UTC), updated_at=datetime.now(UTC)))
            return start
        except IntegrityError:  # created meanwhile by someone else: apply to theirs
            return await change_on_hand(session, variant_id, location_id, set_to=set_to, add=add)
    on_hand, allocated = int(row[0]), int(row[1])
    wanted = set_to if set_to is not None else on_hand + (add or 0)
    if wanted < 0:
        raise StockRefused({"quantity": f"Only {on_hand} on hand: stock cannot go below 0."})
    raise StockRefused({"quantity": f"{allocated} of these are allocated to orders: on hand cannot go "
                                    f"below {allocated} (asked for {wanted})."})



# -- for the cart: what a variant sells as, and allocation as conditional UPDATEs ------------------

@dataclass(frozen=True)
class VariantOffer:
    """A variant as the cart snapshots it into an order line."""

    id: UUID
    sku: str
    title: str  # "Heritage tomatoes (M)"
    price_minor: int
    currency: str
    active: bool  # its product is for sale (not a draft, not archived)
    available: int
    product_slug: str
    tax_class: str = ""  # the product's VAT class; "" is the default class
    weight_grams: int | None = None  # one unit's weight, when the seller gave it


async def offers(session: AsyncSession, *, ids: Iterable[UUID] = (),
                 skus: Iterable[str] = ()) -> dict[UUID, VariantOffer]:
    """The variants named by id or SKU with their price and availability now (unknown ones absent)."""
    from domains.market.models import ACTIVE, Product, Variant

    id_list, sku_list = list(dict.fromkeys(ids)), [s.strip() for s in dict.fromkeys(skus)]
    if not id_list and not sku_list:
        return {}
    cond: ColumnElement[bool] = Variant.id.in_(id_list) if id_list else Variant.sku.in_(sku_list)
    if id_list and sku_list:
        cond = Variant.id.in_(id_list) | Variant.sku.in_(sku_list)
    rows = await session.execute(
        select(Variant.id, Variant.sku, Variant.options, Variant.price_minor, Variant.currency,
               Product.title, Product.status, Product.slug, available_expr(Variant.id), Product.tax_class,
               Variant.weight_grams)
        .join(Product, Product.id == Variant.product_id).where(cond))
    found: dict[UUID, VariantOffer] = {}
    for vid, sku, options, price, currency, title, status, slug, available, tax_class, weight in rows:
        label = " / ".join(str(v) for v in (options or {}).values())
        found[vid] = VariantOffer(id=vid, sku=sku, title=f"{title} ({label})" if label else title,
                                  price_minor=int(price), currency=currency, active=status == ACTIVE,
                                  available=int(available), product_slug=slug, tax_class=tax_class or "",
                                  weight_grams=weight)
    return found


async def lock_stock(session: AsyncSession, variant_ids: Iterable[UUID]) -> None:
    """Lock the stock rows of these variants until the transaction ends (``SELECT … FOR UPDATE`` on
    PostgreSQL, in id order so two lockers cannot deadlock; SQLite's writers are serialised by its
    ``BEGIN IMMEDIATE`` already). Statements after it see what the previous holder committed."""
    ids = sorted(set(variant_ids))
    if ids:
        await session.execute(select(StockLevel.id).where(StockLevel.variant_id.in_(ids))
                              .order_by(StockLevel.variant_id, StockLevel.id).with_for_update())


async def allocate(session: AsyncSession, variant_id: UUID, quantity: int) -> bool:
    """Allocate ``quantity`` of the variant to an order, or nothing: one conditional UPDATE of the
    stock row with the most free units, guarded by the row (``on_hand - allocated >= q``) and by the
    variant's availability (every unexpired reservation counted, so the caller deletes its own
    reservation first, in the same transaction). Returns whether it happened."""
    if quantity <= 0:
        return quantity == 0
    # Subqueries over aliases: on the UPDATE's own table they would correlate to the updated row.
    level, every = aliased(StockLevel), aliased(StockLevel)
    target = (select(level.id).where(level.variant_id == variant_id, level.on_hand - level.allocated >= quantity)
              .order_by((level.on_hand - level.allocated).desc(), level.id).limit(1).scalar_subquery())
    free: ColumnElement[int] = (select(func.coalesce(func.sum(every.on_hand - every.allocated), 0))
                                .where(every.variant_id == variant_id).scalar_subquery())
    for term in _reserved:
        free = free - term(variant_id)
    stmt = (update(StockLevel)
            .where(StockLevel.id == target, StockLevel.on_hand - StockLevel.allocated >= quantity,
                   free >= quantity)
            .values(allocated=StockLevel.allocated + quantity)
            .execution_options(synchronize_session=False))
    result = await session.execute(stmt)
    return int(result.rowcount) == 1  # type: ignore[attr-defined]


async def release(session: AsyncSession, variant_id: UUID, quantity: int) -> int:
    """Give back up to ``quantity`` allocated units of the variant (an order cancelled before it was
    fulfilled), row by row with conditional UPDATEs; returns how many were released."""
    left = quantity
    rows = (await session.execute(select(StockLevel.id, StockLevel.allocated)
                                  .where(StockLevel.variant_id == variant_id, StockLevel.allocated > 0)
                                  .order_by(StockLevel.allocated.desc(), StockLevel.id))).all()
    for row_id, allocated in rows:
        if left <= 0:
            break
        take = min(left, int(allocated))
        result = await session.execute(
            update(StockLevel).where(StockLevel.id == row_id, StockLevel.allocated >= take)
            .values(allocated=StockLevel.allocated - take).execution_options(synchronize_session=False))
        if int(result.rowcount) == 1:  # type: ignore[attr-defined]
            left -= take
    return quantity - left
