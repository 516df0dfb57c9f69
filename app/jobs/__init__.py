"""Durable job queue: work that must not be lost is a row in ``app_job`` run by a worker.

Register a kind with a msgspec payload and an async handler, enqueue it in the transaction
that causes it, and let a :class:`Worker` run it::

    class PurgePayload(msgspec.Struct):
        keys: list[str]

    @job_handler("edge.purge")
    async def purge(ctx: JobContext, payload: PurgePayload) -> None: ...

    await purge.enqueue(session, PurgePayload(keys=["blog"]), unique_key="purge:blog")

``enqueue(session, "edge.purge", ...)`` by name works too, and raises ``UnknownJobKind`` for a
name nobody registered. ``every(session, kind, interval, unique_key, payload)`` makes a job
recurring (one durable row per schedule, re-written by each completed run).
"""

from app.jobs.models import DEAD, DONE, QUEUED, RUNNING, Job
from app.jobs.queue import backoff_delay, cancel_every, enqueue, every, prune_done
from app.jobs.registry import (
    JobContext,
    JobKind,
    JobRegistry,
    PermanentFailure,
    RetryLater,
    Schedule,
    Snooze,
    UnknownJobKind,
    job_handler,
    registry,
)
from app.jobs.worker import Worker, install_signal_handlers, run_worker_forever, worker_in_background

__all__ = [
    "DEAD",
    "DONE",
    "QUEUED",
    "RUNNING",
    "Job",
    "JobContext",
    "JobKind",
    "JobRegistry",
    "PermanentFailure",
    "RetryLater",
    "Schedule",
    "Snooze",
    "UnknownJobKind",
    "Worker",
    "backoff_delay",
    "cancel_every",
    "enqueue",
    "every",
    "install_signal_handlers",
    "job_handler",
    "prune_done",
    "registry",
    "run_worker_forever",
    "worker_in_background",
]
