"""Run the real app as a separate process (``rose-ash run``, as ``make run`` does) for e2e tests."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent
ROSE_ASH = str(BIN / "rose-ash") if (BIN / "rose-ash").exists() else shutil.which("rose-ash") or "rose-ash"
REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class AppServer:
    base_url: str
    port: int
    data_dir: Path
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``rose-ash`` with this server's settings (same database and data dir)."""
        return subprocess.run([ROSE_ASH, *args], env=self.env, cwd=REPO_ROOT, capture_output=True, text=True,
                              check=check, timeout=120)

    def start(self, timeout: float = 30.0) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [ROSE_ASH, "run", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()[-4000:]}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not become healthy:\n{self.log_path.read_text()[-4000:]}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


@contextmanager
def app_server(tmp_path: Path, *, name: str = "app", database_url: str | None = None,
               extra_env: dict[str, str] | None = None, port: int | None = None) -> Iterator[AppServer]:
    """Migrate a fresh database and serve the app on 127.0.0.1 until the block ends."""
    port = port or free_port()
    data_dir = tmp_path / name
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROSE_ASH_")}
    env.update({
        "ROSE_ASH_DATA_DIR": str(data_dir),
        "ROSE_ASH_BASE_URL": f"http://127.0.0.1:{port}",
        "ROSE_ASH_SECRET_KEY": f"e2e-secret-{name}-0123456789abcdef",
        "ROSE_ASH_WORKER_IN_PROCESS": "true",
        "ROSE_ASH_LOG_LEVEL": "INFO",
        "ROSE_ASH_AUTH_RATE_LIMIT": "1000",
        "PYTHONUNBUFFERED": "1",
    })
    if database_url:
        env["ROSE_ASH_DATABASE_URL"] = database_url
    env.update(extra_env or {})
    server = AppServer(base_url=f"http://127.0.0.1:{port}", port=port, data_dir=data_dir, env=env,
                       log_path=tmp_path / f"{name}.log")
    server.cli("database", "upgrade", "--no-prompt")
    server.start()
    try:
        yield server
    finally:
        server.stop()
