"""Orders of tickets only need no collection or delivery (a line source's ``ships``,
domains/cart/sources.py), mixed orders keep it for the market's lines, and a paid order says what
was paid instead of how to pay. Both databases."""

from __future__ import annotations

import re
from typing import Any

import msgspec
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.forms import InputProblems
from app.settings import Settings
from domains.account.models import User
from domains.cart.models import COLLECTION, DELIVERY, PAYMENT_PENDING, Order
from domains.cart.services import CartService, CheckoutDetails, order_context, ships
from domains.cart.sources import ships as source_ships
from domains.events.services.tickets import SOURCE
from tests.domains.cart.helpers import stocked, variant_id
from tests.domains.events.test_paid_tickets import _ticketed, named
from tests.helpers.web import CSRF_FIELD, login, signup

pytestmark = pytest.mark.anyio

SLOTS = "Market hall:Sat 09:00-12:00"
IDEM = re.compile(r'name="idempotency_key" value="([^"]+)"')


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Delivery on (the default) and a collection point: a market order must choose one of them."""
    return msgspec.structs.replace(settings, cart_collection_slots=SLOTS, cart_delivery=True)


def test_each_source_says_whether_it_ships() -> None:
    assert source_ships("market") is True
    assert source_ships(SOURCE) is False
    assert source_ships("no-such-source") is True  # unknown: staff still see and hand over the line


async def test_a_tickets_only_order_skips_collection_and_delivery(db_session: AsyncSession,
                                                                  settings: Settings) -> None:
    _event, ticket = await _ticketed(db_session, settings, price=1250)
    cart = CartService(db_session, settings)
    order = await cart.new_cart()
    await cart.add(order, source=SOURCE, variant_id=ticket.id, quantity="2", details=named(2))
    assert not ships(order)
    await cart.start_checkout(order)
    # Delivery asked for, no address and no collection slot: all ignored, nothing is charged.
    placed = await cart.place(order, CheckoutDetails(email="buyer@example.org", fulfilment=DELIVERY, address="",
                                                     payment="collection"), idempotency_key="tickets-only-000000001")
    await db_session.commit()
    assert placed.state == PAYMENT_PENDING
    assert (placed.fulfilment, placed.shipping_minor, placed.total_minor) == (COLLECTION, 0, 2500)
    assert (placed.address, placed.collection_location, placed.collection_slot) == ("", "", "")
    context = order_context(placed)
    assert context["ships"] is False and [line["ships"] for line in context["lines"]] == [False]
    assert context["paid"] == ""
    # Bad input is still refused: an email is needed for the tickets.
    again = await cart.new_cart()
    await cart.add(again, source=SOURCE, variant_id=ticket.id, quantity="1", details=named(1))
    with pytest.raises(InputProblems) as problem:
        await cart.place(again, CheckoutDetails(email="not an address"), idempotency_key="tickets-only-000000002")
    assert set(problem.value.errors) == {"email"}


async def test_a_mixed_order_keeps_fulfilment_for_the_market_lines(db_session: AsyncSession,
                                                                  settings: Settings) -> None:
    _event, ticket = await _ticketed(db_session, settings, price=1500)
    await stocked(db_session, stock={"TOM-M": 5})
    cart = CartService(db_session, settings)
    order = await cart.new_cart()
    await cart.add(order, source=SOURCE, variant_id=ticket.id, quantity="1", details=named(1))
    await cart.add(order, sku="TOM-M", quantity="2")
    assert ships(order)
    await cart.start_checkout(order)
    with pytest.raises(InputProblems) as no_address:
        await cart.place(order, CheckoutDetails(email="b@example.org", fulfilment=DELIVERY),
                         idempotency_key="mixed-order-0000000001")
    assert set(no_address.value.errors) == {"address"}
    with pytest.raises(InputProblems) as no_slot:
        await cart.place(order, CheckoutDetails(email="b@example.org", fulfilment=COLLECTION),
                         idempotency_key="mixed-order-0000000002")
    assert set(no_slot.value.errors) == {"slot"}
    placed = await cart.place(order, CheckoutDetails(email="b@example.org", fulfilment=DELIVERY,
                                                     address="1 Garden Row, Rosetown"),
                              idempotency_key="mixed-order-0000000003")
    await db_session.commit()
    assert (placed.fulfilment, placed.shipping_minor) == (DELIVERY, settings.cart_delivery_rate)
    assert placed.total_minor == 1500 + 2 * 350 + settings.cart_delivery_rate
    context = order_context(placed)
    assert context["ships"] is True
    assert sorted(line["ships"] for line in context["lines"]) == [False, True]


async def _admin(client: Any, engine: AsyncEngine, name: str) -> None:
    assert (await signup(client, name)).status_code == 303
    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with maker() as session, session.begin():
        await session.execute(update(User).where(User.username == name).values(is_admin=True))
    client.cookies.clear()
    assert (await login(client, name)).status_code == 303


async def test_the_pages_of_a_tickets_only_order_and_what_a_paid_order_says(client: Any, engine: AsyncEngine,
                                                                            settings: Settings) -> None:
    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with maker() as session:
        _event, ticket = await _ticketed(session, settings, price=1250)
    # A guest buys two tickets through the pages: the add-to-cart step sends them to the names page.
    confirm = await client.get(f"/cart/add?source=events&item={ticket.id}&quantity=2")
    assert confirm.status_code == 303
    names = await client.get(confirm.headers["location"])
    csrf = CSRF_FIELD.search(names.text).group(1)  # type: ignore[union-attr]
    added = await client.post(confirm.headers["location"].split("?")[0], data={
        f"q-{ticket.id}": "2", f"shown-{ticket.id}": "2", f"a-{ticket.id}-1": "Ada", f"a-{ticket.id}-2": "Grace",
        "_csrf_token": csrf})
    assert added.status_code == 303
    assert (await client.post("/cart/checkout", data={"_csrf_token": csrf})).status_code == 303
    form = await client.get("/cart/checkout")
    assert form.status_code == 200
    assert "Collection or delivery" not in form.text and 'name="fulfilment"' not in form.text
    assert "Delivery address" not in form.text and "Market hall" not in form.text
    assert "Tickets: nothing to collect or deliver" in form.text
    key = IDEM.search(form.text).group(1)  # type: ignore[union-attr]
    bad = await client.post("/cart/place", data={"_csrf_token": csrf, "idempotency_key": key, "email": "nope",
                                                 "payment": "collection"})
    assert bad.status_code == 422 and "Collection or delivery" not in bad.text
    placed = await client.post("/cart/place", data={"_csrf_token": csrf, "idempotency_key": key,
                                                    "email": "guest@example.org", "payment": "collection",
                                                    "fulfilment": "delivery"})
    assert placed.status_code == 303, placed.text[:300]
    page = await client.get(placed.headers["location"])
    assert page.status_code == 200
    assert "Tickets: issued once paid." in page.text and "Collection at the shop" not in page.text
    assert "pay when you collect" not in page.text and "Payment: pay later" in page.text
    payment = page.text.split('class="order-payment">', 1)[1].split("<form", 1)[0].split("</p>", 1)[0]
    assert "</span>." not in payment and ".." not in payment  # the instructions end their own sentence
    async with maker() as session:
        number = (await session.execute(select(Order.number).where(Order.number.is_not(None)))).scalar_one()
        order = await CartService(session, settings).by_number(str(number))
        assert order is not None and order.shipping_minor == 0 and order.total_minor == 2500
        assert await CartService(session, settings).mark_paid(order, actor="ada")
        await session.commit()
    paid = await client.get(placed.headers["location"])
    assert "Paid: €25.00 at the counter." in paid.text and "Payment:" not in paid.text
    assert "pay when you collect" not in paid.text and "issued once paid" not in paid.text

    # Staff: no packing list and nothing to hand over for tickets.
    await _admin(client, engine, "staff")
    admin = await client.get(f"/cart/admin/orders/{order.number}")
    assert admin.status_code == 200 and "tickets only" in admin.text
    assert "Packing list" not in admin.text and "Hand over" not in admin.text
    # Asked for anyway, the packing list has nothing to pack.
    packing = await client.get(f"/cart/admin/orders/{order.number}/packing-list")
    assert packing.status_code == 200 and "TICKET-" not in packing.text and "Pottery" not in packing.text


async def test_a_paid_market_order_says_what_was_paid(client: Any, engine: AsyncEngine,
                                                      settings: Settings) -> None:
    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with maker() as session:
        await stocked(session, stock={"TOM-M": 5})
        cart = CartService(session, settings)
        order = await cart.new_cart()
        await cart.add(order, variant_id=await variant_id(session, "TOM-M"), quantity="2")
        await cart.start_checkout(order)
        placed = await cart.place(order, CheckoutDetails(email="b@example.org", location="Market hall",
                                                         slot="Sat 09:00-12:00"),
                                  idempotency_key="market-paid-0000000001")
        await session.commit()
    before = await client.get(f"/cart/order/{placed.token}")
    assert "Payment: pay when you collect." in before.text and "Collection at Market hall" in before.text
    assert "Paid:" not in before.text
    async with maker() as session:
        again = await CartService(session, settings).by_token(placed.token)
        assert again is not None and await CartService(session, settings).mark_paid(again, actor="ada")
        await session.commit()
    after = await client.get(f"/cart/order/{placed.token}")
    assert "Paid: €7.00 at the counter." in after.text and "pay when you collect" not in after.text
    # Paid on delivery says so (€3.50 and delivery's €5.00).
    async with maker() as session:
        cart = CartService(session, settings)
        order = await cart.new_cart()
        await cart.add(order, variant_id=await variant_id(session, "TOM-M"), quantity="1")
        await cart.start_checkout(order)
        delivered = await cart.place(order, CheckoutDetails(email="b@example.org", fulfilment=DELIVERY,
                                                            address="1 Garden Row, Rosetown"),
                                     idempotency_key="market-paid-0000000002")
        await session.commit()
        assert "Payment: pay on delivery." in (await client.get(f"/cart/order/{delivered.token}")).text
        assert await cart.mark_paid(delivered, actor="ada")
        await session.commit()
    assert "Paid: €8.50 on delivery." in (await client.get(f"/cart/order/{delivered.token}")).text
    # Staff still pack and hand over market lines.
    await _admin(client, engine, "staff")
    admin = await client.get(f"/cart/admin/orders/{placed.number}")
    assert "Packing list" in admin.text and "Hand over these units" in admin.text
    assert "TOM-M" in (await client.get(f"/cart/admin/orders/{placed.number}/packing-list")).text
