"""The durable job queue, on SQLite and PostgreSQL, against the real database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import anyio
import msgspec
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.db import make_engine
from app.jobs import (
    DEAD,
    DONE,
    QUEUED,
    RUNNING,
    Job,
    JobContext,
    JobRegistry,
    PermanentFailure,
    RetryLater,
    Snooze,
    Worker,
    backoff_delay,
    enqueue,
    job_handler,
    registry,
    worker_in_background,
)
from app.jobs import queue as job_queue

pytestmark = pytest.mark.anyio

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PROC = HERE / "jobs_worker_proc.py"

SessionMaker = async_sessionmaker[AsyncSession]


class Greeting(msgspec.Struct):
    name: str
    when: datetime
    ref: UUID
    tags: list[str] = []


class Label(msgspec.Struct):
    label: str


class Other(msgspec.Struct):
    n: int


# The decorator form on the application's registry, payload type taken from the annotation.
decorated_calls: list[tuple[UUID | None, Greeting]] = []


@job_handler("tests.jobs.decorated", backoff_base=1.0, backoff_cap=5.0)
async def decorated(ctx: JobContext, payload: Greeting) -> None:
    decorated_calls.append((ctx.job_id, payload))


@pytest.fixture
def sm(engine: AsyncEngine) -> SessionMaker:
    return async_sessionmaker(engine, expire_on_commit=False)


@pytest.fixture
def reg() -> JobRegistry:
    return JobRegistry()


def make_worker(sm: SessionMaker, reg: JobRegistry, **kw: object) -> Worker:
    options: dict[str, object] = {"poll_interval": 0.05, "lease_seconds": 5.0}
    options.update(kw)
    return Worker(sm, registry=reg, **options)  # type: ignore[arg-type]


async def add(
    sm: SessionMaker, kind: str, payload: msgspec.Struct, reg: JobRegistry | None = None, **kw: object
) -> Job:
    async with sm() as session, session.begin():
        return await enqueue(session, kind, payload, jobs=reg, **kw)  # type: ignore[arg-type]


async def add_row(sm: SessionMaker, kind: str, payload: msgspec.Struct) -> Job:
    """Write a job row as another process could have (a kind this one never registered, or a
    payload of the wrong shape): ``enqueue`` itself refuses both at the call site."""
    async with sm() as session, session.begin():
        job = Job(kind=kind, payload=msgspec.to_builtins(payload), state=QUEUED, attempts=0, max_attempts=10,
                  next_run_at=datetime.now(UTC))
        session.add(job)
        await session.flush()
        return job


async def noop_label(ctx: JobContext, payload: Label) -> None:
    return None


async def load(sm: SessionMaker, job_id: UUID) -> Job:
    async with sm() as session:
        job = await session.get(Job, job_id)
        assert job is not None
        return job


async def make_due(sm: SessionMaker, job_id: UUID) -> None:
    """Move a rescheduled job's next_run_at into the past instead of sleeping through backoff."""
    async with sm() as session, session.begin():
        await session.execute(
            update(Job).where(Job.id == job_id).values(next_run_at=datetime.now(UTC) - timedelta(seconds=1))
        )


async def wait_for(check: Callable[[], Awaitable[bool]], seconds: float = 30.0) -> None:
    """Poll ``check`` (a database read) until it is true; fail after ``seconds``."""
    with anyio.fail_after(seconds):
        while not await check():  # noqa: ASYNC110  (the condition lives in the database)
            await anyio.sleep(0.05)


async def count_jobs(sm: SessionMaker) -> int:
    async with sm() as session:
        return int(await session.scalar(select(func.count()).select_from(Job)) or 0)


# 1. enqueue + run_once ------------------------------------------------------------------------


async def test_enqueue_and_run_once_decodes_typed_payload(sm: SessionMaker, reg: JobRegistry) -> None:
    seen: list[tuple[JobContext, Greeting]] = []

    async def greet(ctx: JobContext, payload: Greeting) -> None:
        seen.append((ctx, payload))

    reg.register("greet", Greeting, greet)
    payload = Greeting(name="ada", when=datetime(2024, 5, 1, 12, 30, tzinfo=UTC), ref=uuid4(), tags=["x"])
    job = await add(sm, "greet", payload, reg)
    assert job.state == QUEUED and job.attempts == 0 and job.max_attempts == 10
    assert job.next_run_at.tzinfo is not None

    worker = make_worker(sm, reg, settings={"name": "settings"})
    assert await worker.run_once() == 1
    assert len(seen) == 1
    ctx, got = seen[0]
    assert got == payload and isinstance(got, Greeting) and isinstance(got.ref, UUID)
    assert ctx.job_id == job.id and ctx.kind == "greet" and ctx.attempt == 1
    assert ctx.settings == {"name": "settings"} and ctx.sessionmaker is sm
    assert ctx.worker_id == worker.worker_id

    done = await load(sm, job.id)
    assert done.state == DONE and done.attempts == 1 and done.last_error is None
    assert done.locked_until is None and done.locked_by == worker.worker_id
    assert await worker.run_once() == 0


async def test_enqueue_shares_the_callers_transaction(sm: SessionMaker, reg: JobRegistry) -> None:
    async def noop(ctx: JobContext, payload: Label) -> None:
        return None

    reg.register("noop", Label, noop)
    async with sm() as session:
        job = await enqueue(session, "noop", Label(label="a"), jobs=reg)
        assert job.id is not None  # flushed: the row exists inside the transaction
        await session.rollback()
    assert await count_jobs(sm) == 0
    with pytest.raises(TypeError):
        async with sm() as session:
            await enqueue(session, "noop", Other(n=1), jobs=reg)


async def test_decorator_registers_on_the_app_registry(sm: SessionMaker) -> None:
    entry = registry.get("tests.jobs.decorated")
    assert entry is not None and entry.payload_type is Greeting and entry.backoff_cap == 5.0
    payload = Greeting(name="bo", when=datetime.now(UTC), ref=uuid4())
    job = await add(sm, "tests.jobs.decorated", payload)
    decorated_calls.clear()
    assert await Worker(sm, poll_interval=0.05).run_once() == 1
    assert decorated_calls == [(job.id, payload)]


# 2. unique_key --------------------------------------------------------------------------------


async def test_unique_key_deduplicates_while_queued_or_running(sm: SessionMaker, reg: JobRegistry) -> None:
    gate = anyio.Event()
    started = anyio.Event()

    async def hold(ctx: JobContext, payload: Label) -> None:
        started.set()
        await gate.wait()

    reg.register("hold", Label, hold)
    async with sm() as session, session.begin():
        first = await enqueue(session, "hold", Label(label="1"), unique_key="k", jobs=reg)
        again = await enqueue(session, "hold", Label(label="2"), unique_key="k", jobs=reg)
        assert again.id == first.id  # same transaction
    queued_dup = await add(sm, "hold", Label(label="3"), reg, unique_key="k")
    assert queued_dup.id == first.id and queued_dup.payload == {"label": "1"}
    other = await add(sm, "hold", Label(label="4"), reg, unique_key="other")
    assert other.id != first.id

    worker = make_worker(sm, reg)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run_once, 1)
        with anyio.fail_after(10):
            await started.wait()
        assert (await load(sm, first.id)).state == RUNNING
        running_dup = await add(sm, "hold", Label(label="5"), reg, unique_key="k")
        assert running_dup.id == first.id
        gate.set()

    finished = await load(sm, first.id)
    assert finished.state == DONE and finished.unique_key is None
    reused = await add(sm, "hold", Label(label="6"), reg, unique_key="k")
    assert reused.id != first.id and reused.state == QUEUED
    assert await count_jobs(sm) == 3


async def test_concurrent_enqueues_of_one_unique_key_make_one_job(
    sm: SessionMaker, reg: JobRegistry, engine: AsyncEngine
) -> None:
    from tests.helpers.inflight import in_flight

    results: list[UUID] = []
    reg.register("k", Label, noop_label)

    async with sm() as first:
        job = await enqueue(first, "k", Label(label="a"), unique_key="same", jobs=reg)

        async def second() -> None:
            async with sm() as session, session.begin():
                results.append((await enqueue(session, "k", Label(label="b"), unique_key="same", jobs=reg)).id)

        with in_flight(engine) as statements:
            async with anyio.create_task_group() as tg:
                tg.start_soon(second)  # waits on the first transaction's uncommitted row
                # The first session is idle, so whatever the driver is executing is the second's,
                # stuck behind the first's lock (PostgreSQL: confirmed in pg_locks).
                await statements.wait_blocked("")
                assert results == []
                await first.commit()
    assert results == [job.id]
    assert await count_jobs(sm) == 1


# 3. failures, backoff, dead -------------------------------------------------------------------


async def test_failing_job_backs_off_then_dies_with_its_error(sm: SessionMaker, reg: JobRegistry) -> None:
    calls = 0

    async def flaky(ctx: JobContext, payload: Label) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError(f"boom {calls}")

    reg.register("flaky", Label, flaky, backoff_base=10.0, backoff_cap=15.0)
    job = await add(sm, "flaky", Label(label="x"), reg, max_attempts=3, unique_key="flaky")
    worker = make_worker(sm, reg)

    for attempt in (1, 2):
        before = datetime.now(UTC)
        assert await worker.run_once() == 1
        after = datetime.now(UTC)
        row = await load(sm, job.id)
        assert row.state == QUEUED and row.attempts == attempt
        assert row.last_error is not None and f"RuntimeError: boom {attempt}" in row.last_error
        assert "Traceback" in row.last_error
        assert row.locked_until is None and row.locked_by is None and row.unique_key == "flaky"
        ceiling = min(15.0, 10.0 * 2 ** (attempt - 1))
        assert before <= row.next_run_at <= after + timedelta(seconds=ceiling)
        await make_due(sm, job.id)

    assert await worker.run_once() == 1
    dead = await load(sm, job.id)
    assert dead.state == DEAD and dead.attempts == 3 and calls == 3
    assert dead.last_error is not None and "RuntimeError: boom 3" in dead.last_error
    assert dead.unique_key is None  # the key is free again
    await make_due(sm, job.id)
    assert await worker.run_once() == 0


async def test_backoff_is_exponential_capped_and_jittered(
    sm: SessionMaker, reg: JobRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    for attempt in range(1, 30):
        assert 0.0 <= backoff_delay(attempt, 2.0, 3600.0) <= min(3600.0, 2.0 * 2 ** (attempt - 1))
    # Take the top of the jitter range to check the schedule: base 10 * 2**(n-1), capped at 25.
    monkeypatch.setattr(job_queue.random, "uniform", lambda lo, hi: hi)

    async def fail(ctx: JobContext, payload: Label) -> None:
        raise ValueError("no")

    reg.register("fail", Label, fail, backoff_base=10.0, backoff_cap=25.0)
    job = await add(sm, "fail", Label(label="x"), reg)
    worker = make_worker(sm, reg)
    for expected in (10.0, 20.0, 25.0, 25.0):
        before = datetime.now(UTC)
        assert await worker.run_once() == 1
        row = await load(sm, job.id)
        delay = (row.next_run_at - before).total_seconds()
        assert expected - 0.01 <= delay <= expected + 5, (expected, delay)
        await make_due(sm, job.id)


async def test_retry_later_permanent_failure_unknown_kind_and_bad_payload(sm: SessionMaker, reg: JobRegistry) -> None:
    async def later(ctx: JobContext, payload: Label) -> None:
        raise RetryLater(120, "peer said Retry-After: 120")

    async def give_up(ctx: JobContext, payload: Label) -> None:
        raise PermanentFailure("410 Gone")

    async def fine(ctx: JobContext, payload: Other) -> None:
        raise AssertionError("must not run with a bad payload")

    reg.register("later", Label, later)
    reg.register("give-up", Label, give_up)
    reg.register("typed", Other, fine)
    j_later = await add(sm, "later", Label(label="a"), reg)
    j_perm = await add(sm, "give-up", Label(label="b"), reg)
    j_unknown = await add_row(sm, "nobody.handles.this", Label(label="c"))
    j_bad = await add_row(sm, "typed", Label(label="not an int"))

    before = datetime.now(UTC)
    assert await make_worker(sm, reg).run_once() == 4

    row = await load(sm, j_later.id)
    assert row.state == QUEUED and row.attempts == 1
    assert row.last_error is not None and "Retry-After: 120" in row.last_error
    assert before + timedelta(seconds=119) <= row.next_run_at <= datetime.now(UTC) + timedelta(seconds=121)

    row = await load(sm, j_perm.id)
    assert row.state == DEAD and row.attempts == 1
    assert row.last_error is not None and "PermanentFailure: 410 Gone" in row.last_error

    row = await load(sm, j_unknown.id)
    assert row.state == DEAD
    assert row.last_error is not None and "unknown job kind 'nobody.handles.this'" in row.last_error

    row = await load(sm, j_bad.id)
    assert row.state == DEAD
    assert row.last_error is not None and "not a valid Other" in row.last_error


async def test_snooze_waits_without_spending_attempts(sm: SessionMaker, reg: JobRegistry) -> None:
    runs: list[int] = []

    async def wait_for_peer(ctx: JobContext, payload: Label) -> None:
        runs.append(ctx.attempt)
        if len(runs) < 5:
            raise Snooze(300, "peer.example is marked unavailable")
        raise ValueError("the peer answered 500")

    reg.register("snoozy", Label, wait_for_peer)
    job = await add(sm, "snoozy", Label(label="x"), reg, max_attempts=2)
    worker = make_worker(sm, reg)
    for _ in range(4):  # four snoozes: more than max_attempts, yet the job stays queued
        before = datetime.now(UTC)
        assert await worker.run_once() == 1
        row = await load(sm, job.id)
        assert row.state == QUEUED and row.attempts == 0
        assert row.last_error is not None and "peer.example is marked unavailable" in row.last_error
        assert before + timedelta(seconds=299) <= row.next_run_at <= datetime.now(UTC) + timedelta(seconds=301)
        await make_due(sm, job.id)
    # a real failure counts: attempt 1 of 2, retried; the snoozes never used the budget
    assert await worker.run_once() == 1
    row = await load(sm, job.id)
    assert row.state == QUEUED and row.attempts == 1
    assert runs == [1, 1, 1, 1, 1]


async def test_expired_lease_with_no_attempts_left_goes_dead(sm: SessionMaker, reg: JobRegistry) -> None:
    async def never(ctx: JobContext, payload: Label) -> None:
        raise AssertionError("must not run")

    reg.register("exhausted", Label, never)
    job = await add(sm, "exhausted", Label(label="x"), reg, max_attempts=2, unique_key="ex")
    async with sm() as session, session.begin():
        await session.execute(
            update(Job)
            .where(Job.id == job.id)
            .values(
                state=RUNNING,
                attempts=2,
                locked_by="ghost",
                locked_until=datetime.now(UTC) - timedelta(seconds=5),
            )
        )
    assert await make_worker(sm, reg).run_once() == 0
    row = await load(sm, job.id)
    assert row.state == DEAD and row.unique_key is None
    assert row.last_error is not None and "lease expired" in row.last_error and "ghost" in row.last_error


# 4. a worker killed mid-run -------------------------------------------------------------------


def _spawn(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, str(PROC), *args],
        cwd=str(ROOT),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


async def test_job_of_a_killed_worker_is_retried_after_its_lease(
    sm: SessionMaker, reg: JobRegistry, database_url: str
) -> None:
    ran: list[JobContext] = []

    async def complete(ctx: JobContext, payload: Label) -> None:
        ran.append(ctx)

    reg.register("test.crash", Label, complete)
    job = await add(sm, "test.crash", Label(label="survive"), reg)

    proc = _spawn("block", database_url)
    try:

        async def running_in_child() -> bool:
            if proc.poll() is not None:
                out = proc.stdout.read() if proc.stdout else ""
                raise AssertionError(f"worker process exited early ({proc.returncode}):\n{out}")
            row = await load(sm, job.id)
            return row.state == RUNNING and row.locked_by == "doomed"

        await wait_for(running_in_child, seconds=60)
        row = await load(sm, job.id)
        assert row.attempts == 1 and row.locked_until is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()

    # The dead worker's row still says "running"; once its 1s lease runs out a new worker takes it.
    assert (await load(sm, job.id)).state == RUNNING
    rescuer = make_worker(sm, reg, worker_id="rescuer")

    async def rescued() -> bool:
        return await rescuer.run_once() == 1

    await wait_for(rescued, seconds=30)
    row = await load(sm, job.id)
    assert row.state == DONE and row.attempts == 2 and row.locked_by == "rescuer"
    assert len(ran) == 1 and ran[0].attempt == 2


async def test_lease_is_renewed_while_a_long_handler_runs(sm: SessionMaker, reg: JobRegistry) -> None:
    started = anyio.Event()

    async def slow(ctx: JobContext, payload: Label) -> None:
        started.set()
        await anyio.sleep(2.5)

    reg.register("slow", Label, slow)
    job = await add(sm, "slow", Label(label="x"), reg)
    holder = make_worker(sm, reg, worker_id="holder", lease_seconds=1.0)
    thief = make_worker(sm, reg, worker_id="thief", lease_seconds=1.0)
    stolen = 0
    async with anyio.create_task_group() as tg:
        tg.start_soon(holder.run_once)
        await started.wait()
        while holder.running_jobs:  # ~3 lease lengths: only heartbeats keep the job
            stolen += await thief.run_once()
            await anyio.sleep(0.05)
    assert stolen == 0
    row = await load(sm, job.id)
    assert row.state == DONE and row.attempts == 1 and row.locked_by == "holder"


async def test_a_worker_that_lost_its_lease_stops_and_writes_nothing(sm: SessionMaker, reg: JobRegistry) -> None:
    started = anyio.Event()
    cancelled = anyio.Event()

    async def victim(ctx: JobContext, payload: Label) -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    reg.register("victim", Label, victim)
    job = await add(sm, "victim", Label(label="x"), reg)
    worker = make_worker(sm, reg, worker_id="stale", lease_seconds=0.3)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run_once)
            await started.wait()
            # Another worker takes the job over (as after a stall longer than the lease).
            async with sm() as session, session.begin():
                await session.execute(
                    update(Job)
                    .where(Job.id == job.id)
                    .values(locked_by="usurper", attempts=Job.attempts + 1, locked_until=datetime.now(UTC))
                )
            await cancelled.wait()  # the next heartbeat notices and cancels the handler
    row = await load(sm, job.id)
    assert row.state == RUNNING and row.locked_by == "usurper" and row.attempts == 2


# 5. two workers never run one job at once -----------------------------------------------------


async def test_two_workers_run_each_job_exactly_once(sm: SessionMaker, reg: JobRegistry, database_url: str) -> None:
    active: set[UUID] = set()
    overlaps: list[UUID] = []
    runs: Counter[UUID] = Counter()
    by_worker: Counter[str] = Counter()
    all_done = anyio.Event()
    both_busy = anyio.Event()
    total = 50

    async def record(ctx: JobContext, payload: Other) -> None:
        assert ctx.job_id is not None
        if ctx.job_id in active:
            overlaps.append(ctx.job_id)
        active.add(ctx.job_id)
        runs[ctx.job_id] += 1
        by_worker[ctx.worker_id] += 1
        if len(by_worker) == 2:
            both_busy.set()
        # Hold every run until both workers have claimed something, so they really contend.
        with anyio.fail_after(60):
            await both_busy.wait()
        await anyio.sleep(0.01)
        active.discard(ctx.job_id)
        if sum(runs.values()) >= total:
            all_done.set()

    reg.register("count", Other, record)
    async with sm() as session, session.begin():
        ids = [(await enqueue(session, "count", Other(n=i), jobs=reg)).id for i in range(total)]

    engines = [make_engine(database_url), make_engine(database_url)]
    try:
        workers = [
            Worker(
                async_sessionmaker(e, expire_on_commit=False),
                registry=reg,
                worker_id=f"w{i}",
                concurrency=4,
                poll_interval=0.02,
                lease_seconds=10.0,
            )
            for i, e in enumerate(engines)
        ]
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            for w in workers:
                tg.start_soon(w.run, stop)
            with anyio.fail_after(120):
                await all_done.wait()
            stop.set()
    finally:
        for e in engines:
            await e.dispose()

    assert overlaps == []
    assert set(runs) == set(ids) and all(n == 1 for n in runs.values())
    async with sm() as session:
        rows = (await session.execute(select(Job.state, Job.attempts).where(Job.id.in_(ids)))).all()
    assert len(rows) == total and all(r.state == DONE and r.attempts == 1 for r in rows)
    assert sum(by_worker.values()) == total and set(by_worker) == {"w0", "w1"}


# 6. graceful shutdown -------------------------------------------------------------------------


async def test_shutdown_releases_a_job_that_outlives_the_grace(sm: SessionMaker, reg: JobRegistry) -> None:
    started = anyio.Event()
    calls = 0

    async def stuck_once(ctx: JobContext, payload: Label) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            started.set()
            await anyio.sleep_forever()

    reg.register("stuck", Label, stuck_once)
    job = await add(sm, "stuck", Label(label="x"), reg)
    worker = make_worker(sm, reg, shutdown_grace=0.2, lease_seconds=30.0)
    stop = anyio.Event()
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run, stop)
            await started.wait()
            assert (await load(sm, job.id)).state == RUNNING
            stop.set()
    row = await load(sm, job.id)
    assert row.state == QUEUED and row.locked_until is None and row.locked_by is None
    assert row.attempts == 0  # an interrupted run is not a failed attempt
    assert row.next_run_at <= datetime.now(UTC)
    # Another worker picks it up at once (no lease to wait out).
    assert await make_worker(sm, reg).run_once() == 1
    row = await load(sm, job.id)
    assert row.state == DONE and row.attempts == 1


async def test_shutdown_lets_running_jobs_finish_and_claims_nothing_new(
    sm: SessionMaker, reg: JobRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    draining = anyio.Event()
    started = anyio.Event()
    gate = anyio.Event()
    finished: list[str] = []

    async def gated(ctx: JobContext, payload: Label) -> None:
        started.set()
        await gate.wait()
        finished.append(payload.label)

    reg.register("gated", Label, gated)
    first = await add(sm, "gated", Label(label="first"), reg)
    # Two slots, so a free one is there to claim "second" with if stopping did not stop claims;
    # a long poll interval, so the only thing that wakes the loop after "first" is the stop itself
    # (no poll can race the test to claim "second" before stop is set).
    worker = make_worker(sm, reg, concurrency=2, shutdown_grace=30.0, poll_interval=60.0)
    claims_after_stop: list[int] = []
    real_claim = job_queue.claim_jobs
    stop = anyio.Event()

    async def watched_claim(*args: Any, **kwargs: Any) -> Any:
        claimed = await real_claim(*args, **kwargs)
        if stop.is_set():
            claims_after_stop.append(len(claimed))
        return claimed

    monkeypatch.setattr(job_queue, "claim_jobs", watched_claim)
    real_drain = worker._drain

    async def drain() -> None:  # the poll loop has returned: nothing more can be claimed
        draining.set()
        await real_drain()

    monkeypatch.setattr(worker, "_drain", drain)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run, stop)
            await started.wait()
            second = await add(sm, "gated", Label(label="second"), reg)
            stop.set()
            # No sleep: wait for the worker to start draining (its poll loop has ended), so nothing
            # it could still claim is left to chance; then let the running job finish.
            await draining.wait()
            gate.set()
    assert claims_after_stop == []
    assert finished == ["first"]
    assert (await load(sm, first.id)).state == DONE
    row = await load(sm, second.id)
    assert row.state == QUEUED and row.attempts == 0


async def test_worker_in_background_runs_jobs_until_the_block_ends(sm: SessionMaker, reg: JobRegistry) -> None:
    seen: list[object] = []

    async def note(ctx: JobContext, payload: Label) -> None:
        async with ctx.sessionmaker() as session:  # handlers do their own DB work
            seen.append((ctx.settings, payload.label, await session.scalar(select(func.count()).select_from(Job))))

    reg.register("note", Label, note)
    context = JobContext(sessionmaker=sm, settings="the-settings")
    async with worker_in_background(sm, context, registry=reg, poll_interval=0.05) as worker:
        job = await add(sm, "note", Label(label="bg"), reg)

        async def done() -> bool:
            return (await load(sm, job.id)).state == DONE

        await wait_for(done, seconds=30)
        assert isinstance(worker, Worker)
    assert seen == [("the-settings", "bg", 1)]


async def test_worker_in_background_with_a_lock_runs_in_one_holder_at_a_time(
    sm: SessionMaker, reg: JobRegistry, tmp_path: Path
) -> None:
    """``lock_path`` (the web app's in-process worker, once per machine): while one holder has the
    flock, a second one waits (flock conflicts between two open descriptions even in one
    process), so every job is run by the holder; when it leaves, the other takes over."""
    ran: list[tuple[str, str | None]] = []

    async def who(ctx: JobContext, payload: Label) -> None:
        async with ctx.sessionmaker() as session:  # the running job's row names its worker
            ran.append((payload.label, await session.scalar(
                select(Job.locked_by).where(Job.kind == "who", Job.state == RUNNING))))

    reg.register("who", Label, who)
    lock = tmp_path / "run" / "job-worker.lock"
    options: dict[str, Any] = {"registry": reg, "poll_interval": 0.05, "retry_interval": 0.05, "lock_path": lock}

    async def run_all(*labels: str) -> None:
        for label in labels:
            job = await add(sm, "who", Label(label=label), reg)

            async def done(job_id: UUID = job.id) -> bool:
                return (await load(sm, job_id)).state == DONE

            await wait_for(done, seconds=30)

    two_in, leave_two = anyio.Event(), anyio.Event()

    async def second_process() -> None:
        async with worker_in_background(sm, worker_id="two", **options):
            two_in.set()
            await leave_two.wait()

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            async with worker_in_background(sm, worker_id="one", **options):
                tg.start_soon(second_process)
                await two_in.wait()
                await run_all("a", "b", "c")
                assert int(lock.read_text()) == os.getpid()  # who holds it, for an operator
            await run_all("d")  # "one" left: "two" took the lock within its retry interval
            leave_two.set()
    assert ran == [("a", "one"), ("b", "one"), ("c", "one"), ("d", "two")]


async def test_worker_in_background_releases_jobs_when_the_app_fails_or_is_cancelled(
    sm: SessionMaker, reg: JobRegistry
) -> None:
    started = anyio.Event()

    async def forever(ctx: JobContext, payload: Label) -> None:
        started.set()
        await anyio.sleep_forever()

    reg.register("forever", Label, forever)
    job = await add(sm, "forever", Label(label="x"), reg)
    # An exception in the body stops the worker gracefully and propagates unwrapped.
    with pytest.raises(RuntimeError, match="app crashed"), anyio.fail_after(30):
        async with worker_in_background(sm, registry=reg, poll_interval=0.05, shutdown_grace=0.2):
            await started.wait()
            raise RuntimeError("app crashed")
    row = await load(sm, job.id)
    assert row.state == QUEUED and row.locked_by is None and row.attempts == 0

    # Cancelling the enclosing task releases at once, whatever the grace.
    started = anyio.Event()
    with anyio.fail_after(30):
        with anyio.CancelScope() as scope:
            async with worker_in_background(sm, registry=reg, poll_interval=0.05, shutdown_grace=600):
                await started.wait()
                scope.cancel()
                await anyio.sleep_forever()
    assert scope.cancelled_caught
    row = await load(sm, job.id)
    assert row.state == QUEUED and row.locked_by is None and row.attempts == 0


async def test_run_worker_forever_stops_gracefully_on_sigterm(
    sm: SessionMaker, reg: JobRegistry, database_url: str, tmp_path: Path
) -> None:
    reg.register("test.slow", Label, noop_label)  # the worker process registers the real one
    job = await add(sm, "test.slow", Label(label="term"), reg)
    proc = _spawn("forever", database_url, str(tmp_path / "data"))
    try:

        async def running() -> bool:
            if proc.poll() is not None:
                out = proc.stdout.read() if proc.stdout else ""
                raise AssertionError(f"worker process exited early ({proc.returncode}):\n{out}")
            return (await load(sm, job.id)).state == RUNNING

        await wait_for(running, seconds=60)
        proc.send_signal(signal.SIGTERM)
        await anyio.to_thread.run_sync(proc.wait, 60)
        out = proc.stdout.read() if proc.stdout else ""
        assert proc.returncode == 0, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
    assert "finished" in out and "exited cleanly" in out
    row = await load(sm, job.id)
    assert row.state == DONE and row.attempts == 1 and row.locked_by == "forever"
