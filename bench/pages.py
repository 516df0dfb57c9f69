"""Benchmark: composed pages, uncached, beside a bare Litestar page (and the home page through Varnish).

All run in the same invocation on this machine, measured with ``wrk``:

- baseline: a bare Litestar app (one process, uvicorn) rendering one Jinja template whose
  output is the composed home page's HTML (same bytes), no middleware, no database;
- the real app (``rose-ash run --web-concurrency N``) serving, uncached by any edge: the home page,
  the blog index, a post (imported from tests/fixtures/ghost), the forge index and a repository
  page (made through the Gitea API and pushed to with git);
- edge: the home page behind Varnish 7.1 with deploy/varnish/default.vcl (cache hits; one run).

For each database (``--databases sqlite,postgresql``; PostgreSQL on a scratch database made on
``--database-url``, default ``$ROSE_ASH_DATABASE_URL``) and each worker count (``--workers 1,2``) it
prints req/s and p99 per target, the ratios against the baseline, the fragment fallbacks the app
logged during the run and the load average (other work on the machine skews every number alike).

    .venv/bin/python bench/pages.py [--duration 10] [--connections 32] [--threads 2] [--workers 1,2]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
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
from tests.helpers.server import ROSE_ASH, AppServer  # noqa: E402

PASSWORD = "correct horse battery staple"
GHOST_EXPORT = ROOT / "tests" / "fixtures" / "ghost" / "ghost-6-export.json"


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
    """A throw-away PostgreSQL database beside the one ``server_url`` names (``<name>_bench``)."""
    import asyncio

    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    base = make_url(server_url)
    name = f"{base.database or 'rose_ash'}_bench_{os.getpid()}"

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


def wait_ok(url: str, timeout: float = 60.0, host: str | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1, headers={"Host": host} if host else None).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


@contextmanager
def serve_app(tmp_path: Path, database_url: str, workers: int) -> Iterator[AppServer]:
    """``rose-ash run --web-concurrency N`` on a migrated database with INFO logs in ``app.log``."""
    port = free_port()
    data_dir = tmp_path / "data"
    data_dir.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROSE_ASH_")}
    env.update({"ROSE_ASH_DATA_DIR": str(data_dir), "ROSE_ASH_BASE_URL": f"http://127.0.0.1:{port}",
                "ROSE_ASH_SECRET_KEY": "bench-secret-0123456789abcdef0123456789",
                "ROSE_ASH_WORKER_IN_PROCESS": "false", "ROSE_ASH_LOG_LEVEL": "WARNING",
                "ROSE_ASH_AUTH_RATE_LIMIT": "100000", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)})
    if database_url:
        env["ROSE_ASH_DATABASE_URL"] = database_url
    log_path = tmp_path / f"app-{workers}.log"
    server = AppServer(base_url=f"http://127.0.0.1:{port}", port=port, data_dir=data_dir, env=env,
                       log_path=log_path)
    with log_path.open("ab") as log:
        server.proc = subprocess.Popen(
            [ROSE_ASH, "run", "--host", "127.0.0.1", "--port", str(port), "--web-concurrency", str(workers)],
            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_ok(server.base_url + "/healthz")
        yield server
    finally:
        if server.proc.poll() is None:
            os.killpg(server.proc.pid, signal.SIGTERM)
            try:
                server.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.proc.pid, signal.SIGKILL)
                server.proc.wait(timeout=5)


def seed_content(server: AppServer, tmp_path: Path) -> dict[str, str]:
    """Members, the Ghost fixture's posts and a pushed repository; returns the target paths."""
    for i in range(5):
        done = server.cli("users", "create", "--username", f"member{i}", "--email", f"member{i}@example.org",
                          "--password", PASSWORD, check=False)
        if done.returncode:
            raise SystemExit(done.stdout + done.stderr)
    server.cli("blog", "import-ghost", str(GHOST_EXPORT))
    token = server.cli("tokens", "create", "--username", "member0", "--scope", "repo:write",
                       "--scope", "api").stdout.strip().splitlines()[-1]
    made = httpx.post(server.base_url + "/api/v1/user/repos", json={"name": "bench", "description": "bench"},
                      headers={"Authorization": f"token {token}"})
    if made.status_code != 201:
        raise SystemExit(f"creating the repository: {made.status_code} {made.text}")
    work = tmp_path / "work"
    git = ["git", "-C", str(work), "-c", "user.name=Bench", "-c", "user.email=bench@example.org"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    (work / "README.md").write_text("# bench\n\nA repository for the page benchmark.\n")
    subprocess.run([*git, "add", "README.md"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "first"], check=True)
    remote = server.base_url.replace("http://", f"http://member0:{token}@") + "/forge/member0/bench.git"
    subprocess.run([*git, "push", "-q", remote, "main"], check=True, capture_output=True)
    index = httpx.get(server.base_url + "/blog/").text
    post = re.search(r'href="(/blog/(?!tag/|author/|feed|admin)[a-z0-9-]+/?)"', index)
    if post is None:
        raise SystemExit("no post linked from /blog/")
    return {"home": "/", "blog index": "/blog/", "a post": post.group(1), "forge index": "/forge/",
            "a repository": "/forge/member0/bench"}


def to_ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", value.strip())
    if not match:
        raise ValueError(value)
    number, unit = float(match.group(1)), match.group(2)
    return number / 1000 if unit == "us" else number * 1000 if unit == "s" else number


def run_wrk(url: str, duration: int, connections: int, threads: int,
            host: str | None = None) -> tuple[float, float]:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    header = ["-H", f"Host: {host}"] if host else []
    subprocess.run([wrk, "-t1", "-c4", "-d2s", *header, url], capture_output=True, check=True)  # warm up
    out = subprocess.run([wrk, f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", *header, url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = to_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{url}: {errors.group(1)} error responses\n{out}")
    return rps, p99


def fallbacks_in(log: str) -> int:
    """Fragment fallbacks the app logged (fragments/registry.py logs each one as an error)."""
    return len(re.findall(r"fragment \S+ (?:failed|timed out)", log))


def bench_database(args: argparse.Namespace, label: str, database_url: str, workers: list[int]) -> None:
    with tempfile.TemporaryDirectory(prefix="rose-ash-bench-") as tmp:
        tmp_path = Path(tmp)
        migrate_env = {k: v for k, v in os.environ.items() if not k.startswith("ROSE_ASH_")}
        migrate_env.update({"ROSE_ASH_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT),
                            **({"ROSE_ASH_DATABASE_URL": database_url} if database_url else {})})
        subprocess.run([ROSE_ASH, "database", "upgrade", "--no-prompt"], env=migrate_env, cwd=ROOT,
                       check=True, capture_output=True)
        results: dict[str, tuple[float, float]] = {}
        fallbacks: dict[int, int] = {}
        targets: dict[str, str] = {}
        home_bytes = 0
        for n in workers:
            with serve_app(tmp_path, database_url, n) as server:
                if not targets:
                    targets = seed_content(server, tmp_path)
                    home = httpx.get(server.base_url + "/")
                    assert home.status_code == 200
                    home_bytes = len(home.content)
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
                        results["bare Litestar + 1 Jinja template"] = run_wrk(
                            f"http://127.0.0.1:{bare_port}/", args.duration, args.connections, args.threads)
                    finally:
                        bare.terminate()
                        bare.wait(timeout=10)
                before = len(server.log_path.read_text(errors="replace"))
                for name, path in targets.items():
                    if httpx.get(server.base_url + path).status_code != 200:
                        raise SystemExit(f"{path} does not answer 200")
                    results[f"{name} ({n}w)"] = run_wrk(server.base_url + path, args.duration, args.connections,
                                                         args.threads)
                    print(f"  {label} {name} ({n}w): {results[f'{name} ({n}w)'][0]:.0f} req/s", flush=True)
                if args.varnish and n == workers[0]:
                    try:
                        with varnish_in_front(server.port, tmp_path, probe_interval="5s",
                                              storage="malloc,256m") as edge:
                            # The edge passes the Host through; the app answers only its own.
                            host = server.base_url.removeprefix("http://")
                            wait_ok(edge + "/", host=host)
                            results[f"home via Varnish ({n}w)"] = run_wrk(edge + "/", args.duration,
                                                                           args.connections, args.threads, host)
                    except RuntimeError as exc:  # the edge is a comparison, not the subject
                        print(f"Varnish run skipped: {exc}", flush=True)
                fallbacks[n] = fallbacks_in(server.log_path.read_text(errors="replace")[before:])
    base_rps, base_p99 = results["bare Litestar + 1 Jinja template"]
    load = os.getloadavg()
    print(f"\ndatabase: {label}; wrk -t{args.threads} -c{args.connections} -d{args.duration}s; home page "
          f"{home_bytes} bytes; load average after the run {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    print(f"{'target (app workers)':<36} {'req/s':>10} {'p99 ms':>9} {'rps/base':>9} {'p99/base':>9}")
    for name, (rps, p99) in results.items():
        print(f"{name:<36} {rps:>10.0f} {p99:>9.2f} {rps / base_rps:>9.2f} {p99 / base_p99:>9.2f}")
    for n, count in fallbacks.items():
        print(f"fragment fallbacks logged by the app during the {n}-worker run: {count}")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", default="1", help="comma-separated web worker counts, e.g. 1,2")
    parser.add_argument("--databases", default="sqlite,postgresql",
                        help="sqlite and/or postgresql (PostgreSQL needs --database-url)")
    parser.add_argument("--database-url", default=os.environ.get("ROSE_ASH_DATABASE_URL", ""),
                        help="a PostgreSQL URL (postgresql+asyncpg://.../db); a scratch database db_bench_<pid> "
                             "is made beside it (default: $ROSE_ASH_DATABASE_URL)")
    parser.add_argument("--no-varnish", dest="varnish", action="store_false", help="skip the Varnish run")
    parser.add_argument("--serve-bare", nargs=2, metavar=("PORT", "TEMPLATE_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(int(args.serve_bare[0]), args.serve_bare[1])
        return
    workers = [int(n) for n in args.workers.split(",") if n.strip()]
    for kind in [k.strip() for k in args.databases.split(",") if k.strip()]:
        if kind == "sqlite":
            bench_database(args, "SQLite", "", workers)
        elif kind == "postgresql":
            if not args.database_url.startswith("postgresql"):
                print("\nPostgreSQL skipped: no --database-url / ROSE_ASH_DATABASE_URL")
                continue
            with scratch_database(args.database_url) as url:
                bench_database(args, "PostgreSQL", url, workers)
        else:
            raise SystemExit(f"unknown database {kind!r}")


if __name__ == "__main__":
    main()
