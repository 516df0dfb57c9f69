"""Cart rules: lines, checkout with reservations, placing an order with allocations, transitions.

Every line comes from a line source (domains/cart/sources.py: the market's variants, events' paid
tickets), reached only through its ``LineSource``; the cart never touches the source's tables.

Stock is never read, compared in Python and then written. Starting checkout locks the lines'
stock rows (the source's ``lock``: ``SELECT … FOR UPDATE`` on PostgreSQL; SQLite serialises
writers with ``BEGIN IMMEDIATE``) before reading availability and writing reservations. Placing
deletes the order's own reservations and allocates every line with its source's ``allocate`` (one
conditional UPDATE each, whose row count says whether it happened), all inside one savepoint: a
line short of stock rolls the whole placement back (no allocation, no number, no state change)
and :class:`InsufficientStock` names the lines and what is available.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from uuid import UUID

from litestar.connection import ASGIConnection
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
from uuid_utils.compat import uuid7

from app.forms import InputProblems
from app.fsm import IllegalTransition, TransitionLost, transition
from app.mail.message import OutgoingMail, valid_address
from app.mail.sending import send_mail
from app.money import format_minor
from app.settings import Settings
from domains.cart import notices
from domains.cart.market_source import MARKET
from domains.cart.models import (
    CANCELLED,
    CART,
    CHECKOUT,
    COLLECTION,
    DELIVERY,
    FULFILLED,
    NEEDS_ATTENTION,
    PAID,
    PARTIALLY_FULFILLED,
    PAYMENT_PENDING,
    IdempotencyKey,
    Order,
    OrderCounter,
    OrderLine,
    OrderTransition,
    Reservation,
)
from domains.cart.money import Line, Totals, compute, delivery_charge, parse_delivery_rates, parse_vat_rates
from domains.cart.sessions import cart_token, remember_cart
from domains.cart.slots import CollectionPoint, parse_collection_slots
from domains.cart.sources import (
    LineSource,
    Offer,
    OrderRef,
    SoldLine,
    TicketLink,
    for_buyer,
    named_units,
    register_source,
    source_named,
)
from domains.cart.sources import ships as source_ships
from domains.payments.schemas import PaymentRecord, PaymentStatus
from domains.payments.services import available_providers, request_refresh, webhook_url

__all__ = ["MAX_LINES", "MAX_QUANTITY", "CartService", "CheckoutDetails", "InsufficientStock", "Shortage",
           "order_context", "order_totals", "reserved_term", "ships"]

MAX_QUANTITY: Final = 99  # of one variant in one order
MAX_LINES: Final = 100
OPEN_STATES: Final = (CART, CHECKOUT)


register_source(MARKET)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _source(name: str) -> LineSource:
    found = source_named(name)
    if found is None:  # a line whose domain is not installed here: nothing may move it
        raise InputProblems({"sku": f"Items of {name!r} are not sold here."}, status=409)
    return found


async def offers_for(db: AsyncSession, lines: Iterable[OrderLine], *, member: bool) -> dict[UUID, Offer]:
    """``{item id: offer now}`` for the lines, each asked of its own source (unknown ones absent),
    as a buyer who is a ``member`` (or not) may see them: a members-only item is absent to a
    visitor's cart, even on a line added while it was public (:func:`for_buyer`)."""
    by_source: dict[str, list[UUID]] = {}
    for line in lines:
        by_source.setdefault(line.source, []).append(line.variant_id)
    found: dict[UUID, Offer] = {}
    for name, ids in by_source.items():
        source = source_named(name)
        if source is not None:
            found.update({k: v for k, v in (await source.offers(db, ids=ids)).items()
                          if for_buyer(v, member=member) is not None})
    return found


def _member(order: Order) -> bool:
    """Whether the cart's buyer is a signed-in member (a guest's cart has no user)."""
    return order.user_id is not None


async def lock_lines(db: AsyncSession, lines: Iterable[OrderLine]) -> None:
    """Take every source's row locks for the lines, sources in name order and ids sorted within
    (the order every locker uses, so two cannot deadlock)."""
    by_source: dict[str, set[UUID]] = {}
    for line in lines:
        by_source.setdefault(line.source, set()).add(line.variant_id)
    for name in sorted(by_source):
        await _source(name).lock(db, sorted(by_source[name]))


def order_ref(order: Order) -> OrderRef:
    return OrderRef(id=order.id, number=order.number or "", token=order.token, email=order.email,
                    user_id=order.user_id)


def _sold(lines: Iterable[OrderLine]) -> dict[str, list[SoldLine]]:
    by_source: dict[str, list[SoldLine]] = {}
    for line in lines:
        by_source.setdefault(line.source, []).append(
            SoldLine(item_id=line.variant_id, quantity=line.quantity, title=line.title,
                     details=dict(line.details or {})))
    return by_source


def reserved_term(variant_id: Any) -> Any:
    """The units of ``variant_id`` held by unexpired reservations (market's ``register_reserved``)."""
    return (select(func.coalesce(func.sum(Reservation.quantity), 0))
            .where(Reservation.variant_id == variant_id, Reservation.expires_at > utcnow())
            .scalar_subquery())


@dataclass(frozen=True)
class Shortage:
    sku: str
    title: str
    wanted: int
    available: int
    # Units are places at this (the offer's ``places_for``): said as places left, without the SKU.
    places_for: str = ""

    def text(self) -> str:
        if self.places_for:
            if self.available <= 0:
                return f"No places left for {self.places_for}."
            return f"Only {self.available} place{'s' if self.available != 1 else ''} left for {self.places_for}."
        return f"Not enough stock: {self.title} ({self.sku}): {self.available} available, {self.wanted} wanted."


def shortage(line: OrderLine | Offer, wanted: int, available: int, offer: Offer | None) -> Shortage:
    """A line (or an offer being added) that cannot be had ``wanted`` times, worded by its offer."""
    sku, title = line.sku, line.title
    return Shortage(sku, title, wanted, available, places_for=offer.places_for if offer else "")


class InsufficientStock(InputProblems):
    """Some lines cannot be had in the quantity asked: nothing was written."""

    def __init__(self, shortages: Sequence[Shortage]) -> None:
        self.shortages = list(shortages)
        super().__init__({"stock": " ".join(s.text() for s in self.shortages)}, status=409)


@dataclass(frozen=True)
class CheckoutDetails:
    email: str
    fulfilment: str = COLLECTION
    address: str = ""
    notes: str = ""
    payment: str = "collection"
    # Collection: the location and weekly slot chosen (ROSE_ASH_CART_COLLECTION_SLOTS).
    location: str = ""
    slot: str = ""


def _either(choices: Sequence[str]) -> str:
    """``A``, ``A or B``, ``A, B or C``: the choices offered, as a sentence says them."""
    return choices[0] if len(choices) == 1 else ", ".join(choices[:-1]) + " or " + choices[-1]


def most(offer: Offer | None) -> int:
    """The most of ``offer`` one order may hold: its source's ``limit``, never above MAX_QUANTITY."""
    return min(MAX_QUANTITY, offer.limit) if offer is not None and offer.limit > 0 else MAX_QUANTITY


def _too_many(offer: Offer) -> InputProblems:
    if offer.places_for:
        return InputProblems({"quantity": f"At most {most(offer)} tickets of one kind per order "
                                          f"for {offer.places_for}."})
    return InputProblems({"quantity": f"At most {most(offer)} of one item per order."})


def _quantity(raw: object) -> int:
    """A quantity as typed: a whole number from 0 to MAX_QUANTITY, or InputProblems (422)."""
    text = str(raw).strip()
    if not text.isascii() or not text.isdigit() or len(text) > 6:
        raise InputProblems({"quantity": f"Quantity is a whole number from 1 to {MAX_QUANTITY}."})
    value = int(text)
    if value > MAX_QUANTITY:
        raise InputProblems({"quantity": f"At most {MAX_QUANTITY} of one item per order."})
    return value


class CartService:
    def __init__(self, db: AsyncSession, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    async def visitor_cart(self, connection: ASGIConnection[Any, Any, Any, Any], *, user_id: UUID | None,
                           create: bool = False) -> Order | None:
        """The visitor's open cart (the member's, or the one the guest's session names), made when
        ``create``: what the cart's pages use, and another domain's page that adds to the cart
        (events' ticket page) without reading the cart's session key itself."""
        order = await self.open_cart(user_id=user_id, token=None if user_id else cart_token(connection))
        if order is None and create:
            order = await self.new_cart(user_id=user_id)
            if user_id is None:
                remember_cart(connection, order.token)
        return order

    # -- finding carts --------------------------------------------------------------------------------

    async def _load(self, *conditions: Any) -> Order | None:
        stmt = (select(Order).where(*conditions).options(selectinload(Order.lines))
                .order_by(Order.created_at.desc()).limit(1).execution_options(populate_existing=True))
        return (await self.db.execute(stmt)).scalar_one_or_none()

    async def open_cart(self, *, user_id: UUID | None = None, token: str | None = None) -> Order | None:
        """The member's cart, else the one the token names (only if it belongs to nobody)."""
        if user_id is not None:
            return await self._load(Order.user_id == user_id, Order.state.in_(OPEN_STATES))
        if token:
            return await self._load(Order.token == token[:64], Order.user_id.is_(None), Order.state.in_(OPEN_STATES))
        return None

    async def new_cart(self, *, user_id: UUID | None = None) -> Order:
        order = Order(id=uuid7(), state=CART, token=secrets.token_urlsafe(32), user_id=user_id,
                      currency=self.settings.market_currency)
        self.db.add(order)
        await self.db.flush()
        return await self._load(Order.id == order.id)  # type: ignore[return-value]

    async def by_token(self, token: str) -> Order | None:
        return await self._load(Order.token == token[:64]) if token else None

    async def by_number(self, number: str) -> Order | None:
        return await self._load(Order.number == number[:32]) if number else None

    async def orders_of(self, user_id: UUID) -> list[Order]:
        stmt = (select(Order).where(Order.user_id == user_id, Order.number.is_not(None))
                .options(selectinload(Order.lines)).order_by(Order.placed_at.desc()))
        return list((await self.db.execute(stmt)).scalars())

    async def awaiting_payment(self, user_id: UUID, source: str) -> list[Order]:
        """The member's placed orders still waiting for their payment that hold lines of ``source``
        (events: tickets not issued yet), oldest first: their tickets page says so, instead of
        looking as if nothing happened."""
        stmt = (select(Order).where(Order.user_id == user_id, Order.state == PAYMENT_PENDING,
                                    Order.id.in_(select(OrderLine.order_id).where(OrderLine.source == source)))
                .options(selectinload(Order.lines)).order_by(Order.placed_at))
        return list((await self.db.execute(stmt)).scalars())

    async def held_unpaid(self, source: str, item_ids: Iterable[UUID]) -> list[tuple[Order, OrderLine]]:
        """Lines of ``source``'s items ``item_ids`` on placed orders still waiting for payment: the
        units they hold (allocated at placement) with the names given, for staff's lists (events'
        attendees page shows the places held by unpaid orders)."""
        ids = list(item_ids)
        if not ids:
            return []
        stmt = (select(Order, OrderLine).join(OrderLine, OrderLine.order_id == Order.id)
                .where(Order.state == PAYMENT_PENDING, OrderLine.source == source, OrderLine.variant_id.in_(ids))
                .order_by(Order.placed_at))
        return [(o, line) for o, line in (await self.db.execute(stmt)).tuples().all()]

    async def count(self, *, user_id: UUID | None = None, token: str | None = None) -> int:
        where = (Order.user_id == user_id) if user_id is not None else (Order.token == (token or "")[:64])
        stmt = (select(func.coalesce(func.sum(OrderLine.quantity), 0)).join(Order, Order.id == OrderLine.order_id)
                .where(where, Order.state.in_(OPEN_STATES)))
        return int((await self.db.execute(stmt)).scalar_one())

    # -- lines ----------------------------------------------------------------------------------------

    async def _back_to_cart(self, order: Order, actor: str = "customer") -> None:
        """A change to the lines of an order in checkout ends the checkout (reservations let go)."""
        if order.state == CHECKOUT:
            await self.db.execute(delete(Reservation).where(Reservation.order_id == order.id))
            await self._move(order, CHECKOUT, CART, actor=actor, values={"reserved_until": None})

    async def add(self, order: Order, *, sku: str = "", variant_id: UUID | None = None,
                  quantity: object = 1, source: str = "market", details: Mapping[str, Any] | None = None) -> OrderLine:
        """Add ``quantity`` of an item of ``source`` (a market variant by SKU or id, a ticket type by
        id); more of one already in the cart adds up. ``details``: what the source asks per line
        (events: attendee names and answers), checked and merged by the source (``check_details``)."""
        wanted = _quantity(quantity)
        if wanted < 1:
            raise InputProblems({"quantity": f"Quantity is a whole number from 1 to {MAX_QUANTITY}."})
        if order.state not in OPEN_STATES:
            raise InputProblems({"order": "This order is already placed: start a new cart."}, status=409)
        seller = source_named(source)
        found = await seller.offers(self.db, ids=[variant_id] if variant_id else [],
                                    skus=[sku] if sku and not variant_id else []) if seller else {}
        offer = for_buyer(next(iter(found.values()), None), member=_member(order))
        if offer is None or not offer.active:
            raise InputProblems({"sku": (offer.reason if offer else "") or "That product is not for sale."},
                                status=404 if offer is None else 422)
        if offer.currency != order.currency:
            raise InputProblems({"sku": f"That product is priced in {offer.currency}, this cart in {order.currency}."})
        line = next((x for x in order.lines if x.variant_id == offer.id and x.source == offer.source), None)
        total = wanted + (line.quantity if line else 0)
        if total > most(offer):
            raise _too_many(offer)
        if total > offer.available:
            raise InsufficientStock([shortage(offer, total, offer.available, offer)])
        if line is None and len(order.lines) >= MAX_LINES:
            raise InputProblems({"sku": f"A cart holds at most {MAX_LINES} different items."})
        assert seller is not None  # an offer came from it
        kept = await seller.check_details(self.db, offer.id, quantity=wanted, given=details or {},
                                          kept=(line.details or {}) if line else {}, total=total)
        snapshot = self.line_snapshot(offer)
        await self._back_to_cart(order)
        if line is None:
            line = OrderLine(id=uuid7(), order_id=order.id, variant_id=offer.id, source=offer.source, sku=offer.sku,
                             title=offer.title[:500],
                             unit_price_minor=offer.price_minor, quantity=total, details=kept, **snapshot)
            self.db.add(line)
        else:
            line.quantity = total
            line.details = kept
        await self.db.flush()
        await self._refresh(order)
        return line

    async def offer(self, source: str, item_id: UUID, *, member: bool) -> Offer | None:
        """What ``source``'s item ``item_id`` sells as now to a buyer who is a ``member`` or not
        (None: no such source or item, or one only members may buy and the buyer is a visitor)."""
        seller = source_named(source)
        found = (await seller.offers(self.db, ids=[item_id])).get(item_id) if seller else None
        return for_buyer(found, member=member)

    def _line(self, order: Order, line_id: object) -> OrderLine:
        line = next((x for x in order.lines if str(x.id) == str(line_id)), None)
        if line is None:
            raise InputProblems({"line": "That line is not in your cart."}, status=404)
        return line

    async def set_quantity(self, order: Order, line_id: object, quantity: object,
                           details: Mapping[str, Any] | None = None) -> None:
        """Change a line's quantity (0 removes it); more than is available, or than one order may
        hold of it, is refused. ``details``: the line's details as a whole from now on (events:
        a name per ticket, the answer), checked by its source; without them a line of
        ``named_units`` (tickets) may be lowered but not raised (422: each added ticket needs a
        name, so no ticket is ever issued to a placeholder)."""
        if order.state not in OPEN_STATES:
            raise InputProblems({"order": "This order is already placed."}, status=409)
        line = self._line(order, line_id)
        wanted = _quantity(quantity)
        if wanted > line.quantity:
            offer = (await offers_for(self.db, [line], member=_member(order))).get(line.variant_id)
            if offer is None or not offer.active:
                raise InputProblems({"quantity": (offer.reason if offer else "")
                                     or f"{line.title} is no longer for sale."})
            if wanted > most(offer):
                raise _too_many(offer)
            own = await self._own_reserved(order, line.variant_id)
            if wanted > offer.available + own:  # first: "only 43 left" helps more than "name them"
                raise InsufficientStock([shortage(line, wanted, offer.available + own, offer)])
            if details is None and named_units(line.source):
                raise InputProblems({"quantity": "Each added ticket needs a name: use “Change tickets”, "
                                                 "which asks a name for every ticket."})
        seller = source_named(line.source)
        trimmed: dict[str, Any] | None = None
        if seller is not None and wanted > 0 and details is not None:
            # The whole line named afresh (the names page's "Change tickets"): the latest answer wins.
            trimmed = await seller.check_details(self.db, line.variant_id, quantity=wanted, given=details,
                                                 kept={"answer": (line.details or {}).get("answer", "")},
                                                 total=wanted)
        elif seller is not None and 0 < wanted < line.quantity:
            trimmed = await seller.check_details(self.db, line.variant_id, quantity=0, given={},
                                                 kept=line.details or {}, total=wanted)
        await self._back_to_cart(order)
        if wanted == 0:
            await self.db.delete(line)
        else:
            line.quantity = wanted
            if trimmed is not None:  # fewer tickets: the names of the places let go go with them; or named afresh
                line.details = trimmed
        await self.db.flush()
        await self._refresh(order)

    async def remove(self, order: Order, line_id: object) -> None:
        await self.set_quantity(order, line_id, 0)

    async def _own_reserved(self, order: Order, variant_id: UUID) -> int:
        stmt = select(func.coalesce(func.sum(Reservation.quantity), 0)).where(
            Reservation.order_id == order.id, Reservation.variant_id == variant_id, Reservation.expires_at > utcnow())
        return int((await self.db.execute(stmt)).scalar_one())

    async def _refresh(self, order: Order) -> None:
        """Reload the lines and recompute the totals (money.py computes them; this stores them)."""
        await self.db.refresh(order, attribute_names=["lines"])
        totals = order_totals(order)
        order.subtotal_minor, order.total_minor, order.tax_minor = totals.subtotal_minor, totals.total_minor, \
            totals.tax_minor
        await self.db.flush()

    async def price_changes(self, order: Order) -> dict[UUID, int]:
        """``{line id: current price}`` for lines whose variant's price changed since it was added."""
        now = await offers_for(self.db, order.lines, member=_member(order))
        return {line.id: now[line.variant_id].price_minor for line in order.lines
                if line.variant_id in now and now[line.variant_id].price_minor != line.unit_price_minor}

    async def merge(self, source: Order, target: Order) -> list[str]:
        """Add ``source``'s lines into ``target`` (quantities added, capped by availability), then
        cancel ``source``. Returns notes about lines that were capped or dropped."""
        notes: list[str] = []
        if source.id == target.id:
            return notes
        await self._back_to_cart(target)
        await self._back_to_cart(source)
        # What the target's buyer may have: a guest line of an event made members-only meanwhile
        # is dropped when merged into another guest's cart, kept when merged into a member's.
        available = await offers_for(self.db, source.lines, member=_member(target))
        for line in source.lines:
            offer = available.get(line.variant_id)
            if offer is None or not offer.active:
                notes.append(f"{line.title} is no longer for sale.")
                continue
            existing = next((x for x in target.lines if x.variant_id == line.variant_id and x.source == line.source),
                            None)
            have = existing.quantity if existing else 0
            total = min(have + line.quantity, most(offer), max(offer.available, have))
            if total < have + line.quantity:
                notes.append(f"{line.title}: only {total} available, your cart has {total}.")
            seller = source_named(line.source)
            if existing is not None:
                existing.quantity = total
                if seller is not None:  # never more names than tickets
                    existing.details = await seller.check_details(
                        self.db, line.variant_id, quantity=0, given={}, kept=existing.details or {}, total=total)
            elif total > 0:
                kept = dict(line.details or {}) if seller is None else await seller.check_details(
                    self.db, line.variant_id, quantity=0, given={}, kept=line.details or {}, total=total)
                self.db.add(OrderLine(id=uuid7(), order_id=target.id, variant_id=line.variant_id, source=line.source,
                                      sku=line.sku,
                                      title=line.title, unit_price_minor=line.unit_price_minor, quantity=total,
                                      tax_class=line.tax_class, tax_rate_bp=line.tax_rate_bp,
                                      unit_weight_grams=line.unit_weight_grams, details=kept))
        await self.db.flush()
        await self._move(source, CART, CANCELLED, actor="merge", note=f"merged into {target.id}")
        await self._refresh(target)
        return notes

    # -- state moves ----------------------------------------------------------------------------------

    async def _move(self, order: Order, from_: str, to: str, *, actor: str = "", actor_id: UUID | None = None,
                    note: str = "", values: Mapping[str, Any] | None = None) -> None:
        await transition(self.db, Order, order.id, from_=from_, to=to, values=values)
        self.db.add(OrderTransition(id=uuid7(), order_id=order.id, from_state=from_, to_state=to, actor=actor[:64],
                                    actor_id=actor_id, note=note))
        await self.db.flush()
        await self.db.refresh(order, attribute_names=["state", "reserved_until", "number", "placed_at", "paid_minor",
                                                      "refunded_minor"])

    def reservation_minutes(self, order: Order) -> int:
        s = self.settings
        return s.cart_reservation_minutes_member if order.user_id else s.cart_reservation_minutes

    async def start_checkout(self, order: Order, *, actor: str = "customer") -> datetime:
        """Reserve every line's stock until now + TTL (again, if already in checkout); returns when
        the hold ends. InsufficientStock (nothing written) when a line cannot be held."""
        if order.state not in OPEN_STATES:
            raise InputProblems({"order": "This order is already placed."}, status=409)
        if not order.lines:
            raise InputProblems({"cart": "Your cart is empty."})
        until = utcnow() + timedelta(minutes=self.reservation_minutes(order))
        async with self.db.begin_nested():
            # A write first: on SQLite it takes the write lock (BEGIN IMMEDIATE) before anything is read.
            await self.db.execute(delete(Reservation).where(Reservation.order_id == order.id))
            await lock_lines(self.db, order.lines)
            now = await offers_for(self.db, order.lines, member=_member(order))  # under the lock, own holds let go
            short = [shortage(line, line.quantity, now[line.variant_id].available if line.variant_id in now else 0,
                              now.get(line.variant_id))
                     for line in order.lines
                     if line.variant_id not in now or not now[line.variant_id].active
                     or now[line.variant_id].available < line.quantity]
            if short:
                raise InsufficientStock(short)
            await self.db.execute(insert(Reservation), [
                {"id": uuid7(), "order_id": order.id, "variant_id": line.variant_id, "quantity": line.quantity,
                 "expires_at": until, "created_at": utcnow(), "updated_at": utcnow()} for line in order.lines])
            if order.state == CART:
                await self._move(order, CART, CHECKOUT, actor=actor, values={"reserved_until": until})
            else:
                await self.db.execute(update(Order).where(Order.id == order.id).values(reserved_until=until))
                await self.db.refresh(order, attribute_names=["reserved_until"])
        return until

    async def _next_number(self) -> str:
        year = utcnow().year
        for _ in range(2):
            got = (await self.db.execute(update(OrderCounter).where(OrderCounter.year == year)
                                         .values(last=OrderCounter.last + 1).returning(OrderCounter.last))).scalar()
            if got is not None:
                return f"{self.settings.cart_order_prefix}-{year}-{int(got):06d}"
            try:
                async with self.db.begin_nested():
                    self.db.add(OrderCounter(id=uuid7(), year=year, last=0))
            except IntegrityError:
                pass  # another placement made the year's row: count on it
        raise RuntimeError("the order counter could not be moved")

    # -- money and fulfilment: VAT rates, delivery rates, collection slots (domains/cart/money.py and
    # domains/cart/slots.py compute; these methods only feed them the settings and the lines) ------

    def vat_rate(self, tax_class: str) -> int:
        """The VAT rate (basis points) of a tax class ("" is the default class); 0 when no rates are
        configured. InputProblems for a class the settings do not name: selling it at a guessed rate
        would mis-state the tax on every receipt."""
        rates = parse_vat_rates(self.settings.cart_vat_rates)
        if not rates:
            return 0
        name = tax_class or self.settings.cart_vat_default.strip().lower()
        if name not in rates:
            raise InputProblems({"sku": f"This product is in the tax class {name!r}, which the shop has not "
                                        "set a VAT rate for; it cannot be sold until it has one."})
        return rates[name]

    def line_snapshot(self, offer: Offer) -> dict[str, Any]:
        """What a line keeps of its variant besides price: tax class, VAT rate, one unit's weight."""
        return {"tax_class": offer.tax_class, "tax_rate_bp": self.vat_rate(offer.tax_class),
                "unit_weight_grams": offer.weight_grams or 0}

    def delivery_rate_bp(self) -> int:
        """Delivery follows the principal supply; taxed at the default class's rate (money.py)."""
        return self.vat_rate("")

    def delivery_quote(self, order: Order) -> int | None:
        """What delivering this cart costs now (by weight bands, or the flat rate); None: too heavy."""
        return delivery_charge(order_totals(order).weight_grams,
                               bands=parse_delivery_rates(self.settings.cart_delivery_rates),
                               flat_minor=self.settings.cart_delivery_rate)

    def delivery_bands(self) -> list[tuple[str, int]]:
        """``[(weights, rate)]`` for the checkout page: "under 1 kg", "1 kg to under 5 kg", "5 kg and
        more". Bands are [from, to) (money.py), so the words say "under": a 1 kg order is in the
        second band, and "up to 1 kg" would promise it the first band's price."""
        def kg(grams: int) -> str:
            return f"{grams / 1000:g} kg"

        bands = parse_delivery_rates(self.settings.cart_delivery_rates)
        return [(f"under {kg(b.to_grams)}" if b.from_grams == 0 and b.to_grams is not None
                 else f"{kg(b.from_grams)} and more" if b.to_grams is None
                 else f"{kg(b.from_grams)} to under {kg(b.to_grams)}", b.rate_minor) for b in bands]

    def collection_points(self) -> tuple[CollectionPoint, ...]:
        return parse_collection_slots(self.settings.cart_collection_slots)

    def _check_collection(self, details: CheckoutDetails, errors: dict[str, str]) -> tuple[str, str]:
        """The location and slot as configured, or an error naming what is offered."""
        points = self.collection_points()
        if not points:
            return "", ""  # no slots configured: collection at the shop in its opening hours
        location = " ".join(details.location.split())
        point = next((p for p in points if p.location.casefold() == location.casefold()), None)
        # The error summary puts "Collection point and time:" before these (app/forms.py
        # field_label), so each message says what is wrong without naming the field again.
        if point is None:
            errors["slot"] = ("Choose " + _either([p.location for p in points]) + "."
                              if not location else f"There is no collection point called {location[:120]!r}; "
                              "choose " + _either([p.location for p in points]) + ".")
            return "", ""
        slot = " ".join(details.slot.split())
        if slot not in point.slots:
            errors["slot"] = (f"Choose a time at {point.location} ({_either(list(point.slots))})."
                              if not slot else f"{slot[:40]!r} is not a time slot at {point.location}; "
                              "choose " + _either(list(point.slots)) + ".")
            return "", ""
        return point.location, slot

    def shipping_for(self, fulfilment: str, order: Order | None = None) -> int:
        """Delivery's charge for ``order`` (0 for collection); InputProblems when it is too heavy."""
        if fulfilment != DELIVERY:
            return 0
        charge = self.delivery_quote(order) if order is not None else self.settings.cart_delivery_rate
        if charge is None:
            raise InputProblems({"fulfilment": self._too_heavy(order)})
        return charge

    def _too_heavy(self, order: Order | None) -> str:
        weight = order_totals(order).weight_grams if order is not None else 0
        bands = parse_delivery_rates(self.settings.cart_delivery_rates)
        limit = bands[-1].to_grams if bands else None
        return (f"This order weighs {weight / 1000:g} kg; we deliver orders under {(limit or 0) / 1000:g} kg. "
                "Choose collection, or split the order.")

    def check_details(self, details: CheckoutDetails, order: Order | None = None) -> CheckoutDetails:
        """The checkout form or JSON, checked before anything is written: every problem at once.
        With ``order``, delivery is also checked against its weight."""
        errors: dict[str, str] = {}
        location, slot = "", ""
        if order is not None and not ships(order):
            # Nothing to hand over (tickets only): no collection or delivery step, whatever was
            # sent; the order is stored as "collection" with no place, slot or address, so no
            # delivery charge can reach it.
            details = CheckoutDetails(email=details.email, fulfilment=COLLECTION, notes=details.notes,
                                      payment=details.payment)
        elif details.fulfilment == COLLECTION:
            location, slot = self._check_collection(details, errors)
        elif details.fulfilment == DELIVERY and order is not None and self.settings.cart_delivery \
                and self.delivery_quote(order) is None:
            errors["fulfilment"] = self._too_heavy(order)
        email = valid_address(details.email or "")
        if email is None:
            errors["email"] = "Give an email address for the receipt (name@example.org)."
        if details.fulfilment not in (COLLECTION, DELIVERY) or (
                details.fulfilment == DELIVERY and not self.settings.cart_delivery):
            errors["fulfilment"] = "Choose collection" + (" or delivery." if self.settings.cart_delivery else ".")
        if details.fulfilment == DELIVERY and len(details.address.strip()) < 5:
            errors["address"] = "Give the address to deliver to."
        if len(details.address) > 2000 or len(details.notes) > 2000:
            errors["notes"] = "Keep the address and notes under 2,000 characters."
        if details.payment not in self.payment_methods():
            errors["payment"] = "Choose how to pay."
        if errors:
            raise InputProblems(errors)
        return CheckoutDetails(email=email or "", fulfilment=details.fulfilment, address=details.address.strip(),
                               notes=details.notes.strip(), payment=details.payment, location=location, slot=slot)

    def payment_methods(self) -> tuple[str, ...]:
        """The providers this instance offers (``collection`` always; ``sumup`` when configured)."""
        return tuple(available_providers(self.settings))

    async def open_payment(self, order: Order, *, http: Any = None) -> str | None:
        """For an online provider: create its checkout (idempotent per order number) and keep its id
        and hosted page on the order; returns where to send the payer (None for pay on collection).

        Network I/O: the caller commits the placement first, so no lock is held while we wait."""
        if order.payment_id and order.payment_url:
            return order.payment_url
        provider = available_providers(self.settings, http=http).get(order.payment_provider)
        if provider is None or order.payment_provider == "collection" or order.number is None:
            return None
        base = self.settings.base_url.rstrip("/")
        record = await provider.create(
            reference=order.number, amount_minor=order.total_minor, currency=order.currency,
            description=f"Order {order.number}", return_url=f"{base}/cart/order/{order.token}/return",
            webhook_url=webhook_url(self.settings, provider.name))
        await self.db.execute(update(Order).where(Order.id == order.id).values(
            payment_id=record.provider_id[:128], payment_url=(record.payment_url or "")[:2048]))
        await self.db.refresh(order, attribute_names=["payment_id", "payment_url"])
        return record.payment_url

    async def apply_payment(self, record: PaymentRecord) -> str:
        """Move the order a provider's record (a ``fetch`` result, never a webhook body) is about;
        idempotent: a replayed or late record moves nothing twice. Returns what happened.

        Money only ever moves an order out of ``payment_pending``. Every later state is either
        past payment (paid, fulfilled, refunded: the money is on the books already, so a replay is
        old news) or a decision somebody took (cancelled, needs attention) that a notice must not
        undo: see :meth:`mark_paid` for money that arrives after a cancellation."""
        order = await self._load(Order.payment_provider == record.provider, Order.payment_id == record.provider_id)
        if order is None:
            order = await self._load(Order.number == record.reference, Order.payment_provider == record.provider)
        if order is None:
            return "unknown"
        if record.status in (PaymentStatus.PAID, PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED):
            matches = record.amount_minor == order.total_minor and record.currency == order.currency
            paid = record.amount_minor if record.currency == order.currency else 0
            # The checkout's id goes into the history note: it is how a replay is recognised.
            note = f"{record.provider} {record.status} {record.provider_id}"
            if order.state == CANCELLED:
                return "needs_attention" if await self.mark_paid(
                    order, actor="payments", note=note, amount_minor=paid, checkout_id=record.provider_id) \
                    else "unchanged"
            if not matches:
                if order.state == PAYMENT_PENDING:
                    await self._move(order, PAYMENT_PENDING, NEEDS_ATTENTION, actor="payments",
                                     note=f"paid {record.amount_minor} {record.currency}, "
                                          f"order total {order.total_minor} {order.currency} ({note})",
                                     values={"paid_minor": max(paid, 0)})
                    return "needs_attention"
                return "ignored"
            return "paid" if await self.mark_paid(order, actor="payments", note=note) else "unchanged"
        # Only the order's current checkout speaks for it: after a retry (a new checkout) the old
        # one's "failed" or "expired" is history, not news.
        current = not order.payment_id or record.provider_id == order.payment_id
        if record.status is PaymentStatus.FAILED:
            # The payer may try again (a new checkout) until the order lapses (fulfilment.expire_unpaid).
            if order.state == PAYMENT_PENDING and current:
                from domains.cart.fulfilment import pay_by

                await notices.payment_failed(self.db, self.settings, order, checkout_id=record.provider_id,
                                             paid_by=pay_by(order, self.settings))
                return "failed"
            return "unchanged"
        if record.status in (PaymentStatus.EXPIRED, PaymentStatus.CANCELLED):
            if order.state == PAYMENT_PENDING and current and await self.cancel(order, actor="payments",
                                                                                note=f"payment {record.status}"):
                return "cancelled"
            return "unchanged"
        return "pending"

    async def place(self, order: Order, details: CheckoutDetails, *, idempotency_key: str,
                    actor_id: UUID | None = None) -> Order:
        """Place the order: reservations become allocations, the order gets its number and moves to
        ``payment_pending``, the receipt is queued; all in one savepoint or nothing. The same
        ``idempotency_key`` again answers the order it placed."""
        key = (idempotency_key or "").strip()[:100]
        if len(key) < 16:
            raise InputProblems({"idempotency_key": "Reload the checkout page and try again."}, status=400)
        done = await self._placed_for(key)
        if done is not None:
            return done
        details = self.check_details(details, order)
        if order.state not in OPEN_STATES:
            raise InputProblems({"order": "This order is already placed."}, status=409)
        if not order.lines:
            raise InputProblems({"cart": "Your cart is empty."})
        try:
            async with self.db.begin_nested():
                # The key first: a concurrent double submit waits here, then finds it taken.
                self.db.add(IdempotencyKey(id=uuid7(), key=key, order_id=order.id))
                await self.db.flush()
                if order.state == CART:
                    await self._move(order, CART, CHECKOUT, actor="customer", actor_id=actor_id)
                await self.db.execute(delete(Reservation).where(Reservation.order_id == order.id))
                lines = sorted(order.lines, key=lambda x: (x.source, x.variant_id))
                await lock_lines(self.db, lines)
                now = await offers_for(self.db, lines, member=_member(order))
                short: list[Shortage] = []
                for line in lines:
                    offer = now.get(line.variant_id)
                    if offer is None or not offer.active or not await _source(line.source).allocate(
                            self.db, line.variant_id, line.quantity):
                        short.append(shortage(line, line.quantity, offer.available if offer else 0, offer))
                if short:
                    raise InsufficientStock(short)
                totals = await self._price_for_placement(order, details, now)
                await self._move(order, CHECKOUT, PAYMENT_PENDING, actor="customer", actor_id=actor_id, values={
                    "number": await self._next_number(), "placed_at": utcnow(), "email": details.email,
                    "fulfilment": details.fulfilment, "address": details.address, "notes": details.notes,
                    "payment_provider": details.payment, "reserved_until": None,
                    "collection_location": details.location, "collection_slot": details.slot,
                    **placement_values(totals, shipping_rate_bp=self.delivery_rate_bp())})
        except IntegrityError:
            done = await self._placed_for(key)
            if done is not None:
                return done
            raise
        except (TransitionLost, IllegalTransition) as exc:
            raise InputProblems({"order": "This order was placed or changed meanwhile."}, status=409) from exc
        placed = await self._load(Order.id == order.id)
        assert placed is not None
        await self.receipt(placed)
        return placed

    async def _price_for_placement(self, order: Order, details: CheckoutDetails,
                                   now: Mapping[UUID, Offer]) -> Totals:
        """Take the lines' tax class, VAT rate and weight as they are now (the rate in force at
        placement is the one charged), then the order's totals with delivery; money.py computes."""
        for line in order.lines:
            offer = now.get(line.variant_id)
            if offer is not None:
                snapshot = self.line_snapshot(offer)
                line.tax_class, line.tax_rate_bp = snapshot["tax_class"], snapshot["tax_rate_bp"]
                line.unit_weight_grams = snapshot["unit_weight_grams"]
        await self.db.flush()
        return self.totals_for(order, details.fulfilment)

    def totals_for(self, order: Order, fulfilment: str) -> Totals:
        """The order's totals as placing it with ``fulfilment`` would store them, delivery's charge
        and its VAT included. The checkout review shows these and placement stores them, so the VAT
        lines a customer reviews are the ones on the order. InputProblems when too heavy to deliver."""
        shipping = self.shipping_for(fulfilment, order)
        return order_totals(order, shipping_minor=shipping, shipping_rate_bp=self.delivery_rate_bp())

    async def place_again(self, idempotency_key: str) -> Order:
        """The order a key placed already (a double submit arriving after the first committed)."""
        done = await self._placed_for((idempotency_key or "").strip()[:100])
        if done is None:
            raise InputProblems({"cart": "Your cart is empty."})
        return done

    async def _placed_for(self, key: str) -> Order | None:
        order_id = (await self.db.execute(select(IdempotencyKey.order_id).where(IdempotencyKey.key == key))).scalar()
        return await self._load(Order.id == order_id) if order_id is not None else None

    async def receipt(self, order: Order) -> None:
        """Queue the order confirmation (sent if and only if the placement commits)."""
        context = order_context(order)
        await send_mail(self.db, OutgoingMail(to=order.email, subject=f"Your order {order.number}",
                                              template="cart/receipt", context=context, tag="order"),
                        unique_key=f"cart-receipt:{order.id}")
        await notices.staff_new_order(self.db, self.settings, order, context["lines"])

    # -- after placement ------------------------------------------------------------------------------

    async def mark_paid(self, order: Order, *, actor: str = "payments", actor_id: UUID | None = None,
                        note: str = "", amount_minor: int | None = None, checkout_id: str = "") -> bool:
        """Move to ``paid`` (idempotent: False when it already moved).

        A cancelled order is never moved back to ``paid``, whoever cancelled it (staff, or the
        expiry of an unpaid order): cancelling released its stock and told the customer, and
        only a person can undo that. Saleor (``OrderStatus.CANCELED``, "permanently canceled
        order") and Vendure (its default order process gives ``Cancelled`` no way out) both keep
        the order cancelled and leave the money to staff. We do the same, but put the order in
        ``needs_attention`` when the money is news (``paid_minor`` was 0 and no earlier move
        recorded this checkout), so it lands in the staff queue; staff are mailed, the order holds
        no stock (``holds_stock``), and a refund from there is the usual one. A cancelled order
        whose money is on the books already (paid, then cancelled) ignores the notice: it is a
        replay. ``amount_minor`` is what arrived (default: the order's total)."""
        if order.state == PAYMENT_PENDING:
            try:
                async with self.db.begin_nested():
                    await self._move(order, PAYMENT_PENDING, PAID, actor=actor, actor_id=actor_id, note=note,
                                     values={"paid_minor": order.total_minor})
                    await self._paid(order)
            except TransitionLost:
                return False
            return True
        if order.state == CANCELLED:
            order = await self.lock(order)
            if order.state != CANCELLED or order.paid_minor > 0 or (
                    checkout_id and await self._checkout_recorded(order, checkout_id)):
                return False
            amount = order.total_minor if amount_minor is None else amount_minor
            why = "paid after the order was cancelled: refund it, or take it up with the customer"
            try:
                await self._move(order, CANCELLED, NEEDS_ATTENTION, actor=actor, actor_id=actor_id,
                                 note=f"{why} ({note})" if note else why, values={"paid_minor": max(amount, 0)})
            except TransitionLost:
                return False
            await notices.staff_paid_after_cancel(self.db, self.settings, order, amount_minor=amount,
                                                  checkout_id=checkout_id)
            return True
        return False

    async def _checkout_recorded(self, order: Order, checkout_id: str) -> bool:
        """Whether a payments move of ``order`` already names ``checkout_id`` (apply_payment's notes)."""
        found = (await self.db.execute(
            select(OrderTransition.id).where(OrderTransition.order_id == order.id,
                                             OrderTransition.actor == "payments",
                                             OrderTransition.note.contains(checkout_id, autoescape=True))
            .limit(1))).scalar()
        return found is not None

    async def _paid(self, order: Order) -> None:
        """Each source issues what was bought (events: the tickets), in the paying transaction."""
        for name, sold in _sold(order.lines).items():
            await _source(name).paid(self.db, order_ref(order), sold)

    async def issued(self, order: Order) -> list[TicketLink]:
        """What the sources issued for the order's lines (ticket pages), for the order page."""
        links: list[TicketLink] = []
        for name in sorted({line.source for line in order.lines}):
            source = source_named(name)
            if source is not None:
                links.extend(await source.issued(self.db, order.id))
        return links

    async def lock(self, order: Order) -> Order:
        """Lock the order's row until the transaction ends, then read it and its lines afresh.

        ``SELECT … FOR UPDATE`` on PostgreSQL; on SQLite the clause takes the write lock
        (``app.db._locks_for_update``), which serialises the same way. Every move that releases
        stock or hands units over takes it first, so a refund and a hand-over of one order run one
        after the other and each sees what the other committed (lines loaded at request start
        are stale by then)."""
        await self.db.execute(select(Order.id).where(Order.id == order.id).with_for_update())
        fresh = await self._load(Order.id == order.id)
        assert fresh is not None
        return fresh

    async def holds_stock(self, order: Order) -> bool:
        """Whether the order's lines are allocated right now (call with the row locked).

        Placing allocates; cancelling and a full refund release; a payment for a cancelled order
        allocates nothing (:meth:`mark_paid`). ``needs_attention`` is the one state reached both
        ways: from ``payment_pending`` (an amount mismatch: the allocation is still held) and from
        ``cancelled`` (paid after the cancellation: nothing is held), so its last entry in the
        history says which. Releasing when nothing is held would
        free units allocated to other orders (oversell)."""
        if order.state in (PAYMENT_PENDING, PAID, PARTIALLY_FULFILLED, FULFILLED):
            return True
        if order.state != NEEDS_ATTENTION:
            return False
        came_from = (await self.db.execute(
            select(OrderTransition.from_state)
            .where(OrderTransition.order_id == order.id, OrderTransition.to_state == NEEDS_ATTENTION)
            .order_by(OrderTransition.id.desc()).limit(1))).scalar()
        return came_from == PAYMENT_PENDING

    async def release_held(self, order: Order) -> None:
        """Give back the units not handed over (the caller checked :meth:`holds_stock`, row locked),
        and let each source take back what it issued (events cancels the tickets): called when the
        order is cancelled or fully refunded."""
        for line in order.lines:
            if line.quantity > line.fulfilled_quantity:
                await _source(line.source).release(self.db, line.variant_id, line.quantity - line.fulfilled_quantity)
        for name, sold in _sold(order.lines).items():
            await _source(name).voided(self.db, order_ref(order), sold)

    async def cancel(self, order: Order, *, actor: str, actor_id: UUID | None = None, note: str = "") -> bool:
        """Cancel an order not yet fulfilled, returning its stock if it holds any (idempotent)."""
        if order.state not in (PAYMENT_PENDING, PAID, NEEDS_ATTENTION):
            return False
        order = await self.lock(order)
        if order.state not in (PAYMENT_PENDING, PAID, NEEDS_ATTENTION):
            return False
        if any(line.fulfilled_quantity for line in order.lines):
            raise InputProblems({"order": "Part of this order was fulfilled already."}, status=409)
        held = await self.holds_stock(order)
        try:
            async with self.db.begin_nested():
                await self._move(order, order.state, CANCELLED, actor=actor, actor_id=actor_id, note=note)
                if held:
                    await self.release_held(order)
        except TransitionLost:
            return False
        await notices.cancelled(self.db, self.settings, order, reason=note)
        return True

    async def fulfil(self, order: Order, *, actor: str, actor_id: UUID | None = None) -> bool:
        """Hand over every line of a paid order (idempotent: False when there is nothing to do)."""
        if order.state not in (PAID, PARTIALLY_FULFILLED, NEEDS_ATTENTION):
            return False
        try:
            await self._move(order, order.state, FULFILLED, actor=actor, actor_id=actor_id)
        except TransitionLost:
            return False
        await self.db.execute(update(OrderLine).where(OrderLine.order_id == order.id)
                              .values(fulfilled_quantity=OrderLine.quantity))
        return True

    async def admin_list(self, state: str = "", *, limit: int = 200) -> list[Order]:
        stmt = select(Order).where(Order.number.is_not(None)).options(selectinload(Order.lines))
        if state:
            stmt = stmt.where(Order.state == state)
        return list((await self.db.execute(stmt.order_by(Order.placed_at.desc()).limit(limit))).scalars())

    async def history(self, order: Order) -> list[OrderTransition]:
        stmt = (select(OrderTransition).where(OrderTransition.order_id == order.id)
                .order_by(OrderTransition.created_at))
        return list((await self.db.execute(stmt)).scalars())

    async def reconcile_payments(self, *, older_than: timedelta = timedelta(minutes=10), limit: int = 200) -> int:
        """Queue a re-fetch of every online payment still pending after ``older_than`` (a webhook that
        never came, a payer who never returned); the answer moves the order through payments.updated."""
        stmt = (select(Order.payment_provider, Order.payment_id)
                .where(Order.state == PAYMENT_PENDING, Order.payment_provider != "collection",
                       Order.payment_id != "", Order.placed_at < utcnow() - older_than)
                .order_by(Order.placed_at).limit(limit))
        rows = (await self.db.execute(stmt)).all()
        for provider, payment_id in rows:
            await request_refresh(self.db, provider, payment_id)
        return len(rows)

    async def sweep_reservations(self) -> int:
        """Delete expired reservations (availability ignores them already); returns how many."""
        result = await self.db.execute(delete(Reservation).where(Reservation.expires_at <= utcnow()))
        return int(result.rowcount)  # type: ignore[attr-defined]


def order_totals(order: Order, *, shipping_minor: int | None = None, shipping_rate_bp: int | None = None) -> Totals:
    """The order's totals from its lines (as snapshot) and delivery: money.py's one computation.
    Without arguments, the delivery charge and its rate are the order's own (0 for a cart)."""
    return compute(order.currency,
                   [Line(line.unit_price_minor, line.quantity, order.currency, line.tax_rate_bp, line.unit_weight_grams)
                    for line in order.lines],
                   shipping_minor=order.shipping_minor if shipping_minor is None else shipping_minor,
                   shipping_rate_bp=order.shipping_rate_bp if shipping_rate_bp is None else shipping_rate_bp)


def placement_values(totals: Totals, *, shipping_rate_bp: int) -> dict[str, int]:
    """The order's money columns as placement writes them."""
    return {"subtotal_minor": totals.subtotal_minor, "shipping_minor": totals.shipping_minor,
            "total_minor": totals.total_minor, "tax_minor": totals.tax_minor, "weight_grams": totals.weight_grams,
            "shipping_rate_bp": shipping_rate_bp}


def ships(order: Order) -> bool:
    """Whether any of the order's lines is handed over (collected or delivered): False for an order
    of tickets only (their source's ``ships``, domains/cart/sources.py), and for an empty one."""
    return any(source_ships(line.source) for line in order.lines)


def order_context(order: Order) -> dict[str, Any]:
    """What the receipt and the order pages show (JSON-able: it rides in the mail job)."""
    totals = order_totals(order)

    def money(amount: int) -> str:
        return format_minor(amount, order.currency)

    return {
        "number": order.number or "", "state": order.state, "email": order.email, "fulfilment": order.fulfilment,
        "address": order.address, "notes": order.notes, "payment": order.payment_provider,
        "location": order.collection_location, "slot": order.collection_slot,
        "ships": ships(order),
        "lines": [{"title": line.title, "sku": line.sku, "quantity": line.quantity, "source": line.source,
                   "item": str(line.variant_id), "ships": source_ships(line.source),
                   "unit_price": money(line.unit_price_minor), "total": money(total)}
                  for line, total in zip(order.lines, totals.line_totals, strict=True)],
        "subtotal": money(totals.subtotal_minor), "shipping": money(totals.shipping_minor),
        "total": money(totals.total_minor), "vat": totals.vat_lines(),
        # What was paid and refunded, once money moved ("" before): the order page says so in place
        # of the instruction how to pay.
        "paid": money(order.paid_minor) if order.paid_minor else "",
        "refunded": money(order.refunded_minor) if order.refunded_minor else "",
    }

