"""Push events: every accepted ref change is emitted on :data:`push_events` (design/forge.md §3.3).

The event is written in the same transaction as the ref-mirror update that observed the change,
as one durable job per subscriber (:class:`app.events.Topic`), so it is never lost and never
emitted for a change the mirror did not record, and a failing consumer retries alone. Forge
itself subscribes ``forge.push`` (the push log line, and the per-push job record that tests
and operators count); consumers (the edge purge, push mirrors, ForgeFed ``Push`` activities,
webhooks) subscribe their own job kind, or wrap a plain listener with :func:`on_push`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from app.events import Topic
from app.jobs import JobContext, JobKind, job_handler

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


push_events: Topic[PushEvent] = Topic("forge.push", PushEvent)

PushListener = Callable[[JobContext, PushEvent], Awaitable[None]]


def on_push(listener: PushListener) -> PushListener:
    """Subscribe ``listener`` to push events as its own job kind (decorator; idempotent).

    The kind is named ``forge.push.<module>.<function>``, so each consumer is retried on its
    own; the listener itself is returned unchanged.
    """
    module = listener.__module__.rsplit(".", 1)[-1]
    name = f"{PUSH_JOB}.{module}.{listener.__name__}"[:100]
    kind: JobKind[PushEvent] = job_handler(name, payload_type=PushEvent)(listener)
    push_events.subscribe(kind)
    return listener


async def enqueue_push(session: AsyncSession, event: PushEvent) -> None:
    """The single place forge emits push events (flushed with the caller's transaction)."""
    await push_events.emit(session, event)


@job_handler(PUSH_JOB, payload_type=PushEvent)
async def handle_push(ctx: JobContext, payload: PushEvent) -> None:
    log.info("push to %s: %d ref(s) changed (%s)", payload.repo_id, len(payload.changes), payload.source)


push_events.subscribe(handle_push)
