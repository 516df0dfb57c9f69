"""Paid tickets through the cart (issue 18 item 4; Pretix's quotas and positions, design/domains.md §3).

A :class:`TicketType` is a priced ticket for one date of an event. Events is a line source of the
cart (domains/cart/sources.py): "Buy tickets" adds the ticket type to the cart, and from there the
cart's rules hold, with the date's quota standing in for stock:

- **availability** = the quota's ``capacity - taken`` (the event's capacity before anyone booked)
  minus the cart's unexpired reservations of every ticket type of that date (the quota is shared
  by free bookings and all ticket types of the date);
- **checkout** reserves places for the cart's TTL under the quota row's lock (``lock``);
- **placing** takes them with one conditional UPDATE of the quota (``allocate``: ``taken + n +
  others' reservations <= capacity``), so racing buyers never overbook;
- **payment** issues the tickets (``paid``): a confirmed booking tied to the order, one position
  per place with a 192-bit secret (QR code on the ticket page) and the confirmation mail.
  Before payment there are no positions, so a check-in of an unpaid order finds no ticket
  (Pretix's ``invalid``); nothing can be scanned in before the money is in;
- **cancelling or refunding** the order gives the places back (``release``) and cancels its
  bookings and positions (``voided``: a later scan answers ``canceled``); freed places are offered
  to the date's waiting list as a cancelled free booking's are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

import msgspec
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import settings_of
from app.forms import InputProblems
from app.money import format_minor
from app.settings import Settings
from domains.account.models import User
from domains.cart.sources import Offer, OrderRef, SoldLine, TicketLink, register_source, reserved_among
from domains.events import keys
from domains.events.booking_models import CANCELLED, CONFIRMED, Booking, EventQuota, Position, TicketType
from domains.events.models import CANCELLED as EVENT_CANCELLED
from domains.events.models import MEMBERS, Event
from domains.events.services.bookings import MAX_ANSWER, MAX_NAME, MAX_PLACES, Attendee, BookingService, options_for
from fragments.purge import emit_purge

__all__ = ["SOURCE", "TicketSource", "create_ticket_type", "create_ticket_types", "on_sale", "parse_price",
           "price_text", "set_on_sale", "ticket_types"]

SOURCE: Final = "events"
MAX_PRICE_MINOR: Final = 100_000_000


def _service(db: AsyncSession) -> BookingService:
    settings = settings_of(db) or Settings.from_env()
    return BookingService(db, base_url=settings.base_url, offer_hours=settings.events_offer_hours)


def parse_price(raw: object) -> int:
    """A price in minor units as typed ("1500" = 15.00): a whole number from 1; InputProblems otherwise."""
    text = str(raw).strip()
    if not text.isascii() or not text.isdigit() or len(text) > 9 or int(text) < 1 or int(text) > MAX_PRICE_MINOR:
        raise InputProblems({"price": "The price is a whole number of minor units (cents/pence) from 1, "
                                      "e.g. 1500 for 15.00; a free ticket is a booking, not a ticket type."})
    return int(text)


async def ticket_types(db: AsyncSession, event: Event) -> list[TicketType]:
    return list((await db.execute(select(TicketType).where(TicketType.event_id == event.id)
                                  .order_by(TicketType.occurrence, TicketType.price_minor, TicketType.name))).scalars())


async def create_ticket_type(db: AsyncSession, event: Event, *, occurrence: str, name: str, price_minor: object,
                             currency: str, description: str = "") -> TicketType:
    """A priced ticket type for the date ``occurrence`` of ``event`` (staff's admin page, the CLI).
    InputProblems (nothing written) for an event without capacity, a past or unknown date, a bad
    name or price, or a name the date has already."""
    errors: dict[str, str] = {}
    if event.capacity is None:
        errors["capacity"] = "Give the event a capacity first: tickets are sold from its places."
    if event.status == EVENT_CANCELLED:
        errors["occurrence"] = "This event is cancelled: it sells no tickets."
    elif await _service(db).date_of(event, occurrence) is None:
        errors["occurrence"] = "Choose one of the event's upcoming dates."
    clean = " ".join(name.split())
    if not 1 <= len(clean) <= 120:
        errors["name"] = "Name the ticket (at most 120 characters), e.g. “Standard” or “Concession”."
    price = 0
    try:
        price = parse_price(price_minor)
    except InputProblems as exc:
        errors.update(exc.errors)
    if len(description) > 2000:
        errors["description"] = "Describe the ticket in at most 2,000 characters."
    if errors:
        raise InputProblems(errors)
    ticket = TicketType(event_id=event.id, occurrence=occurrence, name=clean, description=description.strip(),
                        price_minor=price, currency=currency.upper()[:3], active=True)
    try:
        async with db.begin_nested():
            db.add(ticket)
            await db.flush()
    except IntegrityError:
        raise InputProblems({"name": f"That date has a ticket called “{clean}” already."}, status=409) from None
    await emit_purge(db, {keys.event(event.id)})
    return ticket


async def create_ticket_types(db: AsyncSession, event: Event, *, name: str, price_minor: object, currency: str,
                              limit: int = 20) -> list[TicketType]:
    """One ticket type of ``price_minor`` for each of the event's next ``limit`` dates (a one-off
    event: its one date). What ``rose-ash events create --price MINOR`` calls."""
    dates = await _service(db).dates(event, limit=limit)
    if not dates:
        raise InputProblems({"occurrence": "This event has no upcoming dates to sell tickets for."})
    return [await create_ticket_type(db, event, occurrence=d.key, name=name, price_minor=price_minor,
                                     currency=currency) for d in dates]


async def set_on_sale(db: AsyncSession, event: Event, ticket_id: UUID, *, on: bool) -> TicketType | None:
    """Put a ticket type of ``event`` on sale or take it off (tickets sold stay valid); None: not its."""
    ticket = (await db.execute(select(TicketType).where(TicketType.id == ticket_id,
                                                        TicketType.event_id == event.id))).scalar_one_or_none()
    if ticket is not None:
        ticket.active = on
        await db.flush()
        await emit_purge(db, {keys.event(event.id)})
    return ticket


async def on_sale(db: AsyncSession, event: Event) -> list[dict[str, str]]:
    """The event page's "Buy tickets" rows: ticket types on sale for upcoming dates, in date order.
    The page is public and edge-cached (no CSRF there): its form GETs events' private buying page
    (``/events/<slug>/tickets?q-<id>=n``, booking_web.py), which names the tickets and adds them."""
    if event.capacity is None or event.status == EVENT_CANCELLED:
        return []
    now_key = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")  # a coarse cut; the cart checks the date exactly
    rows = []
    for ticket in await ticket_types(db, event):
        if ticket.active and ticket.occurrence >= now_key[:8]:
            rows.append({"name": ticket.name, "description": ticket.description, "price": price_text(ticket),
                         "when": _date_text(ticket.occurrence), "id": str(ticket.id),
                         "buy": f"/events/{event.slug}/tickets?q-{ticket.id}=1"})
    return rows


def _date_text(key: str) -> str:
    try:
        local = datetime.strptime(key, "%Y%m%dT%H%M%S")
    except ValueError:
        return key
    return f"{local:%a} {local.day} {local:%B %Y}, {local:%H:%M}"


async def _ensure_quota(db: AsyncSession, event: Event, key: str) -> None:
    """The date's quota row, made if nobody booked yet (a concurrent maker wins harmlessly)."""
    if event.capacity is None:
        return
    found = (await db.execute(select(EventQuota.id).where(EventQuota.event_id == event.id,
                                                          EventQuota.occurrence == key))).first()
    if found:
        return
    try:
        async with db.begin_nested():
            db.add(EventQuota(event_id=event.id, occurrence=key, capacity=event.capacity, taken=0))
            await db.flush()
    except IntegrityError:
        pass


class AttendeeIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str = ""
    dietary: str = ""


class TicketDetails(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What a ticket line asks (the cart's ``details``): one attendee per ticket added, the answer."""

    attendees: list[AttendeeIn] = []
    answer: str = ""


def _date_types(event_id: UUID, key: str) -> object:
    """SELECT of the ids of every ticket type of one date (their reservations share its quota)."""
    return select(TicketType.id).where(TicketType.event_id == event_id, TicketType.occurrence == key)


class TicketSource:
    """Events' ticket types as a line source of the cart (domains/cart/sources.py)."""

    name: str = SOURCE
    ships: bool = False  # a ticket is issued once paid: no collection, delivery or packing
    # Each ticket carries its attendee's name: the cart never raises a line without the added
    # names (domains/cart/sources.py ``named_units``); it links to the names page instead.
    named_units: bool = True

    async def change_url(self, db: AsyncSession, item_id: UUID, line_id: UUID) -> str | None:
        """The names page prefilled with the cart line ``line_id`` (its quantity and names), whose
        answer replaces the line: Pretix's way of changing a ticket position."""
        found = await self._types(db, [item_id])
        if not found:
            return None
        return f"/events/{found[0][1].slug}/tickets?line={line_id}"

    async def add_url(self, db: AsyncSession, item_id: UUID, quantity: int) -> str | None:
        """The names page with ``quantity`` name rows for the ticket type ``item_id`` (capped as
        the page caps it): where the cart's no-JS add-to-cart step sends the buyer, since its own
        form has no name fields. The page checks the event's visibility itself."""
        found = await self._types(db, [item_id])
        if not found:
            return None
        return f"/events/{found[0][1].slug}/tickets?q-{item_id}={max(1, min(quantity, MAX_PLACES))}"

    async def _types(self, db: AsyncSession, ids: Iterable[UUID]) -> list[tuple[TicketType, Event]]:
        id_list = list(dict.fromkeys(ids))
        if not id_list:
            return []
        rows = await db.execute(select(TicketType, Event).join(Event, Event.id == TicketType.event_id)
                                .where(TicketType.id.in_(id_list)).order_by(TicketType.id))
        return [(t, e) for t, e in rows.tuples().all()]

    async def offers(self, db: AsyncSession, *, ids: Iterable[UUID] = (),
                     skus: Iterable[str] = ()) -> dict[UUID, Offer]:
        service = _service(db)
        found: dict[UUID, Offer] = {}
        for ticket, event in await self._types(db, ids):
            quota = (await db.execute(select(EventQuota.capacity - EventQuota.taken).where(
                EventQuota.event_id == event.id, EventQuota.occurrence == ticket.occurrence))).scalar()
            held = int((await db.execute(
                select(reserved_among(_date_types(event.id, ticket.occurrence))))).scalar_one())
            free = (quota if quota is not None else (event.capacity or 0)) - held
            reason = ""
            if event.capacity is None:
                reason = "This event takes no bookings."
            elif event.status == EVENT_CANCELLED:
                reason = f"“{event.title}” is cancelled: it sells no tickets."
            elif not ticket.active:
                reason = f"{ticket.name} tickets for “{event.title}” are no longer on sale."
            elif await service.date_of(event, ticket.occurrence) is None:
                reason = f"“{event.title}” on {_date_text(ticket.occurrence)} has begun or passed: it sells no tickets."
            found[ticket.id] = Offer(
                id=ticket.id, source=self.name, sku=f"TICKET-{ticket.occurrence[:8]}",
                title=f"{event.title}: {ticket.name} ticket, {_date_text(ticket.occurrence)} ({event.tz})",
                price_minor=ticket.price_minor, currency=ticket.currency, active=not reason,
                available=max(0, int(free)), url=event.path, reason=reason,
                members_only=event.visibility == MEMBERS, limit=MAX_PLACES,
                places_for=f"“{event.title}”, {_date_text(ticket.occurrence)}")
        return found

    async def lock(self, db: AsyncSession, ids: Iterable[UUID]) -> None:
        """Lock the dates' quota rows (made first if missing), in id order, until the transaction ends."""
        quota_ids: list[UUID] = []
        for ticket, event in await self._types(db, ids):
            await _ensure_quota(db, event, ticket.occurrence)
            got = (await db.execute(select(EventQuota.id).where(EventQuota.event_id == event.id,
                                                                EventQuota.occurrence == ticket.occurrence))).scalar()
            if got is not None:
                quota_ids.append(got)
        if quota_ids:
            await db.execute(select(EventQuota.id).where(EventQuota.id.in_(quota_ids))
                             .order_by(EventQuota.id).with_for_update())

    async def allocate(self, db: AsyncSession, item_id: UUID, quantity: int) -> bool:
        """Take ``quantity`` places of the date in one conditional UPDATE, counting every unexpired
        cart reservation of the date (the caller deleted its own first); whether it happened."""
        if quantity <= 0:
            return quantity == 0
        found = await self._types(db, [item_id])
        if not found:
            return False
        ticket, event = found[0]
        if event.status == EVENT_CANCELLED or event.capacity is None:
            return False
        await _ensure_quota(db, event, ticket.occurrence)
        others = reserved_among(_date_types(event.id, ticket.occurrence))
        result = await db.execute(
            update(EventQuota).where(EventQuota.event_id == event.id, EventQuota.occurrence == ticket.occurrence,
                                     EventQuota.taken + quantity + others <= EventQuota.capacity)
            .values(taken=EventQuota.taken + quantity).execution_options(synchronize_session=False))
        done = int(getattr(result, "rowcount", 0)) == 1
        if done:
            await emit_purge(db, {keys.event(event.id)})
        return done

    async def release(self, db: AsyncSession, item_id: UUID, quantity: int) -> int:
        """Give ``quantity`` places of the date back (conditional: never below 0); how many."""
        found = await self._types(db, [item_id])
        if not found or quantity <= 0:
            return 0
        ticket, event = found[0]
        result = await db.execute(
            update(EventQuota).where(EventQuota.event_id == event.id, EventQuota.occurrence == ticket.occurrence,
                                     EventQuota.taken >= quantity)
            .values(taken=EventQuota.taken - quantity).execution_options(synchronize_session=False))
        if int(getattr(result, "rowcount", 0)) != 1:
            return 0
        await emit_purge(db, {keys.event(event.id)})
        return quantity

    async def check_details(self, db: AsyncSession, item_id: UUID, *, quantity: int, given: Mapping[str, Any],
                            kept: Mapping[str, Any], total: int) -> dict[str, Any]:
        """The attendees of ``quantity`` more tickets and the event's question, checked as a free
        booking's are (BookingService._attendees): every ticket added is named, names and dietary
        needs at most 200 characters, a required question answered. The line keeps its earlier
        names followed by these, never more than the ``total`` tickets it holds: the latest names
        win (tickets are issued to the first names, so stale ones must not crowd them out); the
        latest answer wins. Nothing given: the line keeps what it had, its names cut to ``total``
        (a lowered line lets go of its last places' names). Tickets added with nothing given are
        refused like tickets added with blank names (the cart's add-to-cart forms and an API call
        without ``details`` carry none): no path makes a ticket nobody named."""
        if not given and quantity <= 0:
            return _fit(kept, total, latest=False)
        try:
            details = msgspec.convert(dict(given), TicketDetails)
        except msgspec.ValidationError as exc:
            raise InputProblems({"details": f"Ticket details: {exc}."}) from None
        found = await self._types(db, [item_id])
        if not found:
            raise InputProblems({"sku": "No such ticket."}, status=404)
        _, event = found[0]
        options = await options_for(db, event)
        errors: dict[str, str] = {}
        people = BookingService._attendees([Attendee(a.name, a.dietary) for a in details.attendees], quantity, "",
                                           options, errors)
        answer = details.answer.strip()
        if options.question:
            if len(answer) > MAX_ANSWER:
                errors["answer"] = f"At most {MAX_ANSWER:,} characters."
            elif not answer and options.question_required and not kept.get("answer"):
                errors["answer"] = f"Answer “{options.question}”."
        else:
            answer = ""  # nothing was asked: nothing is kept
        if errors:
            raise InputProblems(errors)
        return _fit({"attendees": [*list(kept.get("attendees") or []), *people],
                     "answer": answer or str(kept.get("answer") or "")}, total, latest=True)

    async def paid(self, db: AsyncSession, order: OrderRef, lines: Sequence[SoldLine]) -> None:
        """Issue the tickets: per line a confirmed booking tied to the order (and to the member who
        ordered, so their tickets page lists it), a position per place carrying the attendee's name
        and dietary needs as given when the tickets were added (the buyer's name for a ticket left
        unnamed), the confirmation mail. Idempotent (a line already issued is skipped). The places
        were taken at placement, so the quota is not touched here."""
        service = _service(db)
        user = await db.get(User, order.user_id) if order.user_id else None
        name = (user.name if user is not None and user.name else order.email.split("@")[0])[:MAX_NAME]
        types = {t.id: (t, e) for t, e in await self._types(db, [line.item_id for line in lines])}
        for line in lines:
            if line.item_id not in types:
                continue  # the ticket type was deleted meanwhile: staff see the paid order and sort it out
            ticket, event = types[line.item_id]
            already = (await db.execute(select(Booking.id).where(
                Booking.order_id == order.id, Booking.ticket_type_id == ticket.id, Booking.state == CONFIRMED))).first()
            if already:
                continue
            people = [p for p in (line.details.get("attendees") or []) if isinstance(p, dict)][:line.quantity]
            booking = Booking(event_id=ticket.event_id, occurrence=ticket.occurrence, user_id=order.user_id, name=name,
                              email=order.email, quantity=line.quantity, state=CONFIRMED,
                              attendees=[{"name": str(p.get("name") or ""), "dietary": str(p.get("dietary") or "")}
                                         for p in people],
                              answer=str(line.details.get("answer") or "")[:MAX_ANSWER],
                              order_id=order.id, ticket_type_id=ticket.id)
            db.add(booking)
            await db.flush()
            service._positions(booking)
            await db.flush()
            await service._mail(event, booking, "confirmed")
            await emit_purge(db, {keys.event(event.id)})

    async def voided(self, db: AsyncSession, order: OrderRef, lines: Sequence[SoldLine]) -> None:
        """The order was cancelled or refunded: cancel its bookings and positions (a later scan
        answers ``canceled``), mail the buyer, offer the freed places (given back by ``release``
        already) to the date's waiting list."""
        service = _service(db)
        rows = (await db.execute(update(Booking).where(Booking.order_id == order.id, Booking.state != CANCELLED)
                                 .values(state=CANCELLED, cancelled_at=datetime.now(UTC))
                                 .returning(Booking.id).execution_options(synchronize_session=False))).scalars().all()
        if not rows:
            return
        await db.execute(update(Position).where(Position.booking_id.in_(rows)).values(cancelled=True)
                         .execution_options(synchronize_session=False))
        for booking_id in rows:
            booking = await db.get(Booking, booking_id, populate_existing=True)
            event = await db.get(Event, booking.event_id) if booking else None
            if booking is None or event is None:
                continue
            await service._mail(event, booking, "cancelled")
            await service.promote(event, booking.occurrence)
            await emit_purge(db, {keys.event(event.id)})
        await db.flush()

    async def issued(self, db: AsyncSession, order_id: UUID) -> list[TicketLink]:
        rows = (await db.execute(
            select(Position, Booking).join(Booking, Booking.id == Position.booking_id)
            .where(Booking.order_id == order_id).order_by(Booking.created_at, Position.created_at))).tuples().all()
        links: list[TicketLink] = []
        for n, (position, booking) in enumerate(rows, start=1):
            if booking.ticket_type_id is None:
                continue
            state = " (cancelled)" if position.cancelled or booking.state == CANCELLED else ""
            links.append(TicketLink(item_id=booking.ticket_type_id, label=f"Ticket {n}: {position.attendee}{state}",
                                    url=f"/events/tickets/{position.secret}"))
        return links


def _fit(details: Mapping[str, Any], total: int, *, latest: bool) -> dict[str, Any]:
    """``details`` with at most ``total`` attendees: the last ones when ``latest`` (names just
    added), else the first ones (a line lowered keeps the names of the places it still holds)."""
    fitted = dict(details)
    people = list(fitted.get("attendees") or [])
    if "attendees" in fitted or people:
        keep = max(total, 0)
        fitted["attendees"] = (people[max(0, len(people) - keep):] if latest else people[:keep]) if keep else []
    return fitted


def price_text(ticket: TicketType) -> str:
    return format_minor(ticket.price_minor, ticket.currency)


register_source(TicketSource())
