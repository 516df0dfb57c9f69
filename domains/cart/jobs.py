"""Cart job kinds: the recurring sweep of expired reservations (availability ignores them already;
the sweep keeps the table small and ends checkouts that were left)."""

from __future__ import annotations

from datetime import timedelta

import msgspec

from app.jobs import JobContext, job_handler, registry

__all__ = ["SWEEP_RESERVATIONS", "SweepReservations", "sweep_reservations"]

SWEEP_RESERVATIONS = "cart.sweep-reservations"


class SweepReservations(msgspec.Struct, frozen=True):
    pass


@job_handler(SWEEP_RESERVATIONS, backoff_base=5.0, backoff_cap=120.0)
async def sweep_reservations(ctx: JobContext, payload: SweepReservations) -> None:
    from domains.cart.services import CartService

    async with ctx.sessionmaker() as session, session.begin():
        await CartService(session, ctx.settings).sweep_reservations()


registry.every(sweep_reservations, timedelta(minutes=1), "cart:sweep-reservations", SweepReservations())
