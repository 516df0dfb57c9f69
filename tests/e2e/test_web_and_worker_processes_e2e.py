"""A web process (with its in-process worker), a ``rose-ash worker`` process and a third writer
on one database at once: SQLite's embedded default as well as PostgreSQL."""

from __future__ import annotations

import signal
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import anyio
import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from app.db import make_engine
from app.jobs import DONE, Job, enqueue
from domains.blog.schemas import PublishScheduled
from domains.blog.services import PUBLISH_SCHEDULED
from tests.helpers.server import app_server
from tests.helpers.web import signup
from tests.helpers.worker import read_log, start_worker, wait_for_line

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

PEOPLE, JOBS = 8, 120


async def test_web_signups_worker_process_and_enqueues_share_one_database(
    tmp_path: Path, server_database_url: str | None
) -> None:
    with app_server(tmp_path, database_url=server_database_url) as server:
        url = server_database_url or f"sqlite+aiosqlite:///{server.data_dir / 'rose-ash.sqlite3'}"
        log_path = tmp_path / "worker.log"
        proc = start_worker(url, server.data_dir, log_path)
        engine = make_engine(url)
        try:
            await wait_for_line(proc, log_path, "started (concurrency 4)")
            sm = async_sessionmaker(engine, expire_on_commit=False)
            statuses: list[int] = []

            async def person(n: int) -> None:
                async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as browser:
                    statuses.append((await signup(browser, f"person{n}")).status_code)

            async def enqueuer() -> None:
                # As the inbox route does: a savepoint, then a de-duplicated enqueue (it reads the
                # key, then inserts) -- a read that turns into a write, in a third process.
                for _ in range(JOBS // 4):
                    async with sm() as session, session.begin(), session.begin_nested():
                        post = uuid4()
                        await enqueue(session, PUBLISH_SCHEDULED,
                                      PublishScheduled(post_id=post, scheduled_for=datetime.now(UTC)),
                                      unique_key=f"e2e:{post}")

            async with anyio.create_task_group() as tg:  # sign-ups and enqueues at the same time
                for _ in range(4):
                    tg.start_soon(enqueuer)
                for n in range(PEOPLE):
                    tg.start_soon(person, n)
            assert statuses == [303] * PEOPLE

            with anyio.fail_after(120):
                while True:
                    async with sm() as session:
                        left = await session.scalar(select(func.count()).select_from(Job).where(
                            Job.kind == PUBLISH_SCHEDULED, Job.state != DONE))
                    if left == 0:
                        break
                    assert proc.poll() is None, read_log(log_path)[-4000:]
                    await anyio.sleep(0.1)
            async with sm() as session:
                runs = (await session.execute(select(Job.attempts, Job.locked_by).where(
                    Job.kind == PUBLISH_SCHEDULED))).all()
            assert len(runs) == JOBS and {r.attempts for r in runs} == {1}  # each run once, none retried
            runners = {r.locked_by.split(":")[1] for r in runs if r.locked_by}
            assert runners <= {str(proc.pid), str(server.proc.pid if server.proc else "")}
        finally:
            await engine.dispose()
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            await anyio.to_thread.run_sync(proc.wait, 60)
        assert proc.returncode == 0
        for log in (read_log(log_path), server.log_tail(200_000)):
            assert "database is locked" not in log and "Traceback" not in log, log[-4000:]
