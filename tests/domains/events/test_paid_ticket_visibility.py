"""Paid tickets after a security review: a members-only event's tickets look absent to a visitor
on every way into the cart (the add-to-cart confirm page too, byte for byte as an absent item),
and a guest line added while the event was public can be neither raised, checked out, placed nor
merged into a guest's cart once the event is members-only; a ticket line never keeps more names
than tickets (lowering trims, adding keeps the latest), so the tickets are issued to the names
the buyer gave last; the whole-site feed re-checks visibility when it loads events whole. Both
databases."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.forms import InputProblems
from app.settings import Settings
from domains.account.models import User
from domains.cart.models import CART, IdempotencyKey, OrderLine, Reservation
from domains.cart.services import CartService, CheckoutDetails
from domains.events import controllers as event_controllers
from domains.events.booking_models import Booking, Position
from domains.events.models import MEMBERS, Event
from domains.events.services.events import EventService
from domains.events.services.tickets import SOURCE
from tests.domains.events.test_paid_ticket_details import _ask, _details
from tests.domains.events.test_paid_tickets import _taken, _ticketed, named
from tests.helpers.web import signup

pytestmark = pytest.mark.anyio

ABSENT = "0190a1b2-0000-7000-8000-000000000000"


async def _members_only(session: AsyncSession, event: Event) -> None:
    await session.execute(update(Event).where(Event.id == event.id).values(visibility=MEMBERS))
    await session.commit()


async def test_the_add_confirm_page_answers_a_visitor_for_a_members_only_ticket_as_for_an_absent_one(
        client: Any, engine: AsyncEngine, settings: Settings) -> None:
    assert (await signup(client, "mira")).status_code == 303
    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with maker() as session:
        event, ticket = await _ticketed(session, settings, capacity=3)
        event.title = "Secret members supper"
        await session.commit()
        await _members_only(session, event)
    member = await client.get(f"/cart/add?source=events&item={ticket.id}")
    assert member.status_code == 303  # on to the names page, which a member may see
    names = await client.get(member.headers["location"])
    assert names.status_code == 200 and "Secret members supper" in names.text
    client.cookies.clear()
    hidden = await client.get(f"/cart/add?source=events&item={ticket.id}")
    absent = await client.get(f"/cart/add?source=events&item={ABSENT}")
    assert hidden.status_code == absent.status_code == 404
    assert hidden.content == absent.content
    assert "Secret members supper" not in hidden.text and str(ticket.id) not in hidden.text
    garbage = await client.get("/cart/add?source=events&item=not-a-uuid")
    assert garbage.status_code == 404


async def test_a_guest_line_of_an_event_made_members_only_cannot_be_raised_checked_out_or_placed(
        db_session: AsyncSession, settings: Settings) -> None:
    event, ticket = await _ticketed(db_session, settings, capacity=5)
    cart = CartService(db_session, settings)
    order = await cart.new_cart()
    await cart.add(order, source=SOURCE, variant_id=ticket.id, quantity="2", details=named(2))  # public then
    line, token = order.lines[0], order.token
    await db_session.commit()
    await _members_only(db_session, event)
    with pytest.raises(InputProblems) as raised:
        await cart.set_quantity(order, line.id, 3)
    assert raised.value.status == 422 and "no longer for sale" in raised.value.errors["quantity"]
    assert (await db_session.get(OrderLine, line.id, populate_existing=True)).quantity == 2  # type: ignore[union-attr]
    with pytest.raises(InputProblems) as checkout:
        await cart.start_checkout(order)
    assert checkout.value.status == 409
    assert await db_session.scalar(select(func.count()).select_from(Reservation)) == 0
    with pytest.raises(InputProblems) as placing:
        await cart.place(order, CheckoutDetails(email="b@example.org"), idempotency_key="hidden-" + "x" * 12)
    assert placing.value.status == 409
    await db_session.commit()  # what the refusal left, committed: nothing half-written
    # No key, no number, no places taken, still a cart.
    assert await db_session.scalar(select(func.count()).select_from(IdempotencyKey)) == 0
    fresh = await cart.by_token(token)
    assert fresh is not None and fresh.state == CART and fresh.number is None
    assert await _taken(db_session, event) == 0
    # Lowering and removing stay possible: the buyer can always let go of it.
    await cart.set_quantity(fresh, fresh.lines[0].id, 1)
    assert fresh.lines[0].quantity == 1
    # Merged into another guest's cart it is dropped, with a note.
    other = await cart.new_cart()
    notes = await cart.merge(fresh, other)
    assert notes == [f"{line.title} is no longer for sale."] and other.lines == []


async def test_a_members_only_guest_line_merges_into_a_members_cart(
        client: Any, engine: AsyncEngine, settings: Settings) -> None:
    assert (await signup(client, "mira")).status_code == 303
    async with async_sessionmaker(engine, expire_on_commit=False)() as session:
        event, ticket = await _ticketed(session, settings, capacity=5)
        cart = CartService(session, settings)
        guest = await cart.new_cart()
        await cart.add(guest, source=SOURCE, variant_id=ticket.id, quantity="1", details=named(1))
        await session.commit()
        await _members_only(session, event)
        member = (await session.execute(select(User).where(User.username == "mira"))).scalar_one()
        mine = await cart.new_cart(user_id=member.id)
        assert await cart.merge(guest, mine) == []
        assert [x.quantity for x in mine.lines] == [1]
        with pytest.raises(InputProblems) as unnamed:  # raising a ticket line names the added ticket
            await cart.set_quantity(mine, mine.lines[0].id, 2)
        assert unnamed.value.status == 422 and "needs a name" in unnamed.value.errors["quantity"]
        await cart.set_quantity(mine, mine.lines[0].id, 2,  # a member may raise it, naming every ticket
                                details={"attendees": [{"name": "Mira"}, {"name": "Guest of Mira"}]})
        assert mine.lines[0].quantity == 2
        assert (await cart.offer(SOURCE, ticket.id, member=True)) is not None
        assert (await cart.offer(SOURCE, ticket.id, member=False)) is None


async def test_a_ticket_line_never_keeps_more_names_than_tickets_and_the_latest_are_issued(
        db_session: AsyncSession, settings: Settings) -> None:
    event, ticket = await _ticketed(db_session, settings, capacity=5)
    await _ask(db_session, event)
    cart = CartService(db_session, settings)
    order = await cart.new_cart()
    await cart.add(order, source=SOURCE, variant_id=ticket.id, quantity="2", details=_details("Old1", "Old2"))
    for round_ in range(5):
        await cart.set_quantity(order, order.lines[0].id, 1)
        assert [a["name"] for a in order.lines[0].details["attendees"]] == ["Old1"]  # lowering trims
        await cart.add(order, source=SOURCE, variant_id=ticket.id, quantity="1", details=_details(f"New{round_}"))
        assert len(order.lines[0].details["attendees"]) == order.lines[0].quantity == 2
    line = order.lines[0]
    assert [a["name"] for a in line.details["attendees"]] == ["Old1", "New4"]
    await cart.start_checkout(order)
    placed = await cart.place(order, CheckoutDetails(email="b@example.org"), idempotency_key="names-" + "y" * 12)
    assert await cart.mark_paid(placed, actor="t")
    await db_session.commit()
    booking = (await db_session.execute(select(Booking).where(Booking.order_id == placed.id))).scalar_one()
    names = [p.attendee for p in (await db_session.execute(select(Position).where(
        Position.booking_id == booking.id).order_by(Position.created_at))).scalars()]
    assert names == ["Old1", "New4"]


async def test_names_beyond_the_tickets_are_cut_and_the_latest_win(db_session: AsyncSession,
                                                                   settings: Settings) -> None:
    """A line stored with more names than tickets (before this fix) is cut on the next add (the
    latest names kept) and on lowering (the first ones kept); removing a line still works."""
    event, ticket = await _ticketed(db_session, settings, capacity=9)
    await _ask(db_session, event)
    cart = CartService(db_session, settings)
    order = await cart.new_cart()
    line = await cart.add(order, source=SOURCE, variant_id=ticket.id, quantity="2", details=_details("A", "B"))
    line.details = _details("A", "B", "C", "D", "E")  # the old bug's leftovers
    await db_session.flush()
    await cart.add(order, source=SOURCE, variant_id=ticket.id, quantity="1", details=_details("F"))
    assert [a["name"] for a in order.lines[0].details["attendees"]] == ["D", "E", "F"]
    await cart.set_quantity(order, order.lines[0].id, 2)
    assert [a["name"] for a in order.lines[0].details["attendees"]] == ["D", "E"]
    assert order.lines[0].details["answer"] == "Blue"
    # Too many names for the tickets added is still refused, nothing written.
    with pytest.raises(InputProblems):
        await cart.add(order, source=SOURCE, variant_id=ticket.id, quantity="1", details=_details("G", "H"))
    await cart.remove(order, order.lines[0].id)
    assert order.lines == []


async def test_an_event_made_members_only_while_the_feed_is_built_is_left_out(
        engine: AsyncEngine, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with maker() as session:
        event, _ = await _ticketed(session, settings, capacity=3)
        event.title = "Soon members only"
        await session.commit()
    real = event_controllers._rows
    calls = 0

    async def made_members_only_in_between(session: AsyncSession, stmt: Any) -> Any:
        """The versions query answers first; then the event is made members-only (as a
        concurrent save would) before the events are loaded whole."""
        nonlocal calls
        rows = await real(session, stmt)
        calls += 1
        if calls == 1:
            await session.execute(update(Event).where(Event.id == event.id).values(visibility=MEMBERS))
        return rows

    async with maker() as session:
        parts, _ = await event_controllers._feed_events(EventService(session), "http://feed.example")
        assert len(parts) == 1  # seen public, as it is
    monkeypatch.setattr(event_controllers, "_rows", made_members_only_in_between)
    async with maker() as session:
        # A fresh base URL: nothing serialised for it yet, so the event is loaded whole.
        parts, _ = await event_controllers._feed_events(EventService(session), "http://other.example")
    assert calls == 2 and parts == []
