"""The durable job table: one row per unit of work that must not be lost."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from advanced_alchemy.base import UUIDv7AuditBase
from advanced_alchemy.types import DateTimeUTC, JsonB
from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

QUEUED: Final = "queued"
RUNNING: Final = "running"
DONE: Final = "done"
DEAD: Final = "dead"
JOB_STATES: Final = (QUEUED, RUNNING, DONE, DEAD)

DEFAULT_MAX_ATTEMPTS: Final = 10


def utcnow() -> datetime:
    return datetime.now(UTC)


class Job(UUIDv7AuditBase):
    """A queued call of a registered handler with a JSON payload.

    ``attempts`` counts claims: it is incremented when a worker starts a run, so a run whose
    worker died counts too. ``locked_until`` is the lease of the worker named in ``locked_by``;
    a ``running`` job whose lease has expired may be claimed again. ``unique_key`` is set only
    while the job is queued or running (it is cleared when the job ends), so one plain unique
    constraint de-duplicates live jobs on every database and lets a finished key be reused.

    ``repeat_seconds`` makes the job recurring (:func:`app.jobs.queue.every`): the transaction
    that records a run as done also writes the next run, with the same ``unique_key``, that
    many seconds later, so there is always exactly one live row per schedule.
    """

    __tablename__ = "app_job"
    __table_args__ = (Index("ix_app_job_state_next_run_at", "state", "next_run_at"),)

    kind: Mapped[str] = mapped_column(String(100), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JsonB, default=dict)
    state: Mapped[str] = mapped_column(String(16), default=QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=DEFAULT_MAX_ATTEMPTS)
    next_run_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True), default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    locked_by: Mapped[str | None] = mapped_column(String(200), default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    unique_key: Mapped[str | None] = mapped_column(String(255), unique=True, default=None)
    repeat_seconds: Mapped[int | None] = mapped_column(Integer, default=None)

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.kind} {self.state} attempts={self.attempts}/{self.max_attempts}>"
