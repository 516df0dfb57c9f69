"""Orders and payments: SumUp (the fake, over real HTTP on 127.0.0.1) through the payments API.
The order moves only on fetched records, idempotently: the payer's return, the payments.updated
job, a replay, a failed checkout (the order waits) or an expired one (stock returned), an amount that does not match."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.jobs import Job, JobContext, Worker
from app.settings import Settings
from domains.cart.jobs import PAYMENT_UPDATED
from domains.cart.models import CANCELLED, NEEDS_ATTENTION, PAID, PAYMENT_PENDING, Order
from domains.cart.services import CartService, CheckoutDetails
from domains.payments.hooks import payments_updated
from domains.payments.schemas import PaymentRecord, PaymentStatus
from domains.payments.services import available_providers
from tests.domains.cart.helpers import allocated, stocked
from tests.fakes.sumup import API_KEY, MERCHANT_CODE, FakeSumUp, serve_in_thread

pytestmark = pytest.mark.anyio


@pytest.fixture
def sumup_fake() -> Iterator[FakeSumUp]:
    """The fake on a thread and event loop of its own: the app under test (in the test client's
    portal) calls it over HTTP while the test's loop waits for that very request."""
    with serve_in_thread() as fake:
        yield fake


@pytest.fixture
def sumup_settings(settings: Settings, sumup_fake: FakeSumUp) -> Settings:
    return msgspec.structs.replace(settings, sumup_api_key=API_KEY, sumup_merchant_code=MERCHANT_CODE,
                                   sumup_api_url=sumup_fake.public_url)


async def placed_sumup_order(session: AsyncSession, settings: Settings, quantity: str = "2") -> Order:
    cart = CartService(session, settings)
    assert cart.payment_methods() == ("sumup", "collection")
    order = await cart.new_cart()
    await cart.add(order, sku="TOM-S", quantity=quantity)
    await cart.start_checkout(order)
    placed = await cart.place(order, CheckoutDetails(email="p@example.org", payment="sumup"),
                              idempotency_key="pay-" + "k" * 20)
    await session.commit()
    url = await cart.open_payment(placed)
    await session.commit()
    assert url and placed.payment_id and url == placed.payment_url
    return placed


async def run_jobs(maker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
    worker = Worker(maker, context=JobContext(sessionmaker=maker, settings=settings))
    while await worker.run_once():
        pass


async def test_paid_on_the_fetched_record_once(db_session: AsyncSession, sumup_settings: Settings,
                                               sumup_fake: FakeSumUp) -> None:
    await stocked(db_session, stock={"TOM-S": 5})
    cart = CartService(db_session, sumup_settings)
    order = await placed_sumup_order(db_session, sumup_settings)
    assert order.state == PAYMENT_PENDING and await allocated(db_session, "TOM-S") == (5, 2)
    provider = available_providers(sumup_settings)["sumup"]
    pending = await provider.fetch(order.payment_id)
    assert await cart.apply_payment(pending) == "pending"
    sumup_fake.pay(order.payment_id)
    record = await provider.fetch(order.payment_id)
    assert record.status == PaymentStatus.PAID and record.amount_minor == order.total_minor == 500
    assert await cart.apply_payment(record) == "paid"
    assert await cart.apply_payment(record) == "unchanged"  # a replay moves nothing
    assert order.state == PAID
    # Creating the payment again for the same order answers the same checkout (no second one).
    assert await cart.open_payment(order) == order.payment_url
    assert len(sumup_fake.checkouts) == 1


async def test_failed_payment_waits_for_a_retry_expired_cancels_and_returns_stock(
        db_session: AsyncSession, sumup_settings: Settings, sumup_fake: FakeSumUp) -> None:
    """A failed card payment leaves the order waiting (the payer may retry, see
    test_cart_fulfilment.py); a checkout that can never be paid (deactivated: EXPIRED) cancels it."""
    await stocked(db_session, stock={"TOM-S": 5})
    cart = CartService(db_session, sumup_settings)
    order = await placed_sumup_order(db_session, sumup_settings)
    sumup_fake.fail(order.payment_id)
    provider = available_providers(sumup_settings)["sumup"]
    record = await provider.fetch(order.payment_id)
    assert await cart.apply_payment(record) == "failed"
    assert order.state == PAYMENT_PENDING and await allocated(db_session, "TOM-S") == (5, 2)
    sumup_fake.checkouts[order.payment_id]["status"] = "EXPIRED"
    expired = await provider.fetch(order.payment_id)
    assert await cart.apply_payment(expired) == "cancelled"
    assert order.state == CANCELLED and await allocated(db_session, "TOM-S") == (5, 0)
    assert await cart.apply_payment(expired) == "unchanged"
    # Unknown checkouts and mismatched amounts.
    stray = PaymentRecord(provider="sumup", provider_id="nope", reference="RA-0", status=PaymentStatus.PAID,
                          amount_minor=1, currency="EUR")
    assert await cart.apply_payment(stray) == "unknown"


async def test_a_paid_amount_that_does_not_match_needs_attention(db_session: AsyncSession,
                                                                 sumup_settings: Settings) -> None:
    await stocked(db_session, stock={"TOM-S": 5})
    cart = CartService(db_session, sumup_settings)
    order = await placed_sumup_order(db_session, sumup_settings)
    wrong = PaymentRecord(provider="sumup", provider_id=order.payment_id, reference=order.number or "",
                          status=PaymentStatus.PAID, amount_minor=1, currency="EUR")
    assert await cart.apply_payment(wrong) == "needs_attention"
    assert order.state == NEEDS_ATTENTION


async def test_payments_updated_moves_the_order_through_a_job(engine: AsyncEngine, sumup_settings: Settings,
                                                              sumup_fake: FakeSumUp) -> None:
    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with maker() as session:
        await stocked(session, stock={"TOM-S": 5})
        order = await placed_sumup_order(session, sumup_settings)
    sumup_fake.pay(order.payment_id)
    record = await available_providers(sumup_settings)["sumup"].fetch(order.payment_id)
    async with maker() as session, session.begin():
        await payments_updated.emit(session, record)
        await payments_updated.emit(session, record)  # the webhook and the return redirect together
    async with maker() as session:
        kinds = (await session.execute(select(Job.kind))).scalars().all()
    assert PAYMENT_UPDATED in kinds
    await run_jobs(maker, sumup_settings)
    async with maker() as session:
        state = (await session.execute(select(Order.state).where(Order.id == order.id))).scalar_one()
        from domains.cart.models import OrderTransition

        moves = (await session.execute(select(OrderTransition.to_state).where(
            OrderTransition.order_id == order.id, OrderTransition.to_state == PAID))).scalars().all()
    assert state == PAID and moves == [PAID]  # one transition, however many deliveries


async def test_http_checkout_redirects_to_the_hosted_page_and_the_return_refetches(
        engine: AsyncEngine, sumup_settings: Settings, sumup_fake: FakeSumUp) -> None:
    from litestar.testing import AsyncTestClient

    from app import create_app
    from tests.helpers.web import CSRF_FIELD

    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with maker() as session:
        await stocked(session, stock={"TOM-S": 5})
    async with AsyncTestClient(app=create_app(sumup_settings), base_url="http://127.0.0.1:8000") as client:
        client.follow_redirects = False
        page = await client.get("/account/login")
        csrf = CSRF_FIELD.search(page.text).group(1)  # type: ignore[union-attr]
        await client.post("/cart/add", data={"sku": "TOM-S", "quantity": "1", "_csrf_token": csrf})
        await client.post("/cart/checkout", data={"_csrf_token": csrf})
        form = await client.get("/cart/checkout")
        assert "Pay now by card (SumUp)" in form.text
        key = _idem(form.text)
        placed = await client.post("/cart/place", data={
            "_csrf_token": csrf, "idempotency_key": key, "email": "p@example.org", "fulfilment": "collection",
            "payment": "sumup"})
        assert placed.status_code == 303, placed.text[:400]
        assert placed.headers["location"].startswith(sumup_fake.public_url)
        async with maker() as session:
            order = (await session.execute(select(Order).where(Order.number.is_not(None)))).scalar_one()
        # The payer closes the tab: coming back later still shows the order waiting for payment.
        back = await client.get(f"/cart/order/{order.token}/return")
        assert back.status_code == 303
        async with maker() as session:
            assert (await session.get(Order, order.id)).state == PAYMENT_PENDING  # type: ignore[union-attr]
        sumup_fake.pay(order.payment_id)
        back = await client.get(f"/cart/order/{order.token}/return")
        assert back.status_code == 303 and back.headers["location"] == f"/cart/order/{order.token}"
        async with maker() as session:
            assert (await session.get(Order, order.id)).state == PAID  # type: ignore[union-attr]
        shown = await client.get(back.headers["location"])
        assert "paid" in shown.text and order.number in shown.text


def _idem(html: str) -> Any:
    import re

    match = re.search(r'name="idempotency_key" value="([^"]+)"', html)
    assert match
    return match.group(1)


async def test_the_receipt_is_sent_with_lines_and_totals(engine: AsyncEngine, settings: Settings) -> None:
    """No SMTP configured: the mail job writes DATA_DIR/mail/*.eml, as an admin would read it."""
    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with maker() as session:
        await stocked(session, stock={"TOM-S": 5})
        cart = CartService(session, settings)
        order = await cart.new_cart()
        await cart.add(order, sku="TOM-S", quantity="2")
        placed = await cart.place(order, CheckoutDetails(email="r@example.org", fulfilment="delivery",
                                                         address="1 Main Street"), idempotency_key="m" * 20)
        await session.commit()
    await run_jobs(maker, settings)
    mails = list((settings.data_dir / "mail").glob("*.eml"))
    assert len(mails) == 1
    text = mails[0].read_text(encoding="utf-8", errors="replace")
    assert f"Your order {placed.number}" in text and "r@example.org" in text
    import email
    from email import policy

    body = email.message_from_string(text, policy=policy.default).get_body(("plain",))
    assert body is not None
    content = body.get_content()
    assert "2 \u00d7 Heritage tomatoes (S) (TOM-S) at €2.50: €5.00" in content
    assert "Delivery: €5.00" in content and "Total: €10.00" in content and "1 Main Street" in content


async def test_reconciliation_rescues_an_order_whose_webhook_never_came(
        engine: AsyncEngine, sumup_settings: Settings, sumup_fake: FakeSumUp) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from domains.cart.services import utcnow

    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with maker() as session:
        await stocked(session, stock={"TOM-S": 5})
        order = await placed_sumup_order(session, sumup_settings)
        assert await CartService(session, sumup_settings).reconcile_payments() == 0  # too recent to chase
    sumup_fake.pay(order.payment_id)  # paid on the hosted page; no webhook, no return
    async with maker() as session, session.begin():
        await session.execute(update(Order).where(Order.id == order.id).values(placed_at=utcnow() - timedelta(hours=1)))
        assert await CartService(session, sumup_settings).reconcile_payments() == 1
    await run_jobs(maker, sumup_settings)  # payments.refresh re-fetches, emits; the cart's job moves the order
    async with maker() as session:
        assert (await session.get(Order, order.id)).state == PAID  # type: ignore[union-attr]
        assert await CartService(session, sumup_settings).reconcile_payments() == 0  # nothing left to chase
