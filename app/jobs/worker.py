"""The job worker: claims due jobs, runs their handlers under a renewed lease, records outcomes."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import secrets
import signal
import socket
import time
import traceback
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import anyio
import msgspec
from anyio.abc import TaskGroup
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import SQLITE_BUSY_TIMEOUT, database_error
from app.jobs import queue
from app.jobs.models import utcnow
from app.jobs.queue import ClaimedJob, Clock
from app.jobs.registry import JobContext, JobRegistry, PermanentFailure, RetryLater, Snooze, registry
from app.logs import request_id_context
from app.metrics import IN_PROCESS_WORKERS, JOB_FAILURES

__all__ = [
    "Worker",
    "install_signal_handlers",
    "run_worker_forever",
    "worker_in_background",
]

log = logging.getLogger("app.jobs")

StopEvent = anyio.Event | asyncio.Event
SessionMaker = async_sessionmaker[AsyncSession]

# Bound on the shielded outcome writes, so shutdown cannot hang on them. Longer than SQLite's
# busy timeout: a write still waiting for the lock fails by itself first (cancelling an
# aiosqlite call mid-way would leave it running in its thread, a transaction nobody ends).
_SETTLE_TIMEOUT = SQLITE_BUSY_TIMEOUT + 10.0


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


# Outcomes of one run -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Done:
    pass


@dataclass(frozen=True, slots=True)
class _Failed:
    error: str


@dataclass(frozen=True, slots=True)
class _Retry:
    seconds: float
    error: str


@dataclass(frozen=True, slots=True)
class _Dead:
    error: str


@dataclass(frozen=True, slots=True)
class _Snoozed:
    seconds: float
    reason: str


@dataclass(frozen=True, slots=True)
class _Released:
    pass


@dataclass(frozen=True, slots=True)
class _Lost:
    pass


_Outcome = _Done | _Failed | _Retry | _Snoozed | _Dead | _Released | _Lost


@dataclass(slots=True, eq=False)
class _Run:
    job: ClaimedJob
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    lost: bool = False  # the lease was renewed by nobody / taken by another worker
    released: bool = False  # cancelled by our shutdown: give the job back


class Worker:
    """Runs registered job handlers.

    ``run(stop)`` polls until ``stop`` is set, then stops claiming, lets running handlers finish
    for up to ``shutdown_grace`` seconds and gives unfinished jobs back (queued, lease cleared,
    attempt not counted). ``run_once()`` drains what is due now and returns how many runs it made
    (each job at most once per call), which makes tests deterministic.

    ``context`` is the template :class:`JobContext` handed to handlers (filled in per run with
    the job's id, kind and attempt); by default it carries ``settings`` and ``sessionmaker``.
    """

    def __init__(
        self,
        sessionmaker: SessionMaker,
        *,
        worker_id: str | None = None,
        concurrency: int = 4,
        poll_interval: float = 1.0,
        lease_seconds: float = 60.0,
        context: JobContext | None = None,
        settings: Any = None,
        registry: JobRegistry | None = None,
        shutdown_grace: float = 30.0,
        clock: Clock = utcnow,
        prune_done_after: timedelta | None = timedelta(days=7),
        prune_interval: float = 3600.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if lease_seconds <= 0 or poll_interval <= 0:
            raise ValueError("lease_seconds and poll_interval must be positive")
        self.sessionmaker = sessionmaker
        self.worker_id = worker_id or default_worker_id()
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.lease_seconds = lease_seconds
        self.heartbeat_interval = lease_seconds / 3
        self.context = context or JobContext(sessionmaker=sessionmaker, settings=settings)
        self.registry = registry if registry is not None else _default_registry()
        self.shutdown_grace = shutdown_grace
        self.clock = clock
        self.prune_done_after = prune_done_after
        self.prune_interval = prune_interval
        self._runs: dict[UUID, _Run] = {}
        self._wake = anyio.Event()
        self._stopping = False
        self._looping = False
        self._last_prune = float("-inf")

    # Public API -----------------------------------------------------------------------------

    async def ensure_schedules(self) -> None:
        """Write the first run of every declared recurring job that has no live row, then run
        the registry's worker-start hooks. Idempotent; :meth:`run` calls it when it starts."""
        for schedule in self.registry.schedules:
            async with self.sessionmaker() as session, session.begin():
                await queue.every(session, schedule.kind, schedule.interval, schedule.unique_key,
                                  schedule.payload, jobs=self.registry)
        for hook in self.registry.startup_hooks:
            await hook(self.sessionmaker)

    @property
    def running_jobs(self) -> list[UUID]:
        """Ids of the jobs this worker is running right now."""
        return list(self._runs)

    def request_stop(self) -> None:
        """Ask ``run`` to stop claiming and shut down gracefully (same as setting its event)."""
        self._stopping = True
        self._wake.set()

    async def run(self, stop: StopEvent | None = None) -> None:
        """Claim and run jobs until ``stop`` is set (or :meth:`request_stop` is called)."""
        if self._looping:
            raise RuntimeError("this worker is already running")
        self._looping = True
        self._stopping = stop is not None and stop.is_set()
        log.info("job worker %s started (concurrency %d)", self.worker_id, self.concurrency)
        try:
            try:
                await self.ensure_schedules()
            except Exception:
                # A database not yet migrated, say: the worker still runs what it can.
                log.exception("job worker %s could not ensure the recurring jobs", self.worker_id)
            async with anyio.create_task_group() as outer:
                if stop is not None:
                    outer.start_soon(self._watch_stop, stop)
                async with anyio.create_task_group() as jobs:
                    await self._poll_loop(jobs)
                    await self._drain()
                outer.cancel_scope.cancel()
        finally:
            self._looping = False
            log.info("job worker %s stopped", self.worker_id)

    async def run_once(self, limit: int | None = None) -> int:
        """Claim and run every job that is due now, ``concurrency`` at a time; return the count.

        Jobs that handlers enqueue meanwhile are run too; a job rescheduled during this call is
        not run again by it. ``limit`` caps the number of runs.
        """
        if self._looping:
            raise RuntimeError("run_once cannot be used while run() is active")
        seen: set[UUID] = set()
        count = 0
        while limit is None or count < limit:
            batch = self.concurrency if limit is None else min(self.concurrency, limit - count)
            claimed = await queue.claim_jobs(
                self.sessionmaker,
                self.worker_id,
                batch,
                lease_seconds=self.lease_seconds,
                clock=self.clock,
                exclude=seen,
            )
            if not claimed:
                break
            async with anyio.create_task_group() as tg:
                for job in claimed:
                    seen.add(job.id)
                    self._start(tg, job)
            count += len(claimed)
        return count

    # The loop -------------------------------------------------------------------------------

    async def _watch_stop(self, stop: StopEvent) -> None:
        await stop.wait()
        self.request_stop()

    async def _poll_loop(self, jobs: TaskGroup) -> None:
        while not self._stopping:
            wake = self._wake = anyio.Event()
            if self._stopping:
                break
            free = self.concurrency - len(self._runs)
            claimed: list[ClaimedJob] = []
            if free > 0:
                try:
                    claimed = await queue.claim_jobs(
                        self.sessionmaker,
                        self.worker_id,
                        free,
                        lease_seconds=self.lease_seconds,
                        clock=self.clock,
                    )
                except Exception:
                    log.exception("job worker %s could not claim jobs", self.worker_id)
                for job in claimed:
                    self._start(jobs, job)
            await self._maybe_prune()
            if self._stopping:
                break
            if claimed and len(claimed) == free:
                # A full batch: there may be more due. Loop at once (it waits if no slot is free).
                await anyio.lowlevel.checkpoint()
                continue
            with anyio.move_on_after(self.poll_interval):
                await wake.wait()

    async def _drain(self) -> None:
        if self._runs:
            log.info(
                "job worker %s stopping: waiting up to %.1fs for %d job(s)",
                self.worker_id,
                self.shutdown_grace,
                len(self._runs),
            )
            with anyio.move_on_after(self.shutdown_grace):
                while self._runs:
                    wake = self._wake = anyio.Event()
                    if self._runs:
                        await wake.wait()
        for run in list(self._runs.values()):
            log.warning("job worker %s releasing unfinished job %s", self.worker_id, run.job.id)
            run.released = True
            run.scope.cancel()

    async def _maybe_prune(self) -> None:
        if self.prune_done_after is None or time.monotonic() - self._last_prune < self.prune_interval:
            return
        self._last_prune = time.monotonic()
        try:
            pruned = await queue.prune_done(self.sessionmaker, older_than=self.prune_done_after, clock=self.clock)
        except Exception:
            log.exception("job worker %s could not prune done jobs", self.worker_id)
            return
        if pruned:
            log.info("pruned %d done job(s)", pruned)

    # One run --------------------------------------------------------------------------------

    def _start(self, tg: TaskGroup, job: ClaimedJob) -> None:
        run = _Run(job)
        self._runs[job.id] = run
        tg.start_soon(self._execute, run, name=f"job {job.kind} {job.id}")

    async def _execute(self, run: _Run) -> None:
        try:
            try:
                outcome = await self._invoke(run)
            except anyio.get_cancelled_exc_class():
                # The worker itself is being cancelled (not a graceful stop): give the job back.
                with anyio.CancelScope(shield=True), anyio.move_on_after(_SETTLE_TIMEOUT):
                    await self._settle(run, _Released())
                raise
            with anyio.CancelScope(shield=True), anyio.move_on_after(_SETTLE_TIMEOUT):
                await self._settle(run, outcome)
        finally:
            self._runs.pop(run.job.id, None)
            self._wake.set()

    async def _invoke(self, run: _Run) -> _Outcome:
        job = run.job
        kind = self.registry.get(job.kind)
        if kind is None:
            return _Dead(f"unknown job kind {job.kind!r}: no handler is registered for it")
        try:
            payload = kind.decode(job.payload)
        except (msgspec.ValidationError, TypeError, ValueError) as exc:
            expected = kind.payload_type.__name__
            return _Dead(f"payload of job kind {job.kind!r} is not a valid {expected}: {exc}")
        ctx = replace(
            self.context,
            job_id=job.id,
            kind=job.kind,
            attempt=job.attempts,
            max_attempts=job.max_attempts,
            worker_id=self.worker_id,
        )
        outcome: _Outcome = _Released()
        request_id = job.payload.get(queue.REQUEST_ID_KEY) if isinstance(job.payload, dict) else None
        with request_id_context(request_id if isinstance(request_id, str) else None):
            outcome = await self._call(run, kind.handler, ctx, payload)
        if isinstance(outcome, _Failed | _Dead):
            JOB_FAILURES.labels(kind=job.kind).inc()
        if run.lost:
            return _Lost()
        if run.released and not isinstance(outcome, _Done):
            return _Released()
        return outcome

    async def _call(self, run: _Run, handler: Any, ctx: JobContext, payload: Any) -> _Outcome:
        outcome: _Outcome = _Released()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._heartbeat, run)
            with run.scope:
                try:
                    await handler(ctx, payload)
                    outcome = _Done()
                except RetryLater as exc:
                    outcome = _Retry(exc.seconds, f"RetryLater: {exc}")
                except Snooze as exc:
                    outcome = _Snoozed(exc.seconds, f"Snooze: {exc}")
                except PermanentFailure:
                    outcome = _Dead(traceback.format_exc())
                except Exception as exc:
                    outcome = _Failed(_failure_text(exc))
            tg.cancel_scope.cancel()
        return outcome

    async def _heartbeat(self, run: _Run) -> None:
        while True:
            await anyio.sleep(self.heartbeat_interval)
            try:
                ok = await queue.renew_lease(
                    self.sessionmaker, run.job, lease_seconds=self.lease_seconds, clock=self.clock
                )
            except Exception:
                log.warning("job %s: could not renew its lease", run.job.id, exc_info=True)
                continue
            if not ok:
                log.error("job %s: lease lost (another worker took it); cancelling the handler", run.job.id)
                run.lost = True
                run.scope.cancel()
                return

    async def _settle(self, run: _Run, outcome: _Outcome) -> None:
        job = run.job
        sm = self.sessionmaker
        try:
            if isinstance(outcome, _Done):
                ok = await queue.mark_done(sm, job, clock=self.clock)
                log.debug("job %s (%s) done", job.id, job.kind)
            elif isinstance(outcome, _Dead):
                ok = await queue.mark_dead(sm, job, outcome.error)
                log.error("job %s (%s) is dead: %s", job.id, job.kind, _last_line(outcome.error))
            elif isinstance(outcome, _Failed | _Retry):
                ok = await self._retry_or_bury(job, outcome)
            elif isinstance(outcome, _Snoozed):
                ok = await queue.reschedule(sm, job, delay=outcome.seconds, error=outcome.reason, clock=self.clock,
                                            count_attempt=False)
                log.info("job %s (%s) snoozes %.1fs: %s", job.id, job.kind, outcome.seconds, outcome.reason)
            elif isinstance(outcome, _Released):
                ok = await queue.release(sm, job, clock=self.clock)
            else:
                return
        except Exception:
            # The lease will expire and another run will happen; nothing is lost.
            log.exception("job %s: could not record the outcome of attempt %d", job.id, job.attempts)
            return
        if not ok:
            log.warning("job %s: the claim was lost before its outcome could be recorded", job.id)

    async def _retry_or_bury(self, job: ClaimedJob, outcome: _Failed | _Retry) -> bool:
        if job.attempts >= job.max_attempts:
            log.error(
                "job %s (%s) failed attempt %d of %d; it is dead: %s",
                job.id,
                job.kind,
                job.attempts,
                job.max_attempts,
                _last_line(outcome.error),
            )
            return await queue.mark_dead(self.sessionmaker, job, outcome.error)
        if isinstance(outcome, _Retry):
            delay = outcome.seconds
        else:
            kind = self.registry.get(job.kind)
            assert kind is not None
            delay = queue.backoff_delay(job.attempts, kind.backoff_base, kind.backoff_cap)
        log.warning(
            "job %s (%s) failed attempt %d of %d; retrying in %.1fs: %s",
            job.id,
            job.kind,
            job.attempts,
            job.max_attempts,
            delay,
            _last_line(outcome.error),
        )
        return await queue.reschedule(self.sessionmaker, job, delay=delay, error=outcome.error, clock=self.clock)


def _failure_text(exc: BaseException) -> str:
    """The traceback, ending with the database's own error when a library re-raised it as
    something else (advanced-alchemy reports ``database is locked`` as an ``IntegrityError``),
    so the log line and ``last_error`` name what really happened."""
    text = "".join(traceback.format_exception(exc))
    real = database_error(exc)
    if real is not None and real is not exc:
        said = f"{type(real.orig).__module__}.{type(real.orig).__qualname__}: {real.orig}"
        text += f"raised as {type(exc).__name__}; the database said: {said}\n"
    return text


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _default_registry() -> JobRegistry:
    return registry


# Running a worker in a process or beside the web app -------------------------------------------


def install_signal_handlers(stop_event: StopEvent) -> Callable[[], None]:
    """Set ``stop_event`` on SIGINT/SIGTERM; a second signal gets the default behaviour back.

    Call from inside the running event loop; returns a function that uninstalls the handlers.
    """
    loop = asyncio.get_running_loop()
    signals = [signal.SIGINT, signal.SIGTERM]
    installed: list[signal.Signals] = []
    previous: dict[signal.Signals, Any] = {}

    def uninstall() -> None:
        for sig in installed:
            with suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)
        installed.clear()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        previous.clear()

    def on_signal(sig: signal.Signals) -> None:
        log.info("received %s: stopping the job worker gracefully (send again to force)", sig.name)
        stop_event.set()
        uninstall()

    for sig in signals:
        try:
            loop.add_signal_handler(sig, on_signal, sig)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # e.g. Windows, or not the main thread
            # Outside the main thread this fails: the caller must then stop the worker itself.
            with suppress(ValueError):
                previous[sig] = signal.signal(
                    sig, lambda signum, _frame: loop.call_soon_threadsafe(on_signal, signal.Signals(signum))
                )
    return uninstall


@asynccontextmanager
async def worker_in_background(
    sessionmaker: SessionMaker,
    context: JobContext | None = None,
    *,
    lock_path: Path | None = None,
    retry_interval: float = 5.0,
    **worker_options: Any,
) -> AsyncIterator[Worker]:
    """Run a :class:`Worker` in a background task for the body of the ``async with``.

    Leaving the block, normally or by an exception, stops it gracefully (running jobs get
    ``shutdown_grace`` seconds, then are released); if the enclosing task is cancelled, running
    jobs are released at once. ``worker_options`` go to :class:`Worker`.

    With ``lock_path`` (the web app's lifespan) the worker runs only in whichever process of this
    machine holds that file's exclusive ``flock``: ``rose-ash run -W N`` starts N web processes
    with the same settings; each enters this, one takes the lock and runs the worker, the others
    try again every ``retry_interval`` seconds, so when the holder dies (even by SIGKILL, since
    the kernel drops a dead process's locks) another one takes over within that time. A lock
    rather than a row or a leader lease in the database: it needs no clean-up after a crash and
    costs no write. Jobs are claimed exactly once by any number of workers anyway
    (app/jobs/queue.py); the lock keeps it to one worker's concurrency and polling per machine,
    not one per web process. The yielded worker then runs only while the lock is held.
    """
    worker = Worker(sessionmaker, context=context, **worker_options)
    stop = anyio.Event()
    error: BaseException | None = None

    async def run() -> None:
        if lock_path is None:
            await worker.run(stop)
            return
        while not stop.is_set():
            fd = try_lock(lock_path)
            if fd is None:
                with anyio.move_on_after(retry_interval):
                    await stop.wait()
                continue
            try:
                log.info("process %d holds %s: it runs this machine's in-process job worker", os.getpid(), lock_path)
                IN_PROCESS_WORKERS.set(1)
                await worker.run(stop)
            finally:
                IN_PROCESS_WORKERS.set(0)
                os.close(fd)
            return

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, name=f"job worker {worker.worker_id}")
        try:
            yield worker
        except anyio.get_cancelled_exc_class():
            tg.cancel_scope.cancel()  # the host is being cancelled: release jobs without grace
            raise
        except BaseException as exc:
            error = exc  # re-raised below as itself, not wrapped in an ExceptionGroup
        finally:
            stop.set()
    if error is not None:
        raise error


def try_lock(path: Path) -> int | None:
    """An exclusive ``flock`` on ``path``: the open descriptor that holds it, or ``None`` if another
    process holds it. Closing the descriptor (or the process ending, however) releases it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())  # who holds it, for an operator reading the file
    return fd


async def run_worker_forever(
    settings: Any,
    *,
    services: Mapping[str, Any] | None = None,
    **worker_options: Any,
) -> None:
    """Run a worker on ``settings.database_url`` until SIGINT/SIGTERM (``rose-ash worker``).

    Import the modules that register job handlers and map the tables before calling this
    (building the app does both: ``rose-ash worker``). ``worker_options`` go to :class:`Worker`
    (e.g. ``concurrency``, ``registry``).
    """
    from app.db import make_engine, make_sessionmaker

    engine = make_engine(settings.database_url)
    try:
        sessionmaker = make_sessionmaker(engine, settings)
        context = JobContext(sessionmaker=sessionmaker, settings=settings, services=dict(services or {}))
        stop = anyio.Event()
        uninstall = install_signal_handlers(stop)
        try:
            await Worker(sessionmaker, context=context, **worker_options).run(stop)
        finally:
            uninstall()
    finally:
        await engine.dispose()
