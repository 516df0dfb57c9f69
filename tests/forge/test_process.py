"""forge/process.py: children exec'd by absolute path, exit seen on a pidfd (or by polling), the
stdout pipe grown on request, read in batches."""

from __future__ import annotations

import fcntl
import io
import os
from pathlib import Path

import pytest

from forge import process

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
PIPE_MAX = int(Path("/proc/sys/fs/pipe-max-size").read_text())  # the kernel's cap for unprivileged processes


async def test_exit_status_on_pidfd_and_by_polling() -> None:
    for waiter in ("wait", "_poll_wait"):
        child = await process.spawn(["sh", "-c", "sleep 0.1; exit 3"], env=ENV)
        try:
            assert child.returncode is None
            assert await getattr(child, waiter)() == 3
            assert await child.wait() == 3  # and again, once reaped
        finally:
            child.close_pipes()


async def test_executable_resolved_once_on_the_child_path() -> None:
    assert process.executable("sh", ENV) == process.executable("sh", ENV)
    assert os.path.isabs(process.executable("sh", ENV))
    assert process.executable("/bin/sh", ENV) == "/bin/sh"
    missing = process.executable("no-such-tool-here", ENV)
    assert missing == "no-such-tool-here"
    with pytest.raises(FileNotFoundError):  # Popen's own error, as before
        await process.spawn([missing], env=ENV)


async def test_stdout_pipe_grown_on_request() -> None:
    child = await process.spawn(["sh", "-c", "head -c 300000 /dev/zero"], env=ENV, stdout_pipe_size=1024 * 1024)
    try:
        transport = child.stdout._transport  # type: ignore[union-attr]
        fd = transport.get_extra_info("pipe").fileno()
        expected = min(1024 * 1024, PIPE_MAX)
        assert fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ) >= expected
        assert child.stdout is not None
        data = await child.stdout.read()
        assert len(data) == 300000
        assert await child.wait() == 0
    finally:
        child.close_pipes()


async def test_batched_stdout_sends_the_first_piece_at_once_and_ends_on_eof() -> None:
    # The child cannot write "second" before we answer it on stdin: the first read must return
    # "first" alone, without waiting for a batch to fill.
    batching = process.Batching(size=1 << 20, batch=1 << 18, coalesce=0.002)
    child = await process.spawn(["sh", "-c", "printf first; read x; printf second"], env=ENV, pipe_stdin=True,
                                batched_stdout=batching)
    try:
        assert child.stdout is None and child.stdout_batches is not None and child.stdin is not None
        assert await child.stdout_batches.read() == b"first"
        child.stdin.write(b"go\n")
        await child.stdin.drain()
        child.stdin.close()
        rest = b""
        while chunk := await child.stdout_batches.read():
            rest += chunk
        assert rest == b"second"
        assert await child.stdout_batches.read() == b""  # and stays at end of file
        assert await child.wait() == 0
    finally:
        child.close_pipes()


async def test_batched_stdout_reads_everything_in_pieces_no_larger_than_asked() -> None:
    batching = process.Batching(size=64 * 1024, batch=32 * 1024, coalesce=0.001)
    child = await process.spawn(["sh", "-c", "head -c 3000000 /dev/zero; printf end"], env=ENV,
                                stdout_pipe_size=1024 * 1024, batched_stdout=batching)
    try:
        assert child.stdout_batches is not None
        sizes: list[int] = []
        data = bytearray()
        while chunk := await child.stdout_batches.read():
            sizes.append(len(chunk))
            data += chunk
        assert len(data) == 3000003 and data.endswith(b"end") and not data[:-3].strip(b"\0")
        assert max(sizes) <= 64 * 1024
        assert await child.wait() == 0
    finally:
        child.close_pipes()



@pytest.mark.parametrize("anyio_backend", [("asyncio", {"use_uvloop": True}), ("asyncio", {})],
                         ids=["uvloop", "asyncio"])
async def test_a_failed_exit_is_not_lost_to_the_loops_own_child_reaping(anyio_backend: object) -> None:
    """CPython's ``Popen.poll`` reports 0 if someone else reaped the child (ECHILD), so a failed git
    would look like a success. The loops' own subprocess support reaps by pid (libuv's SIGCHLD
    handler waits for its own handles; asyncio's ThreadedChildWatcher for each pid it started),
    never ``waitpid(-1)``: with their children exiting around ours, ours still reports its 3."""
    import asyncio

    for _ in range(5):
        ours = await process.spawn(["sh", "-c", "sleep 0.05; exit 3"], env=ENV)
        try:
            theirs = [await asyncio.create_subprocess_exec("sh", "-c", "exit 0") for _ in range(3)]
            assert [await p.wait() for p in theirs] == [0, 0, 0]
            await asyncio.sleep(0.1)  # ours has exited meanwhile, its SIGCHLD seen by their handler
            assert await ours.wait() == 3
        finally:
            ours.close_pipes()


class _WatchedPipe(io.FileIO):
    """A pipe end that records, at each close(), whether its descriptor was still open then: a
    close that finds it already closed is the second close(2) of a number someone else may own."""

    closes: list[bool]

    def close(self) -> None:
        if not self.closed:
            try:
                os.fstat(self.fileno())
                self.closes.append(True)
            except OSError:
                self.closes.append(False)
        super().close()


@pytest.mark.parametrize("anyio_backend", [("asyncio", {"use_uvloop": True}), ("asyncio", {})],
                         ids=["uvloop", "asyncio"])
async def test_a_pipe_given_to_the_loop_is_closed_once(anyio_backend: object) -> None:
    """uvloop's pipe transports close their descriptor in libuv and then close() the file object
    as well; the number may by then belong to a pipe the spawner thread just made for another git
    child (whose response would then end mid-body). A child's pipes reach the loop so that each
    descriptor is closed exactly once, and none is left open."""
    import asyncio

    loop = asyncio.get_running_loop()

    async def through_the_loop() -> list[bool]:
        r, w = os.pipe()
        pipe = _WatchedPipe(r, "rb")
        pipe.closes = []
        reader = await process._reader(loop, pipe)  # type: ignore[arg-type]
        os.write(w, b"hello")
        os.close(w)
        assert await reader.read() == b"hello"
        reader._transport.close()  # type: ignore[attr-defined]
        for _ in range(5):
            await asyncio.sleep(0)
        return pipe.closes

    assert await through_the_loop() == [True]  # and libuv has opened its one reserve fd (/dev/null)
    open_before = len(os.listdir("/proc/self/fd"))
    assert await through_the_loop() == [True]
    assert len(os.listdir("/proc/self/fd")) == open_before  # nothing leaked: the transport's own is gone too
