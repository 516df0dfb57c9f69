"""Line sources: how the cart sells things that other domains own, without reaching into their tables.

A domain that sells through the cart implements :class:`LineSource` and registers it once per
process (:func:`register_source`, from its setup module). The cart knows a line only by its
source's name (``OrderLine.source``) and the item's id there (``OrderLine.variant_id``, UUIDv7, so
ids never collide across sources); everything else it asks the source:

- ``offers``: what an item sells as now (title, unit price, VAT class, what is available, where
  its page is), as :class:`Offer` Structs: the contract between the cart and the source;
- ``lock`` / ``allocate`` / ``release``: capacity moved like stock (design/domains.md §2): ``lock``
  takes the source's row locks before the cart reads availability (``SELECT … FOR UPDATE`` on
  PostgreSQL; SQLite's writers are serialised by ``BEGIN IMMEDIATE``), ``allocate`` is one
  conditional UPDATE whose row count says whether it happened, and both count the cart's
  unexpired reservations (:func:`reserved_among`), which the cart deletes for its own order first;
- ``check_details``: what the buyer is asked per line (events: a name per ticket and the event's
  questions), checked when ``quantity`` more are added with ``given`` answers to a line that holds
  ``kept`` already and will hold ``total`` units; it returns what the line keeps from now on
  (``OrderLine.details``, never more than ``total`` units' worth: the cart also calls it with
  ``quantity=0`` and nothing given when a line is lowered or merged, to trim it), or raises
  InputProblems (422, nothing written). Units added (``quantity > 0``) with nothing given are
  checked like any others: a source of ``named_units`` refuses them, whichever path they came by.
  The cart stores it without reading it and hands it back in ``SoldLine.details`` at payment;
- ``paid`` / ``voided``: the order was paid (issue what was bought), or was cancelled or refunded
  after holding its lines (take back what was issued; the capacity itself comes back through
  ``release``). Both are called in the transaction that moves the order, so they commit with it.

The market is the first source (domains/cart/market_source.py); events' paid tickets the second
(domains/events/services/tickets.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

import msgspec
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from domains.cart.models import Reservation

__all__ = ["LineSource", "Offer", "OrderRef", "SoldLine", "TicketLink", "add_url", "change_url", "for_buyer",
           "named_units", "register_source", "reserved_among", "ships", "source_named", "sources"]


class Offer(msgspec.Struct, frozen=True, kw_only=True):
    """An item as the cart snapshots it into an order line."""

    id: UUID
    source: str
    sku: str  # what staff and the packing list call it (a ticket: "TICKET-<date>")
    title: str  # "Heritage tomatoes (M)", "Pottery workshop: Standard, Sat 12 December 2026 19:00"
    price_minor: int
    currency: str
    active: bool  # for sale now
    available: int
    url: str = ""  # the item's public page (a path)
    tax_class: str = ""  # "" is the default VAT class
    weight_grams: int | None = None
    # Why it is not for sale (shown as the error), when ``active`` is false: "This date has passed."
    reason: str = ""
    # Only signed-in members may buy it (a members-only event's tickets): to a visitor's cart it
    # looks exactly like an item that does not exist.
    members_only: bool = False
    # The most of it one order may hold (0: the cart's own MAX_QUANTITY): events' tickets, the
    # names form's cap per ticket type, on every path (adding, raising a line, merging carts).
    limit: int = 0
    # What a unit is a place at, when units are places ("“Pottery”, Sat 12 December 2026, 19:00"):
    # a shortage then reads "Only 43 places left for …" instead of naming stock and a SKU.
    places_for: str = ""

def for_buyer(offer: Offer | None, *, member: bool) -> Offer | None:
    """The offer as this buyer may see it: None (exactly as for an item that does not exist) when
    only members may buy it and the buyer is a visitor. The one place the rule lives: adding, the
    add-to-cart confirm page, events' buy page, raising a line, merging and placing all ask it."""
    if offer is None or (offer.members_only and not member):
        return None
    return offer


class OrderRef(msgspec.Struct, frozen=True, kw_only=True):
    """The order a hook is about."""

    id: UUID
    number: str
    token: str
    email: str
    user_id: UUID | None


class SoldLine(msgspec.Struct, frozen=True, kw_only=True):
    """One line of the order that belongs to the source."""

    item_id: UUID
    quantity: int
    title: str
    # What the buyer gave for the line when adding it, as the source's ``check_details`` kept it.
    details: dict[str, Any] = {}


def named_units(source_name: str) -> bool:
    """Whether each unit of the source's lines carries its own details (events: a name per
    ticket): such a line's quantity is no free field; raising it needs the added units' details
    (the cart's ``set_quantity``), and the cart page links to the source's own form instead."""
    return bool(getattr(_sources.get(source_name), "named_units", False))


async def change_url(db: AsyncSession, source_name: str, item_id: UUID, line_id: UUID) -> str | None:
    """Where the buyer changes a line of ``named_units`` (events: the names page prefilled with
    the line), or None when the source offers no such page."""
    return await _page_of(source_name, "change_url", db, item_id, line_id)


async def add_url(db: AsyncSession, source_name: str, item_id: UUID, quantity: int) -> str | None:
    """Where a buyer adds ``quantity`` of an item of ``named_units`` (events: the names page with
    that many name rows), or None when the source offers no such page. The cart's own add forms
    carry no details, so they send the buyer there instead of adding unnamed units."""
    return await _page_of(source_name, "add_url", db, item_id, quantity)


async def _page_of(source_name: str, page: str, *args: Any) -> str | None:
    """The URL a source's optional ``page`` method gives for ``args``, None without that method."""
    method = getattr(_sources.get(source_name), page, None)
    if method is None:
        return None
    url: str | None = await method(*args)
    return url


class TicketLink(msgspec.Struct, frozen=True, kw_only=True):
    """Something issued for a line that the order page links to (a ticket page)."""

    item_id: UUID
    label: str
    url: str  # a path


class LineSource(Protocol):
    name: str
    # Whether its items are handed over (collected or delivered, packed by staff): the market's
    # are; events' tickets are issued once paid. An order none of whose lines ship skips the
    # checkout's collection-or-delivery step (no charge, no address) and staff's packing.
    ships: bool

    async def offers(self, db: AsyncSession, *, ids: Iterable[UUID] = (),
                     skus: Iterable[str] = ()) -> dict[UUID, Offer]: ...

    async def lock(self, db: AsyncSession, ids: Iterable[UUID]) -> None: ...

    async def allocate(self, db: AsyncSession, item_id: UUID, quantity: int) -> bool: ...

    async def release(self, db: AsyncSession, item_id: UUID, quantity: int) -> int: ...

    async def check_details(self, db: AsyncSession, item_id: UUID, *, quantity: int, given: Mapping[str, Any],
                            kept: Mapping[str, Any], total: int) -> dict[str, Any]: ...

    async def paid(self, db: AsyncSession, order: OrderRef, lines: Sequence[SoldLine]) -> None: ...

    async def voided(self, db: AsyncSession, order: OrderRef, lines: Sequence[SoldLine]) -> None: ...

    async def issued(self, db: AsyncSession, order_id: UUID) -> list[TicketLink]: ...


_sources: dict[str, LineSource] = {}


def register_source(source: LineSource) -> LineSource:
    """Sell ``source``'s items through the cart from now on (idempotent: the last one of a name wins)."""
    _sources[source.name] = source
    return source


def source_named(name: str) -> LineSource | None:
    return _sources.get(name)


def sources() -> list[LineSource]:
    return list(_sources.values())


def ships(source_name: str) -> bool:
    """Whether the lines of the source ``source_name`` are handed over; True for a source not
    registered in this process (the safe answer: staff see the line and can hand it over)."""
    source = _sources.get(source_name)
    return True if source is None else bool(source.ships)


def reserved_among(item_ids: Any) -> ColumnElement[int]:
    """Units held by unexpired cart reservations of the items ``item_ids`` names (a column, a
    bound value, or a SELECT of ids): a scalar subquery, 0 when none. A source subtracts it in its
    availability and in ``allocate``, as the market does (its ``register_reserved``)."""
    condition = (Reservation.variant_id.in_(item_ids) if hasattr(item_ids, "subquery")
                 else Reservation.variant_id == item_ids)
    return (select(func.coalesce(func.sum(Reservation.quantity), 0))
            .where(condition, Reservation.expires_at > datetime.now(UTC)).scalar_subquery())
