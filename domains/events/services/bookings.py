"""Bookings, the waiting list and check-in (issue 18 items 4 and 5; Pretix's model).

Places are taken with one conditional UPDATE of the date's quota row (``taken + n <= capacity``),
in the booking's transaction: the database decides, so fifty people racing for the last five
places get exactly five (design/domains.md §2's rule, shared with stock). A booking that does not
fit joins the waiting list; when places come back (a cancellation, a lapsed offer, more capacity),
waiting bookings are **offered** them in the order they arrived (one that still does not fit is
skipped, not blocking the others): the offer takes the places in the quota with the same
conditional UPDATE, so they are held for that member, and mails a link valid for
``ROSE_ASH_EVENTS_OFFER_HOURS``. Accepting is a compare-and-set on the booking (waiting with an
unexpired offer -> confirmed), so of an accept and the sweep that lapses the offer (jobs.py) exactly
one wins; a lapsed offer returns the places and offers them to the next in line. Members cancel a
confirmed booking until the event's cutoff (``cancel_until_hours`` before the date starts).
Every change purges the event's page, which shows the places left.

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
from domains.events.booking_models import (
    CANCELLED,
    CONFIRMED,
    DEFAULT_CANCEL_HOURS,
    WAITING,
    Booking,
    BookingOptions,
    CheckIn,
    EventQuota,
    Position,
    TicketType,
)
from domains.events.models import CANCELLED as EVENT_CANCELLED
from domains.events.models import Event
from domains.events.services.recurrence import Occurrence, occurrences
from fragments.purge import emit_purge

__all__ = ["MAX_ANSWER", "MAX_NAME", "MAX_PLACES", "REMOTE_ALREADY", "REMOTE_CLOSED", "REMOTE_FULL", "REMOTE_SHARE",
           "Attendee", "BookingService", "Redeemed", "book_for_remote", "capacity_problem", "live_bookings",
           "options_for", "remote_share_places", "set_capacity"]

MAX_PLACES: Final = 10
MAX_NAME: Final = 200
PAID_CANCEL: Final = ("These tickets were bought with an order: they are cancelled with a refund of the order. "
                      "Please ask the organiser.")
MAX_ANSWER: Final = 1000
SECRET_BYTES: Final = 24  # 192 random bits (Pretix: at least 128)
DOOR_GRACE: Final = timedelta(hours=2)  # a date stays the one checked in until two hours after it ends


@dataclass(frozen=True, slots=True)
class Attendee:
    """One place's answers as typed: the attendee's name and dietary needs."""

    name: str
    dietary: str = ""


async def options_for(session: AsyncSession, event: Event) -> BookingOptions:
    """The event's booking options (a transient default row when staff never set any)."""
    found = (await session.execute(select(BookingOptions).where(BookingOptions.event_id == event.id))
             ).scalar_one_or_none()
    return found or BookingOptions(event_id=event.id, ask_dietary=False, question="", question_required=False,
                                   cancel_until_hours=DEFAULT_CANCEL_HOURS)


def _one_line(text: str) -> str:
    return " ".join(text.split())


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
    def __init__(self, session: AsyncSession, *, base_url: str = "", offer_hours: int = 24) -> None:
        self.session = session
        self.base_url = base_url
        self.offer_hours = max(1, offer_hours)

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

    async def sold_as_tickets(self, event: Event, key: str) -> bool:
        """Whether the date has a priced ticket type on sale (then it takes no free bookings)."""
        return (await self.session.execute(select(TicketType.id).where(
            TicketType.event_id == event.id, TicketType.occurrence == key, TicketType.active))).first() is not None

    async def book(self, event: Event, key: str, *, user: User | None, name: str, email: str, quantity: int,
                   attendees: list[Attendee] | None = None, answer: str = "") -> Booking:
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
        options = await options_for(self.session, event)
        people = self._attendees(attendees or [], quantity, clean_name, options, errors)
        clean_answer = answer.strip()
        if options.question:
            if len(clean_answer) > MAX_ANSWER:
                errors["answer"] = f"At most {MAX_ANSWER:,} characters."
            elif not clean_answer and options.question_required:
                errors["answer"] = f"Answer “{options.question}”."
        else:
            clean_answer = ""  # nothing was asked: nothing is kept
        if occ is not None and await self.sold_as_tickets(event, key):
            # A date sold with priced tickets (services/tickets.py) takes no free bookings: they
            # would let a place be had without paying for it.
            errors["occurrence"] = "Places on this date are sold as tickets: buy them on the event's page."
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
                          email=address, quantity=quantity, state=CONFIRMED if fitted else WAITING,
                          attendees=people, answer=clean_answer)
        try:
            async with self.session.begin_nested():
                self.session.add(booking)
                await self.session.flush()
        except IntegrityError:  # the member's other booking of this date won a race (a unique index)
            raise InputProblems({"occurrence": "You have already booked this date: cancel that booking to book "
                                               "again."}, status=409) from None
        if fitted:
            self._positions(booking)
            await self.session.flush()
        await self._mail(event, booking, "confirmed" if fitted else "waiting")
        await emit_purge(self.session, {keys.event(event.id)})
        return booking

    @staticmethod
    def _attendees(given: list[Attendee], quantity: int, booker: str, options: BookingOptions,
                   errors: dict[str, str]) -> list[dict[str, str]]:
        """One {"name", "dietary"} per place, checked: every place named (a single place may go
        under the booker's name), names and dietary needs at most 200 characters, no more names
        than places. Problems go to ``errors`` (``attendees``, or ``attendee_N``/``dietary_N``)."""
        rows = [Attendee(_one_line(a.name), _one_line(a.dietary) if options.ask_dietary else "") for a in given]
        if not rows and quantity == 1 and booker:
            rows = [Attendee(booker)]
        if not 1 <= quantity <= MAX_PLACES:
            return []
        if len(rows) > quantity:
            errors["attendees"] = (f"{len(rows)} attendees named for {quantity} place{'s' if quantity != 1 else ''}: "
                                   "name one person per place.")
            return []
        for i, row in enumerate(rows, start=1):
            if len(row.name) > MAX_NAME:
                errors[f"attendee_{i}"] = f"Attendee {i}: a name of at most {MAX_NAME} characters."
            if len(row.dietary) > MAX_NAME:
                errors[f"dietary_{i}"] = f"Attendee {i}: dietary needs in at most {MAX_NAME} characters."
        missing = [str(i) for i in range(1, quantity + 1) if i > len(rows) or not rows[i - 1].name]
        if missing:
            errors["attendees"] = (f"Give the name of each attendee ({quantity} place{'s' if quantity != 1 else ''}"
                                   f"): attendee {', '.join(missing)} {'has' if len(missing) == 1 else 'have'} "
                                   "no name.")
        return [{"name": r.name, "dietary": r.dietary} for r in rows]

    def _positions(self, booking: Booking) -> None:
        people = list(booking.attendees or [])
        for i in range(booking.quantity):
            person = people[i] if i < len(people) else {}
            self.session.add(Position(booking_id=booking.id, secret=secrets.token_urlsafe(SECRET_BYTES),
                                      attendee=str(person.get("name") or booking.name)[:MAX_NAME],
                                      dietary=str(person.get("dietary") or "")[:MAX_NAME]))

    async def cancel_deadline(self, event: Event, booking: Booking,
                              options: BookingOptions | None = None) -> datetime | None:
        """Until when the member may cancel ``booking`` (None: its date has begun or passed).
        Only a confirmed booking is held to the event's cutoff; leaving the waiting list (or
        declining an offer) is possible until the date starts."""
        occ = await self.date_of(event, booking.occurrence)
        if occ is None:
            return None
        if booking.state != CONFIRMED:
            return occ.starts_at
        hours = (options or await options_for(self.session, event)).cancel_until_hours
        return occ.starts_at - timedelta(hours=hours)

    async def cancel(self, booking: Booking, event: Event, *, member: bool = True) -> list[Booking]:
        """Cancel a booking (its places, confirmed or offered, return) and offer them to the waiting
        list; the bookings offered. ``member``: the member's own cancel, held to the cutoff."""
        if member and booking.order_id is not None:
            # Paid tickets are the order's: cancelling them here would keep the money and drop the
            # places; the order's cancel or refund voids them (domains/events/services/tickets.py).
            raise InputProblems({"form": PAID_CANCEL}, status=409)
        deadline = await self.cancel_deadline(event, booking)
        if deadline is None:
            raise InputProblems({"form": "This date has begun or passed: the booking can no longer be cancelled."},
                                status=409)
        now = datetime.now(UTC)
        if member and now >= deadline:
            raise InputProblems({"form": f"Cancellation closed on {self.local_text(event, deadline)} "
                                         f"({(await options_for(self.session, event)).cancel_until_hours} hours "
                                         "before the start): the booking stands. Please tell the organiser if you "
                                         "cannot come."}, status=409)
        # A compare-and-set on the state (and offer) it had: of two concurrent cancels one wins, and
        # the places returned are those of the state the winner replaced (an offer or an acceptance
        # in between counts).
        held = False
        for _attempt in range(3):
            current, expires = (await self.session.execute(
                select(Booking.state, Booking.offer_expires_at).where(Booking.id == booking.id))).one()
            if current == CANCELLED:
                return []  # already cancelled, by this request's twin or earlier
            if member and current == CONFIRMED and now >= deadline:
                raise InputProblems({"form": "Cancellation has closed for this date: the booking stands."},
                                    status=409)
            offer = Booking.offer_expires_at.is_(None) if expires is None else Booking.offer_expires_at.is_not(None)
            done = await self.session.execute(
                update(Booking).where(Booking.id == booking.id, Booking.state == current, offer)
                .values(state=CANCELLED, cancelled_at=now).execution_options(synchronize_session=False))
            if getattr(done, "rowcount", 0) == 1:
                held = current == CONFIRMED or (current == WAITING and expires is not None)
                break
        else:
            raise InputProblems({"form": "The booking changed while cancelling: try again."}, status=409)
        await self.session.refresh(booking)
        await self.session.execute(update(Position).where(Position.booking_id == booking.id).values(cancelled=True))
        offered: list[Booking] = []
        if held:
            await self._release(event.id, booking.occurrence, booking.quantity)
            offered = await self.promote(event, booking.occurrence)
        await self.session.flush()
        await self._mail(event, booking, "cancelled")
        await emit_purge(self.session, {keys.event(event.id)})
        return offered

    async def _release(self, event_id: UUID, key: str, quantity: int) -> None:
        await self.session.execute(
            update(EventQuota).where(EventQuota.event_id == event_id, EventQuota.occurrence == key)
            .values(taken=EventQuota.taken - quantity).execution_options(synchronize_session=False))

    async def promote(self, event: Event, key: str) -> list[Booking]:
        """Offer freed places to waiting bookings in arrival order while places allow (one that
        does not fit is skipped): each offer holds its places and is mailed a link."""
        occ = await self.date_of(event, key)
        if occ is None:
            return []  # a date that has begun: nobody can come any more
        waiting = list((await self.session.execute(
            select(Booking).where(Booking.event_id == event.id, Booking.occurrence == key, Booking.state == WAITING,
                                  Booking.offer_expires_at.is_(None))
            .order_by(Booking.created_at, Booking.id).with_for_update())).scalars())
        offered: list[Booking] = []
        # An offer never outlives the date's start (a place offered for a date that began is no place).
        expires = min(datetime.now(UTC) + timedelta(hours=self.offer_hours), occ.starts_at)
        for booking in waiting:
            if await self._take(event.id, key, booking.quantity):
                done = await self.session.execute(
                    update(Booking).where(Booking.id == booking.id, Booking.state == WAITING,
                                          Booking.offer_expires_at.is_(None))
                    .values(offer_secret=secrets.token_urlsafe(SECRET_BYTES), offer_expires_at=expires)
                    .execution_options(synchronize_session=False))
                if getattr(done, "rowcount", 0) != 1:  # cancelled meanwhile: give the places back
                    await self._release(event.id, key, booking.quantity)
                    continue
                await self.session.refresh(booking)
                offered.append(booking)
                await self._mail(event, booking, "offer")
        await self.session.flush()
        return offered

    async def offer(self, secret: str) -> tuple[Booking, Event] | None:
        """The offer whose link carries ``secret`` (any state: the page says what became of it)."""
        if not secret or len(secret) > 64:
            return None
        found = (await self.session.execute(select(Booking, Event).join(Event, Event.id == Booking.event_id)
                                            .where(Booking.offer_secret == secret))).tuples().first()
        return (found[0], found[1]) if found else None

    async def accept(self, booking: Booking, event: Event) -> None:
        """Confirm an offered booking: a compare-and-set (waiting, offer not yet lapsed -> confirmed),
        so a retried or concurrent accept confirms once and a lapsed offer stays lapsed. The places
        were taken when the offer was made. InputProblems (409) when the offer is no longer open."""
        now = datetime.now(UTC)
        done = await self.session.execute(
            update(Booking).where(Booking.id == booking.id, Booking.state == WAITING,
                                  Booking.offer_expires_at.is_not(None), Booking.offer_expires_at > now)
            .values(state=CONFIRMED).execution_options(synchronize_session=False))
        await self.session.refresh(booking)
        if getattr(done, "rowcount", 0) != 1:
            if booking.state == CONFIRMED:
                return  # accepted already (a double click): nothing more to do
            raise InputProblems({"form": "This offer is no longer open: it lapsed or the booking was cancelled."},
                                status=409)
        self._positions(booking)
        await self.session.flush()
        await self._mail(event, booking, "confirmed")
        await emit_purge(self.session, {keys.event(event.id)})

    async def sweep_offers(self, *, now: datetime | None = None) -> int:
        """Lapse every offer past its end: the booking is cancelled (a compare-and-set, so an accept
        that won keeps its places), the places return and go to the next in line. How many lapsed."""
        moment = now or datetime.now(UTC)
        due = list((await self.session.execute(
            select(Booking.id).where(Booking.state == WAITING, Booking.offer_expires_at.is_not(None),
                                     Booking.offer_expires_at <= moment).limit(500))).scalars())
        lapsed = 0
        for booking_id in due:
            done = await self.session.execute(
                update(Booking).where(Booking.id == booking_id, Booking.state == WAITING,
                                      Booking.offer_expires_at.is_not(None), Booking.offer_expires_at <= moment)
                .values(state=CANCELLED, cancelled_at=moment).execution_options(synchronize_session=False))
            if getattr(done, "rowcount", 0) != 1:
                continue  # accepted or cancelled in between
            lapsed += 1
            booking = await self.session.get(Booking, booking_id, populate_existing=True)
            assert booking is not None
            event = await self.session.get(Event, booking.event_id)
            assert event is not None
            await self._release(event.id, booking.occurrence, booking.quantity)
            await self._mail(event, booking, "lapsed")
            await self.promote(event, booking.occurrence)
            await emit_purge(self.session, {keys.event(event.id)})
        await self.session.flush()
        return lapsed

    @staticmethod
    def local_text(event: Event, moment: datetime) -> str:
        from domains.events.services.recurrence import zone

        local = moment.astimezone(zone(event.tz))
        return f"{local:%a} {local.day} {local:%B %Y}, {local:%H:%M}"

    async def _mail(self, event: Event, booking: Booking, kind: str) -> None:
        """The booking's mail of ``kind``: text and HTML (templates/mail/events/<kind>.txt/.html).
        A fediverse account's booking (a remote ``Join``) has no address: it hears by ActivityPub."""
        if not booking.email:
            return
        occ = await self.date_of(event, booking.occurrence)
        when = occ.start_local.strftime("%a %d %B %Y, %H:%M") + f" ({event.tz})" if occ else booking.occurrence
        tickets = []
        if booking.state == CONFIRMED:
            rows = (await self.session.execute(select(Position).where(Position.booking_id == booking.id)
                                               .order_by(Position.created_at))).scalars()
            tickets = [{"attendee": p.attendee, "url": f"{self.base_url}/events/tickets/{p.secret}"} for p in rows]
        subject = {"confirmed": f"Your booking: {event.title}", "waiting": f"On the waiting list: {event.title}",
                   "offer": f"A place came free: {event.title}", "cancelled": f"Booking cancelled: {event.title}",
                   "lapsed": f"Your offer lapsed: {event.title}"}[kind]
        context: dict[str, Any] = {
            "name": booking.name, "title": event.title, "when": when, "quantity": booking.quantity,
            "tickets": tickets, "event_url": f"{self.base_url}{event.path}",
            "bookings_url": f"{self.base_url}/account/bookings", "subject": subject}
        if kind == "offer" and booking.offer_secret and booking.offer_expires_at:
            context["offer_url"] = f"{self.base_url}/account/bookings/offer/{booking.offer_secret}"
            context["offer_until"] = self.local_text(event, booking.offer_expires_at) + f" ({event.tz})"
        await send_mail(self.session, OutgoingMail(
            to=booking.email, to_name=booking.name, subject=subject, template=f"events/{kind}", tag=f"events-{kind}",
            context=context))

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
        view = {**self._position_view(position, booking), "date": await self._date_text(event, booking.occurrence)}
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
    def _position_view(position: Position, booking: Booking | None = None) -> dict[str, Any]:
        view: dict[str, Any] = {"id": str(position.id), "attendee_name": position.attendee,
                                "secret": position.secret}
        if position.dietary:
            view["dietary"] = position.dietary
        if booking is not None and booking.answer:
            view["answer"] = booking.answer
        return view

    async def checkin_counts(self, event: Event, key: str) -> dict[str, int]:
        positions = (await self.session.execute(
            select(func.count()).select_from(Position).join(Booking, Booking.id == Position.booking_id)
            .where(Booking.event_id == event.id, Booking.occurrence == key, Booking.state == CONFIRMED,
                   Position.cancelled.is_(False)))).scalar_one()
        inside = (await self.session.execute(
            select(func.count(func.distinct(CheckIn.position_id))).select_from(CheckIn)
            .join(Position, Position.id == CheckIn.position_id).join(Booking, Booking.id == Position.booking_id)
            .where(Booking.event_id == event.id, Booking.occurrence == key, CheckIn.kind == "entry",
                   Booking.state == CONFIRMED, Position.cancelled.is_(False))))  # of the live tickets counted
        return {"positions": int(positions), "checked_in": int(inside.scalar_one())}

    async def attendees(self, event: Event, key: str) -> list[dict[str, Any]]:
        """Staff's attendee list of one date: every live ticket with its answers and whether it is
        inside (its last check-in an entry), in booking order."""
        rows = (await self.session.execute(
            select(Position, Booking).join(Booking, Booking.id == Position.booking_id)
            .where(Booking.event_id == event.id, Booking.occurrence == key, Booking.state == CONFIRMED,
                   Position.cancelled.is_(False))
            .order_by(Booking.created_at, Position.created_at))).tuples().all()
        last: dict[UUID, str] = {}
        if rows:
            for position_id, kind in (await self.session.execute(
                    select(CheckIn.position_id, CheckIn.kind).where(CheckIn.position_id.in_([p.id for p, _ in rows]))
                    .order_by(CheckIn.at, CheckIn.id))).tuples():
                last[position_id] = kind
        return [{"attendee": p.attendee, "dietary": p.dietary, "answer": b.answer, "booked_by": b.name,
                 "email": b.email, "inside": last.get(p.id) == "entry"} for p, b in rows]

class _OverShare(Exception):
    """The account's server already holds its share of the date: undo the place taken."""


# Why :func:`book_for_remote` booked nothing.
REMOTE_CLOSED: Final = "closed"  # no bookings, cancelled, past or not a date of the event
REMOTE_FULL: Final = "full"
REMOTE_SHARE: Final = "share"  # the account's server holds its share of the date's places
REMOTE_ALREADY: Final = "already"  # the account holds a live place on the date (a concurrent Join won)


def remote_share_places(capacity: int, percent: int) -> int:
    """Places the accounts of one remote server may hold on a date: ``percent`` of its capacity,
    rounded down, but at least one (a small event still takes a Join from each server)."""
    return max(1, capacity * percent // 100)


async def book_for_remote(session: AsyncSession, event: Event, key: str, *, name: str, actor_uri: str, host: str,
                          share_percent: int) -> Booking | str:
    """One free place on the date ``key`` for a fediverse account's ``Join`` (issue 18 item 7,
    federation/activitypub/events.py): a confirmed booking with no member (``user_id`` None) and no
    address (nothing is mailed: the answer is an ActivityPub ``Accept``), or why not (``REMOTE_*``).
    A remote account never joins the waiting list: a ``Join`` is answered at once (``Reject`` when
    full) and nothing is written but the quota row.

    Two limits keep remote accounts from using up an event: the account holds at most one live place
    a date (a partial unique index, so parallel Joins cannot both win: the loser is
    ``REMOTE_ALREADY``), and the accounts of one server (``host``) hold at most
    ``share_percent`` of the date's places (:func:`remote_share_places`), so one instance's
    made-up accounts cannot fill a public event. Place, count and booking are one savepoint: a
    refusal leaves the quota as it was."""
    if event.capacity is None or event.status == EVENT_CANCELLED:
        return REMOTE_CLOSED
    service = BookingService(session)
    if await service.date_of(event, key) is None or await service.sold_as_tickets(event, key):
        return REMOTE_CLOSED  # a date sold with priced tickets gives no free places (services/tickets.py)
    await service._quota(event, key)
    try:
        async with session.begin_nested():
            if not await service._take(event.id, key, 1):
                return REMOTE_FULL
            # The take's UPDATE locks the date's quota row until commit, so concurrent Joins of this
            # date queue there; each count below is a fresh snapshot (PostgreSQL's READ COMMITTED;
            # SQLite writes one at a time), so it sees every remote place committed before it.
            capacity = int((await session.execute(select(EventQuota.capacity).where(
                EventQuota.event_id == event.id, EventQuota.occurrence == key))).scalar_one())
            held = int((await session.execute(select(func.coalesce(func.sum(Booking.quantity), 0)).where(
                Booking.event_id == event.id, Booking.occurrence == key, Booking.remote_host == host,
                Booking.state != CANCELLED))).scalar_one())
            if held >= remote_share_places(capacity, share_percent):
                raise _OverShare
            booking = Booking(event_id=event.id, occurrence=key, user_id=None,
                              name=" ".join(name.split())[:200] or "guest", email="", quantity=1, state=CONFIRMED,
                              remote_actor=actor_uri, remote_host=host[:255])
            session.add(booking)
            await session.flush()
            service._positions(booking)
            await session.flush()
    except _OverShare:
        return REMOTE_SHARE
    except IntegrityError:  # the account's other Join of this date won (uq_events_booking_remote_date)
        return REMOTE_ALREADY
    await emit_purge(session, {keys.event(event.id)})
    return booking
