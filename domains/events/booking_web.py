"""Booking, tickets and check-in pages and their JSON (issue 18 items 4, 5 and 9).

- ``/events/<slug>/book``              members book places (GET the form, POST it: 303)
- ``/account/bookings``                a member's bookings, each cancellable until the event's cutoff
- ``/account/bookings/offer/<secret>``  a waiting-list offer: accept it before it lapses
- ``/events/<slug>/attendees``         staff's attendee list of a date, with the booking answers
- ``/events/members``, ``/events/members/<slug>``  members-only events, for signed-in members only
                                       (``private``; to anyone else they look absent)
- ``/account/tickets``                 a member's tickets, upcoming and past, linked to their pages
- ``/events/<slug>/tickets``           buy paid tickets: a quantity per ticket type, a name per
                                       ticket and the event's questions, added to the cart (POST: 303)
- ``/events/tickets/<secret>``         a ticket with its QR code; the secret is the only key, so the
                                       page is ``private, no-store`` and ``noindex``
- ``/events/<slug>/checkin``           staff's door page: type or scan a code, a big coloured answer
- ``POST /events/<slug>/checkin/redeem``  Pretix's redeem API (a token with the ``events`` scope
                                       of a staff member)
- ``POST /api/events/<slug>/bookings``  books free places for a token with the ``events`` scope
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

import msgspec
import segno
from litestar import Request, Response, get, post
from litestar.exceptions import ClientException, NotFoundException
from litestar.response import Template
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from app.forms import InputProblems, done, form_data, is_htmx, parse_form, see_other
from app.headers import PERMISSIONS_POLICY
from app.responses import PRIVATE
from app.security import current_user
from app.settings import Settings
from domains.account.models import User
from domains.cart.services import CartService, InsufficientStock
from domains.events.booking_models import CANCELLED, CONFIRMED, Booking
from domains.events.members_web import members_handlers
from domains.events.models import Event
from domains.events.services.bookings import MAX_PLACES, Attendee, BookingService, options_for
from domains.events.services.events import EventService
from domains.events.services.tickets import SOURCE as TICKETS
from domains.events.services.tickets import on_sale as tickets_on_sale
from domains.events.services.tickets import ticket_types
from domains.events.views import when_text
from domains.payments.services import payment_instructions

__all__ = ["api_handlers", "checkin_api_handlers", "member_handlers", "staff_handlers", "ticket_handlers"]

NO_STORE = {"Cache-Control": "private, no-store", "X-Robots-Tag": "noindex"}
# The door page reads tickets with the camera (static/js/checkin-scan.js): this page alone lets its
# own origin have it; every other page keeps the site-wide camera=() (app/headers.py).
CHECKIN_PERMISSIONS = PERMISSIONS_POLICY.replace("camera=()", "camera=(self)")


class BookForm(msgspec.Struct, kw_only=True):
    occurrence: str = ""
    quantity: str = "1"
    name: str = ""
    email: str = ""
    answer: str = ""
    # One row per place the form can book (MAX_PLACES): the attendee's name and dietary needs.
    attendee_1: str = ""
    attendee_2: str = ""
    attendee_3: str = ""
    attendee_4: str = ""
    attendee_5: str = ""
    attendee_6: str = ""
    attendee_7: str = ""
    attendee_8: str = ""
    attendee_9: str = ""
    attendee_10: str = ""
    dietary_1: str = ""
    dietary_2: str = ""
    dietary_3: str = ""
    dietary_4: str = ""
    dietary_5: str = ""
    dietary_6: str = ""
    dietary_7: str = ""
    dietary_8: str = ""
    dietary_9: str = ""
    dietary_10: str = ""

    def people(self) -> list[Attendee]:
        """The rows as typed, without the form's trailing empty ones (a gap before a filled row stays,
        and is named as a missing name)."""
        rows = [Attendee(getattr(self, f"attendee_{i}"), getattr(self, f"dietary_{i}"))
                for i in range(1, MAX_PLACES + 1)]
        while rows and not rows[-1].name.strip() and not rows[-1].dietary.strip():
            rows.pop()
        return rows


def _service(db: AsyncSession, settings: Settings) -> BookingService:
    return BookingService(db, base_url=settings.base_url, offer_hours=settings.events_offer_hours)


async def _bookable(db: AsyncSession, slug: str) -> Event:
    # Only signed-in members (sessions, members' tokens) reach these handlers: members-only events too.
    event = await EventService(db).get_visible(slug, member=True)
    if event is None or event.capacity is None:
        raise NotFoundException("This event takes no bookings.")
    return event


async def _form(db: AsyncSession, settings: Settings, event: Event, user: User, values: dict[str, Any],
                errors: dict[str, str] | None = None, status: int = 200) -> Template:
    service = _service(db, settings)
    dates = await service.dates(event)
    left = await service.left(event, [d.key for d in dates])
    return Template("events/book.html", status_code=status, context={
        "event": event, "values": values, "errors": errors or {}, "options": await options_for(db, event),
        "rows": range(1, min(MAX_PLACES, event.capacity or MAX_PLACES) + 1),
        "max_places": min(MAX_PLACES, event.capacity or MAX_PLACES),
        "dates": [{"key": d.key, "when": when_text(event, d), "left": left.get(d.key, 0)} for d in dates],
        "user": user})


@get("/events/{slug:str}/book", name="events:book", cache_control=PRIVATE)
async def book_form(request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings,
                    slug: str) -> Template:
    event = await _bookable(db_session, slug)
    user = request.user
    return await _form(db_session, settings, event, user, {"name": user.name, "email": user.email, "quantity": "1",
                                                           "attendee_1": user.name,
                                                           "occurrence": str(request.query_params.get("date", ""))})


@post("/events/{slug:str}/book", status_code=303)
async def book(request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings,
               slug: str) -> Response[Any]:
    event = await _bookable(db_session, slug)
    form = await parse_form(request, BookForm)
    try:
        quantity = int(form.quantity)
    except ValueError:
        quantity = 0
    try:
        booking = await _service(db_session, settings).book(
            event, form.occurrence, user=request.user, name=form.name, email=form.email, quantity=quantity,
            attendees=form.people(), answer=form.answer)
    except InputProblems as exc:
        return await _form(db_session, settings, event, request.user, msgspec.structs.asdict(form), exc.errors,
                           status=exc.status)
    message = (f"Booked: {booking.quantity} place{'s' if booking.quantity > 1 else ''} at “{event.title}”. "
               "Your tickets are below and in your mail." if booking.state == CONFIRMED else
               f"“{event.title}” is full on that date: you are on the waiting list, and we will mail you if a "
               "place comes free.")
    return see_other("/account/bookings", request, message)


@get("/account/bookings", name="events:my-bookings", cache_control=PRIVATE)
async def my_bookings(request: Request[User, Any, Any], db_session: AsyncSession) -> Template:
    service = BookingService(db_session)
    rows = []
    now = datetime.now(UTC)
    for booking, event in await service.for_member(request.user):
        occ = await service.date_of(event, booking.occurrence)
        deadline = await service.cancel_deadline(event, booking) if booking.state != CANCELLED else None
        offer_open = booking.offered and booking.offer_expires_at is not None and booking.offer_expires_at > now
        rows.append({"booking": booking, "event": event, "upcoming": occ is not None,
                     "when": when_text(event, occ) if occ else booking.occurrence[:8],
                     "can_cancel": deadline is not None and now < deadline and booking.order_id is None,
                     "cancel_until": BookingService.local_text(event, deadline) if deadline else None,
                     "offer_open": offer_open,
                     "offer_until": BookingService.local_text(event, booking.offer_expires_at)
                     if offer_open and booking.offer_expires_at else None})
    # Coming dates first, the soonest on top; then the past ones, the latest first (as /account/tickets).
    upcoming = [r for r in rows if r["upcoming"]][::-1]
    rows = upcoming + [r for r in rows if not r["upcoming"]]
    return Template("events/my_bookings.html", context={"rows": rows})


@get("/account/tickets", name="events:my-tickets", cache_control=PRIVATE)
async def my_tickets(request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings) -> Template:
    """The member's tickets (the positions of their confirmed bookings): upcoming soonest first, then
    past ones latest first, each linked to its ticket page; above them the orders of tickets still
    awaiting payment (no ticket exists before the money is in, which must not look like nothing)."""
    service = BookingService(db_session)
    upcoming: list[dict[str, Any]] = []
    past: list[dict[str, Any]] = []
    for booking, event in await service.for_member(request.user):  # latest date first
        if booking.state != CONFIRMED:
            continue
        occ = await service.date_of(event, booking.occurrence)
        when = when_text(event, occ) if occ else key_text(booking.occurrence)
        for position in booking.positions:
            row = {"event": event, "when": when, "position": position}
            (upcoming if occ is not None else past).append(row)
    upcoming.reverse()
    awaiting = []
    for order in await CartService(db_session, settings).awaiting_payment(request.user.id, TICKETS):
        for line in order.lines:
            if line.source == TICKETS:
                names = [str(p.get("name") or "") for p in (line.details or {}).get("attendees") or []
                         if isinstance(p, dict)]
                awaiting.append({"count": line.quantity, "title": line.title, "number": order.number,
                                 "later": order.payment_provider == "collection",
                                 "names": [n for n in names if n]})
    return Template("events/my_tickets.html", context={
        "upcoming": upcoming, "past": past, "awaiting": awaiting,
        "pay_later": payment_instructions(settings) if any(a["later"] for a in awaiting) else ""})


def key_text(key: str) -> str:
    """A past date's key (``20261208T180000``, the event's wall clock) as ``Tue 8 December 2026, 18:00``."""
    try:
        local = datetime.strptime(key, "%Y%m%dT%H%M%S")
    except ValueError:
        return key
    return f"{local:%a} {local.day} {local:%B %Y}, {local:%H:%M}"


@post("/account/bookings/{booking_id:uuid}/cancel", status_code=303)
async def cancel_booking(request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings,
                         booking_id: UUID) -> Response[Any]:
    booking = await db_session.get(Booking, booking_id)
    if booking is None or booking.user_id != request.user.id:  # another member's booking looks absent
        raise NotFoundException("No such booking.")
    event = await db_session.get(Event, booking.event_id)
    assert event is not None
    try:
        await _service(db_session, settings).cancel(booking, event)
    except InputProblems as exc:
        return see_other("/account/bookings", request, exc.errors.get("form", "Not cancelled."), category="error")
    return see_other("/account/bookings", request, f"Cancelled your booking for “{event.title}”.")


async def _own_offer(request: Request[User, Any, Any], db: AsyncSession, secret: str) -> tuple[Booking, Event]:
    found = await BookingService(db).offer(secret)
    if found is None or found[0].user_id != request.user.id:  # another member's offer looks absent
        raise NotFoundException("No such offer.")
    return found


@get("/account/bookings/offer/{secret:str}", name="events:offer", cache_control=PRIVATE)
async def offer_page(request: Request[User, Any, Any], db_session: AsyncSession, secret: str) -> Template:
    booking, event = await _own_offer(request, db_session, secret)
    service = BookingService(db_session)
    occ = await service.date_of(event, booking.occurrence)
    now = datetime.now(UTC)
    is_open = booking.offered and booking.offer_expires_at is not None and booking.offer_expires_at > now
    return Template("events/offer.html", headers=NO_STORE, context={
        "event": event, "booking": booking, "open": is_open, "secret": secret,
        "when": when_text(event, occ) if occ else booking.occurrence[:8],
        "until": BookingService.local_text(event, booking.offer_expires_at) if booking.offer_expires_at else ""})


@post("/account/bookings/offer/{secret:str}", status_code=303)
async def accept_offer(request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings,
                       secret: str) -> Response[Any]:
    booking, event = await _own_offer(request, db_session, secret)
    try:
        await _service(db_session, settings).accept(booking, event)
    except InputProblems as exc:
        return see_other("/account/bookings", request, exc.errors.get("form", "Not booked."), category="error")
    return see_other("/account/bookings", request, f"Booked: your place{'s' if booking.quantity > 1 else ''} at "
                                                   f"“{event.title}”. Your tickets are below and in your mail.")


@get("/events/tickets/{secret:str}", name="events:ticket")
async def ticket(request: Request[Any, Any, Any], db_session: AsyncSession, secret: str) -> Template:
    """A ticket: the secret in the address is the capability (it is what the door scans).

    The link is forwarded, printed and shown at the door, so it shows what a ticket shows (the
    event, the date, the attendee's name, the code); the dietary needs and the booking's answer
    only to the signed-in member who booked, or to staff."""
    found = await BookingService(db_session).position(secret)
    if found is None:
        raise NotFoundException("No such ticket.")
    position, booking, event = found
    viewer = current_user(request)
    personal = viewer is not None and (bool(viewer.is_admin) or (
        booking.user_id is not None and booking.user_id == getattr(viewer, "id", None)))
    occ = await BookingService(db_session).date_of(event, booking.occurrence)
    qr = Markup(segno.make(position.secret, error="m").svg_inline(scale=5, omitsize=True,  # noqa: S704
                                                                  title="Ticket code"))
    return Template("events/ticket.html", headers=NO_STORE, context={
        "event": event, "booking": booking, "position": position, "qr": qr,
        "question": (await options_for(db_session, event)).question,
        "when": when_text(event, occ) if occ else "This date has passed.",
        "valid": booking.state == CONFIRMED and not position.cancelled, "personal": personal})


# -- buying paid tickets ---------------------------------------------------------------------------
# The event page is public and edge-cached (no session, no CSRF token there): its "Buy tickets" form
# GETs this private page with a quantity per ticket type (``q-<ticket type id>``); here the buyer
# names each ticket (and answers the event's questions) and one POST adds every chosen type to the
# cart. With htmx a changed quantity re-renders the name rows in place (names typed so far kept);
# without it, the POST answers the form again with the rows the new quantities need.

def _quantity_of(raw: object) -> int:
    text = str(raw or "").strip()
    return min(int(text), MAX_PLACES) if text.isascii() and text.isdigit() and len(text) <= 3 else 0


async def _sale(request: Request[Any, Any, Any], db: AsyncSession, slug: str) -> tuple[Event, list[dict[str, str]]]:
    """The event (visible to this visitor) and its ticket types on sale; 404 when it sells none."""
    event = await EventService(db).get_visible(slug, member=current_user(request) is not None)
    rows = await tickets_on_sale(db, event) if event is not None else []
    if event is None or not rows:
        raise NotFoundException("This event sells no tickets.")
    return event, rows


async def _buy_page(request: Request[Any, Any, Any], db: AsyncSession, event: Event, rows: list[dict[str, str]],
                    values: Any, errors: dict[str, str] | None = None, status: int = 200,
                    notice: str = "", line: str = "") -> Template:
    """The names form; ``line``: the id of the visitor's cart line it changes ("Change tickets")."""
    options = await options_for(db, event)
    chosen = []
    for row in rows:
        quantity = _quantity_of(values.get(f"q-{row['id']}"))
        chosen.append({**row, "quantity": quantity, "places": range(1, quantity + 1)})
    template = "events/_buy_form.html" if is_htmx(request) and request.method == "GET" else "events/buy.html"
    return Template(template, status_code=status, headers=NO_STORE, context={
        "event": event, "types": chosen, "any": any(t["quantity"] for t in chosen), "options": options,
        "line": line, "notice": notice,
        "values": {k: str(v) for k, v in values.items() if isinstance(v, str)}, "errors": errors or {},
        "max_places": MAX_PLACES})


async def _cart_line(request: Request[Any, Any, Any], cart: CartService, rows: list[dict[str, str]],
                     line_id: object) -> Any:
    """The visitor's cart line ``line_id`` (the cart's OrderLine, which events does not import)
    if it holds one of these ticket types: what "Change tickets" changes. None otherwise (another
    visitor's line, another event's): the form then just adds."""
    if not line_id:
        return None
    order = await cart.visitor_cart(request, user_id=getattr(current_user(request), "id", None))
    ids = {r["id"] for r in rows}
    return next((x for x in (order.lines if order else []) if str(x.id) == str(line_id)
                 and x.source == TICKETS and str(x.variant_id) in ids), None)


@get("/events/{slug:str}/tickets", name="events:buy")
async def buy_form(request: Request[Any, Any, Any], db_session: AsyncSession, settings: Settings,
                   slug: str) -> Template:
    event, rows = await _sale(request, db_session, slug)
    values: Any = request.query_params
    line = await _cart_line(request, CartService(db_session, settings), rows, values.get("line"))
    if line is not None and not any(k.startswith("q-") for k in values):
        # "Change tickets" from the cart: the line's count and names, which the POST replaces.
        kind = str(line.variant_id)
        people = [p for p in (line.details or {}).get("attendees") or [] if isinstance(p, dict)]
        values = {"line": str(line.id), f"q-{kind}": str(line.quantity),
                  "answer": str((line.details or {}).get("answer") or "")}
        for i, person in enumerate(people[:line.quantity], start=1):
            values[f"a-{kind}-{i}"] = str(person.get("name") or "")
            values[f"d-{kind}-{i}"] = str(person.get("dietary") or "")
    return await _buy_page(request, db_session, event, rows, values, line=str(line.id) if line is not None else "")


@post("/events/{slug:str}/tickets", status_code=303)
async def buy(request: Request[Any, Any, Any], db_session: AsyncSession, settings: Settings,
              slug: str) -> Response[Any]:
    """Add every chosen ticket type, with its attendees, to the visitor's cart in one go: the
    cart's capacity checks and the source's checks of names and answers (``check_details``) each
    refuse the whole form (4xx, the transaction rolled back: no line added, none half-named)."""
    event, rows = await _sale(request, db_session, slug)
    values = await form_data(request)
    cart = CartService(db_session, settings)
    changing = await _cart_line(request, cart, rows, values.get("line"))
    changed = str(changing.variant_id) if changing else ""
    line_id = str(changing.id) if changing else ""
    chosen = [(row, _quantity_of(values.get(f"q-{row['id']}"))) for row in rows]
    # The line being changed stays chosen at 0: that removes it.
    chosen = [(row, n) for row, n in chosen if n > 0 or row["id"] == changed]
    if not chosen:
        return await _buy_page(request, db_session, event, rows, values,
                               {"form": "Choose how many tickets you want."}, status=422)
    if any(str(values.get(f"shown-{row['id']}", n)) != str(n) for row, n in chosen):
        # Without JavaScript a changed count posts the form before its name rows exist (each type's
        # ``shown-`` field says how many rows the page had): the expected step, not a mistake, so
        # the rows come back to be filled, without an error.
        return await _buy_page(request, db_session, event, rows, values, line=line_id,
                               notice="Name each ticket below, then add them to your cart.")
    user_id: UUID | None = getattr(current_user(request), "id", None)
    order = await cart.visitor_cart(request, user_id=user_id)  # made only once the form is good
    # Ticket types of one date share its quota: the cart checks each line alone, so the sum over
    # the date (this form's and the cart's lines of it) is checked here before anything is added.
    wanted: dict[str, int] = {}
    for row, quantity in chosen:
        wanted[row["when"]] = wanted.get(row["when"], 0) + quantity
    # The line being changed is replaced, so its own places are not counted as held besides.
    held = {line.variant_id: line.quantity for line in (order.lines if order else [])
            if line.source == TICKETS and line is not changing}
    for when, total in wanted.items():
        same = [UUID(r["id"]) for r in rows if r["when"] == when]
        offer = await cart.offer(TICKETS, same[0], member=user_id is not None)
        have = sum(held.get(i, 0) for i in same)
        if offer is not None and total + have > offer.available:
            left = max(0, offer.available - have)
            return await _buy_page(request, db_session, event, rows, values, {
                "form": f"Only {left} place{'s are' if left != 1 else ' is'} available on {when}"
                        f"{' besides those in your cart' if have else ''}: choose {left} or fewer."}, status=409,
                line=line_id)
    if order is None:
        order = await cart.visitor_cart(request, user_id=user_id, create=True)
        assert order is not None
    added = 0
    try:
        for row, quantity in chosen:
            people = [{"name": str(values.get(f"a-{row['id']}-{i}", "")),
                       "dietary": str(values.get(f"d-{row['id']}-{i}", ""))} for i in range(1, quantity + 1)]
            try:
                given = {"attendees": people, "answer": str(values.get("answer", ""))}
                if changing is not None and row["id"] == changed:
                    await cart.set_quantity(order, changing.id, str(quantity), details=given)
                else:
                    await cart.add(order, source=TICKETS, variant_id=UUID(row["id"]), quantity=quantity,
                                   details=given)
            except InputProblems as exc:  # say which ticket type the names are missing from
                raise InputProblems({k if k in {"answer", "form"} else "form": f"{row['name']}, {row['when']}: {v}"
                                     for k, v in exc.errors.items()}, status=exc.status) from None
            added += quantity
    except InsufficientStock as exc:
        return await _buy_page(request, db_session, event, rows, values, {"form": exc.errors["stock"]}, status=409,
                               line=line_id)
    except InputProblems as exc:
        return await _buy_page(request, db_session, event, rows, values, exc.errors, status=exc.status, line=line_id)
    message = f"Added {added} ticket{'s' if added != 1 else ''} for “{event.title}” to your cart."
    if changing is not None:
        message = f"Your tickets for “{event.title}” are changed."
    if is_htmx(request):
        return done("/cart/", request, message)
    return see_other("/cart/", request, message)


# -- check-in --------------------------------------------------------------------------------------

class RedeemIn(msgspec.Struct, kw_only=True):
    """Pretix's redeem request (the fields we act on; the others are accepted and ignored)."""

    secret: str
    type: Literal["entry", "exit"] = "entry"
    occurrence: str | None = None  # ours: the date checked in (its key); default the current or next date
    nonce: str | None = None
    force: bool = False
    datetime: str | None = None
    source_type: str = "barcode"
    lists: list[Any] = []
    ignore_unpaid: bool = False
    questions_supported: bool = True
    answers: dict[str, Any] = {}


async def _staff_event(request: Request[User, Any, Any], db: AsyncSession, slug: str) -> Event:
    event = await EventService(db).get(slug)
    if event is None or not request.user.is_admin:
        raise NotFoundException("No such event.")
    return event


@post("/events/{slug:str}/checkin/redeem", status_code=201)
async def redeem_api(request: Request[User, Any, Any], db_session: AsyncSession, slug: str,
                     data: RedeemIn) -> Response[dict[str, Any]]:
    event = await _staff_event(request, db_session, slug)
    if data.nonce is not None and len(data.nonce) > 190:
        raise ClientException("nonce: at most 190 characters.", status_code=400)
    answer = await BookingService(db_session).redeem(event, data.secret[:200], kind=data.type, nonce=data.nonce,
                                                     force=data.force, by=request.user, occurrence=data.occurrence)
    body: dict[str, Any] = {"status": answer.status, "require_attention": False, "list": {"name": event.title}}
    if answer.reason:
        body["reason"] = answer.reason
    if answer.position:
        body["position"] = answer.position
    return Response(body, status_code=answer.http_status)


class CheckinForm(msgspec.Struct, kw_only=True):
    secret: str = ""
    nonce: str = ""
    type: str = "entry"


@get("/events/{slug:str}/checkin", name="events:checkin", cache_control=PRIVATE)
async def checkin_page(request: Request[User, Any, Any], db_session: AsyncSession, slug: str) -> Template:
    event = await _staff_event(request, db_session, slug)
    return await _checkin(db_session, event, None)


@post("/events/{slug:str}/checkin", status_code=200)
async def checkin_submit(request: Request[User, Any, Any], db_session: AsyncSession, slug: str) -> Template:
    event = await _staff_event(request, db_session, slug)
    form = await parse_form(request, CheckinForm)
    kind = form.type if form.type in ("entry", "exit") else "entry"
    answer = await BookingService(db_session).redeem(event, form.secret[:200], kind=kind,
                                                     nonce=form.nonce[:190] or None, by=request.user)
    return await _checkin(db_session, event, answer, status=200 if answer.status == "ok" else 422)


@get("/events/{slug:str}/attendees", name="events:attendees", cache_control=PRIVATE)
async def attendees_page(request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings,
                         slug: str) -> Template:
    """Staff's list of a date's attendees with their answers (``?date=<key>``; default the door's date)."""
    event = await _staff_event(request, db_session, slug)
    service = BookingService(db_session)
    dates = await service.dates(event, limit=50)
    wanted = str(request.query_params.get("date", ""))[:15]
    door = await service.door_date(event)
    key = wanted or (door.key if door else "")
    rows = await service.attendees(event, key) if key else []
    # Places held by orders not paid yet (taken from the quota at placement, no tickets before the
    # payment): listed apart, so the page never says "nobody is booked" while places are held.
    types = [t.id for t in await ticket_types(db_session, event) if t.occurrence == key]
    held = [{"number": order.number or "", "count": line.quantity, "email": order.email,
             "names": [str(p.get("name") or "") for p in (line.details or {}).get("attendees") or []
                       if isinstance(p, dict) and p.get("name")]}
            for order, line in await CartService(db_session, settings).held_unpaid(TICKETS, types)] if key else []
    options = await options_for(db_session, event)
    return Template("events/attendees.html", context={
        "event": event, "rows": rows, "key": key, "question": options.question, "held": held,
        "ask_dietary": options.ask_dietary or any(r.get("dietary") for r in rows),
        "dates": [{"key": d.key, "when": when_text(event, d)} for d in dates],
        "inside": sum(1 for r in rows if r["inside"])})


async def _checkin(db: AsyncSession, event: Event, answer: Any, status: int = 200) -> Template:
    service = BookingService(db)
    door = await service.door_date(event)  # the date tickets are checked in for (redeem's rule)
    counts = await service.checkin_counts(event, door.key) if door else {"positions": 0, "checked_in": 0}
    return Template("events/checkin.html", status_code=status, headers={"Permissions-Policy": CHECKIN_PERMISSIONS},
                    context={"event": event, "answer": answer, "counts": counts,
                             "nonce": secrets.token_urlsafe(16)})


# -- the JSON API ----------------------------------------------------------------------------------

class AttendeeIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    dietary: str = ""


class BookingIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    email: str
    quantity: int = 1
    occurrence: str | None = None
    # One per place: {"name", "dietary"?} (a bare string is a name); may be left out for one place.
    attendees: list[AttendeeIn | str] = []
    answer: str = ""


class PositionOut(msgspec.Struct, kw_only=True):
    id: str
    attendee_name: str
    dietary: str
    secret: str
    url: str


class BookingOut(msgspec.Struct, kw_only=True):
    id: str
    state: str
    occurrence: str
    quantity: int
    waiting_list: bool
    answer: str
    positions: list[PositionOut]


@post("/api/events/{slug:str}/bookings", name="api:events-book", status_code=201)
async def api_book(request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings, slug: str,
                   data: BookingIn) -> Response[BookingOut]:
    """Book free places on a date (the next one when `occurrence` is left out). 201 with the
    tickets; 409 with `waiting_list: true` when the date is full and the booking waits."""
    event = await EventService(db_session).get_visible(slug, member=True)  # a token is a member's
    if event is None or event.capacity is None:
        raise NotFoundException("No bookable event has that slug.")
    service = _service(db_session, settings)
    key = data.occurrence
    if key is None:
        upcoming = await service.dates(event, limit=1)
        if not upcoming:
            raise ClientException("This event has no upcoming date.", status_code=409)
        key = upcoming[0].key
    try:  # booked as the token's member: one booking per member and date, cancellable by them
        booking = await service.book(event, key, user=request.user, name=data.name, email=data.email,
                                     quantity=data.quantity, answer=data.answer,
                                     attendees=[Attendee(a) if isinstance(a, str) else Attendee(a.name, a.dietary)
                                                for a in data.attendees])
    except InputProblems as exc:
        raise ClientException("; ".join(f"{k}: {v}" for k, v in exc.errors.items()), status_code=exc.status,
                              extra=[{"key": k, "message": v} for k, v in exc.errors.items()]) from None
    loaded = (await db_session.execute(select(Booking).where(Booking.id == booking.id)
                                       .options(selectinload(Booking.positions)))).scalar_one()
    out = BookingOut(id=str(loaded.id), state=loaded.state, occurrence=loaded.occurrence, quantity=loaded.quantity,
                     waiting_list=loaded.state != CONFIRMED, answer=loaded.answer,
                     positions=[PositionOut(id=str(p.id), attendee_name=p.attendee, dietary=p.dietary,
                                            secret=p.secret,
                                            url=f"{settings.base_url}/events/tickets/{p.secret}")
                                for p in loaded.positions])
    if loaded.state != CONFIRMED:
        # A 409 is not committed by the session's handler: the waiting-list entry is kept on purpose.
        await db_session.commit()
    return Response(out, status_code=201 if loaded.state == CONFIRMED else 409)


member_handlers = [book_form, book, my_bookings, my_tickets, cancel_booking, offer_page, accept_offer,
                   *members_handlers]
staff_handlers = [checkin_page, checkin_submit, attendees_page]
ticket_handlers = [ticket, buy_form, buy]
checkin_api_handlers = [redeem_api]
api_handlers = [api_book]
