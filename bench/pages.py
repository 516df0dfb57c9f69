"""Benchmark: the composed home page, uncached and through Varnish, beside a bare Litestar page.

All three run in the same invocation on this machine, each server as one process, measured
with ``wrk``:

- baseline: a bare Litestar app (one process, uvicorn) rendering one Jinja template whose
  output is the composed home page's HTML (same bytes), no middleware, no database;
- composed: the real app (``rose-ash run``) rendering ``/`` from its fragments on every request
  (session/auth skipped, fragments resolved, ETag computed, one SQLite query for the members);
- edge: the same app behind Varnish 7.1 with deploy/varnish/default.vcl (cache hits).

Prints req/s and p99 latency per target and the ratios against the baseline.

    .venv/bin/python bench/pages.py [--duration 10] [--connections 32] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from litestar import Litestar, get
from litestar.contrib.jinja import JinjaTemplateEngine
from litestar.response import Template
from litestar.template.config import TemplateConfig

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.edge import varnish_in_front  # noqa: E402
from tests.helpers.server import app_server  # noqa: E402


def serve_bare(port: int, template_dir: str) -> None:
    """The baseline server (run in a child process): one route, one Jinja template."""
    import uvicorn

    @get("/")
    async def page() -> Template:
        return Template("page.html", context={"title": "Rose Ash"})

    app = Litestar(route_handlers=[page], template_config=TemplateConfig(
        directory=Path(template_dir), engine=JinjaTemplateEngine))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


@contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """A throw-away PostgreSQL database on ``server_url`` (or "" for the default SQLite)."""
    if not server_url:
        yield ""
        return
    import asyncio

    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    base = make_url(server_url)
    name = f"rose_ash_bench_{os.getpid()}"

    async def run(sql: str) -> None:
        engine = create_async_engine(base, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(text(sql))
        finally:
            await engine.dispose()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ok(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def to_ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", value.strip())
    if not match:
        raise ValueError(value)
    number, unit = float(match.group(1)), match.group(2)
    return number / 1000 if unit == "us" else number * 1000 if unit == "s" else number


def run_wrk(url: str, duration: int, connections: int, threads: int) -> tuple[float, float]:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    subprocess.run([wrk, "-t1", "-c4", "-d2s", url], capture_output=True, check=True)  # warm up
    out = subprocess.run([wrk, f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = to_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{url}: {errors.group(1)} error responses\n{out}")
    return rps, p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--database-url", default="",
                        help="a PostgreSQL server URL (postgresql+asyncpg://...); a scratch database is made on it")
    parser.add_argument("--serve-bare", nargs=2, metavar=("PORT", "TEMPLATE_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(int(args.serve_bare[0]), args.serve_bare[1])
        return

    with tempfile.TemporaryDirectory(prefix="rose-ash-bench-") as tmp, scratch_database(args.database_url) as db_url:
        tmp_path = Path(tmp)
        env = {"ROSE_ASH_WORKER_IN_PROCESS": "false", "ROSE_ASH_LOG_LEVEL": "WARNING"}
        with app_server(tmp_path, extra_env=env, database_url=db_url or None) as server:
            for i in range(5):
                done = server.cli("users", "create", "--username", f"member{i}", "--email",
                                  f"member{i}@example.org", "--password", "correct horse battery staple", check=False)
                if done.returncode:
                    raise SystemExit(done.stdout + done.stderr)
            home = httpx.get(server.base_url + "/")
            assert home.status_code == 200
            templates = tmp_path / "bare-templates"
            templates.mkdir()
            # Same bytes as the composed page, as a template with one variable.
            (templates / "page.html").write_text(home.text.replace("<title>Rose Ash</title>",
                                                                   "<title>{{ title }}</title>"))
            bare_port = free_port()
            bare = subprocess.Popen([sys.executable, __file__, "--serve-bare", str(bare_port), str(templates)],
                                    env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True)
            try:
                wait_ok(f"http://127.0.0.1:{bare_port}/")
                with varnish_in_front(server.port, tmp_path, probe_interval="5s", storage="malloc,256m") as edge:
                    wait_ok(edge + "/")
                    results = {
                        "bare Litestar + 1 Jinja template": run_wrk(f"http://127.0.0.1:{bare_port}/", args.duration,
                                                                  args.connections, args.threads),
                        "composed home, uncached (app)": run_wrk(server.base_url + "/", args.duration,
                                                                 args.connections, args.threads),
                        "composed home via Varnish": run_wrk(edge + "/", args.duration, args.connections,
                                                             args.threads),
                    }
                log = server.log_path.read_text(errors="replace")
                fallbacks = log.count('"logger": "rose_ash.fragments"')
            finally:
                bare.terminate()
                bare.wait(timeout=10)

    base_rps, base_p99 = results["bare Litestar + 1 Jinja template"]
    print(f"\ndatabase: {'PostgreSQL' if args.database_url else 'SQLite'}; "
          f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s, page {len(home.content)} bytes, "
          f"one server process each\n")
    print(f"{'target':<36} {'req/s':>10} {'p99 ms':>9} {'rps/base':>9} {'p99/base':>9}")
    for name, (rps, p99) in results.items():
        print(f"{name:<36} {rps:>10.0f} {p99:>9.2f} {rps / base_rps:>9.2f} {p99 / base_p99:>9.2f}")
    composed_rps = results["composed home, uncached (app)"][0]
    print(f"\nfragment fallbacks logged by the app during the run (deadline misses under load): {fallbacks}")
    print(f"\nVarnish / composed uncached: {results['composed home via Varnish'][0] / composed_rps:.1f}x req/s")


if __name__ == "__main__":
    main()
