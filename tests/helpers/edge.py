"""Real varnishd (the reference VCL) in front of an app server, for e2e tests and benchmarks."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.helpers.server import free_port

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_VCL = ROOT / "deploy" / "varnish" / "default.vcl"


@contextmanager
def varnish_in_front(backend_port: int, tmp_path: Path, *, probe_interval: str = "0.5s",
                     storage: str = "malloc,64m", port: int | None = None) -> Iterator[str]:
    """deploy/varnish/default.vcl with its backend on ``backend_port``; yields the edge's URL.

    The edge passes the client's Host through, and the app answers only its BASE_URL's host, so
    start the app with ``ROSE_ASH_BASE_URL=http://127.0.0.1:<port>`` (the edge's port)."""
    varnishd = shutil.which("varnishd")
    if varnishd is None:
        raise RuntimeError("varnishd is not installed")
    vcl = DEFAULT_VCL.read_text()
    vcl = re.sub(r'\.port = "\d+";', f'.port = "{backend_port}";', vcl)
    vcl = vcl.replace('include "./rose-ash.vcl";', f'include "{DEFAULT_VCL.parent / "rose-ash.vcl"}";')
    vcl = vcl.replace(".interval = 2s;", f".interval = {probe_interval};")
    path = tmp_path / "edge.vcl"
    path.write_text(vcl)
    port = port or free_port()
    log_path = tmp_path / "varnishd.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [varnishd, "-F", "-j", "none", "-n", str(tmp_path / "varnish"), "-a", f"127.0.0.1:{port}",
             "-T", "127.0.0.1:0", "-f", str(path), "-s", storage],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(log_path.read_text()[-4000:])
            try:
                httpx.get(url + "/healthz", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
