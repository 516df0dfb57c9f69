"""Durable post events for other domains (ActivityPub federation, search, newsletters).

A subscriber registers a job kind whose payload is :class:`~domains.blog.schemas.PostEvent`::

    from app.jobs import JobContext, job_handler
    from domains.blog import events
    from domains.blog.schemas import PostEvent

    @job_handler("activitypub.blog-post")
    async def federate(ctx: JobContext, event: PostEvent) -> None:
        async with ctx.sessionmaker() as session:
            post = await BlogService(session, base_url=ctx.settings.base_url).get_published(event.post_id)
            ...  # None: unpublished or deleted -> send a Delete/Tombstone

    events.subscribe("activitypub.blog-post")

Whenever a post or page becomes public, changes while public, stops being public or is deleted,
the blog enqueues one job per subscribed kind **in the same transaction as the change**, so an
event is written if and only if the change is, and one subscriber's failures (retried by the
worker) never affect another's. Events carry ids, not content: re-read through
``BlogService.get_published``.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.jobs import enqueue
from domains.blog.schemas import PostEvent

__all__ = ["emit_post_event", "subscribe", "subscribers", "unsubscribe"]

_subscribers: list[str] = []


def subscribe(kind: str) -> None:
    """Have every future post event enqueued as a job of ``kind`` (idempotent)."""
    if kind not in _subscribers:
        _subscribers.append(kind)


def unsubscribe(kind: str) -> None:
    if kind in _subscribers:
        _subscribers.remove(kind)


def subscribers() -> tuple[str, ...]:
    return tuple(_subscribers)


async def emit_post_event(session: AsyncSession, event: PostEvent) -> int:
    """Enqueue ``event`` for every subscriber in ``session``'s transaction; returns how many."""
    for kind in _subscribers:
        await enqueue(session, kind, event)
    return len(_subscribers)
