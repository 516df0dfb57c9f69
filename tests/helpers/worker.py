"""Run ``rose-ash worker`` as a separate process, as the container deployment does."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import anyio

from tests.helpers.server import REPO_ROOT, ROSE_ASH


def start_worker(database_url: str, data_dir: Path, log_path: Path, *args: str) -> subprocess.Popen[bytes]:
    """``rose-ash worker`` with the settings the web app would have (same database and data dir)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROSE_ASH_")}
    env.update({
        "ROSE_ASH_PASSWORD_HASH_COST": os.environ.get("ROSE_ASH_PASSWORD_HASH_COST", "test"),
        "ROSE_ASH_DATABASE_URL": database_url,
        "ROSE_ASH_DATA_DIR": str(data_dir),
        "ROSE_ASH_SECRET_KEY": "worker-test-secret-0123456789abcdef",
        "ROSE_ASH_WORKER_IN_PROCESS": "false",  # as in compose.yaml: the web app leaves jobs to this process
        "ROSE_ASH_LOG_LEVEL": "DEBUG",
        "PYTHONUNBUFFERED": "1",
    })
    with log_path.open("ab") as log:
        return subprocess.Popen([ROSE_ASH, "worker", *args], env=env, cwd=REPO_ROOT,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def read_log(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


async def wait_for_line(proc: subprocess.Popen[bytes], log_path: Path, needle: str, seconds: float = 60) -> None:
    """Wait until the worker has written ``needle`` to its log; fail if it exits first."""
    with anyio.fail_after(seconds):
        while needle not in read_log(log_path):
            if proc.poll() is not None:
                raise AssertionError(f"rose-ash worker exited ({proc.returncode}):\n{read_log(log_path)[-4000:]}")
            await anyio.sleep(0.05)
