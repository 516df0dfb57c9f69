"""Writing jobs and moving them through their states.

Every state change is a conditional UPDATE that names the state (and, for a running job, the
claim: worker id plus attempt number) it expects, so two workers can never both finish, renew
or release the same run. Claiming uses ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL and
per-row compare-and-set UPDATEs on SQLite (one writer at a time there).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast, overload
from uuid import UUID

import msgspec
from sqlalchemy import CursorResult, Select, Table, and_, delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.jobs.models import DEAD, DEFAULT_MAX_ATTEMPTS, DONE, QUEUED, RUNNING, Job, utcnow
from app.jobs.registry import DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_CAP, JobKind, JobRegistry, registry
from app.logs import current_request_id

__all__ = [
    "ClaimedJob",
    "backoff_delay",
    "cancel_every",
    "claim_jobs",
    "enqueue",
    "enqueue_many",
    "every",
    "mark_dead",
    "mark_done",
    "prune_done",
    "release",
    "renew_lease",
    "reschedule",
]

log = logging.getLogger("app.jobs")

Clock = Callable[[], datetime]
MAX_ERROR_CHARS = 16_000

P = TypeVar("P", bound=msgspec.Struct)

_table = cast(Table, Job.__table__)
_c = _table.c


def _payload_to_json(payload: msgspec.Struct) -> dict[str, Any]:
    # A JSON round trip gives exactly what the column will hold (datetimes, UUIDs, bytes as text),
    # so the handler decodes the same value whether the row was just written or read back.
    data = msgspec.json.decode(msgspec.json.encode(payload))
    if not isinstance(data, dict):
        raise TypeError("a job payload must encode to a JSON object (use a msgspec.Struct)")
    return data


@overload
async def enqueue(
    session: AsyncSession,
    kind: JobKind[P],
    payload: P,
    *,
    run_at: datetime | None = None,
    unique_key: str | None = None,
    max_attempts: int | None = None,
    jobs: JobRegistry | None = None,
) -> Job: ...


@overload
async def enqueue(
    session: AsyncSession,
    kind: str,
    payload: msgspec.Struct,
    *,
    run_at: datetime | None = None,
    unique_key: str | None = None,
    max_attempts: int | None = None,
    jobs: JobRegistry | None = None,
) -> Job: ...


async def enqueue(
    session: AsyncSession,
    kind: str | JobKind[Any],
    payload: msgspec.Struct,
    *,
    run_at: datetime | None = None,
    unique_key: str | None = None,
    max_attempts: int | None = None,
    jobs: JobRegistry | None = None,
) -> Job:
    """Add a job with the caller's session (flushed, not committed).

    The job is therefore written, or not, in the same transaction as the domain change that
    caused it. With ``unique_key``, if a queued or running job holds that key, that job is
    returned unchanged instead of inserting a second one. ``max_attempts`` defaults to the
    kind's registered default, then to 10. ``run_at`` must be timezone-aware.

    ``kind`` is the :class:`JobKind` that ``@job_handler`` returned (its payload type is then
    checked statically too) or its name; a name nobody registered raises
    :class:`~app.jobs.registry.UnknownJobKind` here, and a payload of the wrong type ``TypeError``.
    """
    entry = _kind_entry(kind, jobs)
    values = _job_values(entry, payload, run_at, max_attempts)
    if unique_key is None:
        job = Job(**values)
        session.add(job)
        await session.flush()
        return job
    return await _enqueue_unique(session, values, unique_key)


async def enqueue_many(session: AsyncSession, kind: str | JobKind[Any], payloads: Sequence[msgspec.Struct], *,
                       jobs: JobRegistry | None = None) -> int:
    """:func:`enqueue` for many payloads of one kind with a single flush (bulk writers such as the
    market's CSV import, where a flush per job would cost more than the rows themselves)."""
    entry = _kind_entry(kind, jobs)
    rows = [Job(**_job_values(entry, payload, None, None)) for payload in payloads]
    if rows:
        session.add_all(rows)
        await session.flush()
    return len(rows)


def _kind_entry(kind: str | JobKind[Any], jobs: JobRegistry | None) -> JobKind[Any]:
    if isinstance(kind, JobKind):
        return kind
    reg = jobs if jobs is not None else registry
    return reg.require(kind)


def _job_values(entry: JobKind[Any], payload: msgspec.Struct, run_at: datetime | None,
                max_attempts: int | None) -> dict[str, Any]:
    if not isinstance(payload, msgspec.Struct):
        raise TypeError(f"job payload must be a msgspec.Struct, not {type(payload).__name__}")
    if not isinstance(payload, entry.payload_type):
        raise TypeError(
            f"job kind {entry.name!r} takes {entry.payload_type.__name__}, not {type(payload).__name__}"
        )
    if run_at is not None and run_at.tzinfo is None:
        raise ValueError("run_at must be timezone-aware")
    if max_attempts is None:
        max_attempts = entry.max_attempts or DEFAULT_MAX_ATTEMPTS
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    return {
        "kind": entry.name,
        "payload": with_request_id(_payload_to_json(payload)),
        "state": QUEUED,
        "attempts": 0,
        "max_attempts": max_attempts,
        "next_run_at": run_at or utcnow(),
    }


async def every(
    session: AsyncSession,
    kind: JobKind[P] | str,
    interval: timedelta,
    unique_key: str,
    payload: P,
    *,
    start_at: datetime | None = None,
    max_attempts: int | None = None,
    jobs: JobRegistry | None = None,
) -> Job:
    """Run ``kind`` with ``payload`` every ``interval``, as one durable row keyed by ``unique_key``.

    Idempotent, so it doubles as the startup "ensure": if a live job holds ``unique_key``, it
    takes the new interval and payload (from its next run on) and, with ``start_at``, is
    moved to that time if it is still queued; otherwise the first run is written, due at
    ``start_at`` or now. Each run that ends done writes the next one ``interval`` after it
    finished, in the transaction that records it done (see :func:`mark_done`), so however many
    workers there are, a schedule has one live row and runs once per interval; restarts lose
    nothing. A run that ends dead ends the schedule (its error is on the row) until ``every``
    is called again; :func:`cancel_every` ends it on purpose.
    """
    seconds = int(interval.total_seconds())
    if seconds < 1:
        raise ValueError("a recurring job's interval must be at least one second")
    entry = _kind_entry(kind, jobs)
    values = _job_values(entry, payload, start_at, max_attempts)
    job = await _enqueue_unique(session, {**values, "repeat_seconds": seconds}, unique_key)
    changes: dict[str, Any] = {"repeat_seconds": seconds, "payload": values["payload"]}
    if start_at is not None and job.state == QUEUED:
        changes["next_run_at"] = start_at
    await session.execute(update(_table).where(_c.id == job.id).values(**changes))
    await session.refresh(job)
    return job


async def cancel_every(session: AsyncSession, unique_key: str) -> None:
    """End the recurring schedule ``unique_key``: a queued run is deleted, a running one is not
    followed by another."""
    await session.flush()
    await session.execute(delete(_table).where(_c.unique_key == unique_key, _c.state == QUEUED))
    await session.execute(update(_table).where(_c.unique_key == unique_key).values(repeat_seconds=None))


# The id of the request that enqueued a job rides in its payload under this key (not a field of
# any payload type: msgspec ignores it when decoding), so the job's log lines carry it too.
REQUEST_ID_KEY = "_request_id"


def with_request_id(payload: dict[str, Any]) -> dict[str, Any]:
    request_id = current_request_id()
    return {**payload, REQUEST_ID_KEY: request_id} if request_id is not None else payload


async def _enqueue_unique(session: AsyncSession, values: dict[str, Any], unique_key: str) -> Job:
    dialect = session.get_bind().dialect.name
    for _ in range(5):
        await session.flush()  # pending ORM jobs with this key must be visible to the INSERT
        existing = await session.scalar(select(Job).where(Job.unique_key == unique_key))
        if existing is not None:
            return existing
        if dialect == "postgresql":
            await session.execute(
                pg_insert(_table)
                .values(**values, unique_key=unique_key)
                .on_conflict_do_nothing(index_elements=[_c.unique_key])
            )
        elif dialect == "sqlite":
            await session.execute(
                sqlite_insert(_table)
                .values(**values, unique_key=unique_key)
                .on_conflict_do_nothing(index_elements=[_c.unique_key])
            )
        else:  # pragma: no cover - only SQLite and PostgreSQL are supported
            session.add(Job(**values, unique_key=unique_key))
            await session.flush()
        job = await session.scalar(
            select(Job).where(Job.unique_key == unique_key).execution_options(populate_existing=True)
        )
        if job is not None:
            return job
        # The job that held the key finished between our INSERT and SELECT: try again.
    raise RuntimeError(f"could not enqueue a job with unique_key {unique_key!r}")


def backoff_delay(attempt: int, base: float = DEFAULT_BACKOFF_BASE, cap: float = DEFAULT_BACKOFF_CAP) -> float:
    """Exponential backoff with full jitter: uniform in ``[0, min(cap, base * 2**(attempt-1))]``."""
    exponent = min(max(attempt - 1, 0), 62)
    return random.uniform(0.0, min(cap, base * (2.0**exponent)))


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job this worker now holds a lease on; ``(worker_id, attempts)`` identifies the claim."""

    id: UUID
    kind: str
    payload: Any
    attempts: int
    max_attempts: int
    worker_id: str
    unique_key: str | None = None


def _claimable(now: datetime, exclude: Collection[UUID]) -> Any:
    cond = or_(
        and_(_c.state == QUEUED, _c.next_run_at <= now),
        and_(_c.state == RUNNING, _c.locked_until.is_not(None), _c.locked_until < now),
    )
    if exclude:
        cond = and_(cond, _c.id.not_in(list(exclude)))
    return cond


async def claim_jobs(
    sessionmaker: async_sessionmaker[AsyncSession],
    worker_id: str,
    limit: int,
    *,
    lease_seconds: float,
    clock: Clock = utcnow,
    exclude: Collection[UUID] = (),
) -> list[ClaimedJob]:
    """Lease up to ``limit`` due jobs to ``worker_id`` and count the attempt.

    Due means queued with ``next_run_at`` reached, or running with an expired lease (its
    worker died or stalled). An expired job that has used all its attempts goes dead instead.
    """
    if limit <= 0:
        return []
    async with sessionmaker() as session:
        if session.get_bind().dialect.name == "postgresql":
            return await _claim_postgresql(session, worker_id, limit, lease_seconds, clock, exclude)
        return await _claim_compare_and_set(session, worker_id, limit, lease_seconds, clock, exclude)


def _candidates(now: datetime, limit: int, exclude: Collection[UUID]) -> Select[Any]:
    return (
        select(_c.id, _c.state, _c.locked_by, _c.attempts, _c.max_attempts)
        .where(_claimable(now, exclude))
        .order_by(_c.next_run_at, _c.id)
        .limit(limit)
    )


def _lease_lost_error(job_id: UUID, attempts: int, max_attempts: int, locked_by: str | None) -> str:
    error = (
        f"lease expired while running attempt {attempts} of {max_attempts} "
        f"(worker {locked_by or '?'} died or stalled); no attempts left"
    )
    log.error("job %s is dead: %s", job_id, error)
    return error


def _bury(r: Any) -> Any:
    """The UPDATE that marks an expired run with no attempts left dead (callers add the WHERE)."""
    return update(_table).values(
        state=DEAD, locked_until=None, unique_key=None,
        last_error=_lease_lost_error(r.id, r.attempts, r.max_attempts, r.locked_by),
    )


async def _take(session: AsyncSession, which: Any, worker_id: str, now: datetime,
                lease_seconds: float) -> list[ClaimedJob]:
    """Lease the jobs ``which`` selects to ``worker_id``, oldest due first."""
    result = await session.execute(
        update(_table)
        .where(which)
        .values(
            state=RUNNING,
            attempts=_c.attempts + 1,
            locked_by=worker_id,
            locked_until=now + timedelta(seconds=lease_seconds),
        )
        .returning(_c.id, _c.kind, _c.payload, _c.attempts, _c.max_attempts, _c.next_run_at, _c.unique_key)
    )
    claimed = sorted(result.all(), key=lambda r: (r.next_run_at, r.id))
    return [ClaimedJob(r.id, r.kind, r.payload, r.attempts, r.max_attempts, worker_id, r.unique_key)
            for r in claimed]


async def _claim_postgresql(
    session: AsyncSession,
    worker_id: str,
    limit: int,
    lease_seconds: float,
    clock: Clock,
    exclude: Collection[UUID],
) -> list[ClaimedJob]:
    async with session.begin():
        now = clock()
        rows = (await session.execute(_candidates(now, limit, exclude).with_for_update(skip_locked=True))).all()
        exhausted = [r for r in rows if r.state == RUNNING and r.attempts >= r.max_attempts]
        runnable = [r.id for r in rows if not (r.state == RUNNING and r.attempts >= r.max_attempts)]
        for r in exhausted:
            await session.execute(_bury(r).where(_c.id == r.id))
        if not runnable:
            return []
        return await _take(session, _c.id.in_(runnable), worker_id, now, lease_seconds)


async def _claim_compare_and_set(
    session: AsyncSession,
    worker_id: str,
    limit: int,
    lease_seconds: float,
    clock: Clock,
    exclude: Collection[UUID],
) -> list[ClaimedJob]:
    # SQLite has one writer. Expired runs with no attempts left are read outside any transaction
    # and buried one by one with a compare-and-set UPDATE (rare); the claim itself is a single
    # UPDATE ... WHERE id IN (due ids) RETURNING, atomic under the write lock that its
    # BEGIN IMMEDIATE takes first (app.db), so no read ever has to turn into a write.
    now = clock()
    exhausted = (
        await session.execute(
            _candidates(now, limit, exclude).where(_c.state == RUNNING, _c.attempts >= _c.max_attempts)
        )
    ).all()
    await session.rollback()  # end the autobegun (read-only) session transaction
    if exhausted:
        async with session.begin():
            for r in exhausted:
                await session.execute(
                    _bury(r).where(_c.id == r.id, _c.state == RUNNING, _c.attempts == r.attempts, _claimable(now, ()))
                )
    async with session.begin():
        now = clock()
        due = (
            select(_c.id)
            .where(_claimable(now, exclude), ~and_(_c.state == RUNNING, _c.attempts >= _c.max_attempts))
            .order_by(_c.next_run_at, _c.id)
            .limit(limit)
            .scalar_subquery()
        )
        return await _take(session, _c.id.in_(due), worker_id, now, lease_seconds)


def _ours(job: ClaimedJob) -> Any:
    return and_(
        _c.id == job.id,
        _c.state == RUNNING,
        _c.locked_by == job.worker_id,
        _c.attempts == job.attempts,
    )


async def _write(sessionmaker: async_sessionmaker[AsyncSession], job: ClaimedJob, values: dict[str, Any]) -> bool:
    async with sessionmaker() as session, session.begin():
        res = await session.execute(update(_table).where(_ours(job)).values(**values))
        return cast("CursorResult[Any]", res).rowcount == 1


async def renew_lease(
    sessionmaker: async_sessionmaker[AsyncSession],
    job: ClaimedJob,
    *,
    lease_seconds: float,
    clock: Clock = utcnow,
) -> bool:
    """Extend the lease; False means the claim was lost (another worker took the job)."""
    return await _write(sessionmaker, job, {"locked_until": clock() + timedelta(seconds=lease_seconds)})


async def mark_done(sessionmaker: async_sessionmaker[AsyncSession], job: ClaimedJob, *,
                    clock: Clock = utcnow) -> bool:
    """Record the run as done; a recurring job's next run is written in the same transaction.

    Only the worker holding the claim gets past the conditional UPDATE, and the key it frees is
    taken again before the commit, so no other writer can ever see the schedule without a row.
    """
    async with sessionmaker() as session, session.begin():
        res = await session.execute(
            update(_table)
            .where(_ours(job))
            .values(state=DONE, locked_until=None, unique_key=None, last_error=None)
            .returning(_c.repeat_seconds, _c.payload, _c.max_attempts)
        )
        row = res.one_or_none()
        if row is None:
            return False
        if row.repeat_seconds and job.unique_key is not None:
            await session.execute(
                _table.insert().values(
                    kind=job.kind, payload=row.payload, state=QUEUED, attempts=0,
                    max_attempts=row.max_attempts, next_run_at=clock() + timedelta(seconds=row.repeat_seconds),
                    unique_key=job.unique_key, repeat_seconds=row.repeat_seconds,
                )
            )
        return True


async def mark_dead(sessionmaker: async_sessionmaker[AsyncSession], job: ClaimedJob, error: str) -> bool:
    return await _write(
        sessionmaker,
        job,
        {"state": DEAD, "locked_until": None, "unique_key": None, "last_error": error[-MAX_ERROR_CHARS:]},
    )


async def reschedule(
    sessionmaker: async_sessionmaker[AsyncSession],
    job: ClaimedJob,
    *,
    delay: float,
    error: str,
    clock: Clock = utcnow,
    count_attempt: bool = True,
) -> bool:
    """Put a run back in the queue to run again after ``delay`` seconds.

    ``count_attempt`` False gives the attempt back (a snooze: the job could not start yet).
    """
    values: dict[str, Any] = {
        "state": QUEUED,
        "locked_until": None,
        "locked_by": None,
        "last_error": error[-MAX_ERROR_CHARS:],
        "next_run_at": clock() + timedelta(seconds=delay),
    }
    if not count_attempt:
        values["attempts"] = _c.attempts - 1
    return await _write(sessionmaker, job, values)


async def release(sessionmaker: async_sessionmaker[AsyncSession], job: ClaimedJob, *, clock: Clock = utcnow) -> bool:
    """Give an unfinished run back (worker shutting down): queued, due now, attempt not counted."""
    return await _write(
        sessionmaker,
        job,
        {
            "state": QUEUED,
            "locked_until": None,
            "locked_by": None,
            "attempts": _c.attempts - 1,
            "next_run_at": clock(),
        },
    )


async def prune_done(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    older_than: timedelta,
    clock: Clock = utcnow,
) -> int:
    """Delete done jobs last touched more than ``older_than`` ago; dead jobs are kept."""
    async with sessionmaker() as session, session.begin():
        res = await session.execute(delete(_table).where(_c.state == DONE, _c.updated_at < clock() - older_than))
        return cast("CursorResult[Any]", res).rowcount


async def job_states(session: AsyncSession, ids: Sequence[UUID]) -> dict[UUID, str]:
    """The state of each of ``ids`` (a helper for callers that wait on their jobs)."""
    rows = (await session.execute(select(_c.id, _c.state).where(_c.id.in_(list(ids))))).all()
    return {r.id: r.state for r in rows}
