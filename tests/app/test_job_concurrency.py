"""The job queue under concurrent writers: several processes on one database, failed outcome
writes, and SQLite's write lock (BEGIN IMMEDIATE, busy timeout, errors reported as themselves)."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import anyio
import msgspec
import pytest
from advanced_alchemy.exceptions import IntegrityError as RepositoryIntegrityError
from sqlalchemy import Column, Integer, MetaData, Table, func, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from app.db import database_error, make_engine
from app.jobs import DONE, QUEUED, RUNNING, Job, JobContext, JobRegistry, Worker, enqueue
from domains.account.schemas import SignupInput
from domains.account.services import AccountService
from domains.blog.schemas import PublishScheduled
from domains.blog.services import PUBLISH_SCHEDULED
from tests.helpers.worker import read_log, start_worker, wait_for_line

pytestmark = pytest.mark.anyio

SessionMaker = async_sessionmaker[AsyncSession]

# A table the "web requests" below update read-modify-write, as a request handler would.
web_metadata = MetaData()
counter = Table("test_web_counter", web_metadata, Column("id", Integer, primary_key=True), Column("n", Integer))


class Label(msgspec.Struct):
    label: str


def sqlite_path(database_url: str) -> str:
    return database_url.split(":///", 1)[1]


@asynccontextmanager
async def write_lock_held(database_url: str, engine: AsyncEngine, job_id: object) -> AsyncIterator[None]:
    """Another connection holds what a write of the job row needs: SQLite's write lock, or on
    PostgreSQL the row's lock."""
    if database_url.startswith("sqlite"):
        conn = sqlite3.connect(sqlite_path(database_url), timeout=30, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield
        finally:
            conn.rollback()
            conn.close()
        return
    async with engine.connect() as pg, pg.begin() as tx:
        await pg.execute(select(Job.id).where(Job.id == job_id).with_for_update())
        yield
        await tx.rollback()


def impatient_engine(database_url: str) -> AsyncEngine:
    """An engine whose writes give up on a held lock after 0.2 s instead of 20 s."""
    if database_url.startswith("sqlite"):
        return make_engine(database_url, busy_timeout=0.2)
    return create_async_engine(database_url, connect_args={"server_settings": {"lock_timeout": "200"}})


async def test_a_job_whose_outcome_write_fails_is_retried_after_its_lease(
    engine: AsyncEngine, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    reg = JobRegistry()
    started, go, finished = anyio.Event(), anyio.Event(), anyio.Event()
    runs: list[tuple[str, int]] = []

    async def flaky(ctx: JobContext, payload: Label) -> None:
        runs.append((ctx.worker_id or "", ctx.attempt))
        if ctx.attempt == 1:
            started.set()
            await go.wait()
            raise RuntimeError("first attempt fails")

    reg.register("flaky", Label, flaky)
    sm = async_sessionmaker(engine, expire_on_commit=False)
    async with sm() as session, session.begin():
        job = await enqueue(session, "flaky", Label(label="x"), jobs=reg)

    weak = impatient_engine(database_url)
    try:
        first = Worker(async_sessionmaker(weak, expire_on_commit=False), registry=reg, worker_id="first",
                       lease_seconds=1.0, poll_interval=0.05)
        caplog.set_level(logging.INFO, logger="app.jobs")

        async def run_first() -> None:
            await first.run_once(limit=1)  # returns once it has tried to record the outcome
            finished.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(run_first)
            with anyio.fail_after(60):
                await started.wait()
                async with write_lock_held(database_url, engine, job.id):
                    go.set()  # the handler fails now, and its reschedule write finds the lock held
                    await finished.wait()
    finally:
        await weak.dispose()

    async with sm() as session:
        row = await session.get(Job, job.id)
    assert row is not None and row.state == RUNNING and row.locked_by == "first" and row.attempts == 1
    failure = next(r for r in caplog.records if "could not record the outcome" in r.getMessage())
    assert failure.exc_info is not None and failure.exc_info[1] is not None
    assert database_error(failure.exc_info[1]) is not None
    if database_url.startswith("sqlite"):
        assert isinstance(failure.exc_info[1], OperationalError) and "database is locked" in str(failure.exc_info[1])

    # Its lease (1 s) runs out; another worker polling every 0.05 s takes it and finishes it.
    second = Worker(sm, registry=reg, worker_id="second", lease_seconds=5.0, poll_interval=0.05)
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(second.run, stop)
        with anyio.fail_after(60):
            while True:
                async with sm() as session:
                    row = await session.get(Job, job.id)
                assert row is not None
                if row.state == DONE:
                    break
                await anyio.sleep(0.05)
        stop.set()
    assert runs == [("first", 1), ("second", 2)]
    assert row is not None and row.attempts == 2 and row.locked_by == "second"


async def test_a_locked_database_is_reported_as_itself_not_as_an_integrity_error(
    engine: AsyncEngine, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """advanced-alchemy re-raises ``database is locked`` as its IntegrityError; the worker's log
    and the job's last_error name the real error."""
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's write lock")
    reg = JobRegistry()
    raised: list[BaseException] = []

    async def sign_up(ctx: JobContext, payload: Label) -> None:
        # Another process holds the write lock for as long as this signup tries to write.
        blocker = sqlite3.connect(sqlite_path(database_url), timeout=30, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            async with ctx.sessionmaker() as session, session.begin():
                await AccountService(session).signup(
                    SignupInput(username=payload.label, email=f"{payload.label}@example.org",
                                password="correct horse battery staple")
                )
        except Exception as exc:
            raised.append(exc)
            raise
        finally:
            blocker.rollback()
            blocker.close()

    reg.register("signup", Label, sign_up)
    sm = async_sessionmaker(engine, expire_on_commit=False)
    async with sm() as session, session.begin():
        job = await enqueue(session, "signup", Label(label="locked"), jobs=reg, max_attempts=3)
    caplog.set_level(logging.INFO, logger="app.jobs")
    weak = impatient_engine(database_url)
    try:
        worker = Worker(async_sessionmaker(weak, expire_on_commit=False), registry=reg, worker_id="w",
                        lease_seconds=30.0, poll_interval=0.05)
        assert await worker.run_once() == 1
    finally:
        await weak.dispose()

    assert len(raised) == 1 and isinstance(raised[0], RepositoryIntegrityError)  # what the library raises
    real = database_error(raised[0])
    assert real is not None and isinstance(real.orig, sqlite3.OperationalError)
    assert str(real.orig) == "database is locked"
    line = next(r.getMessage() for r in caplog.records if "failed attempt 1 of 3" in r.getMessage())
    assert line.endswith("the database said: sqlite3.OperationalError: database is locked"), line
    row = await _row(sm, job.id)
    assert row.state == QUEUED and row.last_error is not None
    assert row.last_error.rstrip().endswith("sqlite3.OperationalError: database is locked")


async def _row(sm: SessionMaker, job_id: object) -> Job:
    async with sm() as session:
        row = await session.get(Job, job_id)
        assert row is not None
        return row


async def test_a_savepoint_waits_for_the_write_lock_instead_of_losing_its_snapshot(
    engine: AsyncEngine, database_url: str
) -> None:
    """Read, then write, inside a SAVEPOINT while another connection writes: SQLite would fail
    a deferred transaction at once (SQLITE_BUSY, or SQLITE_BUSY_SNAPSHOT once the other commits);
    begun immediate, it waits for the lock and sees the other's committed write."""
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's transaction modes")
    async with engine.begin() as conn:
        await conn.run_sync(web_metadata.create_all)
        await conn.execute(counter.insert().values(id=1, n=0))
    sm = async_sessionmaker(engine, expire_on_commit=False)
    holding = anyio.Event()
    release = anyio.Event()

    async def holder() -> None:
        async with sm() as session, session.begin():
            await session.execute(update(counter).values(n=counter.c.n + 1))
            holding.set()
            await release.wait()

    async def read_then_write() -> None:
        await holding.wait()
        async with sm() as session, session.begin(), session.begin_nested():
            n = await session.scalar(select(counter.c.n).with_for_update())
            await session.execute(update(counter).values(n=(n or 0) + 10))

    from tests.helpers.inflight import in_flight

    with in_flight(engine) as statements:
        async with anyio.create_task_group() as tg:
            tg.start_soon(holder)
            tg.start_soon(read_then_write)
            await holding.wait()
            # The holder is idle inside its transaction: the one statement in the driver is the
            # savepoint's locking read, waiting for the write lock (it must wait, not fail).
            await statements.wait_blocked("select")
            release.set()
    async with sm() as session:
        assert await session.scalar(select(counter.c.n)) == 11  # neither write lost


async def test_worker_processes_and_web_writes_on_one_database_lose_no_job(
    engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    """Two ``rose-ash worker`` processes claim and finish jobs while eight web-style writers
    (a SAVEPOINT, a read-modify-write and an enqueue each) keep the database busy."""
    writers, writes_each = 8, 25
    async with engine.begin() as conn:
        await conn.run_sync(web_metadata.drop_all)
        await conn.run_sync(web_metadata.create_all)
        await conn.execute(counter.insert().values(id=1, n=0))
    procs = [start_worker(database_url, tmp_path / "data", tmp_path / f"worker{i}.log", "--concurrency", "4")
             for i in range(2)]
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    try:
        for proc, log in zip(procs, logs, strict=True):
            await wait_for_line(proc, log, "started (concurrency 4)")
        sm = async_sessionmaker(engine, expire_on_commit=False)
        errors: list[BaseException] = []

        async def web_writer() -> None:
            for _ in range(writes_each):
                try:
                    async with sm() as session, session.begin(), session.begin_nested():
                        n = await session.scalar(select(counter.c.n).where(counter.c.id == 1).with_for_update())
                        await session.execute(update(counter).where(counter.c.id == 1).values(n=(n or 0) + 1))
                        await enqueue(session, PUBLISH_SCHEDULED,
                                      PublishScheduled(post_id=uuid4(), scheduled_for=datetime.now(UTC)))
                except Exception as exc:  # every failure is counted and shown below
                    errors.append(exc)

        async with anyio.create_task_group() as tg:
            for _ in range(writers):
                tg.start_soon(web_writer)
        assert errors == []

        total = writers * writes_each
        with anyio.fail_after(180):
            while True:
                async with sm() as session:  # the writers' jobs (recurring jobs such as the cart's sweep run too)
                    done = await session.scalar(select(func.count()).select_from(Job).where(
                        Job.kind == PUBLISH_SCHEDULED, Job.state == DONE))
                if done == total:
                    break
                for proc, log in zip(procs, logs, strict=True):
                    assert proc.poll() is None, read_log(log)[-4000:]
                await anyio.sleep(0.1)
        async with sm() as session:
            rows = (await session.execute(select(Job.state, Job.attempts, Job.locked_by)
                                          .where(Job.kind == PUBLISH_SCHEDULED))).all()
            assert await session.scalar(select(counter.c.n)) == total  # no web write lost
        assert len(rows) == total
        assert {(r.state, r.attempts) for r in rows} == {(DONE, 1)}  # each run once, none retried
        assert {r.locked_by.split(":")[1] for r in rows if r.locked_by} <= {str(p.pid) for p in procs}
    finally:
        _stop_all(procs)
    for proc, log in zip(procs, logs, strict=True):
        out = read_log(log)
        assert proc.returncode == 0, out[-4000:]
        assert "database is locked" not in out and "Traceback" not in out, out[-4000:]


def _stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

