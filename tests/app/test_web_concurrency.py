"""``rose-ash run -W 2`` as a real process (issue 13 item 3): two uvicorn workers serve, one in-process
job worker runs for the machine, a job runs exactly once, SIGTERM stops every process cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import anyio
import httpx
import pytest

from app.db import make_engine, make_sessionmaker
from app.jobs import DONE, Job, enqueue
from app.settings import Settings
from domains.account.schemas import SignupInput
from domains.account.services import AccountService
from domains.blog.schemas import PublishScheduled
from domains.blog.services import PUBLISH_SCHEDULED
from tests.helpers.server import REPO_ROOT, ROSE_ASH, free_port

pytestmark = pytest.mark.anyio


def json_lines(path: Path) -> list[dict[str, object]]:
    found = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
    return found


def tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:]


def children(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False)
    return {int(p) for p in out.stdout.split()}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0): ask ps for its state.
    state = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True, check=False)
    return bool(state.stdout.strip()) and not state.stdout.strip().startswith("Z")


@pytest.fixture
def server(tmp_path: Path, server_database_url: str | None) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, str]]]:
    port = free_port()
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROSE_ASH_", "UVICORN_", "PROMETHEUS_"))}
    env.update({
        "ROSE_ASH_DATA_DIR": str(data_dir),
        "ROSE_ASH_BASE_URL": f"http://127.0.0.1:{port}",
        "ROSE_ASH_SECRET_KEY": "web-concurrency-secret-0123456789abcdef",
        "ROSE_ASH_WORKER_IN_PROCESS": "true",
        "ROSE_ASH_LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    })
    if server_database_url:
        env["ROSE_ASH_DATABASE_URL"] = server_database_url
    subprocess.run([ROSE_ASH, "database", "upgrade", "--no-prompt"], env=env, cwd=REPO_ROOT, check=True,
                   capture_output=True, timeout=180)
    log = (tmp_path / "server.log").open("ab")
    proc = subprocess.Popen([ROSE_ASH, "run", "-W", "2", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    env["LOG"] = str(tmp_path / "server.log")
    try:
        yield proc, env
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


async def test_two_workers_one_job_worker_sigterm_stops_all(
    server: tuple[subprocess.Popen[bytes], dict[str, str]],
) -> None:
    proc, env = server
    base = env["ROSE_ASH_BASE_URL"]
    log_path = Path(env["LOG"])
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        with anyio.fail_after(180):
            while True:
                assert proc.poll() is None, tail(log_path)
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await anyio.sleep(0.2)
        # The pid the supervisor signals is uvicorn's own (rose-ash execs it), and its two
        # children are the web workers.
        workers: set[int] = set()
        with anyio.fail_after(120):
            while len(workers) < 2:
                workers = {p for p in children(proc.pid) if _is_worker(p)}
                await anyio.sleep(0.5)
        # Both workers answer: concurrent requests, each on a new connection (the workers share
        # the listening socket, a kept-alive connection stays with one), until each pid logged one.
        served: set[int] = set()
        with anyio.fail_after(120):
            while served != workers:
                async with anyio.create_task_group() as tg:
                    for _ in range(16):
                        tg.start_soon(lambda: client.get("/healthz", headers={"Connection": "close"}))
                served = {int(str(e["pid"])) for e in json_lines(log_path)
                          if e.get("logger") == "rose_ash.access" and e.get("path") == "/healthz"}
                assert served <= workers, (served, workers)
        # Without Redis the workers' fragment caches share the invalidation log in DATA_DIR: once
        # both have cached the home page's member list, a member made by another process (this
        # one, as a `rose-ash` command would) is on the next page from either worker.
        settings = Settings.from_env({}, data_dir=Path(env["ROSE_ASH_DATA_DIR"]),
                                     database_url=env.get("ROSE_ASH_DATABASE_URL", ""),
                                     secret_key=env["ROSE_ASH_SECRET_KEY"])
        await _home_from_both(client, log_path, workers, lambda page: "Newest members" in page)
        engine = make_engine(settings.database_url)
        try:
            async with make_sessionmaker(engine, settings)() as session, session.begin():
                await AccountService(session).signup(SignupInput(
                    username="latecomer", email="latecomer@example.org", password="correct horse battery staple"))
        finally:
            await engine.dispose()
        await _home_from_both(client, log_path, workers, lambda page: "@latecomer" in page,
                              strict=True)

        # Exactly one in-process job worker for the machine: the lock file names its holder,
        # and only that process says it runs it.
        holder_says = [e for e in json_lines(log_path) if "in-process job worker" in str(e.get("msg"))]
        assert len(holder_says) == 1, holder_says
        holder = int(str(holder_says[0]["pid"]))
        assert holder in workers
        assert int((Path(env["ROSE_ASH_DATA_DIR"]) / "job-worker.lock").read_text()) == holder
        metrics = (await client.get("/metrics")).text
        assert "rose_ash_in_process_job_workers 1.0" in metrics

        # 500 connections that send nothing (issue 13, bad input): everybody else is still served,
        # uvicorn's --limit-concurrency (1000 per worker, app/cli.py) is well above them.
        idle = [socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1]))) for _ in range(500)]
        try:
            async with httpx.AsyncClient(base_url=base, timeout=10) as other:
                for _ in range(10):
                    assert (await other.get("/healthz", headers={"Connection": "close"})).status_code == 200
        finally:
            for sock in idle:
                sock.close()

        # A job enqueued as the web app would is run exactly once, by the holder.
        engine = make_engine(settings.database_url)
        try:
            sm = make_sessionmaker(engine, settings)
            ids = []
            async with sm() as session, session.begin():
                for _ in range(5):
                    job = await enqueue(session, PUBLISH_SCHEDULED,
                                        PublishScheduled(post_id=uuid4(), scheduled_for=datetime.now(UTC)))
                    ids.append(job.id)
            with anyio.fail_after(60):
                while True:
                    async with sm() as session:
                        rows = [await session.get(Job, i) for i in ids]
                    if all(r is not None and r.state == DONE for r in rows):
                        break
                    await anyio.sleep(0.2)
            for row in rows:
                assert row is not None and row.attempts == 1 and row.last_error is None
                assert row.locked_by is not None and f":{holder}:" in row.locked_by
        finally:
            await engine.dispose()

    # SIGTERM to that one pid stops the workers gracefully and then itself.
    proc.send_signal(signal.SIGTERM)
    await anyio.to_thread.run_sync(proc.wait, 60)
    out = tail(log_path, 10**7)
    assert proc.returncode == 0, out[-4000:]
    for _ in range(100):
        if not any(alive(p) for p in workers):
            break
        await anyio.sleep(0.1)
    assert not any(alive(p) for p in workers), out[-4000:]
    assert out.count("Application shutdown complete.") == 2, out[-4000:]
    assert "Traceback" not in out


async def _home_from_both(client: httpx.AsyncClient, log_path: Path, workers: set[int],
                          shows: Callable[[str], bool], *, strict: bool = False) -> None:
    """Fetch ``/`` on new connections until each worker has served it; with ``strict`` every page
    must already show what ``shows`` looks for (no worker may serve its old cached fragment)."""
    seen: set[int] = set()
    with anyio.fail_after(120):
        while seen != workers:
            before = {e.get("request_id") for e in json_lines(log_path) if e.get("path") == "/"}
            pages = [await client.get("/", headers={"Connection": "close"}) for _ in range(8)]
            for page in pages:
                assert page.status_code == 200
                if strict:
                    assert shows(page.text), "a worker served the member list from before the sign-up"
            seen |= {int(str(e["pid"])) for e in json_lines(log_path)
                     if e.get("path") == "/" and e.get("logger") == "rose_ash.access"
                     and e.get("request_id") not in before}


def _is_worker(pid: int) -> bool:
    cmd = subprocess.run(["ps", "-o", "args=", "-p", str(pid)], capture_output=True, text=True, check=False).stdout
    return "multiprocessing.spawn" in cmd
