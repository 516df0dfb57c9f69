"""Benchmark: the job queue and web-style writes together on one database (SQLite by default).

Starts ``--workers`` real ``rose-ash worker`` processes, then ``--writers`` concurrent tasks in
this process each run ``--jobs / --writers`` web-style transactions (a SAVEPOINT, a
read-modify-write of one counter row read ``FOR UPDATE``, and an enqueue of a real job, as a
form post that schedules work does). It waits, bounded by ``--timeout``, until every job is done
and prints: web writes/s, jobs/s from the first enqueue to the last job done, web-write errors,
jobs not done (by state), jobs run more than once, the counter's lost updates, and how many
"database is locked" lines the workers logged.

``--engine old`` runs the web writers on the previous SQLite setup (deferred transactions, the
savepoint beginning them), for comparison.

    .venv/bin/python bench/jobs.py [--jobs 1000] [--workers 2] [--writers 8] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import Column, Integer, MetaData, Table, event, func, select, update  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine  # noqa: E402

from app.db import make_engine  # noqa: E402
from app.jobs import Job, enqueue  # noqa: E402
from domains.blog.schemas import PublishScheduled  # noqa: E402
from domains.blog.services import PUBLISH_SCHEDULED  # noqa: E402

BIN = Path(sys.executable).parent
ROSE_ASH = str(BIN / "rose-ash")

bench_metadata = MetaData()
counter = Table("bench_web_counter", bench_metadata, Column("id", Integer, primary_key=True), Column("n", Integer))


def old_sqlite_engine(url: str) -> AsyncEngine:
    """The engine before this change: deferred transactions, 30 s busy timeout."""
    engine = create_async_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine.sync_engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    return engine


def start_worker(env: dict[str, str], log: Path, concurrency: int) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([ROSE_ASH, "worker", "--concurrency", str(concurrency)], env=env, cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


async def run(args: argparse.Namespace) -> None:
    from advanced_alchemy.base import metadata_registry

    import app.models  # noqa: F401

    tmp = Path(tempfile.mkdtemp(prefix="bench-jobs-"))
    url = args.database_url or f"sqlite+aiosqlite:///{tmp / 'bench.sqlite3'}"
    setup = make_engine(url)
    async with setup.begin() as conn:
        await conn.run_sync(metadata_registry.get(None).drop_all)
        await conn.run_sync(metadata_registry.get(None).create_all)
        await conn.run_sync(bench_metadata.drop_all)
        await conn.run_sync(bench_metadata.create_all)
        await conn.execute(counter.insert().values(id=1, n=0))
    await setup.dispose()

    env = {k: v for k, v in os.environ.items() if not k.startswith("ROSE_ASH_")}
    env.update({"ROSE_ASH_DATABASE_URL": url, "ROSE_ASH_DATA_DIR": str(tmp / "data"),
                "ROSE_ASH_SECRET_KEY": "bench-secret-0123456789abcdef0123", "ROSE_ASH_LOG_LEVEL": "INFO",
                "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"})
    logs = [tmp / f"worker{i}.log" for i in range(args.workers)]
    procs = [start_worker(env, log, args.concurrency) for log in logs]
    try:
        deadline = time.monotonic() + 60
        while not all("started" in log.read_text(errors="replace") for log in logs if log.exists()) or \
                not all(log.exists() for log in logs):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise SystemExit("workers did not start:\n" + "\n".join(log.read_text()[-2000:] for log in logs))
            await asyncio.sleep(0.1)

        old = args.engine == "old" and url.startswith("sqlite")
        engine = old_sqlite_engine(url) if old else make_engine(url)
        sm = async_sessionmaker(engine, expire_on_commit=False)
        errors: Counter[str] = Counter()
        each = args.jobs // args.writers

        async def writer() -> None:
            for _ in range(each):
                try:
                    async with sm() as session, session.begin(), session.begin_nested():
                        n = await session.scalar(select(counter.c.n).where(counter.c.id == 1).with_for_update())
                        await session.execute(update(counter).where(counter.c.id == 1).values(n=(n or 0) + 1))
                        await enqueue(session, PUBLISH_SCHEDULED,
                                      PublishScheduled(post_id=uuid4(), scheduled_for=datetime.now(UTC)))
                except Exception as exc:
                    errors[f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]}"] += 1

        started = time.monotonic()
        await asyncio.gather(*(writer() for _ in range(args.writers)))
        wrote = time.monotonic() - started
        total = args.writers * each - sum(errors.values())
        deadline = time.monotonic() + args.timeout
        done = 0
        while time.monotonic() < deadline:
            async with sm() as session:
                done = int(await session.scalar(select(func.count()).select_from(Job).where(Job.state == "done")) or 0)
            if done >= total:
                break
            await asyncio.sleep(0.05)
        drained = time.monotonic() - started
        async with sm() as session:
            states = Counter((await session.scalars(select(Job.state))).all())
            retried = int(await session.scalar(select(func.count()).select_from(Job).where(Job.attempts > 1)) or 0)
            n = int(await session.scalar(select(counter.c.n)) or 0)
        await engine.dispose()
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
    locked = sum(log.read_text(errors="replace").count("database is locked") for log in logs)
    kind = url.split(":", 1)[0]
    print(f"{kind} engine={args.engine} workers={args.workers}x"
          f"{args.concurrency} writers={args.writers} jobs={args.writers * each}")
    print(f"  web writes: {args.writers * each - sum(errors.values())} ok in {wrote:.2f}s "
          f"({(args.writers * each) / wrote:.0f}/s), errors {sum(errors.values())} {dict(errors)}")
    finished = states.get("done", 0)
    print(f"  jobs: {finished} done of {total} in {drained:.2f}s ({finished / drained:.0f} jobs/s),"
          f" states {dict(states)}, run more than once {retried}")
    print(f"  counter {n} (lost updates {args.writers * each - sum(errors.values()) - n});"
          f" 'database is locked' in worker logs: {locked}; worker exit codes {[p.returncode for p in procs]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--engine", choices=["new", "old"], default="new")
    parser.add_argument("--database-url", default="")
    parser.add_argument("--timeout", type=float, default=300.0)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
