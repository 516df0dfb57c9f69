"""Spawning git children from the event loop without uvloop's slow path.

uvloop (which uvicorn picks when installed) spawns through libuv with ``fork()``: in a process the
size of the app that costs ~45 ms per child, measured with ``git --version``; CPython's
``subprocess`` uses ``vfork()`` and costs ~4 ms. So children are started with
:class:`subprocess.Popen` and their pipes are attached to the running loop with
``connect_read_pipe``/``connect_write_pipe``; exit is awaited on a pidfd where the kernel has
them (:meth:`Child.wait`), else by ``waitpid(WNOHANG)`` polling.

``vfork()`` suspends the parent (the event loop) until the child has exec'd, and an executable
named without a directory is exec'd by trying every ``PATH`` entry in turn: with a long ``PATH``
that is a string of failing ``execve`` calls, each a few milliseconds on a loaded host, during
which no other clone is streamed (measured with strace under 4 concurrent clones). So the name is
resolved to an absolute path once per (name, ``PATH``) and the child execs that directly.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import fcntl
import functools
import os
import shutil
import signal
import struct
import subprocess
import termios
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

import anyio

CHUNK = 256 * 1024


class Child:
    """A running child with asyncio streams for the pipes we asked for."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.stdin: asyncio.StreamWriter | None = None
        self.stdout: asyncio.StreamReader | None = None
        self.stderr: asyncio.StreamReader | None = None
        # With ``spawn(..., batched_stdout=...)`` stdout is read through this instead of ``stdout``.
        self.stdout_batches: BatchedPipeReader | None = None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    async def wait(self) -> int:
        """The exit status, as soon as the child exits: a pidfd (Linux 5.3+) becomes readable on
        the loop then. Polling instead (``waitpid(WNOHANG)`` at growing intervals, up to 50 ms
        apart) kept each response's last chunk waiting up to that long after git had finished,
        three times per clone."""
        code = self.popen.poll()
        if code is not None:
            return code
        try:
            pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            return await self._poll_wait()
        loop = asyncio.get_running_loop()
        exited = loop.create_future()
        def on_exit() -> None:
            if not exited.done():
                exited.set_result(None)

        loop.add_reader(pidfd, on_exit)
        try:
            while (code := self.popen.poll()) is None:  # after add_reader: an exit in between is seen
                await exited
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)
        return code

    async def _poll_wait(self) -> int:
        delay = 0.0005
        while (code := self.popen.poll()) is None:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
        return code

    def kill_group(self) -> None:
        """SIGKILL the child's process group (git forks pack-objects, index-pack, hooks)."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)

    def close_pipes(self) -> None:
        if self.stdin is not None:
            self.stdin.close()
        if self.stdout_batches is not None:
            self.stdout_batches.close()
        for reader in (self.stdout, self.stderr):
            transport = getattr(reader, "_transport", None)
            if transport is not None:
                transport.close()


@functools.lru_cache(maxsize=64)
def _resolve(name: str, path: str | None) -> str:
    """``name`` as an absolute path found on ``path`` (``name`` itself if it has a directory part
    or is not found: then Popen searches, and fails, as it would have)."""
    if os.path.dirname(name):
        return name
    return shutil.which(name, path=path) or name


def executable(name: str, env: Mapping[str, str]) -> str:
    return _resolve(name, env.get("PATH"))


async def spawn(argv: Sequence[str], *, env: Mapping[str, str], cwd: Path | None = None,
                stdin: IO[bytes] | int | None = None, pipe_stdin: bool = False,
                stdout_pipe_size: int | None = None, batched_stdout: Batching | None = None,
                off_loop: bool = False) -> Child:
    """Start ``argv`` in its own session with piped stdout/stderr.

    ``stdin`` is a file (or fd) for the child to read; with ``pipe_stdin`` the child gets a pipe
    exposed as ``Child.stdin``; otherwise it reads /dev/null. ``stdout_pipe_size`` grows the
    stdout pipe (Linux; capped by /proc/sys/fs/pipe-max-size): a child streaming megabytes then
    writes on while the loop is busy with other requests, and each read takes more at once.
    With ``batched_stdout`` stdout is read by a :class:`BatchedPipeReader` (``Child.stdout_batches``)
    instead of a stream reader (``Child.stdout`` stays None).
    """
    loop = asyncio.get_running_loop()
    child_stdin: IO[bytes] | int = subprocess.PIPE if pipe_stdin else (
        stdin if stdin is not None else subprocess.DEVNULL)
    args = list(argv)
    args[0] = executable(args[0], env)
    child_env = dict(env)

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(args, env=child_env, cwd=cwd, stdin=child_stdin, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True, close_fds=True)

    # Popen blocks the loop for the vfork+exec only (a few ms); that is the point of this module.
    # With ``off_loop`` it blocks a spawner thread instead (see _start_off_loop).
    popen = await _start_off_loop(start) if off_loop else start()
    child = Child(popen)
    try:
        assert popen.stdout is not None and popen.stderr is not None
        if stdout_pipe_size:
            with contextlib.suppress(OSError):
                fcntl.fcntl(popen.stdout.fileno(), fcntl.F_SETPIPE_SZ, stdout_pipe_size)
        if batched_stdout is not None:
            child.stdout_batches = BatchedPipeReader(popen.stdout, batched_stdout)
        else:
            child.stdout = await _reader(loop, popen.stdout, max(CHUNK, stdout_pipe_size or 0))
        child.stderr = await _reader(loop, popen.stderr)
        if pipe_stdin:
            assert popen.stdin is not None
            transport, protocol = await loop.connect_write_pipe(
                lambda: asyncio.streams.FlowControlMixin(loop=loop), _for_loop(loop, popen.stdin, "wb"))  # type: ignore[attr-defined]
            child.stdin = asyncio.StreamWriter(transport, protocol, None, loop)
    except BaseException:
        child.kill_group()
        raise
    return child


# One thread does every off-loop spawn: vfork()+exec are serial work anyway (a few ms each on a
# loaded host), and a private executor is never queued behind the loop's default one (DNS, to_thread).
_SPAWNER = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="forge-spawn")
# At most this many off-loop spawns waiting for (or on) the spawner thread; more are refused
# (SpawnQueueFull; smart HTTP answers 503 with Retry-After at admission, spawn_queue_full()).
# Every smart HTTP spawn holds a concurrency slot until its child is gone, so with the default
# limits (32 per process) this is a backstop for a host whose spawner has fallen far behind.
SPAWN_QUEUE_MAX = 64
_spawn_queue = 0  # off-loop spawns submitted and not finished; touched on the loop's thread only


class SpawnQueueFull(RuntimeError):
    """The spawner thread's queue is full (SPAWN_QUEUE_MAX): try again later."""


class _Withdrawn(Exception):
    """The caller went away before the spawner thread got to its Popen: nothing was started."""


def spawn_queue_full() -> bool:
    return _spawn_queue >= SPAWN_QUEUE_MAX


async def _start_off_loop(popen: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    """Run ``popen`` on the spawner thread, so the loop streams other clones meanwhile.

    ``vfork()`` suspends the calling thread until the child has exec'd, and on a loaded host the
    child first waits for a CPU: milliseconds per git request during which no other response on
    this loop moves. CPython releases the GIL around it.

    A caller cancelled meanwhile (its client went away) starts nothing later: a spawn still
    queued is taken off the queue, and one the thread is about to start sees the cancel flag. A
    child that did start is killed and awaited *before* the cancellation goes on, so whatever
    the caller releases on the way out (smart HTTP's concurrency slot) is released only once the
    child is gone."""
    global _spawn_queue
    if _spawn_queue >= SPAWN_QUEUE_MAX:
        raise SpawnQueueFull
    cancelled = threading.Event()

    def guarded() -> subprocess.Popen[bytes]:
        if cancelled.is_set():
            raise _Withdrawn
        return popen()

    submitted = _SPAWNER.submit(guarded)
    _spawn_queue += 1
    try:
        future = asyncio.wrap_future(submitted)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            cancelled.set()
            if not submitted.cancel():  # running (or just done): wait for it, then kill its child
                with anyio.CancelScope(shield=True):
                    await _kill_unwanted(future)
            raise
    finally:
        _spawn_queue -= 1


async def _kill_unwanted(future: asyncio.Future[subprocess.Popen[bytes]]) -> None:
    try:
        popen = await future
    except BaseException:  # _Withdrawn, or Popen failed: no child
        return
    child = Child(popen)
    child.kill_group()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(child.wait(), 10)
    for pipe in (popen.stdin, popen.stdout, popen.stderr):
        if pipe is not None:
            pipe.close()


@dataclasses.dataclass(frozen=True)
class Batching:
    """How :class:`BatchedPipeReader` reads: up to ``size`` bytes at once; once a read came back
    with less than ``batch``, the next waits up to ``coalesce`` seconds for more to arrive."""

    size: int
    batch: int
    coalesce: float


class BatchedPipeReader:
    """A child's stdout read straight off the non-blocking pipe, in batches.

    git upload-pack relays pack-objects' output as it comes, in writes of a few KiB (sideband
    pkt-lines, gitprotocol-pack(5)); a stream reader wakes the consumer for each of them, and in
    a web server each wake sends its piece through every ASGI send wrapper and the HTTP framing:
    measured on a 11 MB clone, ~100-170 pieces with a median of 8-16 KiB and three times the
    server CPU of a threaded CGI host. Here the first data goes out at once; after a short read
    the next one waits ``coalesce`` seconds while git keeps writing into the (grown) pipe, so a
    pack goes out in few large pieces. End of file is never waited for: a readable pipe with
    nothing in it (``FIONREAD`` 0) is the end, and is read at once. Each read is one ``read(2)``
    of everything in the pipe: no stream-reader buffer in between (no extra copy).
    """

    def __init__(self, pipe: IO[bytes], batching: Batching) -> None:
        self._pipe = pipe
        self._fd = pipe.fileno()
        os.set_blocking(self._fd, False)
        self._batching = batching
        self._short = False  # the previous read came back short: coalesce before the next
        self._eof = False

    async def read(self) -> bytes:
        """The next batch; ``b""`` at end of file."""
        if self._eof:
            return b""
        while True:
            try:
                data = os.read(self._fd, self._batching.size)
            except BlockingIOError:
                await self._readable()
                if self._short and 0 < _available(self._fd) < self._batching.batch:
                    await asyncio.sleep(self._batching.coalesce)
                continue
            if not data:
                self._eof = True
            # The first piece (a ref advertisement's only one) is not held back.
            self._short = len(data) < self._batching.batch
            return data

    async def _readable(self) -> None:
        loop = asyncio.get_running_loop()
        ready = loop.create_future()

        def on_ready() -> None:  # level-triggered: may run again before the reader is removed
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(self._fd, on_ready)
        try:
            await ready
        finally:
            loop.remove_reader(self._fd)

    def close(self) -> None:
        self._pipe.close()


def _available(fd: int) -> int:
    """Bytes waiting in a pipe (``FIONREAD``, pipe(7)); 0 where the ioctl is not supported."""
    try:
        return int(struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0])
    except OSError:
        return 0


async def _reader(loop: asyncio.AbstractEventLoop, pipe: IO[bytes], limit: int = CHUNK) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop), _for_loop(loop, pipe, "rb"))
    return reader


def _for_loop(loop: asyncio.AbstractEventLoop, pipe: IO[bytes], mode: str) -> IO[bytes]:
    """The pipe to give a loop's pipe transport, which then owns its file descriptor.

    uvloop closes a pipe transport's descriptor twice: libuv closes it (``uv_close``), then uvloop
    calls ``close()`` on the file object it was given (uvloop/handles/handle.pyx,
    ``UVSocketHandle._close``, which expects EBADF). strace shows ``close(13) = 0`` then
    ``close(13) = -1 EBADF``. Between the two the number is free, and the spawner thread's Popen
    (``pipe2`` without the GIL) may just have been given it: the second close then takes another
    git child's pipe, and that child's response ends mid-body (curl 18 in ``git clone``). So under
    uvloop the transport gets a duplicate wrapped with ``closefd=False`` (libuv's close is the
    only one) and Popen's own object is closed here, once. asyncio's own transports close the
    object they were given exactly once: they get it unchanged."""
    if not type(loop).__module__.startswith("uvloop"):
        return pipe
    fd = os.dup(pipe.fileno())
    pipe.close()
    return open(fd, mode, buffering=0, closefd=False)  # libuv closes fd, this object never does


async def run(argv: Sequence[str], *, env: Mapping[str, str], input: bytes | None = None,
              cwd: Path | None = None) -> tuple[int, bytes, bytes]:
    """Run a short command to completion; returns (returncode, stdout, stderr). Cancellation kills it."""
    child = await spawn(argv, env=env, cwd=cwd, pipe_stdin=input is not None)
    try:
        assert child.stdout is not None and child.stderr is not None

        async def feed() -> None:
            if child.stdin is not None:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    child.stdin.write(input or b"")
                    await child.stdin.drain()
                child.stdin.close()

        _, out, err = await asyncio.gather(feed(), child.stdout.read(), child.stderr.read())
        code = await child.wait()
        return code, out, err
    except BaseException:
        child.kill_group()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(child.wait(), 5)
        raise
    finally:
        child.close_pipes()
