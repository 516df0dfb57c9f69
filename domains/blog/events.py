"""Durable post events for other domains (ActivityPub federation, search, newsletters).

The blog emits on the :data:`post_changed` topic (:class:`app.events.Topic`). A subscriber
registers a job kind whose payload is :class:`~domains.blog.schemas.PostEvent` and subscribes it::

    from app.jobs import JobContext, job_handler
    from domains.blog import events
    from domains.blog.schemas import PostEvent

    @job_handler("activitypub.blog-post")
    async def federate(ctx: JobContext, event: PostEvent) -> None:
        async with ctx.sessionmaker() as session:
            post = await BlogService(session, base_url=ctx.settings.base_url).get_published(event.post_id)
            ...  # None: unpublished or deleted -> send a Delete/Tombstone

    events.post_changed.subscribe(federate)

Whenever a post or page becomes public, changes while public, stops being public or is deleted,
the blog enqueues one job per subscribed kind **in the same transaction as the change**, so an
event is written if and only if the change is, and one subscriber's failures (retried by the
worker) never affect another's. Events carry ids, not content: re-read through
``BlogService.get_published``.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.events import Topic
from app.jobs import JobKind
from domains.blog.schemas import PostEvent

__all__ = ["emit_post_event", "post_changed", "subscribe", "subscribers", "unsubscribe"]

post_changed: Topic[PostEvent] = Topic("blog.post", PostEvent)
"""The blog's one topic: a post or page became public, changed while public, stopped being
public or was deleted."""


def subscribe(kind: JobKind[PostEvent] | str) -> None:
    """Have every future post event enqueued as a job of ``kind`` (idempotent)."""
    post_changed.subscribe(kind)


def unsubscribe(kind: JobKind[PostEvent] | str) -> None:
    post_changed.unsubscribe(kind)


def subscribers() -> tuple[str, ...]:
    return post_changed.subscribers


async def emit_post_event(session: AsyncSession, event: PostEvent) -> int:
    """Enqueue ``event`` for every subscriber in ``session``'s transaction; returns how many."""
    return await post_changed.emit(session, event)
