"""Push events: every accepted ref change enqueues one durable ``forge.push`` job (design/forge.md §3.3).

The job is written in the same transaction as the ref-mirror update that observed the change,
so an event is never lost and never emitted for a change the mirror did not record. Consumers
(ForgeFed ``Push`` activities, webhooks) register with :func:`on_push`; the job handler calls
each in turn and a failure retries the job with backoff.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from app.jobs import JobContext, enqueue, job_handler

log = logging.getLogger("rose_ash.forge.events")

PUSH_JOB = "forge.push"


class RefChange(msgspec.Struct, frozen=True):
    """One ref that changed; ``old`` is all zeros for a creation, ``new`` for a deletion."""

    ref: str
    old: str
    new: str


class PushEvent(msgspec.Struct, frozen=True, kw_only=True):
    repo_id: str
    # Who caused it: a user id for pushes and API changes, None for the reconciler.
    actor_id: str | None
    # "push", "api", "mirror" or "reconcile".
    source: str
    changes: list[RefChange]
    push_options: list[str] = []
    ref_version: int = 0


PushListener = Callable[[JobContext, PushEvent], Awaitable[None]]
_listeners: list[PushListener] = []


def on_push(listener: PushListener) -> PushListener:
    """Register a consumer of push events (decorator)."""
    if listener not in _listeners:
        _listeners.append(listener)
    return listener


async def enqueue_push(session: AsyncSession, event: PushEvent) -> None:
    """The single place forge enqueues push events (flushed with the caller's transaction)."""
    await enqueue(session, PUSH_JOB, event)


@job_handler(PUSH_JOB, payload_type=PushEvent)
async def handle_push(ctx: JobContext, payload: PushEvent) -> None:
    log.info("push to %s: %d ref(s) changed (%s)", payload.repo_id, len(payload.changes), payload.source)
    for listener in list(_listeners):
        await listener(ctx, payload)
