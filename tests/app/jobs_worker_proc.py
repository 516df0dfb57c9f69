"""A real job worker process for tests/app/test_jobs.py (killed or signalled by the tests).

usage: python jobs_worker_proc.py block DATABASE_URL   # handler blocks forever; lease 1s
       python jobs_worker_proc.py forever DATABASE_URL DATA_DIR
       # run_worker_forever; the handler takes ~1s, so a SIGTERM arrives mid-run
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import msgspec
from sqlalchemy.ext.asyncio import async_sessionmaker

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app.db import make_engine
from app.jobs import JobContext, JobRegistry, Worker, run_worker_forever


class Label(msgspec.Struct):
    label: str


jobs = JobRegistry()


async def block(ctx: JobContext, payload: Label) -> None:
    print(f"started {ctx.job_id} attempt {ctx.attempt}", flush=True)
    await anyio.sleep_forever()


async def slow(ctx: JobContext, payload: Label) -> None:
    print(f"started {ctx.job_id}", flush=True)
    await anyio.sleep(1.0)
    print(f"finished {ctx.job_id}", flush=True)


jobs.register("test.crash", Label, block)
jobs.register("test.slow", Label, slow)


async def run_block(url: str) -> None:
    engine = make_engine(url)
    sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    worker = Worker(sessionmaker, registry=jobs, worker_id="doomed", lease_seconds=1.0, poll_interval=0.05)
    await worker.run(anyio.Event())


async def run_forever(url: str, data_dir: str) -> None:
    from app.settings import Settings

    settings = Settings.from_env(
        {}, database_url=url, data_dir=data_dir, secret_key="test-secret-key-not-for-production-0123456789"
    )
    await run_worker_forever(
        settings, registry=jobs, worker_id="forever", poll_interval=0.05, lease_seconds=5.0, shutdown_grace=20
    )


if __name__ == "__main__":
    mode, url = sys.argv[1], sys.argv[2]
    if mode == "block":
        anyio.run(run_block, url)
    else:
        anyio.run(run_forever, url, sys.argv[3])
    print("exited cleanly", flush=True)
