"""Cart job kinds: the recurring sweep of expired reservations (availability ignores them already;
the sweep keeps the table small), the subscriber of ``payments.updated`` moving orders, the
reconciliation of online payments pending too long, and the expiry of orders never paid
(domains/cart/fulfilment.py ``expire_unpaid``). The mails these moves send are ``mail.send`` jobs
queued in the same transactions (domains/cart/notices.py)."""

from __future__ import annotations

from datetime import timedelta

import httpx
import msgspec

from app.jobs import JobContext, job_handler, registry
from domains.payments.hooks import payments_updated
from domains.payments.schemas import PaymentRecord

__all__ = ["EXPIRE_UNPAID", "PAYMENT_UPDATED", "RECONCILE_PAYMENTS", "SWEEP_RESERVATIONS", "SweepReservations",
           "expire_unpaid_orders", "payment_updated", "reconcile_payments", "sweep_reservations"]

SWEEP_RESERVATIONS = "cart.sweep-reservations"
PAYMENT_UPDATED = "cart.payment-updated"
RECONCILE_PAYMENTS = "cart.reconcile-payments"
EXPIRE_UNPAID = "cart.expire-unpaid"


class SweepReservations(msgspec.Struct, frozen=True):
    pass


@job_handler(SWEEP_RESERVATIONS, backoff_base=5.0, backoff_cap=120.0)
async def sweep_reservations(ctx: JobContext, payload: SweepReservations) -> None:
    from domains.cart.services import CartService

    async with ctx.sessionmaker() as session, session.begin():
        await CartService(session, ctx.settings).sweep_reservations()


registry.every(sweep_reservations, timedelta(minutes=1), "cart:sweep-reservations", SweepReservations())


@job_handler(PAYMENT_UPDATED, backoff_base=5.0, backoff_cap=600.0)
async def payment_updated(ctx: JobContext, record: PaymentRecord) -> None:
    """A checkout as its provider has it now (``payments.updated``): move the order (idempotent)."""
    from domains.cart.services import CartService

    async with ctx.sessionmaker() as session, session.begin():
        await CartService(session, ctx.settings).apply_payment(record)


payments_updated.subscribe(payment_updated)


@job_handler(RECONCILE_PAYMENTS, backoff_base=30.0, backoff_cap=600.0)
async def reconcile_payments(ctx: JobContext, payload: SweepReservations) -> None:
    """Every few minutes: re-fetch online payments pending too long (the webhook may never come)."""
    from domains.cart.services import CartService

    async with ctx.sessionmaker() as session, session.begin():
        await CartService(session, ctx.settings).reconcile_payments()


registry.every(reconcile_payments, timedelta(minutes=5), "cart:reconcile-payments", SweepReservations())


@job_handler(EXPIRE_UNPAID, backoff_base=30.0, backoff_cap=600.0)
async def expire_unpaid_orders(ctx: JobContext, payload: SweepReservations) -> None:
    """Every few minutes: orders unpaid past ROSE_ASH_CART_PAYMENT_MINUTES, asked of the provider
    once more, then paid or cancelled (stock released, the payer mailed)."""
    from domains.cart.fulfilment import expire_unpaid

    shared = ctx.services.get("http") if ctx.services else None
    await expire_unpaid(ctx.sessionmaker, ctx.settings, http=shared if isinstance(shared, httpx.AsyncClient) else None)


registry.every(expire_unpaid_orders, timedelta(minutes=5), "cart:expire-unpaid", SweepReservations())
