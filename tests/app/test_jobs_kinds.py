"""Typed job kinds and recurring jobs (``every``), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.db import make_engine
from app.jobs import (
    DEAD,
    DONE,
    QUEUED,
    Job,
    JobContext,
    JobKind,
    JobRegistry,
    PermanentFailure,
    UnknownJobKind,
    Worker,
    cancel_every,
    enqueue,
    every,
)

pytestmark = pytest.mark.anyio

SessionMaker = async_sessionmaker[AsyncSession]
T0 = datetime(2030, 1, 1, tzinfo=UTC)


class Tick(msgspec.Struct):
    name: str


class Other(msgspec.Struct):
    n: int


class Clock:
    """The queue's notion of now, moved by the test (no sleeping)."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture
def sm(engine: AsyncEngine) -> SessionMaker:
    return async_sessionmaker(engine, expire_on_commit=False)


async def rows(sm: SessionMaker, kind: str) -> list[Job]:
    async with sm() as session:
        return list((await session.execute(select(Job).where(Job.kind == kind).order_by(Job.created_at))).scalars())


# Typed kinds ------------------------------------------------------------------------------------


async def test_the_decorator_returns_a_kind_that_enqueues_typed_payloads(sm: SessionMaker) -> None:
    reg = JobRegistry()
    seen: list[Tick] = []

    @reg.handler("tests.kinds.tick")
    async def tick(ctx: JobContext, payload: Tick) -> None:
        seen.append(payload)

    assert isinstance(tick, JobKind) and tick.name == "tests.kinds.tick" and tick.payload_type is Tick
    async with sm() as session, session.begin():
        job = await tick.enqueue(session, Tick(name="a"), unique_key="tick:a")
        assert (await tick.enqueue(session, Tick(name="b"), unique_key="tick:a")).id == job.id
        with pytest.raises(TypeError, match="takes Tick, not Other"):
            await tick.enqueue(session, Other(n=1))  # type: ignore[arg-type]
    assert await Worker(sm, registry=reg).run_once() == 1
    assert seen == [Tick(name="a")]
    await tick(JobContext(sessionmaker=sm), Tick(name="direct"))  # still callable as the handler
    assert seen[-1] == Tick(name="direct")


async def test_enqueue_refuses_a_kind_nobody_registered_at_the_call_site(sm: SessionMaker) -> None:
    async with sm() as session:
        with pytest.raises(UnknownJobKind, match=r"'tests\.kinds\.nobody'"):
            await enqueue(session, "tests.kinds.nobody", Tick(name="x"))
        with pytest.raises(UnknownJobKind, match=r"'tests\.kinds\.nobody'"):
            await every(session, "tests.kinds.nobody", timedelta(minutes=1), "k", Tick(name="x"))
    assert await rows(sm, "tests.kinds.nobody") == []


def test_a_second_handler_under_a_taken_name_raises_but_a_reload_does_not() -> None:
    reg = JobRegistry()

    async def first(ctx: JobContext, payload: Tick) -> None: ...

    async def second(ctx: JobContext, payload: Tick) -> None: ...

    reg.register("k", Tick, first)
    with pytest.raises(ValueError, match="'k' is already registered"):
        reg.register("k", Tick, second)
    reg.register("k", Tick, second, replace=True)
    assert reg.require("k").handler is second


# Recurring jobs ---------------------------------------------------------------------------------


def recurring_registry(runs: list[tuple[str, datetime]], clock: Clock) -> tuple[JobRegistry, JobKind[Tick]]:
    reg = JobRegistry()

    @reg.handler("tests.kinds.every")
    async def recur(ctx: JobContext, payload: Tick) -> None:
        runs.append((ctx.worker_id, clock()))

    return reg, recur


async def test_every_runs_once_per_interval_across_two_workers(database_url: str, engine: AsyncEngine) -> None:
    """Two workers, each with its own engine and sessionmaker on the same database, both
    ensuring the schedule at start: one row, one run per interval."""
    clock = Clock()
    runs: list[tuple[str, datetime]] = []
    reg, recur = recurring_registry(runs, clock)
    reg.every(recur, timedelta(minutes=10), "tests.every", Tick(name="t"))
    other_engine = make_engine(database_url)
    try:
        workers = [
            Worker(async_sessionmaker(e, expire_on_commit=False), registry=reg, clock=clock, worker_id=f"w{i}")
            for i, e in enumerate((engine, other_engine))
        ]
        for w in workers:  # both start: the schedule is written once
            await w.ensure_schedules()
            await w.ensure_schedules()
        sm = workers[0].sessionmaker
        assert [j.state for j in await rows(sm, "tests.kinds.every")] == [QUEUED]

        for interval in range(4):
            for w in workers if interval % 2 == 0 else reversed(workers):
                await w.run_once()
            assert len(runs) == interval + 1
            for w in workers:  # nothing more is due until the interval has passed
                assert await w.run_once() == 0
            clock.advance(timedelta(minutes=9, seconds=59))
            for w in workers:
                assert await w.run_once() == 0
            clock.advance(timedelta(seconds=1))
        assert {worker for worker, _ in runs} == {"w0", "w1"}  # both took turns, never both
        assert [at for _, at in runs][1:] == [T0 + timedelta(minutes=10) * i for i in range(1, 4)]
        states = [j.state for j in await rows(sm, "tests.kinds.every")]
        assert states == [DONE, DONE, DONE, DONE, QUEUED]
        live = [j for j in await rows(sm, "tests.kinds.every") if j.state == QUEUED]
        assert live[0].unique_key == "tests.every" and live[0].repeat_seconds == 600
    finally:
        await other_engine.dispose()


async def test_every_is_idempotent_reconfigures_and_cancels(sm: SessionMaker) -> None:
    clock = Clock()
    runs: list[tuple[str, datetime]] = []
    reg, recur = recurring_registry(runs, clock)
    async with sm() as session, session.begin():
        first = await every(session, recur, timedelta(hours=1), "sched", Tick(name="a"),
                            start_at=T0 + timedelta(hours=1))
        again = await every(session, recur, timedelta(minutes=5), "sched", Tick(name="b"), start_at=T0)
    assert again.id == first.id and again.repeat_seconds == 300 and again.next_run_at == T0
    assert again.payload == {"name": "b"}
    worker = Worker(sm, registry=reg, clock=clock)
    assert await worker.run_once() == 1
    (_, queued) = await rows(sm, "tests.kinds.every")
    assert queued.state == QUEUED and queued.next_run_at == T0 + timedelta(minutes=5)
    async with sm() as session, session.begin():
        await cancel_every(session, "sched")
    assert [j.state for j in await rows(sm, "tests.kinds.every")] == [DONE]


async def test_a_recurring_run_that_goes_dead_ends_the_schedule_until_ensured(sm: SessionMaker) -> None:
    clock = Clock()
    reg = JobRegistry()

    @reg.handler("tests.kinds.broken")
    async def broken(ctx: JobContext, payload: Tick) -> None:
        raise PermanentFailure("nope")

    reg.every(broken, timedelta(minutes=1), "broken", Tick(name="x"))
    worker = Worker(sm, registry=reg, clock=clock)
    await worker.ensure_schedules()
    assert await worker.run_once() == 1
    assert [j.state for j in await rows(sm, "tests.kinds.broken")] == [DEAD]
    await worker.ensure_schedules()  # a restart re-arms it
    assert [j.state for j in await rows(sm, "tests.kinds.broken")] == [DEAD, QUEUED]
