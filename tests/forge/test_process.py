"""forge/process.py: children exec'd by absolute path, exit seen on a pidfd (or by polling), the
stdout pipe grown on request."""

from __future__ import annotations

import fcntl
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
