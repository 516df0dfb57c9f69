"""After placement (domains/cart/fulfilment.py): lines handed over in part then in full, cancelling
before fulfilment (stock returned), refunds in part and in full (pay on collection, and SumUp
through the fake), a refund larger than what was paid refused with nothing written, the payer's
retry under a new checkout reference, unpaid orders expiring; and the notices each move mails."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import msgspec
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.forms import InputProblems
from app.mail.models import MailLog
from app.settings import Settings
from domains.cart.fulfilment import OrderDesk, expire_unpaid
from domains.cart.models import (
    CANCELLED,
    FULFILLED,
    PAID,
    PARTIALLY_FULFILLED,
    PAYMENT_PENDING,
    REFUNDED,
    Order,
    OrderLine,
    OrderTransition,
)
from domains.cart.services import CartService, CheckoutDetails, utcnow
from domains.payments.services import available_providers
from tests.domains.blog.test_roles import member
from tests.domains.cart.helpers import allocated, stocked
from tests.domains.cart.test_cart_payments import sumup_fake, sumup_settings  # noqa: F401  (fixtures)
from tests.fakes.sumup import FakeSumUp

pytestmark = pytest.mark.anyio


async def placed(session: AsyncSession, settings: Settings, lines: dict[str, str], *, key: str,
                 payment: str = "collection", email: str = "buyer@example.org") -> Order:
    cart = CartService(session, settings)
    order = await cart.new_cart()
    for sku, quantity in lines.items():
        await cart.add(order, sku=sku, quantity=quantity)
    done = await cart.place(order, CheckoutDetails(email=email, payment=payment), idempotency_key=key * 20)
    await session.commit()
    if payment != "collection":
        assert await cart.open_payment(done)
        await session.commit()
    return done


async def mails(session: AsyncSession, subject: str) -> list[tuple[str, str]]:
    rows = await session.execute(select(MailLog.to_address, MailLog.subject).where(MailLog.subject.contains(subject)))
    return [(str(a), str(s)) for a, s in rows.all()]


async def history(session: AsyncSession, order: Order) -> list[tuple[str, str, str, str]]:
    rows = await session.execute(select(OrderTransition.from_state, OrderTransition.to_state, OrderTransition.actor,
                                        OrderTransition.note).where(OrderTransition.order_id == order.id)
                                 .order_by(OrderTransition.id))
    return [tuple(row) for row in rows.all()]  # type: ignore[misc]


async def problem(call: Any) -> InputProblems:
    with pytest.raises(InputProblems) as caught:
        await call
    return caught.value


async def test_lines_handed_over_in_part_then_in_full(db_session: AsyncSession, settings: Settings) -> None:
    await stocked(db_session, stock={"TOM-S": 5, "TOM-M": 5})
    desk = OrderDesk(db_session, settings)
    order = await placed(db_session, settings, {"TOM-S": "2", "TOM-M": "1"}, key="a")
    small, medium = sorted(order.lines, key=lambda line: line.sku)[::-1]  # TOM-S, TOM-M
    assert (small.sku, medium.sku) == ("TOM-S", "TOM-M")
    early = await problem(desk.fulfil_lines(order, {str(small.id): "1"}, actor="ada"))
    assert early.status == 409 and "only a paid order" in early.errors["order"]
    assert await desk.cart.mark_paid(order, actor="ada", note="paid at the counter")
    assert order.paid_minor == 850
    order = await desk.fulfil_lines(order, {str(small.id): "1", str(medium.id): ""}, actor="ada")
    assert order.state == PARTIALLY_FULFILLED
    # Bad input: too many, not a number, nothing at all, a line of another order; nothing written.
    too_many = await problem(desk.fulfil_lines(order, {str(small.id): "2"}, actor="ada"))
    assert "only 1 of 2 left to hand over, not 2" in too_many.errors[f"line-{small.id}"]
    assert "whole number" in next(iter((await problem(
        desk.fulfil_lines(order, {str(small.id): "-1"}, actor="ada"))).errors.values()))
    assert "at least one line" in (await problem(desk.fulfil_lines(order, {}, actor="ada"))).errors["line"]
    other = await placed(db_session, settings, {"TOM-S": "1"}, key="b")
    forged = await problem(desk.fulfil_lines(order, {str(other.lines[0].id): "1"}, actor="ada"))
    assert forged.status == 404
    got = dict((await db_session.execute(select(OrderLine.sku, OrderLine.fulfilled_quantity)
                                         .where(OrderLine.order_id == order.id))).all())
    assert got == {"TOM-S": 1, "TOM-M": 0}
    order = await desk.fulfil_lines(order, {str(small.id): "1", str(medium.id): "1"}, actor="bob")
    assert order.state == FULFILLED and all(line.fulfilled_quantity == line.quantity for line in order.lines)
    # Replayed: the same hand-over again finds nothing left.
    again = await problem(desk.fulfil_lines(order, {str(small.id): "1"}, actor="bob"))
    assert again.status == 409
    cancel = await problem(desk.cancel(order, actor="ada"))
    assert cancel.status == 409 and "can no longer be cancelled" in cancel.errors["order"]
    await db_session.commit()
    moves = await history(db_session, order)
    assert [m[:3] for m in moves[-3:]] == [("payment_pending", "paid", "ada"),
                                           ("paid", "partially_fulfilled", "ada"),
                                           ("partially_fulfilled", "fulfilled", "bob")]
    assert "handed over 1 \u00d7 Heritage tomatoes (S) (TOM-S)" in moves[-2][3]
    assert await allocated(db_session, "TOM-S") == (5, 3)  # handed-over units stay allocated


async def test_cancel_before_fulfilment_returns_stock_and_mails(db_session: AsyncSession, settings: Settings) -> None:
    await stocked(db_session, stock={"TOM-S": 5})
    desk = OrderDesk(db_session, settings)
    order = await placed(db_session, settings, {"TOM-S": "3"}, key="c", email="c@example.org")
    assert await desk.cart.mark_paid(order, actor="ada")
    assert await allocated(db_session, "TOM-S") == (5, 3)
    order = await desk.cancel(order, actor="ada", reason="out of season")
    await db_session.commit()
    assert order.state == CANCELLED and await allocated(db_session, "TOM-S") == (5, 0)
    assert await mails(db_session, "was cancelled") == [("c@example.org", f"Your order {order.number} was cancelled")]
    twice = await problem(desk.cancel(order, actor="ada"))
    assert twice.status == 409 and "nothing to cancel" in twice.errors["order"]
    assert await allocated(db_session, "TOM-S") == (5, 0)  # not released twice
    assert (await problem(desk.fulfil_lines(order, {str(order.lines[0].id): "1"}, actor="ada"))).status == 409
    assert ("paid", "cancelled", "ada", "out of season") in await history(db_session, order)


async def test_refund_on_collection_in_part_then_in_full(db_session: AsyncSession, settings: Settings) -> None:
    await stocked(db_session, stock={"TOM-S": 5})
    desk = OrderDesk(db_session, settings)
    order = await placed(db_session, settings, {"TOM-S": "2"}, key="d")
    unpaid = await problem(desk.refund(order, "1", actor="ada"))
    assert "Nothing was paid" in unpaid.errors["order"]
    assert await desk.cart.mark_paid(order, actor="ada")
    await db_session.commit()
    before = await history(db_session, order)
    too_much = await problem(desk.refund(order, "6.00", actor="ada"))
    assert too_much.errors["amount"] == "Cannot refund €6.00: only €5.00 of the €5.00 paid is left to refund."
    for bad in ("-1", "1.234", "abc", "0"):
        assert "amount" in (await problem(desk.refund(order, bad, actor="ada"))).errors
    await db_session.commit()
    assert (await db_session.get(Order, order.id, populate_existing=True)).refunded_minor == 0  # type: ignore[union-attr]
    assert await history(db_session, order) == before and await mails(db_session, "Refund") == []
    order = await desk.refund(order, "2", actor="ada", note="bruised")
    assert (order.state, order.refunded_minor) == (PAID, 200)
    again = await problem(desk.refund(order, "3.01", actor="ada"))
    assert "only €3.00 of the €5.00 paid is left to refund (€2.00 refunded already)" in again.errors["amount"]
    order = await desk.refund(order, "", actor="bob")  # the rest
    await db_session.commit()
    assert (order.state, order.refunded_minor) == (REFUNDED, 500)
    assert await allocated(db_session, "TOM-S") == (5, 0)  # never handed over: back on sale
    assert "refunded in full already" in (await problem(desk.refund(order, "1", actor="ada"))).errors["order"]
    moves = await history(db_session, order)
    assert moves[-2] == ("paid", "paid", "ada", "refunded €2.00 handed back at the counter: bruised")
    assert moves[-1] == ("paid", "refunded", "bob", "refunded €3.00 handed back at the counter")
    assert len(await mails(db_session, "Refund for your order")) == 2


async def test_refund_through_sumup(db_session: AsyncSession, sumup_settings: Settings,  # noqa: F811
                                    sumup_fake: FakeSumUp) -> None:  # noqa: F811
    await stocked(db_session, stock={"TOM-S": 5})
    desk = OrderDesk(db_session, sumup_settings)
    order = await placed(db_session, sumup_settings, {"TOM-S": "2"}, key="e", payment="sumup")
    sumup_fake.pay(order.payment_id)
    provider = available_providers(sumup_settings)["sumup"]
    assert await desk.cart.apply_payment(await provider.fetch(order.payment_id)) == "paid"
    order = await desk.reload(order)
    assert order.paid_minor == 500
    await db_session.commit()
    too_much = await problem(desk.refund(order, "7", actor="ada"))
    assert "only €5.00 of the €5.00 paid is left" in too_much.errors["amount"]
    txn = next(iter(sumup_fake.transactions.values()))
    assert txn["transaction_events"] == []  # SumUp was not asked
    order = await desk.refund(order, "1.50", actor="ada")
    assert order.refunded_minor == 150 and order.state == PAID
    assert [event["amount"] for event in txn["transaction_events"]] == [1.5]
    order = await desk.refund(order, "", actor="ada")
    await db_session.commit()
    assert (order.state, order.refunded_minor) == (REFUNDED, 500)
    assert txn["status"] == "REFUNDED" and (await provider.fetch(order.payment_id)).refunded_minor == 500
    assert "refunded €3.50 through Card or wallet (SumUp)" in (await history(db_session, order))[-1][3]
    # The provider refusing (here: everything is refunded already) writes nothing either.
    await db_session.execute(update(Order).where(Order.id == order.id).values(state=PAID, refunded_minor=0))
    order = await desk.reload(order)
    refused = await problem(desk.refund(order, "1", actor="ada"))
    assert "already been refunded in full" in refused.errors["amount"]


async def test_failed_payment_mails_and_the_payer_retries_under_a_new_reference(
        db_session: AsyncSession, sumup_settings: Settings, sumup_fake: FakeSumUp) -> None:  # noqa: F811
    await stocked(db_session, stock={"TOM-S": 5})
    desk = OrderDesk(db_session, sumup_settings)
    order = await placed(db_session, sumup_settings, {"TOM-S": "1"}, key="f", payment="sumup", email="f@example.org")
    first = order.payment_id
    # Still pending (the payer closed the tab): the same hosted page, no second checkout.
    assert await desk.retry_payment(order) == order.payment_url and len(sumup_fake.checkouts) == 1
    sumup_fake.fail(first)
    provider = available_providers(sumup_settings)["sumup"]
    failed = await provider.fetch(first)
    assert await desk.cart.apply_payment(failed) == "failed"
    assert await desk.cart.apply_payment(failed) == "failed"  # a replay: one mail (unique per checkout)
    await db_session.commit()
    assert await mails(db_session, "did not go through") == [
        ("f@example.org", f"Payment for order {order.number} did not go through")]
    url = await desk.retry_payment(order)
    await db_session.commit()
    assert url and url != failed.payment_url and order.payment_id != first and order.payment_attempt == 2
    assert sumup_fake.checkouts[order.payment_id]["checkout_reference"] == f"{order.number}-2"
    # The old checkout's news is history now: it neither fails nor cancels the order again.
    assert await desk.cart.apply_payment(failed) == "unchanged"
    sumup_fake.pay(order.payment_id)
    assert await desk.cart.apply_payment(await provider.fetch(order.payment_id)) == "paid"
    assert (await problem(desk.retry_payment(order))).status == 409  # nothing left to pay
    assert await allocated(db_session, "TOM-S") == (5, 1)


async def test_unpaid_orders_expire_paid_ones_are_rescued(engine: AsyncEngine, sumup_settings: Settings,  # noqa: F811
                                                          sumup_fake: FakeSumUp) -> None:  # noqa: F811
    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with maker() as session:
        await stocked(session, stock={"TOM-S": 5})
        lapsed = await placed(session, sumup_settings, {"TOM-S": "2"}, key="g", payment="sumup", email="g@example.org")
        rescued = await placed(session, sumup_settings, {"TOM-S": "1"}, key="h", payment="sumup")
        fresh = await placed(session, sumup_settings, {"TOM-S": "1"}, key="i", payment="sumup")
        long_ago = utcnow() - timedelta(minutes=sumup_settings.cart_payment_minutes + 5)
        await session.execute(update(Order).where(Order.id.in_([lapsed.id, rescued.id])).values(placed_at=long_ago))
        await session.commit()
        late = await problem(OrderDesk(session, sumup_settings).retry_payment(await session.get(Order, lapsed.id)))
        assert "time to pay this order has passed" in late.errors["order"]
    sumup_fake.pay(rescued.payment_id)  # paid, but the webhook never came
    assert await expire_unpaid(maker, sumup_settings) == {"paid": 1, "cancelled": 1, "skipped": 0}
    assert sumup_fake.checkouts[lapsed.payment_id]["status"] == "EXPIRED"  # cannot be paid any more
    async with maker() as session:
        states = dict((await session.execute(select(Order.id, Order.state).where(
            Order.id.in_([lapsed.id, rescued.id, fresh.id])))).all())
        assert states == {lapsed.id: CANCELLED, rescued.id: PAID, fresh.id: PAYMENT_PENDING}
        assert await allocated(session, "TOM-S") == (5, 2)
        assert await mails(session, "was cancelled") == [("g@example.org", f"Your order {lapsed.number} was cancelled")]
        assert (await history(session, lapsed))[-1][1:] == ("cancelled", "expiry",
                                                            "the payment did not arrive in time")
    assert await expire_unpaid(maker, sumup_settings) == {"paid": 0, "cancelled": 0, "skipped": 0}


async def test_staff_hear_of_new_orders(db_session: AsyncSession, settings: Settings) -> None:
    await stocked(db_session, stock={"TOM-S": 5})
    await member(db_session, "boss", admin=True)
    await db_session.commit()
    first = await placed(db_session, settings, {"TOM-S": "1"}, key="j")
    assert await mails(db_session, "New order") == [("boss@example.org", f"New order {first.number} (€2.50)")]
    desk_settings = msgspec.structs.replace(settings, cart_staff_email="shop@example.org")
    second = await placed(db_session, desk_settings, {"TOM-S": "1"}, key="k")
    assert ("shop@example.org", f"New order {second.number} (€2.50)") in await mails(db_session, "New order")
    assert len(await mails(db_session, "New order")) == 2
