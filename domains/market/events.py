"""Durable product events for other parts of the app (ActivityPub federation, search, embeds).

The market emits on the :data:`product_changed` topic (:class:`app.events.Topic`), one job per
subscribed kind **in the same transaction as the change**. A subscriber registers a job kind
whose payload is :class:`~domains.market.schemas.ProductEvent` and subscribes it::

    from app.jobs import JobContext, job_handler
    from domains.market import events
    from domains.market.schemas import ProductEvent

    @job_handler("activitypub.market-product")
    async def federate(ctx: JobContext, event: ProductEvent) -> None:
        async with ctx.sessionmaker() as session:
            product = await CatalogueService(session, base_url=...).get_public(event.product_id)
            ...  # None: no longer public -> Delete/Tombstone

    events.product_changed.subscribe(federate)

Kinds: ``created`` (became public: active), ``updated`` (changed while public, its variants,
images and stock included), ``deleted`` (stopped being public or was deleted).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.events import Topic
from app.jobs import JobKind
from domains.market.schemas import ProductEvent

__all__ = ["emit_product_event", "product_changed", "subscribe", "subscribers", "unsubscribe"]

product_changed: Topic[ProductEvent] = Topic("market.product", ProductEvent)


def subscribe(kind: JobKind[ProductEvent] | str) -> None:
    """Have every future product event enqueued as a job of ``kind`` (idempotent)."""
    product_changed.subscribe(kind)


def unsubscribe(kind: JobKind[ProductEvent] | str) -> None:
    product_changed.unsubscribe(kind)


def subscribers() -> tuple[str, ...]:
    return product_changed.subscribers


async def emit_product_event(session: AsyncSession, event: ProductEvent) -> int:
    """Enqueue ``event`` for every subscriber in ``session``'s transaction; returns how many."""
    return await product_changed.emit(session, event)
