"""Paid tickets through the cart and payments (issue 18 item 4): events as a line source of the cart
(domains/cart/sources.py, domains/events/services/tickets.py). Both databases.

A ticket type's places come from the date's quota; the cart reserves and allocates them like stock;
tickets (positions with secrets) exist only once the order is paid; cancelling or refunding the
order cancels them and returns the places; racing buyers never overbook."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import msgspec
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.forms import InputProblems
from app.jobs import Job
from app.settings import Settings
from domains.account.models import User
from domains.cart.fulfilment import OrderDesk
from domains.cart.models import CANCELLED, PAID, PAYMENT_PENDING, REFUNDED, Order
from domains.cart.services import CartService, CheckoutDetails, InsufficientStock
from domains.events.booking_models import CANCELLED as BOOKING_CANCELLED
from domains.events.booking_models import CONFIRMED, Booking, EventQuota, Position, TicketType
from domains.events.models import CANCELLED as EVENT_CANCELLED
from domains.events.models import Event
from domains.events.services.bookings import BookingService
from domains.events.services.events import EventForm, EventService
from domains.events.services.tickets import SOURCE, create_ticket_type, create_ticket_types
from domains.payments.services import available_providers
from tests.fakes.sumup import API_KEY, MERCHANT_CODE, FakeSumUp, serve_in_thread
from tests.helpers.web import CSRF_FIELD, login, post_form, signup

pytestmark = pytest.mark.anyio

DAY = date.today() + timedelta(days=12)
KEY = f"{DAY:%Y%m%d}T190000"


@pytest.fixture
def sumup_fake() -> Iterator[FakeSumUp]:
    """The fake on its own thread and loop, as in tests/domains/cart/test_cart_payments.py."""
    with serve_in_thread() as fake:
        yield fake


@pytest.fixture
def sumup_settings(settings: Settings, sumup_fake: FakeSumUp) -> Settings:
    return msgspec.structs.replace(settings, sumup_api_key=API_KEY, sumup_merchant_code=MERCHANT_CODE,
                                   sumup_api_url=sumup_fake.public_url)


async def _event(session: AsyncSession, *, capacity: int = 3, title: str = "Pottery evening") -> Event:
    event = await EventService(session).save(EventForm(
        title=title, tz="Europe/London", start_date=DAY.isoformat(), start_time="19:00", end_time="21:00",
        capacity=str(capacity)))
    await session.commit()
    return event


async def _ticketed(session: AsyncSession, settings: Settings, *, capacity: int = 3,
                    price: int = 1500) -> tuple[Event, TicketType]:
    event = await _event(session, capacity=capacity)
    ticket = await create_ticket_type(session, event, occurrence=KEY, name="Standard", price_minor=str(price),
                                      currency=settings.market_currency)
    await session.commit()
    return event, ticket


async def _taken(session: AsyncSession, event: Event) -> int:
    got = (await session.execute(select(EventQuota.taken).where(EventQuota.event_id == event.id,
                                                                EventQuota.occurrence == KEY))).scalar()
    return int(got or 0)


async def _positions(session: AsyncSession, order: Order) -> list[tuple[str, bool]]:
    rows = await session.execute(select(Position.secret, Position.cancelled).join(Booking)
                                 .where(Booking.order_id == order.id).order_by(Position.created_at))
    return [(s, c) for s, c in rows.tuples()]


def named(count: int) -> dict[str, Any]:
    """A ticket line's details naming each of ``count`` tickets: the cart adds no unnamed ticket."""
    return {"attendees": [{"name": f"Guest {i}"} for i in range(1, count + 1)]}


async def _place(session: AsyncSession, settings: Settings, ticket: TicketType, *, quantity: str = "2",
                 payment: str = "collection", key: str = "tickets-0000000000000000") -> Order:
    cart = CartService(session, settings)
    order = await cart.new_cart()
    await cart.add(order, source=SOURCE, variant_id=ticket.id, quantity=quantity, details=named(int(quantity)))
    await cart.start_checkout(order)
    placed = await cart.place(order, CheckoutDetails(email="buyer@example.org", payment=payment), idempotency_key=key)
    await session.commit()
    return placed


async def test_paid_tickets_through_sumup_exist_only_after_payment_and_a_refund_cancels_them(
        db_session: AsyncSession, sumup_settings: Settings, sumup_fake: FakeSumUp) -> None:
    settings = sumup_settings
    event, ticket = await _ticketed(db_session, settings, capacity=3, price=1500)
    cart = CartService(db_session, settings)
    offer = await cart.offer(SOURCE, ticket.id, member=False)
    assert offer is not None and offer.active and offer.available == 3 and offer.price_minor == 1500
    assert "Pottery evening" in offer.title and "Standard" in offer.title and str(DAY.day) in offer.title

    order = await _place(db_session, settings, ticket, quantity="2", payment="sumup")
    assert order.state == PAYMENT_PENDING and order.total_minor == 3000
    assert [line.source for line in order.lines] == ["events"]
    assert await _taken(db_session, event) == 2  # the places are held from placement
    url = await cart.open_payment(order)
    await db_session.commit()
    assert url and order.payment_id
    # Unpaid: no tickets at all, so nothing can be checked in (a made-up secret answers "invalid").
    assert await _positions(db_session, order) == []
    assert await cart.issued(order) == []

    sumup_fake.pay(order.payment_id)
    record = await available_providers(settings)["sumup"].fetch(order.payment_id)
    assert await cart.apply_payment(record) == "paid"
    assert await cart.apply_payment(record) == "unchanged"  # a replay issues nothing twice
    await db_session.commit()
    assert order.state == PAID
    issued = await _positions(db_session, order)
    assert len(issued) == 2 and all(len(secret) >= 32 and not cancelled for secret, cancelled in issued)
    booking = (await db_session.execute(select(Booking).where(Booking.order_id == order.id))).scalar_one()
    assert (booking.state, booking.quantity, booking.occurrence, booking.ticket_type_id) == (CONFIRMED, 2, KEY,
                                                                                            ticket.id)
    assert await _taken(db_session, event) == 2  # payment takes no second share of the quota
    links = await cart.issued(order)
    assert [link.url for link in links] == [f"/events/tickets/{s}" for s, _ in issued]
    mails = (await db_session.execute(select(Job).where(Job.kind == "mail.send"))).scalars().all()
    assert sum(1 for j in mails if j.payload["mail"]["tag"] == "events-confirmed") == 1
    # The ticket checks in at the door.
    service = BookingService(db_session)
    ok = await service.redeem(event, issued[0][0], nonce="n-1", occurrence=KEY)
    assert ok.status == "ok"
    await db_session.commit()

    # A full refund through SumUp: the tickets are cancelled and the places return.
    desk = OrderDesk(db_session, settings)
    refunded = await desk.refund(order, actor="ada")
    await db_session.commit()
    assert refunded.state == REFUNDED
    assert all(cancelled for _, cancelled in await _positions(db_session, order))
    await db_session.refresh(booking)
    assert booking.state == BOOKING_CANCELLED
    assert await _taken(db_session, event) == 0
    assert (await cart.offer(SOURCE, ticket.id, member=False)).available == 3  # type: ignore[union-attr]
    scan = await service.redeem(event, issued[1][0], nonce="n-2", occurrence=KEY)
    assert (scan.status, scan.reason) == ("error", "canceled")


async def test_an_unpaid_order_cancelled_returns_its_places_and_issues_nothing(
        db_session: AsyncSession, settings: Settings) -> None:
    event, ticket = await _ticketed(db_session, settings, capacity=2)
    order = await _place(db_session, settings, ticket, quantity="2")
    assert await _taken(db_session, event) == 2
    cart = CartService(db_session, settings)
    assert (await cart.offer(SOURCE, ticket.id, member=False)).available == 0  # type: ignore[union-attr]
    assert await cart.cancel(order, actor="ada", note="changed their mind")
    await db_session.commit()
    assert order.state == CANCELLED and await _taken(db_session, event) == 0
    assert await _positions(db_session, order) == []
    assert not await cart.cancel(order, actor="ada")  # idempotent: nothing released twice
    assert await _taken(db_session, event) == 0


async def test_paid_at_the_counter_then_cancelled_cancels_the_tickets(db_session: AsyncSession,
                                                                      settings: Settings) -> None:
    event, ticket = await _ticketed(db_session, settings, capacity=3)
    order = await _place(db_session, settings, ticket, quantity="1")
    cart = CartService(db_session, settings)
    assert await cart.mark_paid(order, actor="ada")
    await db_session.commit()
    assert [c for _, c in await _positions(db_session, order)] == [False]
    assert await cart.cancel(order, actor="ada")
    await db_session.commit()
    assert [c for _, c in await _positions(db_session, order)] == [True]
    assert await _taken(db_session, event) == 0


async def test_a_member_cannot_cancel_paid_tickets_outside_their_order(db_session: AsyncSession,
                                                                      settings: Settings) -> None:
    """The walk found the buyer could cancel paid (even scanned) tickets from their bookings: the
    order stayed paid and the money kept. Paid tickets go with the order's cancel or refund only."""
    event, ticket = await _ticketed(db_session, settings, capacity=3)
    order = await _place(db_session, settings, ticket, quantity="2")
    assert await CartService(db_session, settings).mark_paid(order, actor="ada")
    await db_session.commit()
    service = BookingService(db_session)
    booking = (await db_session.execute(select(Booking).where(Booking.order_id == order.id))).scalar_one()
    secret = (await _positions(db_session, order))[0][0]
    assert (await service.redeem(event, secret=secret, nonce="door-1")).status == "ok"
    await db_session.commit()
    with pytest.raises(InputProblems) as refused:
        await service.cancel(booking, event)
    assert refused.value.status == 409 and "bought with an order" in refused.value.errors["form"]
    await db_session.rollback()
    assert [c for _, c in await _positions(db_session, order)] == [False, False]
    assert await _taken(db_session, event) == 2
    assert await service.checkin_counts(event, KEY) == {"positions": 2, "checked_in": 1}
    # The order's cancel voids them; the door count then counts only live tickets (never "1 of 0").
    assert await CartService(db_session, settings).cancel(order, actor="ada")
    await db_session.commit()
    assert await service.checkin_counts(event, KEY) == {"positions": 0, "checked_in": 0}


async def test_racing_buyers_for_the_last_places_never_overbook(engine: AsyncEngine, settings: Settings,
                                                                db_kind: str) -> None:
    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with maker() as session:
        event, ticket = await _ticketed(session, settings, capacity=3)
    n = 24 if db_kind == "postgresql" else 10
    tokens: list[str] = []
    async with maker() as session:
        cart = CartService(session, settings)
        for _ in range(n):
            order = await cart.new_cart()
            await cart.add(order, source=SOURCE, variant_id=ticket.id, quantity="1", details=named(1))
            tokens.append(order.token)
        await session.commit()
    go = asyncio.Event()

    async def buy(i: int) -> str:
        await go.wait()
        async with maker() as session:
            cart = CartService(session, settings)
            order = await cart.open_cart(token=tokens[i])
            assert order is not None
            try:
                await cart.place(order, CheckoutDetails(email=f"b{i}@example.org"),
                                 idempotency_key=f"ticket-race-{i:04d}-" + "x" * 8)
                await session.commit()
                return "placed"
            except InsufficientStock as exc:
                await session.rollback()
                assert exc.errors["stock"].startswith("No places left for “")
                return "short"

    tasks = [asyncio.create_task(buy(i)) for i in range(n)]
    go.set()
    results = await asyncio.gather(*tasks)
    assert results.count("placed") == 3 and results.count("short") == n - 3
    async with maker() as session:
        assert await _taken(session, event) == 3
        placed = (await session.execute(select(func.count()).select_from(Order)
                                        .where(Order.state == PAYMENT_PENDING))).scalar_one()
        assert placed == 3


async def test_bad_paths_sold_out_cancelled_past_and_bad_prices(db_session: AsyncSession, settings: Settings) -> None:
    event, ticket = await _ticketed(db_session, settings, capacity=1)
    ticket_id = ticket.id
    cart = CartService(db_session, settings)
    # More than the date has.
    order = await cart.new_cart()
    with pytest.raises(InsufficientStock) as many:
        await cart.add(order, source=SOURCE, variant_id=ticket.id, quantity="2")
    # Worded for people: places left at the event's date, no stock code (TICKET-…) in sight.
    assert many.value.errors["stock"].startswith(f"Only 1 place left for “{event.title}”, ")
    assert "TICKET-" not in many.value.errors["stock"] and "stock" not in many.value.errors["stock"].lower()
    # Sold out: the one place is placed by someone else; the next buyer is told.
    await _place(db_session, settings, ticket, quantity="1")
    other = await cart.new_cart()
    with pytest.raises(InsufficientStock) as sold:
        await cart.add(other, source=SOURCE, variant_id=ticket.id, quantity="1")
    assert sold.value.errors["stock"].startswith(f"No places left for “{event.title}”, ")
    # A date sold with tickets takes no free bookings (they would skip the payment).
    with pytest.raises(InputProblems) as free:
        await BookingService(db_session).book(event, KEY, user=None, name="Free rider", email="f@example.org",
                                              quantity=1)
    assert "sold as tickets" in free.value.errors["occurrence"]
    await db_session.rollback()

    # A cancelled event sells nothing, with its reason.
    cancelled, ticket2 = await _ticketed_other(db_session, settings, "Cancelled concert")
    await db_session.execute(update(Event).where(Event.id == cancelled.id).values(status=EVENT_CANCELLED))
    await db_session.commit()
    with pytest.raises(InputProblems) as off:
        await cart.add(await cart.new_cart(), source=SOURCE, variant_id=ticket2.id, quantity="1")
    assert off.value.status == 422 and "is cancelled" in off.value.errors["sku"]
    await db_session.rollback()

    # A past date: the ticket type cannot be made, and one left over sells nothing.
    past_event = await _event(db_session, title="Old fair")
    past_key = f"{date.today() - timedelta(days=3):%Y%m%d}T190000"
    with pytest.raises(InputProblems) as made:
        await create_ticket_type(db_session, past_event, occurrence=past_key, name="Late", price_minor="500",
                                 currency=settings.market_currency)
    assert "upcoming dates" in made.value.errors["occurrence"]
    stale = TicketType(event_id=past_event.id, occurrence=past_key, name="Late", description="", price_minor=500,
                       currency=settings.market_currency, active=True, created_at=datetime.now(UTC),
                       updated_at=datetime.now(UTC))
    db_session.add(stale)
    await db_session.commit()
    with pytest.raises(InputProblems) as gone:
        await cart.add(await cart.new_cart(), source=SOURCE, variant_id=stale.id, quantity="1")
    assert "has begun or passed" in gone.value.errors["sku"]
    await db_session.rollback()

    # Prices: minor units from 1; no free "ticket types"; names unique per date.
    await db_session.refresh(event)
    for bad in ("", "0", "-5", "12.50", "abc", "9" * 12):
        with pytest.raises(InputProblems) as price:
            await create_ticket_type(db_session, event, occurrence=KEY, name="Other", price_minor=bad,
                                     currency=settings.market_currency)
        assert "minor units" in price.value.errors["price"]
    with pytest.raises(InputProblems) as twice:
        await create_ticket_type(db_session, event, occurrence=KEY, name="Standard", price_minor="900",
                                 currency=settings.market_currency)
    assert twice.value.status == 409
    # An unknown source or item is a clear 404, not a 500.
    with pytest.raises(InputProblems) as unknown:
        await cart.add(await cart.new_cart(), source="nowhere", variant_id=ticket_id, quantity="1")
    assert unknown.value.status == 404


async def _ticketed_other(session: AsyncSession, settings: Settings, title: str) -> tuple[Event, TicketType]:
    event = await _event(session, title=title)
    made = await create_ticket_types(session, event, name="Standard", price_minor="800",
                                     currency=settings.market_currency)
    await session.commit()
    assert [t.occurrence for t in made] == [KEY]
    return event, made[0]


async def test_staff_price_a_ticket_and_a_buyer_adds_it_through_the_pages(client: Any, engine: AsyncEngine,
                                                                          settings: Settings) -> None:
    assert (await signup(client, "staff")).status_code == 303
    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with maker() as session, session.begin():
        (await session.execute(select(User).where(User.username == "staff"))).scalar_one().is_admin = True
    async with maker() as session:
        event = await _event(session)
    client.cookies.clear()
    assert (await login(client, "staff")).status_code == 303
    page = await client.get(f"/events/admin/{event.slug}/tickets")
    assert page.status_code == 200 and KEY in page.text
    bad = await post_form(client, f"/events/admin/{event.slug}/tickets",
                          {"occurrence": KEY, "name": "Standard", "price": "15.00"}, page=f"/events/admin/{event.slug}")
    assert bad.status_code == 422 and "minor units" in bad.text
    made = await post_form(client, f"/events/admin/{event.slug}/tickets",
                           {"occurrence": KEY, "name": "Standard", "price": "1500"}, page=f"/events/admin/{event.slug}")
    assert made.status_code == 303
    async with maker() as session:
        ticket = (await session.execute(select(TicketType).where(TicketType.event_id == event.id))).scalar_one()
    assert ticket.price_minor == 1500 and ticket.currency == settings.market_currency

    client.cookies.clear()
    public = await client.get(event.path)
    assert public.status_code == 200 and "Buy tickets" in public.text and str(ticket.id) in public.text
    # The no-JS add-to-cart step sends a ticket to the names page (a name per ticket), which adds it.
    confirm = await client.get(f"/cart/add?source=events&item={ticket.id}&quantity=2")
    assert confirm.status_code == 303
    assert confirm.headers["location"] == f"/events/{event.slug}/tickets?q-{ticket.id}=2"
    names = await client.get(confirm.headers["location"])
    assert names.status_code == 200 and "Pottery evening" in names.text
    token = CSRF_FIELD.search(names.text)
    assert token
    added = await client.post(f"/events/{event.slug}/tickets", data={
        f"q-{ticket.id}": "2", f"shown-{ticket.id}": "2", f"a-{ticket.id}-1": "Ada", f"a-{ticket.id}-2": "Grace",
        "_csrf_token": token.group(1)})
    assert added.status_code == 303
    cart_page = await client.get("/cart/")
    assert "Pottery evening: Standard ticket" in cart_page.text and "Ada, Grace" in cart_page.text
    forged = await client.post("/cart/add", data={"source": "events", "item": "not-a-uuid", "quantity": "1",
                                                  "_csrf_token": token.group(1)})
    assert forged.status_code == 404 and "not an item we sell" in forged.text
    missing = await client.get("/cart/add?source=events&item=0190a1b2-0000-7000-8000-000000000000")
    assert missing.status_code == 404

    # Placed and paid at the counter: the order page links the tickets.
    async with maker() as session:
        order = await _place(session, settings, ticket, quantity="1", key="tickets-page-00000000000")
        pending = await client.get(f"/cart/order/{order.token}")
        assert "issued once the payment is confirmed" in pending.text and "/events/tickets/" not in pending.text
        assert await CartService(session, settings).mark_paid(order, actor="ada")
        await session.commit()
        secret = (await _positions(session, order))[0][0]
    paid = await client.get(f"/cart/order/{order.token}")
    assert paid.status_code == 200 and f"/events/tickets/{secret}" in paid.text
    ticket_page = await client.get(f"/events/tickets/{secret}")
    assert ticket_page.status_code == 200 and "Pottery evening" in ticket_page.text
