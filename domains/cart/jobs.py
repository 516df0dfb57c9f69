"""Cart job kinds: the recurring sweep of expired reservations (availability ignores them already;
the sweep keeps the table small), and the subscriber of ``payments.updated`` moving orders."""

from __future__ import annotations

from datetime import timedelta

import msgspec

from app.jobs import JobContext, job_handler, registry
from domains.payments.hooks import payments_updated
from domains.payments.schemas import PaymentRecord

__all__ = ["PAYMENT_UPDATED", "RECONCILE_PAYMENTS", "SWEEP_RESERVATIONS", "SweepReservations", "payment_updated",
           "reconcile_payments", "sweep_reservations"]

SWEEP_RESERVATIONS = "cart.sweep-reservations"
PAYMENT_UPDATED = "cart.payment-updated"
RECONCILE_PAYMENTS = "cart.reconcile-payments"


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
