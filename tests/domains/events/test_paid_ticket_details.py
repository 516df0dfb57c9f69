"""Paid tickets, finished (issue 18 item 4): attendee names and booking questions on the cart line
and on each position once paid; paid bookings always under the member who bought them; ticket
lines through the JSON cart API; the event page's "Buy tickets" straight to the names and the
cart. Every bad path answers 4xx and writes nothing. Both databases."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.forms import InputProblems
from app.settings import Settings
from domains.account.models import User
from domains.cart.fulfilment import OrderDesk
from domains.cart.models import PAYMENT_PENDING, Order, OrderLine
from domains.cart.services import CartService, CheckoutDetails, InsufficientStock
from domains.events.booking_models import CONFIRMED, Booking, BookingOptions, Position, TicketType
from domains.events.models import MEMBERS, Event
from domains.events.services.bookings import Attendee, BookingService
from domains.events.services.tickets import SOURCE, create_ticket_type
from domains.payments.services import available_providers
from tests.domains.events.test_paid_tickets import KEY, _event, _taken, _ticketed
from tests.fakes.sumup import API_KEY, MERCHANT_CODE, FakeSumUp, serve_in_thread
from tests.helpers.web import CSRF_FIELD, login, signup

pytestmark = pytest.mark.anyio


@pytest.fixture
def sumup_fake() -> Iterator[FakeSumUp]:
    with serve_in_thread() as fake:
        yield fake


@pytest.fixture
def sumup_settings(settings: Settings, sumup_fake: FakeSumUp) -> Settings:
    return msgspec.structs.replace(settings, sumup_api_key=API_KEY, sumup_merchant_code=MERCHANT_CODE,
                                   sumup_api_url=sumup_fake.public_url)


async def _ask(session: AsyncSession, event: Event, *, required: bool = True) -> None:
    session.add(BookingOptions(event_id=event.id, ask_dietary=True, question="Which glaze colour?",
                               question_required=required, cancel_until_hours=24))
    await session.commit()


def _details(*names: str, answer: str = "Blue") -> dict[str, Any]:
    return {"attendees": [{"name": n, "dietary": "vegan" if i == 0 else ""} for i, n in enumerate(names)],
            "answer": answer}


async def _lines(session: AsyncSession) -> int:
    return int((await session.execute(select(func.count()).select_from(OrderLine))).scalar_one())


async def test_names_and_answers_ride_the_cart_line_onto_each_paid_position(db_session: AsyncSession,
                                                                             settings: Settings) -> None:
    event, ticket = await _ticketed(db_session, settings, capacity=5)
    await _ask(db_session, event)
    cart = CartService(db_session, settings)
    order = await cart.new_cart()
    await cart.add(order, source=SOURCE, variant_id=ticket.id, quantity="2", details=_details("Ada", "Grace"))
    await cart.add(order, source=SOURCE, variant_id=ticket.id, quantity="1",
                   details=_details("Linus", answer="Green"))
    line = order.lines[0]
    assert line.quantity == 3
    assert [a["name"] for a in line.details["attendees"]] == ["Ada", "Grace", "Linus"]
    assert line.details["answer"] == "Green"  # the latest answer wins
    await cart.start_checkout(order)
    placed = await cart.place(order, CheckoutDetails(email="buyer@example.org"), idempotency_key="names-" + "x" * 12)
    assert await cart.mark_paid(placed, actor="ada")
    await db_session.commit()
    booking = (await db_session.execute(select(Booking).where(Booking.order_id == placed.id))).scalar_one()
    assert booking.answer == "Green"
    positions = (await db_session.execute(select(Position).where(Position.booking_id == booking.id)
                                          .order_by(Position.created_at))).scalars().all()
    assert [(p.attendee, p.dietary) for p in positions] == [("Ada", "vegan"), ("Grace", ""), ("Linus", "vegan")]
    # Staff's attendee list shows each name with the answers.
    listed = await BookingService(db_session).attendees(event, KEY)
    assert [(r["attendee"], r["answer"]) for r in listed] == [("Ada", "Green"), ("Grace", "Green"),
                                                              ("Linus", "Green")]


async def test_bad_ticket_details_are_refused_and_nothing_is_added(db_session: AsyncSession,
                                                                   settings: Settings) -> None:
    event, ticket = await _ticketed(db_session, settings, capacity=5)
    await _ask(db_session, event)
    cart = CartService(db_session, settings)
    token, ticket_id = (await cart.new_cart()).token, ticket.id
    await db_session.commit()
    bad: list[tuple[dict[str, Any], str]] = [
        (_details("Ada"), "attendees"),  # two tickets, one name
        (_details("Ada", ""), "attendees"),  # a blank name
        (_details("Ada", "Grace", "Linus"), "attendees"),  # more names than tickets
        (_details("Ada", "x" * 201), "attendee_2"),
        (_details("Ada", "Grace", answer=""), "answer"),  # the required question
        (_details("Ada", "Grace", answer="y" * 1001), "answer"),
        ({"attendees": [{"name": "Ada", "age": 3}, {"name": "Grace"}]}, "details"),  # unknown field
        ({"attendees": "Ada, Grace"}, "details"),
    ]
    for details, field in bad:
        order = await cart.open_cart(token=token)
        assert order is not None
        with pytest.raises(InputProblems) as refused:
            await cart.add(order, source=SOURCE, variant_id=ticket_id, quantity="2", details=details)
        assert refused.value.status == 422 and field in refused.value.errors, (details, refused.value.errors)
        await db_session.rollback()
    assert await _lines(db_session) == 0
    # The market asks nothing per line: details sent for a product are refused, not dropped.
    from tests.domains.cart.helpers import stocked
    await stocked(db_session, stock={"TOM-S": 3})
    order = await cart.open_cart(token=token)
    assert order is not None
    with pytest.raises(InputProblems):
        await cart.add(order, sku="TOM-S", quantity="1", details={"attendees": []})


async def test_a_member_with_a_free_booking_gets_paid_tickets_under_their_own_name(
        client: Any, engine: AsyncEngine, settings: Settings) -> None:
    """The paid booking used to fall back to no user id when the member held a free one for the date
    (the one-booking-per-member index), so it showed only on the order page."""
    assert (await signup(client, "maria")).status_code == 303
    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with maker() as session:
        user = (await session.execute(select(User).where(User.username == "maria"))).scalar_one()
        event = await _event(session, capacity=6)
        free = await BookingService(session).book(event, KEY, user=user, name="Maria", email="maria@example.org",
                                                  quantity=1, attendees=[Attendee("Maria")])
        await session.commit()
        ticket = await create_ticket_type(session, event, occurrence=KEY, name="Standard", price_minor="1500",
                                          currency=settings.market_currency)
        await session.commit()
        cart = CartService(session, settings)
        placed = []
        for n in range(2):  # two paid orders of the same date, both hers
            order = await cart.new_cart(user_id=user.id)
            await cart.add(order, source=SOURCE, variant_id=ticket.id, quantity="1",
                           details={"attendees": [{"name": f"Guest {n}"}]})
            await cart.start_checkout(order)
            order = await cart.place(order, CheckoutDetails(email="maria@example.org"),
                                     idempotency_key=f"member-paid-{n}-" + "y" * 8)
            assert await cart.mark_paid(order, actor="ada")
            await session.commit()
            placed.append(order)
        paid = (await session.execute(select(Booking).where(Booking.order_id.in_([o.id for o in placed])))
                ).scalars().all()
        assert len(paid) == 2 and {b.user_id for b in paid} == {user.id}
        assert all(b.state == CONFIRMED for b in paid)
        mine = await BookingService(session).for_member(user)
        assert {b.id for b, _ in mine} == {free.id, *(b.id for b in paid)}
        secrets = [s for (s,) in (await session.execute(
            select(Position.secret).join(Booking).where(Booking.order_id.in_([o.id for o in placed])))).tuples()]
    page = await client.get("/account/tickets")
    assert page.status_code == 200
    assert all(f"/events/tickets/{s}" in page.text for s in secrets) and "Guest 0" in page.text
    # The free place is still one per member: a second free booking of the date is refused.
    async with maker() as session:
        again = await session.get(Event, event.id)
        assert again is not None
        with pytest.raises(InputProblems):
            await BookingService(session).book(again, KEY, user=user, name="Maria", email="maria@example.org",
                                               quantity=1)
        # Another member sees none of her tickets; her order is absent to them (404).
    # Staff see the names and the answer on the order's admin page.
    client.cookies.clear()
    assert (await signup(client, "staff")).status_code == 303
    async with maker() as session, session.begin():
        (await session.execute(select(User).where(User.username == "staff"))).scalar_one().is_admin = True
    client.cookies.clear()
    assert (await login(client, "staff")).status_code == 303
    admin_page = await client.get(f"/cart/admin/orders/{placed[1].number}")
    assert admin_page.status_code == 200 and "Attendees: Guest 1" in admin_page.text
    client.cookies.clear()
    assert (await signup(client, "other")).status_code == 303
    theirs = await client.get("/account/tickets")
    assert theirs.status_code == 200 and not any(s in theirs.text for s in secrets)
    assert (await client.get(f"/account/orders/{placed[0].number}")).status_code == 404


async def test_ticket_lines_through_the_json_cart_api(client: Any, engine: AsyncEngine, settings: Settings) -> None:
    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with maker() as session:
        event, ticket = await _ticketed(session, settings, capacity=3)
        await _ask(session, event, required=False)
        past = TicketType(event_id=event.id, occurrence="20200101T190000", name="Old", price_minor=900,
                          currency=settings.market_currency, active=True)
        off = TicketType(event_id=event.id, occurrence=KEY, name="Off sale", price_minor=900,
                         currency=settings.market_currency, active=False)
        session.add_all([past, off])
        await session.commit()
    h = {"X-Cart-Token": (await client.post("/api/cart")).json()["token"]}
    added = await client.post("/api/cart/lines", headers=h, json={
        "source": "events", "item": str(ticket.id), "quantity": 2, "details": _details("Ada", "Grace")})
    assert added.status_code == 201, added.text
    line = added.json()["lines"][0]
    assert (line["source"], line["quantity"], line["unit_price_minor"]) == ("events", 2, 1500)
    assert [a["name"] for a in line["details"]["attendees"]] == ["Ada", "Grace"]
    cases = [
        ({"source": "events", "item": "not-a-uuid"}, 422),
        ({"source": "events", "item": "0190a1b2-0000-7000-8000-000000000000"}, 404),
        ({"source": "nowhere", "item": str(ticket.id)}, 404),
        ({"source": "events", "item": str(past.id)}, 422),  # a date that has passed
        ({"source": "events", "item": str(off.id)}, 422),  # off sale
        ({"source": "events", "item": str(ticket.id), "quantity": 2}, 409),  # 2 in the cart + 2 > 3
        ({"source": "events", "item": str(ticket.id), "details": {"attendees": [{"name": ""}]}}, 422),
        ({"source": "events", "item": str(ticket.id), "details": {"seats": 1}}, 422),
        ({"quantity": 1}, 422),  # names nothing
    ]
    for body, status in cases:
        got = await client.post("/api/cart/lines", headers=h, json=body)
        assert got.status_code == status, (body, got.status_code, got.text)
        assert got.text.strip()  # a message, not an empty 4xx
    sold_out = await client.post("/api/cart/lines", headers=h, json={"source": "events", "item": str(ticket.id),
                                                                     "quantity": 2})
    assert sold_out.json()["lines"][0]["wanted"] == 4 and sold_out.json()["lines"][0]["available"] == 3
    cart = (await client.get("/api/cart", headers=h)).json()
    assert [(x["quantity"], len(x["details"]["attendees"])) for x in cart["lines"]] == [(2, 2)]  # unchanged


async def test_buy_tickets_from_the_event_page_with_names_straight_into_the_cart(
        client: Any, engine: AsyncEngine, settings: Settings) -> None:
    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with maker() as session:
        event, ticket = await _ticketed(session, settings, capacity=3)
        await _ask(session, event)
        other = await create_ticket_type(session, event, occurrence=KEY, name="Concession", price_minor="800",
                                         currency=settings.market_currency)
        await session.commit()
    public = await client.get(event.path)
    assert public.status_code == 200 and f'action="/events/{event.slug}/tickets"' in public.text
    assert f'name="q-{ticket.id}"' in public.text and f'name="q-{other.id}"' in public.text
    assert "/cart/add" not in public.text
    page = await client.get(f"/events/{event.slug}/tickets", params={f"q-{ticket.id}": "2", f"q-{other.id}": "1"})
    assert page.status_code == 200 and page.headers["cache-control"].startswith("private")
    for name in (f"a-{ticket.id}-1", f"a-{ticket.id}-2", f"a-{other.id}-1", f"d-{ticket.id}-1", "answer"):
        assert f'name="{name}"' in page.text, name
    assert f'name="a-{ticket.id}-3"' not in page.text
    token = CSRF_FIELD.search(page.text)
    assert token
    # htmx: a changed quantity answers the form alone, with a row per ticket.
    swapped = await client.get(f"/events/{event.slug}/tickets", params={f"q-{ticket.id}": "3"},
                               headers={"HX-Request": "true"})
    assert swapped.status_code == 200 and "<html" not in swapped.text and f'name="a-{ticket.id}-3"' in swapped.text
    form = {"_csrf_token": token.group(1), f"q-{ticket.id}": "2", f"q-{other.id}": "1",
            f"a-{ticket.id}-1": "Ada", f"a-{ticket.id}-2": "", f"a-{other.id}-1": "Grace", "answer": "Blue"}
    missing = await client.post(f"/events/{event.slug}/tickets", data=form)
    assert missing.status_code == 422 and "no name" in missing.text
    full = await client.post(f"/events/{event.slug}/tickets", data={**form, f"a-{ticket.id}-2": "Linus",
                                                                    f"q-{ticket.id}": "3", f"a-{ticket.id}-3": "X"})
    assert full.status_code == 409 and "available" in full.text
    nothing = await client.post(f"/events/{event.slug}/tickets", data={"_csrf_token": token.group(1)})
    assert nothing.status_code == 422
    no_csrf = await client.post(f"/events/{event.slug}/tickets", data={k: v for k, v in form.items()
                                                                      if k != "_csrf_token"})
    assert no_csrf.status_code == 403
    async with maker() as session:
        assert await _lines(session) == 0  # every refusal left the cart empty
    added = await client.post(f"/events/{event.slug}/tickets", data={**form, f"a-{ticket.id}-2": "Linus"})
    assert added.status_code == 303 and added.headers["location"] == "/cart/"
    async with maker() as session:
        lines = (await session.execute(select(OrderLine).order_by(OrderLine.unit_price_minor))).scalars().all()
        assert [(x.quantity, [a["name"] for a in x.details["attendees"]]) for x in lines] == [
            (1, ["Grace"]), (2, ["Ada", "Linus"])]
        assert (await session.execute(select(func.count()).select_from(Order))).scalar_one() == 1
    assert "For Ada, Linus" in (await client.get("/cart/")).text  # the names show on the cart line
    assert (await client.get("/events/no-such-event/tickets")).status_code == 404
    assert (await client.get(f"/events/{event.slug}/tickets")).status_code == 200  # no quantities yet: fine


async def test_sold_out_under_concurrency_with_names_never_overbooks(engine: AsyncEngine, settings: Settings,
                                                                     db_kind: str) -> None:
    """Adding is checked against what is left, but places are only taken at placement: many carts
    each hold a named ticket, only the quota's places are placed."""
    import asyncio
    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with maker() as session:
        _, ticket = await _ticketed(session, settings, capacity=2)
    n = 12 if db_kind == "postgresql" else 6
    tokens = []
    async with maker() as session:
        cart = CartService(session, settings)
        for i in range(n):
            order = await cart.new_cart()
            await cart.add(order, source=SOURCE, variant_id=ticket.id, quantity="1",
                           details={"attendees": [{"name": f"Buyer {i}"}]})
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
                placed = await cart.place(order, CheckoutDetails(email=f"b{i}@example.org"),
                                          idempotency_key=f"named-race-{i:04d}-" + "z" * 8)
                await cart.mark_paid(placed, actor="ada")
                await session.commit()
                return "paid"
            except InsufficientStock:
                await session.rollback()
                return "short"

    tasks = [asyncio.create_task(buy(i)) for i in range(n)]
    go.set()
    results = await asyncio.gather(*tasks)
    assert results.count("paid") == 2
    async with maker() as session:
        names = sorted(a for (a,) in (await session.execute(select(Position.attendee))).tuples())
        assert len(names) == 2 and all(x.startswith("Buyer ") for x in names)


async def test_a_failed_payment_or_a_failure_while_issuing_leaves_nothing_half_written(
        db_session: AsyncSession, sumup_settings: Settings, sumup_fake: FakeSumUp,
        monkeypatch: pytest.MonkeyPatch) -> None:
    settings = sumup_settings
    event, ticket = await _ticketed(db_session, settings, capacity=4)
    cart = CartService(db_session, settings)
    order = await cart.new_cart()
    await cart.add(order, source=SOURCE, variant_id=ticket.id, quantity="2", details={
        "attendees": [{"name": "Ada"}, {"name": "Grace"}]})
    await cart.start_checkout(order)
    order = await cart.place(order, CheckoutDetails(email="buyer@example.org", payment="sumup"),
                             idempotency_key="failed-pay-" + "q" * 10)
    await db_session.commit()
    assert await cart.open_payment(order)
    await db_session.commit()
    provider = available_providers(settings)["sumup"]
    sumup_fake.fail(order.payment_id)
    assert await cart.apply_payment(await provider.fetch(order.payment_id)) == "failed"
    await db_session.commit()
    assert order.state == PAYMENT_PENDING and await _taken(db_session, event) == 2  # held for a retry
    assert (await db_session.execute(select(func.count()).select_from(Booking))).scalar_one() == 0

    # A retry is paid, but issuing breaks after the first booking was written: the whole move rolls
    # back (no paid order without tickets, no ticket without a paid order).
    order_id = order.id
    url = await OrderDesk(db_session, settings).retry_payment(order)
    await db_session.commit()
    assert url
    sumup_fake.pay(order.payment_id)
    record = await provider.fetch(order.payment_id)

    async def broken_mail(*_: Any, **__: Any) -> None:
        raise RuntimeError("mail queue unavailable")

    monkeypatch.setattr(BookingService, "_mail", broken_mail)
    with pytest.raises(RuntimeError):
        await cart.apply_payment(record)
    await db_session.rollback()
    again = await db_session.get(Order, order_id, populate_existing=True)
    assert again is not None and again.state == PAYMENT_PENDING
    assert (await db_session.execute(select(func.count()).select_from(Booking))).scalar_one() == 0
    assert (await db_session.execute(select(func.count()).select_from(Position))).scalar_one() == 0
    monkeypatch.undo()
    # The provider's record applied again (the reconciler's retry) issues the named tickets once.
    assert await cart.apply_payment(record) == "paid"
    await db_session.commit()
    names = [a for (a,) in (await db_session.execute(select(Position.attendee).order_by(Position.created_at)))]
    assert names == ["Ada", "Grace"]


async def test_a_members_only_events_tickets_look_absent_to_a_visitors_cart(
        client: Any, engine: AsyncEngine, settings: Settings) -> None:
    """The event page of a members-only event is members-only; so are its tickets on every way into
    the cart: a visitor's add answers exactly as for a ticket type that does not exist."""
    assert (await signup(client, "mira")).status_code == 303
    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with maker() as session:
        event, ticket = await _ticketed(session, settings, capacity=3)
        event.visibility = MEMBERS
        member = (await session.execute(select(User).where(User.username == "mira"))).scalar_one()
        await session.commit()
    client.cookies.clear()
    h = {"X-Cart-Token": (await client.post("/api/cart")).json()["token"]}
    hidden = await client.post("/api/cart/lines", headers=h, json={"source": "events", "item": str(ticket.id)})
    absent = await client.post("/api/cart/lines", headers=h, json={
        "source": "events", "item": "0190a1b2-0000-7000-8000-000000000000"})
    assert hidden.status_code == absent.status_code == 404
    assert hidden.content == absent.content
    async with maker() as session:
        cart = CartService(session, settings)
        visitor = await cart.new_cart()
        with pytest.raises(InputProblems) as refused:
            await cart.add(visitor, source=SOURCE, variant_id=ticket.id, quantity=1)
        assert refused.value.status == 404
        mine = await cart.new_cart(user_id=member.id)
        line = await cart.add(mine, source=SOURCE, variant_id=ticket.id, quantity=1, details=_details("Mira"))
        assert line.quantity == 1
