"""Profile: uncached ``/market/search?q=`` and the ``/events/`` month view, in-process, under cProfile.

Seeds a scratch database (SQLite in a temporary directory, or PostgreSQL beside ``--database-url``)
the way bench/market.py and bench/events.py do (the CSV import's real path; the events service),
then runs the app in this process behind httpx's ASGI transport (no server, no sockets: the
profile sees the handlers and the middleware, not a client's thread) and prints, per page, the
CPU ms per request (``time.process_time``, the number that the loaded machine does not blur) and
cProfile's top functions.

    .venv/bin/python bench/profile_requests.py [--database-url postgresql+asyncpg://…/postgres]
        [--rows 50000] [--events 2000] [--series 100] [--requests 50] [--top 40] [--only market|events]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import io
import os
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from urllib.parse import quote_plus

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.market import QUERIES, analyze, import_csv, write_csv  # noqa: E402
from bench.pages import scratch_database  # noqa: E402
from tests.helpers.server import ROSE_ASH  # noqa: E402

SECRET = "bench-secret-0123456789abcdef0123456789"


@contextlib.contextmanager
def database(server_url: str, tmp_path: Path, keep: bool) -> Iterator[str]:
    """SQLite under ``tmp_path``; or a scratch PostgreSQL database (``--keep``: one named
    ``<name>_profile``, made once and kept, like the SQLite file, so a second run skips the seeding)."""
    if not server_url:
        yield f"sqlite+aiosqlite:///{tmp_path / 'profile.sqlite3'}"
    elif keep:
        from sqlalchemy import text
        from sqlalchemy.engine import make_url
        from sqlalchemy.ext.asyncio import create_async_engine

        base = make_url(server_url)
        name = f"{base.database or 'rose_ash'}_profile"

        async def create() -> None:
            engine = create_async_engine(base, isolation_level="AUTOCOMMIT")
            try:
                async with engine.connect() as conn:
                    if not (await conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"),
                                               {"n": name})).first():
                        await conn.execute(text(f'CREATE DATABASE "{name}"'))
            finally:
                await engine.dispose()

        asyncio.run(create())
        yield base.set(database=name).render_as_string(hide_password=False)
    else:
        with scratch_database(server_url) as url:
            yield url


def fresh(path: str, n: str) -> str:
    """``path`` with its own ``n=`` (the page cache keys on the query string, so it never answers)."""
    return f"{path}{'&' if '?' in path else '?'}n={n}"


async def measure(app: object, paths: list[str], requests: int, top: int, label: str, profiler_name: str) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
                                 base_url="http://127.0.0.1:8000") as client:
        for n, path in enumerate(paths[:3]):  # warm: templates compiled, statements cached
            got = await client.get(fresh(path, f"warm-{n}"))
            assert got.status_code == 200, (path, got.status_code, got.text[:300])
        collecting: list[float] = []
        spent = [0.0, 0]

        def timed(phase: str, info: dict[str, int]) -> None:  # gc.callbacks: the collector's own share
            if phase == "start":
                collecting.append(time.process_time())
            elif collecting:
                spent[0] += time.process_time() - collecting.pop()
                spent[1] += info["generation"] == 2

        gc.callbacks.append(timed)
        cpu, wall = time.process_time(), time.perf_counter()
        for n in range(requests):
            await client.get(fresh(paths[n % len(paths)], f"plain-{n}"))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        gc.callbacks.remove(timed)
        print(f"\n=== {label}: {requests} uncached requests, {cpu * 1000 / requests:.2f} CPU ms/request "
              f"(of which the garbage collector {spent[0] * 1000 / requests:.2f}, {spent[1]} full collections), "
              f"{wall * 1000 / requests:.2f} wall ms/request (no profiler; client included) ===", flush=True)
        if profiler_name == "pyinstrument":
            from pyinstrument import Profiler

            sampler = Profiler(async_mode="enabled", interval=0.0005)
            sampler.start()
            for n in range(requests):
                await client.get(fresh(paths[n % len(paths)], f"profiled-{n}"))
            sampler.stop()
            print(sampler.output_text(unicode=True, color=False, show_all=False), flush=True)
            return
        profiler = cProfile.Profile(time.process_time)  # CPU time: waits on the database are not ours
        profiler.enable()
        for n in range(requests):
            await client.get(fresh(paths[n % len(paths)], f"profiled-{n}"))
        profiler.disable()
        for order in ("tottime", "cumulative"):
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(top)
            print(f"--- by {order} (times are for {requests} requests) ---")
            print("\n".join(line for line in out.getvalue().splitlines()[6:] if line.strip()), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="", help="PostgreSQL server URL (default: SQLite)")
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--series", type=int, default=100)
    parser.add_argument("--tickets", type=int, default=10)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--profiler", choices=("cprofile", "pyinstrument"), default="cprofile",
                        help="pyinstrument (sampling, async-aware) when installed")
    parser.add_argument("--keep", type=Path, default=None,
                        help="a directory for the SQLite database and DATA_DIR, seeded once and reused")
    parser.add_argument("--only", choices=("market", "events"), default=None)
    args = parser.parse_args()
    from app.settings import Settings

    with tempfile.TemporaryDirectory(prefix="rose-ash-profile-") as tmp:
        tmp_path = args.keep or Path(tmp)
        tmp_path.mkdir(parents=True, exist_ok=True)
        seeded = (tmp_path / "seeded").exists()
        with database(args.database_url, tmp_path, args.keep is not None) as url:
            env = {k: v for k, v in os.environ.items() if not k.startswith("ROSE_ASH_")}
            env.update({"ROSE_ASH_DATA_DIR": str(tmp_path / "data"), "ROSE_ASH_DATABASE_URL": url,
                        "PYTHONPATH": str(ROOT)})
            subprocess.run([ROSE_ASH, "database", "upgrade", "--no-prompt"], env=env, cwd=ROOT, check=True,
                           capture_output=True)
            settings = Settings.from_env({}, data_dir=tmp_path / "data", database_url=url, secret_key=SECRET,
                                         worker_in_process=False, log_level="WARNING")
            from app.asgi import create_app  # as the server makes it (app.asgi: its heap frozen at start-up)

            app = create_app(settings)
            if args.only != "events" and not seeded:
                source = tmp_path / "products.csv"
                write_csv(source, args.rows)
                elapsed, _cpu, _run = asyncio.run(import_csv(settings, source))
                print(f"imported {args.rows} products in {elapsed:.0f} s", flush=True)
                if url.startswith("postgresql"):
                    asyncio.run(analyze(url))
            if args.only != "market" and not seeded:
                from bench.events import seed

                asyncio.run(seed(url, args))
            if args.keep and args.only is None:
                (tmp_path / "seeded").touch()
            paths = {"market": [f"/market/search?q={quote_plus(q)}" for q in QUERIES],
                     "events": [f"/events/month/{date.today():%Y-%m}"]}

            async def run() -> None:
                async with app.lifespan():
                    for name, targets in paths.items():
                        if args.only in (None, name):
                            await measure(app, targets, args.requests, args.top,
                                          f"{name} on {url.split(':', 1)[0]}", args.profiler)

            asyncio.run(run())


if __name__ == "__main__":
    main()
