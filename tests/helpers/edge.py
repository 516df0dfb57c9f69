"""Real varnishd (the reference VCL) in front of an app server, for e2e tests and benchmarks."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.helpers.server import free_port

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_VCL = ROOT / "deploy" / "varnish" / "default.vcl"

BACKEND = re.compile(r"^backend app \{\n.*?^\}\n", re.S | re.M)
# Several replicas: one backend per port (named app0, app1, ...) in a round-robin director, as a
# deployment with several app hosts would write it. ``X-Rose-Ash-Backend: <n>`` pins a request to
# replica n (tests use it to say "through A"), and ``X-Rose-Ash-Served-By`` names the replica that
# filled the response. The header does not enter the cache hash: both replicas fill one cache.
DIRECTOR = """
import directors;

sub vcl_init {{
  new replicas = directors.round_robin();
{adds}
}}

sub vcl_recv {{
  set req.backend_hint = replicas.backend();
{pins}
  unset req.http.X-Rose-Ash-Backend;
}}

sub vcl_backend_response {{
  set beresp.http.X-Rose-Ash-Served-By = beresp.backend.name;
}}
"""


def edge_vcl(backend_ports: int | Sequence[int], *, probe_interval: str = "2s") -> str:
    """deploy/varnish/default.vcl with its backend section rewritten for ``backend_ports``."""
    ports = [backend_ports] if isinstance(backend_ports, int) else list(backend_ports)
    vcl = DEFAULT_VCL.read_text()
    match = BACKEND.search(vcl)
    if match is None:
        raise RuntimeError(f"no `backend app {{...}}` block in {DEFAULT_VCL}")
    block = match.group(0).replace(".interval = 2s;", f".interval = {probe_interval};")
    if len(ports) == 1:
        section = re.sub(r'\.port = "\d+";', f'.port = "{ports[0]}";', block)
    else:
        backends = [re.sub(r'\.port = "\d+";', f'.port = "{port}";', block)
                    .replace("backend app {", f"backend app{n} {{") for n, port in enumerate(ports)]
        adds = "\n".join(f"  replicas.add_backend(app{n});" for n in range(len(ports)))
        pins = "\n".join(f'  if (req.http.X-Rose-Ash-Backend == "{n}") {{ set req.backend_hint = app{n}; }}'
                          for n in range(len(ports)))
        section = "".join(backends) + DIRECTOR.format(adds=adds, pins=pins)
    vcl = vcl[:match.start()] + section + vcl[match.end():]
    return vcl.replace('include "./rose-ash.vcl";', f'include "{DEFAULT_VCL.parent / "rose-ash.vcl"}";')


@contextmanager
def varnish_in_front(backend_port: int | Sequence[int], tmp_path: Path, *, probe_interval: str = "0.5s",
                     storage: str = "malloc,64m", port: int | None = None) -> Iterator[str]:
    """deploy/varnish/default.vcl with its backend on ``backend_port``; yields the edge's URL.

    With several ports, a round-robin director over one backend per port (see ``DIRECTOR``).
    The edge passes the client's Host through, and the app answers only its BASE_URL's host, so
    start the app with ``ROSE_ASH_BASE_URL=http://127.0.0.1:<port>`` (the edge's port)."""
    varnishd = shutil.which("varnishd")
    if varnishd is None:
        raise RuntimeError("varnishd is not installed")
    vcl = edge_vcl(backend_port, probe_interval=probe_interval)
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
