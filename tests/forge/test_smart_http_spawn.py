"""forge/process.py ``spawn(..., off_loop=True)``: git's vfork+exec on the spawner thread, so the
event loop streams other clones meanwhile (the smart HTTP children use it)."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

from forge import process

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


async def test_off_loop_spawn_pipes_stdin_and_reads_batches() -> None:
    child = await process.spawn(["sh", "-c", "cat; echo done >&2"], env=ENV, pipe_stdin=True, off_loop=True,
                                batched_stdout=process.Batching(size=65536, batch=4096, coalesce=0.001))
    try:
        assert child.stdin is not None and child.stdout_batches is not None and child.stderr is not None
        child.stdin.write(b"hello")
        await child.stdin.drain()
        child.stdin.close()
        out = b""
        while chunk := await child.stdout_batches.read():
            out += chunk
        assert out == b"hello"
        assert await child.stderr.read() == b"done\n"
        assert await child.wait() == 0
    finally:
        child.close_pipes()


async def test_off_loop_spawn_runs_popen_on_the_spawner_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    real = process.subprocess.Popen

    def recording(*args: object, **kwargs: object) -> object:
        seen.append(threading.current_thread().name)
        return real(*args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(process.subprocess, "Popen", recording)
    for off_loop in (True, False):
        child = await process.spawn(["true"], env=ENV, off_loop=off_loop)
        assert await child.wait() == 0
        child.close_pipes()
    assert seen[0].startswith("forge-spawn") and seen[1] == threading.current_thread().name


async def test_a_missing_executable_raises_from_the_spawner_thread() -> None:
    with pytest.raises(FileNotFoundError):
        await process.spawn(["/nonexistent/git"], env=ENV, off_loop=True)


async def test_a_cancelled_off_loop_spawn_kills_its_child(tmp_path: object) -> None:
    """The caller gone before Popen returned: the child that does start is killed, not orphaned."""
    gate = threading.Event()
    started: list[process.subprocess.Popen[bytes]] = []
    real = process.subprocess.Popen

    def slow(*args: object, **kwargs: object) -> process.subprocess.Popen[bytes]:
        gate.wait(5)
        popen: process.subprocess.Popen[bytes] = real(*args, **kwargs)  # type: ignore[call-overload]
        started.append(popen)
        return popen

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(process.subprocess, "Popen", slow)
        task = asyncio.create_task(process.spawn(["sleep", "30"], env=ENV, off_loop=True))
        await asyncio.sleep(0.05)
        task.cancel()
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(200):  # the done callback runs on the loop once the thread has finished
            if started and started[0].poll() is not None:
                break
            await asyncio.sleep(0.01)
    assert started and started[0].returncode == -9


async def test_spawns_whose_callers_left_while_queued_never_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients gone while their spawns wait behind a busy spawner thread: nothing is started for
    them later (before, each child was started and then killed, after its slot was given back)."""
    started: list[object] = []
    real = process.subprocess.Popen

    def recording(*args: object, **kwargs: object) -> object:
        started.append(args)
        return real(*args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(process.subprocess, "Popen", recording)
    gate = threading.Event()
    busy = asyncio.get_running_loop().run_in_executor(process._SPAWNER, gate.wait, 5)
    tasks = [asyncio.create_task(process.spawn(["sleep", "30"], env=ENV, off_loop=True)) for _ in range(5)]
    for _ in range(100):  # each task submits its spawn on its first step
        if process._spawn_queue == 5:
            break
        await asyncio.sleep(0)
    assert process._spawn_queue == 5
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    assert process._spawn_queue == 0
    gate.set()
    await busy
    await asyncio.get_running_loop().run_in_executor(process._SPAWNER, lambda: None)  # the queue has drained
    assert started == []


async def test_a_runs_slot_comes_back_only_once_its_child_is_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client leaves while Popen is under way on the spawner thread: the run's clean-up (the
    concurrency slot) waits for that child to be killed and reaped."""
    from forge.config import ForgeConfig
    from forge.smart_http import GitRun, RunIterator

    gate = threading.Event()
    in_popen = threading.Event()
    children: list[process.subprocess.Popen[bytes]] = []
    real = process.subprocess.Popen

    def slow(*args: object, **kwargs: object) -> process.subprocess.Popen[bytes]:
        in_popen.set()
        gate.wait(5)
        popen: process.subprocess.Popen[bytes] = real(*args, **kwargs)  # type: ignore[call-overload]
        children.append(popen)
        return popen

    monkeypatch.setattr(process.subprocess, "Popen", slow)
    at_release: list[int | None] = []
    run = GitRun(argv=["sleep", "30"], env=ENV, cwd=Path("/"), config=ForgeConfig(),
                 cleanup=[lambda: at_release.append(children[0].poll() if children else 0)])

    async def client() -> None:
        iterator = RunIterator(run)
        try:
            async for _ in iterator:
                pass
        finally:
            await iterator.aclose()

    task = asyncio.create_task(client())
    await asyncio.get_running_loop().run_in_executor(None, in_popen.wait, 5)
    task.cancel()
    await asyncio.sleep(0)
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert at_release == [-9]  # the child had been killed and reaped when the slot went back


async def test_a_full_spawn_queue_refuses_off_loop_spawns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(process, "SPAWN_QUEUE_MAX", 0)
    assert process.spawn_queue_full()
    with pytest.raises(process.SpawnQueueFull):
        await process.spawn(["true"], env=ENV, off_loop=True)
    child = await process.spawn(["true"], env=ENV)  # on the loop: no queue involved
    assert await child.wait() == 0
    child.close_pipes()
