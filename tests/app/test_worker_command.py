"""``rose-ash worker`` as the container deployment runs it: a real process on the app's database."""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import anyio
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import make_sessionmaker
from app.jobs import DONE, Job, enqueue
from app.settings import Settings
from domains.blog.schemas import PublishScheduled
from domains.blog.services import PUBLISH_SCHEDULED
from tests.helpers.worker import read_log, start_worker, wait_for_line

pytestmark = pytest.mark.anyio


async def test_rose_ash_worker_runs_a_job_and_stops_on_sigterm(
    engine: AsyncEngine, database_url: str, settings: Settings, tmp_path: Path
) -> None:
    log_path = tmp_path / "worker.log"
    proc = start_worker(database_url, tmp_path / "data", log_path, "--concurrency", "2")
    try:
        await wait_for_line(proc, log_path, "started (concurrency 2)")
        # A real handler of the app, enqueued through the kernel queue as the web app would:
        # publishing a post that no longer exists is a no-op the handler completes.
        sm = make_sessionmaker(engine, settings)
        async with sm() as session, session.begin():
            job = await enqueue(session, PUBLISH_SCHEDULED,
                                PublishScheduled(post_id=uuid4(), scheduled_for=datetime.now(UTC)))
        with anyio.fail_after(60):
            while True:
                async with sm() as session:
                    row = await session.get(Job, job.id)
                assert row is not None
                if row.state == DONE:
                    break
                assert proc.poll() is None, read_log(log_path)[-4000:]
                await anyio.sleep(0.1)
        assert row.attempts == 1 and row.last_error is None
        assert row.locked_by is not None and f":{proc.pid}:" in row.locked_by  # run by that process
        proc.send_signal(signal.SIGTERM)
        await anyio.to_thread.run_sync(proc.wait, 60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    out = read_log(log_path)
    assert proc.returncode == 0, out[-4000:]
    assert "received SIGTERM" in out and "stopped" in out.rsplit("received SIGTERM", 1)[1]
    assert "Traceback" not in out
