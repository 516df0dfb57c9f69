"""Stock is released exactly when the order holds it (domains/cart/services.py ``holds_stock``),
and a refund and a hand-over of one order are serialised by a lock on the order's row.

- lapsed (stock released) → paid with no stock to re-allocate → ``needs_attention`` → cancelled by
  staff: nothing is released again, so another order's allocation stays intact;
- amount mismatch → ``needs_attention`` (allocation still held) → refunded in full: the allocation
  comes back;
- a hand-over after a full refund is refused, even from a copy of the order read before it;
- a refund and a hand-over running at once (two sessions, in either order) leave ``allocated``
  equal to what is handed over plus what other orders hold.
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.settings import Settings
from domains.cart.fulfilment import OrderDesk
from domains.cart.models import CANCELLED, NEEDS_ATTENTION, PAID, PARTIALLY_FULFILLED, REFUNDED, Order, OrderLine
from domains.cart.services import CartService
from domains.payments.schemas import PaymentRecord, PaymentStatus
from tests.domains.cart.helpers import allocated, stocked
from tests.domains.cart.test_cart_fulfilment import placed, problem
from tests.domains.cart.test_cart_payments import sumup_fake, sumup_settings  # noqa: F401  (fixtures)
from tests.fakes.sumup import FakeSumUp

pytestmark = pytest.mark.anyio


async def lapsed_then_paid(session: AsyncSession, settings: Settings) -> tuple[Order, Order]:
    """Order A lapses (stock released), order B takes 2 of the 3 units, then A's payment arrives:
    A cannot re-allocate its 2 and waits in ``needs_attention`` holding nothing."""
    await stocked(session, stock={"TOM-S": 3})
    cart = CartService(session, settings)
    lapsed = await placed(session, settings, {"TOM-S": "2"}, key="l")
    assert await cart.cancel(lapsed, actor="expiry", note="the payment did not arrive in time")
    other = await placed(session, settings, {"TOM-S": "2"}, key="o")
    assert await cart.mark_paid(other, actor="ada")
    assert await allocated(session, "TOM-S") == (3, 2)
    assert await cart.mark_paid(lapsed, actor="payments", note="sumup PAID")
    await session.commit()
    assert lapsed.state == NEEDS_ATTENTION and await allocated(session, "TOM-S") == (3, 2)
    return lapsed, other


async def test_cancelling_a_lapsed_then_paid_order_releases_nothing(db_session: AsyncSession,
                                                                   settings: Settings) -> None:
    lapsed, _other = await lapsed_then_paid(db_session, settings)
    order = await OrderDesk(db_session, settings).cancel(lapsed, actor="ada", reason="could not supply")
    await db_session.commit()
    assert order.state == CANCELLED
    # The other order's 2 units are still allocated (before the fix: released, allocated 0).
    assert await allocated(db_session, "TOM-S") == (3, 2)


async def test_refunding_a_lapsed_then_paid_order_releases_nothing(db_session: AsyncSession,
                                                                  settings: Settings) -> None:
    lapsed, _other = await lapsed_then_paid(db_session, settings)
    order = await OrderDesk(db_session, settings).refund(lapsed, "", actor="ada")
    await db_session.commit()
    assert order.state == REFUNDED and await allocated(db_session, "TOM-S") == (3, 2)


async def test_a_mismatched_payment_refunded_in_full_returns_the_allocation(
        db_session: AsyncSession, sumup_settings: Settings, sumup_fake: FakeSumUp) -> None:  # noqa: F811
    await stocked(db_session, stock={"TOM-S": 5})
    order = await placed(db_session, sumup_settings, {"TOM-S": "2"}, key="m", payment="sumup")
    sumup_fake.pay(order.payment_id)
    cart = CartService(db_session, sumup_settings)
    wrong = PaymentRecord(provider="sumup", provider_id=order.payment_id, reference=order.number or "",
                          status=PaymentStatus.PAID, amount_minor=1, currency="EUR")
    assert await cart.apply_payment(wrong) == "needs_attention"
    await db_session.commit()
    assert await allocated(db_session, "TOM-S") == (5, 2)
    order = await OrderDesk(db_session, sumup_settings).refund(order, "", actor="ada")
    await db_session.commit()
    # Before the fix the refund released only for paid / partially fulfilled: 2 units leaked.
    assert order.state == REFUNDED and order.refunded_minor == 1
    assert await allocated(db_session, "TOM-S") == (5, 0)


async def test_a_mismatched_payment_cancelled_returns_the_allocation(db_session: AsyncSession,
                                                                    settings: Settings) -> None:
    await stocked(db_session, stock={"TOM-S": 5})
    order = await placed(db_session, settings, {"TOM-S": "2"}, key="n")
    cart = CartService(db_session, settings)
    wrong = PaymentRecord(provider="collection", provider_id="", reference=order.number or "",
                          status=PaymentStatus.PAID, amount_minor=1, currency="EUR")
    assert await cart.apply_payment(wrong) == "needs_attention"
    order = await OrderDesk(db_session, settings).cancel(order, actor="ada")
    await db_session.commit()
    assert order.state == CANCELLED and await allocated(db_session, "TOM-S") == (5, 0)


async def test_hand_over_after_a_refund_is_refused(engine: AsyncEngine, settings: Settings) -> None:
    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with maker() as staff, maker() as other_staff:
        await stocked(staff, stock={"TOM-S": 5})
        order = await placed(staff, settings, {"TOM-S": "2"}, key="r")
        assert await CartService(staff, settings).mark_paid(order, actor="ada")
        await staff.commit()
        # Another desk's copy, read while the order was still paid.
        stale = await CartService(other_staff, settings).by_number(order.number or "")
        assert stale is not None and stale.state == PAID
        order = await OrderDesk(staff, settings).refund(order, "", actor="ada")
        await staff.commit()
        assert order.state == REFUNDED and await allocated(staff, "TOM-S") == (5, 0)
        line = str(stale.lines[0].id)
        refused = await problem(OrderDesk(other_staff, settings).fulfil_lines(stale, {line: "1"}, actor="bob"))
        assert refused.status == 409
        assert refused.errors["order"] == f"Order {order.number} is refunded: only a paid order is handed over."
        await other_staff.rollback()
        fulfilled = (await staff.execute(select(OrderLine.fulfilled_quantity)
                                         .where(OrderLine.order_id == order.id))).scalar_one()
        assert fulfilled == 0 and await allocated(staff, "TOM-S") == (5, 0)


@pytest.mark.parametrize("first", ["hand-over", "refund"])
async def test_concurrent_refund_and_hand_over_keep_allocated_right(engine: AsyncEngine, settings: Settings,
                                                                    first: str) -> None:
    """Both sessions read the order (lines unfulfilled) before either writes; the first to write
    holds the order's row until it commits, the second waits, then works from what it sees."""
    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with maker() as setup:
        await stocked(setup, stock={"TOM-S": 5})
        order = await placed(setup, settings, {"TOM-S": "3"}, key="x")
        other = await placed(setup, settings, {"TOM-S": "1"}, key="y")
        cart = CartService(setup, settings)
        assert await cart.mark_paid(order, actor="ada") and await cart.mark_paid(other, actor="ada")
        await setup.commit()
        assert await allocated(setup, "TOM-S") == (5, 4)
    async with maker() as handing, maker() as refunding:
        for_hand_over = await CartService(handing, settings).by_number(order.number or "")
        for_refund = await CartService(refunding, settings).by_number(order.number or "")
        assert for_hand_over is not None and for_refund is not None
        line = str(for_hand_over.lines[0].id)

        async def hand_over() -> Order:
            return await OrderDesk(handing, settings).fulfil_lines(for_hand_over, {line: "2"}, actor="bob")

        async def refund() -> Order:
            return await OrderDesk(refunding, settings).refund(for_refund, "", actor="ada")

        if first == "hand-over":
            assert (await hand_over()).state == PARTIALLY_FULFILLED  # written, not committed
            waiting = asyncio.create_task(refund())
            await asyncio.sleep(0.5)
            assert not waiting.done(), "the refund did not wait for the hand-over's lock"
            await handing.commit()
            refunded = await waiting
            await refunding.commit()
            assert refunded.state == REFUNDED
            # 2 handed over stay allocated, 1 released, the other order's 1 untouched.
            expected = (5, 3)
        else:
            assert (await refund()).state == REFUNDED  # written, not committed
            waiting_hand_over = asyncio.create_task(hand_over())
            await asyncio.sleep(0.5)
            assert not waiting_hand_over.done(), "the hand-over did not wait for the refund's lock"
            await refunding.commit()
            refused = await problem(waiting_hand_over)
            await handing.rollback()
            assert refused.status == 409 and "is refunded: only a paid order is handed over" in refused.errors["order"]
            expected = (5, 1)
    async with maker() as check:
        assert await allocated(check, "TOM-S") == expected
        fulfilled = (await check.execute(select(OrderLine.fulfilled_quantity)
                                         .where(OrderLine.order_id == order.id))).scalar_one()
        assert fulfilled == (2 if first == "hand-over" else 0)
        on_hand, held = await allocated(check, "TOM-S")
        assert held <= on_hand
