"""Durable event-changed notices for other parts of the app (ActivityPub federation, issue 18 item 7).

The events service emits on :data:`event_changed` (:class:`app.events.Topic`) in the same
transaction as the change, as the market does for products (domains/market/events.py): a
subscriber registers a job kind taking :class:`EventChanged` and calls :func:`subscribe`.

``saved`` (created or edited; the subscriber re-reads the event and decides from its visibility
whether that is a publication, an edit or a withdrawal) or ``deleted`` (the row is gone). Carries
the id only: subscribers re-read, so a retried job never acts on stale content.
"""

from __future__ import annotations

from typing import Literal

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from app.events import Topic
from app.jobs import JobKind

__all__ = ["EventChanged", "emit_event_changed", "event_changed", "subscribe"]


class EventChanged(msgspec.Struct, frozen=True, kw_only=True):
    event_id: str
    kind: Literal["saved", "deleted"]


event_changed: Topic[EventChanged] = Topic("events.event", EventChanged)


def subscribe(kind: JobKind[EventChanged] | str) -> None:
    """Have every future event change enqueued as a job of ``kind`` (idempotent)."""
    event_changed.subscribe(kind)


async def emit_event_changed(session: AsyncSession, event_id: object, kind: Literal["saved", "deleted"]) -> int:
    """Enqueue the change for every subscriber in ``session``'s transaction; returns how many jobs."""
    return await event_changed.emit(session, EventChanged(event_id=str(event_id), kind=kind))
