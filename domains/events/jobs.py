"""Events job kinds: the recurring sweep that lapses expired waiting-list offers and offers their
places to the next in line (registered like the cart's reservation sweep, domains/cart/jobs.py)."""

from __future__ import annotations

from datetime import timedelta

import msgspec

from app.jobs import JobContext, job_handler, registry

__all__ = ["SWEEP_OFFERS", "SweepOffers", "sweep_offers"]

SWEEP_OFFERS = "events.sweep-offers"


class SweepOffers(msgspec.Struct, frozen=True):
    pass


@job_handler(SWEEP_OFFERS, backoff_base=5.0, backoff_cap=120.0)
async def sweep_offers(ctx: JobContext, payload: SweepOffers) -> None:
    from domains.events.services.bookings import BookingService

    async with ctx.sessionmaker() as session, session.begin():
        await BookingService(session, base_url=ctx.settings.base_url,
                             offer_hours=ctx.settings.events_offer_hours).sweep_offers()


# Every minute: an offer lapses at most a minute late, and each run is one short transaction.
registry.every(sweep_offers, timedelta(minutes=1), "events:sweep-offers", SweepOffers())
