"""Bookings, the waiting list and check-in (issue 18 items 4 and 5; Pretix's model).

Places are taken with one conditional UPDATE of the date's quota row (``taken + n <= capacity``),
in the booking's transaction: the database decides, so fifty people racing for the last five
places get exactly five (design/domains.md §2's rule, shared with stock). A booking that does not
fit joins the waiting list; when places come back (a cancellation), waiting bookings are confirmed
in the order they arrived (one that still does not fit is skipped, not blocking the others) and
each is told by mail. Every change purges the event's page, which shows the places left.

Check-in answers in Pretix's shape (``status`` ok/error, ``reason`` invalid/canceled/
already_redeemed...); a redemption's ``nonce`` makes a retried scan one check-in with one answer.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from uuid import UUID

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from app.forms import InputProblems
from app.mail.message import OutgoingMail, valid_address
from app.mail.sending import send_mail
from domains.account.models import User
from domains.events import keys
from domains.events.booking_models import CANCELLED, CONFIRMED, WAITING, Booking, CheckIn, EventQuota, Position
from domains.events.models import CANCELLED as EVENT_CANCELLED
from domains.events.models import Event
from domains.events.services.recurrence import Occurrence, occurrences
from fragments.purge import emit_purge

__all__ = ["MAX_PLACES", "BookingService", "Redeemed", "capacity_problem", "live_bookings", "set_capacity"]

MAX_PLACES: Final = 10
SECRET_BYTES: Final = 24  # 192 random bits (Pretix: at least 128)
DOOR_GRACE: Final = timedelta(hours=2)  # a date stays the one checked in until two hours after it ends


@dataclass(frozen=True, slots=True)
class Redeemed:
    """A check-in's answer (Pretix's redeem response, the fields we fill)."""

    status: str  # "ok" | "error"
    reason: str | None = None
    position: dict[str, Any] | None = None

    @property
    def http_status(self) -> int:
        if self.status == "ok":
            return 201
        return 404 if self.reason == "invalid" else 400


async def live_bookings(session: AsyncSession, event: Event) -> int:
    """How many confirmed or waiting bookings the event's dates hold (past dates included)."""
    return int((await session.execute(select(func.count()).select_from(Booking).where(
        Booking.event_id == event.id, Booking.state != CANCELLED))).scalar_one())


async def capacity_problem(session: AsyncSession, event: Event, capacity: int | None) -> str | None:
    """Why ``capacity`` cannot replace the event's (a date has more places booked), or None."""
    most = (await session.execute(select(func.max(EventQuota.taken)).where(EventQuota.event_id == event.id))
            ).scalar()
    if most and (capacity is None or capacity < most):
        return f"A date already has {most} places booked: the capacity cannot go below that."
    return None


async def set_capacity(session: AsyncSession, event: Event, capacity: int | None) -> None:
    """Every date's quota takes the new capacity (checked by :func:`capacity_problem`); more
    places confirm waiting bookings."""
    if capacity is None:
        return
    await session.execute(update(EventQuota).where(EventQuota.event_id == event.id).values(capacity=capacity)
                          .execution_options(synchronize_session=False))
    keys_ = list((await session.execute(select(Booking.occurrence).where(
        Booking.event_id == event.id, Booking.state == WAITING).distinct())).scalars())
    event.capacity = capacity
    service = BookingService(session)
    for key in keys_:
        await service.promote(event, key)


class BookingService:
    def __init__(self, session: AsyncSession, *, base_url: str = "") -> None:
        self.session = session
        self.base_url = base_url

    # -- reading -----------------------------------------------------------------------------------
    async def dates(self, event: Event, *, limit: int = 20) -> list[Occurrence]:
        now = datetime.now(UTC)
        return list(occurrences(start_local=event.starts_local, end_local=event.ends_local, tz=event.tz,
                                rule=event.rrule, exdates=event.exdates, window_start=now,
                                window_end=now + timedelta(days=366 * 2), limit=limit))

    async def date_of(self, event: Event, key: str) -> Occurrence | None:
        """The upcoming date of ``event`` whose key is ``key`` (None: past, excluded or never)."""
        try:
            local = datetime.strptime(key, "%Y%m%dT%H%M%S")
        except ValueError:
            return None
        now = datetime.now(UTC)
        for occ in occurrences(start_local=event.starts_local, end_local=event.ends_local, tz=event.tz,
                               rule=event.rrule, exdates=event.exdates, window_start=now,
                               window_end=now + timedelta(days=366 * 10), limit=5000):
            if occ.start_local == local:
                return occ if occ.starts_at > now else None
            if occ.start_local > local:
                return None
        return None

    async def left(self, event: Event, keys_: list[str]) -> dict[str, int]:
        """Places left on each date (capacity when nobody booked yet)."""
        if event.capacity is None:
            return {}
        rows = dict((await self.session.execute(
            select(EventQuota.occurrence, EventQuota.capacity - EventQuota.taken)
            .where(EventQuota.event_id == event.id, EventQuota.occurrence.in_(keys_)))).tuples().all())
        return {k: int(rows.get(k, event.capacity)) for k in keys_}

    async def for_member(self, user: User) -> list[tuple[Booking, Event]]:
        stmt = (select(Booking, Event).join(Event, Event.id == Booking.event_id)
                .where(Booking.user_id == user.id).options(selectinload(Booking.positions))
                .order_by(Booking.occurrence.desc(), Booking.created_at.desc()))
        return [(b, e) for b, e in (await self.session.execute(stmt)).tuples().all()]

    async def position(self, secret: str) -> tuple[Position, Booking, Event] | None:
        if not secret or len(secret) > 64:
            return None
        stmt = (select(Position, Booking, Event).join(Booking, Booking.id == Position.booking_id)
                .join(Event, Event.id == Booking.event_id).where(Position.secret == secret))
        found = (await self.session.execute(stmt)).tuples().first()
        return (found[0], found[1], found[2]) if found else None

    # -- booking -----------------------------------------------------------------------------------
    async def _quota(self, event: Event, key: str) -> None:
        """Make the date's quota row if it is not there yet (a concurrent maker wins harmlessly)."""
        assert event.capacity is not None
        exists = (await self.session.execute(select(EventQuota.id).where(
            EventQuota.event_id == event.id, EventQuota.occurrence == key))).first()
        if exists:
            return
        try:
            async with self.session.begin_nested():
                self.session.add(EventQuota(event_id=event.id, occurrence=key, capacity=event.capacity, taken=0))
                await self.session.flush()
        except IntegrityError:
            pass  # another booking made it first

    async def _take(self, event_id: UUID, key: str, quantity: int) -> bool:
        """Take ``quantity`` places on the date in one conditional UPDATE; whether they fitted."""
        result = await self.session.execute(
            update(EventQuota).where(EventQuota.event_id == event_id, EventQuota.occurrence == key,
                                     EventQuota.taken + quantity <= EventQuota.capacity)
            .values(taken=EventQuota.taken + quantity).execution_options(synchronize_session=False))
        return bool(getattr(result, "rowcount", 0) == 1)

    async def book(self, event: Event, key: str, *, user: User | None, name: str, email: str, quantity: int,
                   attendees: list[str] | None = None) -> Booking:
        """Book ``quantity`` places on the date ``key``: confirmed with tickets, or on the waiting list.
        InputProblems (nothing written) for a date that is not bookable or bad details."""
        errors: dict[str, str] = {}
        if event.capacity is None:
            raise InputProblems({"form": "This event takes no bookings."}, status=404)
        if event.status == EVENT_CANCELLED:
            errors["occurrence"] = "This event is cancelled: it takes no bookings."
        occ = await self.date_of(event, key)
        if occ is None and "occurrence" not in errors:
            errors["occurrence"] = "That date is past or not one of this event's dates."
        if not 1 <= quantity <= MAX_PLACES:
            errors["quantity"] = f"Book from 1 to {MAX_PLACES} places."
        clean_name = " ".join(name.split())[:200]
        if not clean_name:
            errors["name"] = "Give the name the booking is under."
        address = valid_address(email.strip())
        if address is None:
            errors["email"] = "Give an email address we can send the tickets to."
        names = [" ".join(a.split())[:200] for a in (attendees or []) if a.strip()]
        if len(names) > quantity:
            errors["attendees"] = "More names than places."
        if user is not None and occ is not None:
            already = (await self.session.execute(select(func.count()).select_from(Booking).where(
                Booking.event_id == event.id, Booking.occurrence == key, Booking.user_id == user.id,
                Booking.state != CANCELLED))).scalar_one()
            if already:
                errors["occurrence"] = "You have already booked this date: cancel that booking to book again."
        if "quantity" not in errors and quantity > event.capacity:
            errors["quantity"] = f"This event has {event.capacity} place{'s' if event.capacity != 1 else ''} a date."
        elif "quantity" not in errors and occ is not None:
            left = (await self.left(event, [key]))[key]
            if 0 < left < quantity:
                errors["quantity"] = (f"Only {left} place{'s are' if left != 1 else ' is'} left on that date: book "
                                      f"{left} or fewer (a full date takes bookings on its waiting list).")
        if errors:
            raise InputProblems(errors)
        assert address is not None
        await self._quota(event, key)
        fitted = await self._take(event.id, key, quantity)
        booking = Booking(event_id=event.id, occurrence=key, user_id=user.id if user else None, name=clean_name,
                          email=address, quantity=quantity, state=CONFIRMED if fitted else WAITING)
        try:
            async with self.session.begin_nested():
                self.session.add(booking)
                await self.session.flush()
        except IntegrityError:  # the member's other booking of this date won a race (a unique index)
            raise InputProblems({"occurrence": "You have already booked this date: cancel that booking to book "
                                               "again."}, status=409) from None
        if fitted:
            self._positions(booking, names or [clean_name])
            await self.session.flush()
        await self._mail(event, booking, "confirmed" if fitted else "waiting")
        await emit_purge(self.session, {keys.event(event.id)})
        return booking

    def _positions(self, booking: Booking, names: list[str]) -> None:
        for i in range(booking.quantity):
            self.session.add(Position(booking_id=booking.id, secret=secrets.token_urlsafe(SECRET_BYTES),
                                      attendee=names[i] if i < len(names) else booking.name))

    async def cancel(self, booking: Booking, event: Event) -> list[Booking]:
        """Cancel a booking (its places return) and promote the waiting list; the bookings promoted."""
        occ = await self.date_of(event, booking.occurrence)
        if occ is None:
            raise InputProblems({"form": "This date has begun or passed: the booking can no longer be cancelled."},
                                status=409)
        # A compare-and-set on the state it had: of two concurrent cancels one wins, and the places
        # returned are those of the state the winner replaced (a promotion in between counts).
        was_confirmed = False
        for _attempt in range(3):
            current = (await self.session.execute(select(Booking.state).where(Booking.id == booking.id))).scalar_one()
            if current == CANCELLED:
                return []  # already cancelled, by this request's twin or earlier
            done = await self.session.execute(
                update(Booking).where(Booking.id == booking.id, Booking.state == current)
                .values(state=CANCELLED, cancelled_at=datetime.now(UTC)).execution_options(synchronize_session=False))
            if getattr(done, "rowcount", 0) == 1:
                was_confirmed = current == CONFIRMED
                break
        else:
            raise InputProblems({"form": "The booking changed while cancelling: try again."}, status=409)
        await self.session.refresh(booking)
        await self.session.execute(update(Position).where(Position.booking_id == booking.id).values(cancelled=True))
        promoted: list[Booking] = []
        if was_confirmed:
            await self.session.execute(
                update(EventQuota).where(EventQuota.event_id == event.id, EventQuota.occurrence == booking.occurrence)
                .values(taken=EventQuota.taken - booking.quantity).execution_options(synchronize_session=False))
            promoted = await self.promote(event, booking.occurrence)
        await self.session.flush()
        await emit_purge(self.session, {keys.event(event.id)})
        return promoted

    async def promote(self, event: Event, key: str) -> list[Booking]:
        """Confirm waiting bookings in arrival order while places allow (one that does not fit is skipped)."""
        waiting = list((await self.session.execute(
            select(Booking).where(Booking.event_id == event.id, Booking.occurrence == key, Booking.state == WAITING)
            .order_by(Booking.created_at, Booking.id).with_for_update())).scalars())
        promoted: list[Booking] = []
        for booking in waiting:
            if await self._take(event.id, key, booking.quantity):
                booking.state = CONFIRMED
                await self.session.flush()
                self._positions(booking, [booking.name])
                promoted.append(booking)
                await self._mail(event, booking, "promoted")
        await self.session.flush()
        return promoted

    async def _mail(self, event: Event, booking: Booking, kind: str) -> None:
        occ = await self.date_of(event, booking.occurrence)
        when = occ.start_local.strftime("%a %d %B %Y, %H:%M") + f" ({event.tz})" if occ else booking.occurrence
        tickets = []
        if booking.state == CONFIRMED:
            rows = (await self.session.execute(select(Position).where(Position.booking_id == booking.id)
                                               .order_by(Position.created_at))).scalars()
            tickets = [{"attendee": p.attendee, "url": f"{self.base_url}/events/tickets/{p.secret}"} for p in rows]
        subject = {"confirmed": f"Your booking: {event.title}", "waiting": f"On the waiting list: {event.title}",
                   "promoted": f"A place came free: {event.title}"}[kind]
        await send_mail(self.session, OutgoingMail(
            to=booking.email, to_name=booking.name, subject=subject, template=f"events/{kind}", tag=f"events-{kind}",
            context={"name": booking.name, "title": event.title, "when": when, "quantity": booking.quantity,
                     "tickets": tickets, "event_url": f"{self.base_url}/events/{event.slug}",
                     "bookings_url": f"{self.base_url}/account/bookings"}))

    # -- check-in (Pretix's redeem) -----------------------------------------------------------------
    async def door_date(self, event: Event) -> Occurrence | None:
        """The date being checked in: the earliest that has not ended more than two hours ago."""
        now = datetime.now(UTC)
        found = list(occurrences(start_local=event.starts_local, end_local=event.ends_local, tz=event.tz,
                                 rule=event.rrule, exdates=event.exdates, window_start=now - DOOR_GRACE,
                                 window_end=now + timedelta(days=366 * 2), limit=1))
        return found[0] if found else None

    async def redeem(self, event: Event, secret: str, *, kind: str = "entry", nonce: str | None = None,
                     force: bool = False, by: User | None = None, occurrence: str | None = None) -> Redeemed:
        """Check a ticket in (or out) at ``event``'s door for the date being checked in (``occurrence``,
        or the current or next date): Pretix's answers, one check-in per (ticket, nonce)."""
        code = secret.strip()
        if "/events/tickets/" in code:  # the ticket's link pasted or scanned instead of its code
            code = code.rstrip("/").rsplit("/", 1)[-1]
        found = await self.position(code)
        if found is None or found[2].id != event.id:
            return Redeemed("error", "invalid")  # another event's ticket looks unknown here
        position, booking, _ = found
        view = {**self._position_view(position), "date": await self._date_text(event, booking.occurrence)}
        if nonce:
            earlier = (await self.session.execute(select(CheckIn.id).where(
                CheckIn.position_id == position.id, CheckIn.nonce == nonce))).first()
            if earlier is not None:  # the same scan retried: the same answer, no second check-in
                return Redeemed("ok", position=view)
        if position.cancelled or booking.state != CONFIRMED:
            return Redeemed("error", "canceled", view)
        today = occurrence or (door.key if (door := await self.door_date(event)) else None)
        if booking.occurrence != today:
            return Redeemed("error", "invalid_time", view)  # a ticket for another date of the series
        if kind == "entry" and not force:
            last = (await self.session.execute(select(CheckIn.kind).where(CheckIn.position_id == position.id)
                                               .order_by(CheckIn.at.desc(), CheckIn.id.desc()).limit(1))).scalar()
            if last == "entry":
                return Redeemed("error", "already_redeemed", view)
        try:
            async with self.session.begin_nested():
                self.session.add(CheckIn(position_id=position.id, kind=kind, nonce=nonce or None,
                                         by_user_id=by.id if by else None, at=datetime.now(UTC)))
                await self.session.flush()
        except IntegrityError:  # the same ticket and nonce, concurrently: the first one's answer stands
            return Redeemed("ok", position=view)
        return Redeemed("ok", position=view)

    async def _date_text(self, event: Event, key: str) -> str:
        try:
            local = datetime.strptime(key, "%Y%m%dT%H%M%S")
        except ValueError:
            return key
        return f"{local:%a} {local.day} {local:%B %Y}, {local:%H:%M}"

    @staticmethod
    def _position_view(position: Position) -> dict[str, Any]:
        return {"id": str(position.id), "attendee_name": position.attendee, "secret": position.secret}

    async def checkin_counts(self, event: Event, key: str) -> dict[str, int]:
        positions = (await self.session.execute(
            select(func.count()).select_from(Position).join(Booking, Booking.id == Position.booking_id)
            .where(Booking.event_id == event.id, Booking.occurrence == key, Booking.state == CONFIRMED,
                   Position.cancelled.is_(False)))).scalar_one()
        inside = (await self.session.execute(
            select(func.count(func.distinct(CheckIn.position_id))).select_from(CheckIn)
            .join(Position, Position.id == CheckIn.position_id).join(Booking, Booking.id == Position.booking_id)
            .where(Booking.event_id == event.id, Booking.occurrence == key, CheckIn.kind == "entry")))
        return {"positions": int(positions), "checked_in": int(inside.scalar_one())}


async def book_for_remote(session: AsyncSession, event: Event, key: str, *, name: str) -> Booking | None:
    """One free place on the date ``key`` for a fediverse account's ``Join`` (issue 18 item 7,
    federation/activitypub/events.py): a confirmed booking with no member (``user_id`` None) and no
    address (nothing is mailed: the answer is an ActivityPub ``Accept``), or None when the date is
    full, cancelled, past or takes no bookings. A remote account never joins the waiting list: a
    ``Join`` is answered at once (``Reject`` when full) and nothing but the quota row is written."""
    if event.capacity is None or event.status == EVENT_CANCELLED:
        return None
    service = BookingService(session)
    if await service.date_of(event, key) is None:
        return None
    await service._quota(event, key)
    if not await service._take(event.id, key, 1):
        return None
    booking = Booking(event_id=event.id, occurrence=key, user_id=None, name=" ".join(name.split())[:200] or "guest",
                      email="", quantity=1, state=CONFIRMED)
    session.add(booking)
    await session.flush()
    service._positions(booking, [booking.name])
    await session.flush()
    await emit_purge(session, {keys.event(event.id)})
    return booking
