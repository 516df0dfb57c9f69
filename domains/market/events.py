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

Bulk writers (the CSV import) change hundreds of products per transaction: they emit one
:class:`~domains.market.schemas.ProductEvents` on :data:`products_changed` instead, one job per
subscriber for the whole batch. A subscriber of product events subscribes a kind for each
topic (:func:`subscribe` and :func:`subscribe_batch`); :func:`emit_product_events` picks the topic.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from app.events import Topic
from app.jobs import JobKind
from domains.market.schemas import ProductEvent, ProductEvents

__all__ = ["emit_product_event", "emit_product_events", "product_changed", "products_changed", "subscribe",
           "subscribe_batch", "subscribers", "unsubscribe"]

product_changed: Topic[ProductEvent] = Topic("market.product", ProductEvent)
products_changed: Topic[ProductEvents] = Topic("market.products", ProductEvents)


def subscribe(kind: JobKind[ProductEvent] | str) -> None:
    """Have every future product event enqueued as a job of ``kind`` (idempotent)."""
    product_changed.subscribe(kind)


def subscribe_batch(kind: JobKind[ProductEvents] | str) -> None:
    """Have every future batch of product events enqueued as one job of ``kind`` (idempotent)."""
    products_changed.subscribe(kind)


def unsubscribe(kind: JobKind[ProductEvent] | str) -> None:
    product_changed.unsubscribe(kind)


def subscribers() -> tuple[str, ...]:
    return product_changed.subscribers


async def emit_product_event(session: AsyncSession, event: ProductEvent) -> int:
    """Enqueue ``event`` for every subscriber in ``session``'s transaction; returns how many."""
    return await product_changed.emit(session, event)


async def emit_product_events(session: AsyncSession, events: Sequence[ProductEvent]) -> int:
    """Enqueue many events: one job per subscriber of :data:`products_changed` for all of them
    (one event alone goes out on :data:`product_changed`). Returns how many jobs were written."""
    if not events:
        return 0
    if len(events) == 1:
        return await product_changed.emit(session, events[0])
    return await products_changed.emit(session, ProductEvents(events=list(events)))
