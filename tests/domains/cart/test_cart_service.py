"""The cart through its service: lines and their bad input, reservations, placing (allocations in
one savepoint), idempotency, insufficient stock leaving nothing half written, merge, cancel, sweep."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.forms import InputProblems
from app.mail.models import MailLog
from app.settings import Settings
from domains.cart.models import (
    CANCELLED,
    CART,
    CHECKOUT,
    PAID,
    PAYMENT_PENDING,
    IdempotencyKey,
    Order,
    OrderTransition,
    Reservation,
)
from domains.cart.services import CartService, CheckoutDetails, InsufficientStock, utcnow
from domains.market.services import availability
from tests.domains.cart.helpers import allocated, stocked, variant_id

pytestmark = pytest.mark.anyio

DETAILS = CheckoutDetails(email="buyer@example.org")


async def test_lines_add_change_remove_and_totals(db_session: AsyncSession, settings: Settings) -> None:
    await stocked(db_session, stock={"TOM-S": 5, "TOM-M": 3})
    cart = CartService(db_session, settings)
    order = await cart.new_cart()
    await cart.add(order, sku="TOM-S", quantity="2")
    await cart.add(order, sku="TOM-S", quantity=1)  # adds up
    await cart.add(order, sku="TOM-M")
    assert [(x.sku, x.quantity, x.unit_price_minor) for x in order.lines] == [("TOM-S", 3, 250), ("TOM-M", 1, 350)]
    assert order.subtotal_minor == 3 * 250 + 350 == order.total_minor
    line = order.lines[0]
    await cart.set_quantity(order, line.id, "5")
    assert order.subtotal_minor == 5 * 250 + 350
    await cart.remove(order, line.id)
    assert [x.sku for x in order.lines] == ["TOM-M"]
    assert await cart.count(token=order.token) == 1


@pytest.mark.parametrize("quantity", ["0", "-1", "abc", "1e9", "100", "", "٣", "9999999999"])
async def test_bad_quantities_are_refused(db_session: AsyncSession, settings: Settings, quantity: str) -> None:
    await stocked(db_session, stock={"TOM-S": 500})
    cart = CartService(db_session, settings)
    order = await cart.new_cart()
    with pytest.raises(InputProblems) as refused:
        await cart.add(order, sku="TOM-S", quantity=quantity)
    assert "quantity" in refused.value.errors
    assert order.lines == []


async def test_unknown_draft_and_out_of_stock_variants(db_session: AsyncSession, settings: Settings) -> None:
    await stocked(db_session, stock={"TOM-S": 1})
    await stocked(db_session, stock={"DR-1": 5}, title="Draft jam", skus=("DR-1",), seller="bob", status="draft")
    cart = CartService(db_session, settings)
    order = await cart.new_cart()
    with pytest.raises(InputProblems) as unknown:
        await cart.add(order, sku="NOPE")
    assert unknown.value.status == 404
    with pytest.raises(InputProblems) as draft:
        await cart.add(order, sku="DR-1")
    assert "not for sale" in draft.value.errors["sku"]
    with pytest.raises(InsufficientStock) as short:
        await cart.add(order, sku="TOM-S", quantity="2")
    assert "TOM-S" in short.value.errors["stock"] and "1 available" in short.value.errors["stock"]
    with pytest.raises(InsufficientStock):
        await cart.add(order, sku="TOM-M")  # no stock rows at all
    with pytest.raises(InputProblems) as foreign:
        await cart.set_quantity(order, "00000000-0000-4000-8000-000000000000", "1")
    assert foreign.value.status == 404
    assert order.lines == []


async def test_checkout_reserves_and_placing_allocates(db_session: AsyncSession, settings: Settings) -> None:
    await stocked(db_session, stock={"TOM-S": 5})
    vid = await variant_id(db_session, "TOM-S")
    cart = CartService(db_session, settings)
    order = await cart.new_cart()
    await cart.add(order, sku="TOM-S", quantity="3")
    until = await cart.start_checkout(order)
    assert order.state == CHECKOUT and until > utcnow()
    assert (await availability(db_session, [vid]))[vid] == 2  # held for this checkout
    # Another visitor can only have what is left.
    other = await cart.new_cart()
    with pytest.raises(InsufficientStock):
        await cart.add(other, sku="TOM-S", quantity="3")

    placed = await cart.place(order, DETAILS, idempotency_key="k" * 24)
    await db_session.commit()
    assert placed.state == PAYMENT_PENDING
    assert re.fullmatch(rf"RA-{utcnow().year}-000001", placed.number or "")
    assert await allocated(db_session, "TOM-S") == (5, 3)
    assert (await db_session.execute(select(func.count()).select_from(Reservation))).scalar_one() == 0
    assert (await availability(db_session, [vid]))[vid] == 2
    moves = (await db_session.execute(select(OrderTransition.from_state, OrderTransition.to_state)
                                      .where(OrderTransition.order_id == order.id)
                                      .order_by(OrderTransition.created_at))).all()
    assert [tuple(m) for m in moves] == [(CART, CHECKOUT), (CHECKOUT, PAYMENT_PENDING)]
    receipts = (await db_session.execute(select(MailLog.to_address, MailLog.subject))).all()
    assert [tuple(r) for r in receipts] == [("buyer@example.org", f"Your order {placed.number}")]

    # The same key again: the same order, nothing allocated twice.
    again = await cart.place(order, DETAILS, idempotency_key="k" * 24)
    assert again.id == placed.id
    assert await allocated(db_session, "TOM-S") == (5, 3)
    # A placed order takes no more lines.
    with pytest.raises(InputProblems):
        await cart.add(placed, sku="TOM-S")


async def test_insufficient_stock_at_placement_writes_nothing(db_session: AsyncSession, settings: Settings) -> None:
    await stocked(db_session, stock={"TOM-S": 4, "TOM-M": 4})
    cart = CartService(db_session, settings)
    order = await cart.new_cart()
    await cart.add(order, sku="TOM-S", quantity="2")
    await cart.add(order, sku="TOM-M", quantity="3")
    await cart.start_checkout(order)
    await db_session.commit()
    # The reservation lapses, and somebody else buys TOM-M meanwhile.
    await db_session.execute(update(Reservation).values(expires_at=utcnow() - timedelta(seconds=1)))
    rival = await cart.new_cart()
    await cart.add(rival, sku="TOM-M", quantity="2")
    await cart.place(rival, DETAILS, idempotency_key="r" * 24)
    await db_session.commit()

    with pytest.raises(InsufficientStock) as short:
        await cart.place(order, DETAILS, idempotency_key="o" * 24)
    message = short.value.errors["stock"]
    assert "TOM-M" in message and "2 available, 3 wanted" in message and "TOM-S" not in message
    await db_session.commit()
    fresh = await cart.by_token(order.token)
    assert fresh is not None and fresh.state == CHECKOUT and fresh.number is None
    assert await allocated(db_session, "TOM-S") == (4, 0)  # TOM-S was not allocated either
    assert await allocated(db_session, "TOM-M") == (4, 2)
    keys = (await db_session.execute(select(IdempotencyKey.key))).scalars().all()
    assert keys == ["r" * 24]


async def test_details_are_checked(db_session: AsyncSession, settings: Settings) -> None:
    await stocked(db_session, stock={"TOM-S": 4})
    cart = CartService(db_session, settings)
    order = await cart.new_cart()
    await cart.add(order, sku="TOM-S")
    with pytest.raises(InputProblems) as bad:
        await cart.place(order, CheckoutDetails(email="not an address", fulfilment="delivery", payment="gold"),
                         idempotency_key="x" * 24)
    assert set(bad.value.errors) == {"email", "address", "payment"}
    with pytest.raises(InputProblems) as short_key:
        await cart.place(order, DETAILS, idempotency_key="short")
    assert short_key.value.status == 400
    delivered = await cart.place(order, CheckoutDetails(email="b@example.org", fulfilment="delivery",
                                                        address="1 Main Street, Town"), idempotency_key="y" * 24)
    assert (delivered.shipping_minor, delivered.total_minor) == (500, 750)


async def test_merge_adds_quantities_capped_by_availability(db_session: AsyncSession, settings: Settings) -> None:
    await stocked(db_session, stock={"TOM-S": 4, "TOM-M": 2})
    cart = CartService(db_session, settings)
    mine, anonymous = await cart.new_cart(), await cart.new_cart()
    await cart.add(mine, sku="TOM-S", quantity="3")
    await cart.add(anonymous, sku="TOM-S", quantity="3")
    await cart.add(anonymous, sku="TOM-M", quantity="2")
    notes = await cart.merge(anonymous, mine)
    assert sorted((x.sku, x.quantity) for x in mine.lines) == [("TOM-M", 2), ("TOM-S", 4)]
    assert anonymous.state == CANCELLED and len(notes) == 1 and "only 4 available" in notes[0]


async def test_cancel_returns_stock_and_payment_moves_once(db_session: AsyncSession, settings: Settings) -> None:
    await stocked(db_session, stock={"TOM-S": 4})
    cart = CartService(db_session, settings)
    order = await cart.new_cart()
    await cart.add(order, sku="TOM-S", quantity="2")
    placed = await cart.place(order, DETAILS, idempotency_key="c" * 24)
    assert await allocated(db_session, "TOM-S") == (4, 2)
    assert await cart.mark_paid(placed) is True
    assert await cart.mark_paid(placed) is False  # a replay changes nothing
    assert placed.state == PAID
    assert await cart.cancel(placed, actor="staff") is True
    assert placed.state == CANCELLED and await allocated(db_session, "TOM-S") == (4, 0)
    assert await cart.cancel(placed, actor="staff") is False


async def test_sweep_deletes_expired_reservations(db_session: AsyncSession, settings: Settings) -> None:
    await stocked(db_session, stock={"TOM-S": 4})
    vid = await variant_id(db_session, "TOM-S")
    cart = CartService(db_session, settings)
    order = await cart.new_cart()
    await cart.add(order, sku="TOM-S", quantity="3")
    await cart.start_checkout(order)
    assert (await availability(db_session, [vid]))[vid] == 1
    await db_session.execute(update(Reservation).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert (await availability(db_session, [vid]))[vid] == 4  # expired: not counted any more
    assert await cart.sweep_reservations() == 1
    assert (await db_session.execute(select(func.count()).select_from(Reservation))).scalar_one() == 0
    assert (await db_session.execute(select(Order.state).where(Order.id == order.id))).scalar_one() == CHECKOUT
