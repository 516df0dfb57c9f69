"""A payment notice never revives an order somebody ended, on both databases, end to end: the fake
SumUp's webhook (its real wire format) posted to the app, the refresh job re-fetching the checkout
over HTTP, the cart's job moving the order (domains/cart/services.py ``apply_payment``).

- paid, then cancelled by staff: a replayed correct-amount notice leaves it cancelled, stock released;
- cancelled by staff while unpaid, then paid on the still-open hosted page: ``needs_attention``
  (money recorded, no stock taken back), staff mailed once however often the notice comes, and a
  second cancellation is not undone by the same notice either;
- refunded and fulfilled orders: a replay changes nothing; duplicate notices move an order once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import msgspec
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.settings import Settings
from domains.cart.fulfilment import OrderDesk
from domains.cart.models import CANCELLED, FULFILLED, NEEDS_ATTENTION, PAID, REFUNDED, Order, OrderTransition
from domains.cart.services import CartService
from domains.payments.schemas import PaymentRecord, PaymentStatus
from tests.domains.cart.helpers import allocated, stocked
from tests.domains.cart.test_cart_fulfilment import history, mails, placed
from tests.domains.cart.test_cart_payments import placed_sumup_order, run_jobs, sumup_fake, sumup_settings  # noqa: F401
from tests.fakes.sumup import FakeSumUp

pytestmark = pytest.mark.anyio

Setup = tuple[AsyncTestClient, async_sessionmaker[AsyncSession], Settings]  # type: ignore[type-arg]


@pytest.fixture
async def setup(engine: AsyncEngine, sumup_settings: Settings,  # noqa: F811
                sumup_fake: FakeSumUp) -> AsyncIterator[Setup]:  # noqa: F811
    from app import create_app

    configured = msgspec.structs.replace(sumup_settings, cart_staff_email="shop@example.org")
    async with AsyncTestClient(app=create_app(configured), base_url="http://127.0.0.1:8000") as client:

        async def deliver(url: str, body: bytes) -> int:  # the fake's webhook, into the app under test
            response = await client.post(urlsplit(url).path, content=body,
                                         headers={"Content-Type": "application/json"})
            return response.status_code

        sumup_fake.deliver = deliver
        yield client, async_sessionmaker(engine, expire_on_commit=False), configured


async def notify(setup: Setup, sumup_fake: FakeSumUp, checkout_id: str) -> None:  # noqa: F811
    """SumUp posts its webhook for ``checkout_id`` (as it does after each change, and on retries);
    the worker then runs what it queued."""
    _client, maker, settings = setup
    assert await sumup_fake.send_webhook(sumup_fake.checkouts[checkout_id]) == 204
    await run_jobs(maker, settings)


async def state_of(maker: async_sessionmaker[AsyncSession], order: Order) -> tuple[str, int]:
    async with maker() as session:
        row = (await session.execute(select(Order.state, Order.paid_minor).where(Order.id == order.id))).one()
    return str(row[0]), int(row[1])


async def moves(maker: async_sessionmaker[AsyncSession], order: Order) -> list[tuple[str, str, str, str]]:
    async with maker() as session:
        return await history(session, order)


async def fresh(session: AsyncSession, settings: Settings, order: Order) -> Order:
    found = await CartService(session, settings).by_token(order.token)
    assert found is not None
    return found


async def paid_order(setup: Setup, sumup_fake: FakeSumUp) -> Order:  # noqa: F811
    _client, maker, settings = setup
    async with maker() as session:
        await stocked(session, stock={"TOM-S": 5})
        order = await placed_sumup_order(session, settings)
    sumup_fake.pay(order.payment_id)
    await notify(setup, sumup_fake, order.payment_id)
    assert await state_of(maker, order) == (PAID, 500)
    return order


async def test_a_replay_does_not_revive_a_staff_cancelled_order(setup: Setup,
                                                                 sumup_fake: FakeSumUp) -> None:  # noqa: F811
    _client, maker, settings = setup
    order = await paid_order(setup, sumup_fake)
    async with maker() as session:
        await OrderDesk(session, settings).cancel(await fresh(session, settings, order), actor="ada",
                                                  reason="out of stock after all")
        await session.commit()
        assert await allocated(session, "TOM-S") == (5, 0)
    before = await moves(maker, order)
    for _ in range(2):  # SumUp's retry, and an attacker's replay of the same body
        await notify(setup, sumup_fake, order.payment_id)
    assert await state_of(maker, order) == (CANCELLED, 500)
    assert await moves(maker, order) == before  # no event: the money was on the books already
    async with maker() as session:
        assert await allocated(session, "TOM-S") == (5, 0)  # no stock taken back
        assert await mails(session, "paid after it was cancelled") == []


async def test_money_for_a_cancelled_order_needs_attention_once(setup: Setup,
                                                                sumup_fake: FakeSumUp) -> None:  # noqa: F811
    _client, maker, settings = setup
    async with maker() as session:
        await stocked(session, stock={"TOM-S": 5})
        order = await placed_sumup_order(session, settings)
        await OrderDesk(session, settings).cancel(order, actor="ada", reason="customer phoned")
        await session.commit()
    # The hosted page was still open: the customer pays anyway.
    sumup_fake.pay(order.payment_id)
    for _ in range(3):
        await notify(setup, sumup_fake, order.payment_id)
    assert await state_of(maker, order) == (NEEDS_ATTENTION, 500)
    attention = [m for m in await moves(maker, order) if m[1] == NEEDS_ATTENTION]
    assert len(attention) == 1 and attention[0][:3] == (CANCELLED, NEEDS_ATTENTION, "payments")
    assert "paid after the order was cancelled" in attention[0][3] and order.payment_id in attention[0][3]
    async with maker() as session:
        assert await allocated(session, "TOM-S") == (5, 0)  # holds nothing: staff decide
        assert await mails(session, "paid after it was cancelled") == [
            ("shop@example.org", f"Order {order.number} was paid after it was cancelled")]
        # Staff cancel it again (they will refund): the same notice does not bring it back.
        desk = OrderDesk(session, settings)
        await desk.cancel(await fresh(session, settings, order), actor="ada", reason="refund by hand")
        await session.commit()
    await notify(setup, sumup_fake, order.payment_id)
    assert await state_of(maker, order) == (CANCELLED, 500)
    async with maker() as session:
        assert len(await mails(session, "paid after it was cancelled")) == 1


async def test_refunded_and_fulfilled_orders_ignore_replays(setup: Setup,
                                                            sumup_fake: FakeSumUp) -> None:  # noqa: F811
    _client, maker, settings = setup
    refunded = await paid_order(setup, sumup_fake)
    async with maker() as session:
        await OrderDesk(session, settings).refund(await fresh(session, settings, refunded), "", actor="ada")
        await session.commit()
    assert (await state_of(maker, refunded))[0] == REFUNDED
    async with maker() as session:
        second = await placed(session, settings, {"TOM-S": "1"}, key="f", payment="sumup")
    sumup_fake.pay(second.payment_id)
    await notify(setup, sumup_fake, second.payment_id)
    async with maker() as session:
        assert await CartService(session, settings).fulfil(await fresh(session, settings, second), actor="ada")
        await session.commit()
    history_before = {o.id: await moves(maker, o) for o in (refunded, second)}
    for order in (refunded, second):
        await notify(setup, sumup_fake, order.payment_id)
        await notify(setup, sumup_fake, order.payment_id)
    assert (await state_of(maker, refunded))[0] == REFUNDED
    assert (await state_of(maker, second))[0] == FULFILLED
    assert {o.id: await moves(maker, o) for o in (refunded, second)} == history_before
    async with maker() as session:
        paid_moves = (await session.execute(select(func.count()).select_from(OrderTransition).where(
            OrderTransition.to_state == PAID))).scalar_one()
    assert paid_moves == 2  # one per order, however many notices


async def test_a_wrong_amount_for_a_cancelled_order_is_not_lost(db_session: AsyncSession,
                                                                sumup_settings: Settings) -> None:  # noqa: F811
    """Money in another currency for a cancelled order: recorded as news (0 in the order's
    currency), once; the same record again after staff cancel it once more changes nothing."""
    await stocked(db_session, stock={"TOM-S": 5})
    cart = CartService(db_session, sumup_settings)
    order = await placed_sumup_order(db_session, sumup_settings)
    assert await cart.cancel(order, actor="ada")
    odd = PaymentRecord(provider="sumup", provider_id=order.payment_id, reference=order.number or "",
                        status=PaymentStatus.PAID, amount_minor=700, currency="GBP")
    assert await cart.apply_payment(odd) == "needs_attention"
    assert (order.state, order.paid_minor) == (NEEDS_ATTENTION, 0)
    assert await cart.apply_payment(odd) == "ignored" and order.state == NEEDS_ATTENTION
    assert await cart.cancel(order, actor="ada")
    assert await cart.apply_payment(odd) == "unchanged" and order.state == CANCELLED
