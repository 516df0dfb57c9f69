"""Benchmark: market CSV import (rows/s) and product search over 50,000 products on PostgreSQL.

In one invocation, on a scratch PostgreSQL database made beside ``--database-url``:

1. CSV import: a generated file of ``--rows`` rows (one active product per row, titles and tags
   drawn from a produce vocabulary) goes through the real path (``store_upload`` checks and
   stores it in DATA_DIR, ``run_import`` applies it in chunks, one transaction per chunk with its
   progress, search documents, purge and product-event jobs): prints rows/s. These products are
   the search corpus, so nothing else seeds the database.
2. Search: ``rose-ash run`` (``--workers`` web processes, no edge cache, and every request with a
   fresh ``&n=`` so the in-process page cache never answers: every request runs the query) answers
   ``/market/search?q=…`` under ``wrk``, the queries rotating through words and word prefixes of
   the vocabulary; beside it, in the same run, the bare Litestar page of
   bench/pages.py (one route rendering one Jinja template with the same bytes as a search page).
   Prints p50, p99 and req/s of both, the ratio (goals: p99 < 50 ms, ≥ 0.3x the bare page) and
   wrk's timeouts (requests it gave up on after 2 s, which its percentiles leave out).

    .venv/bin/python bench/market.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/postgres \
        [--rows 50000] [--duration 10] [--connections 32] [--threads 2] [--workers 1] [--skip-search] [--csv-sqlite]

``--csv-sqlite`` imports the same file a second time into a fresh SQLite database (the CSV
import's other engine); ``--skip-search`` stops after the import(s).

``--keep-database NAME`` seeds a database of that name beside ``--database-url`` once and keeps it:
a later run with the same name (and ``--rows``) migrates it to head and skips the import (which
takes minutes on a loaded machine), so search changes can be measured again and again. Drop it
with ``DROP DATABASE NAME`` when done.

``--pgbench`` also runs the search's own SQL (the first-page statement the app sends, one file per
query of :data:`QUERIES`, the words written in) under ``pgbench -n -c 4 -T <duration>`` against
the seeded database: PostgreSQL's ceiling for the query alone, beside the page's req/s.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._harness import bare_page, migrated_scratch, require_postgresql, rotating_script, run_wrk  # noqa: E402
from bench.pages import serve_app  # noqa: E402
from tests.helpers.server import ROSE_ASH  # noqa: E402

VEGETABLES = ("apple", "pear", "plum", "cherry", "carrot", "leek", "onion", "garlic", "potato", "tomato", "kale",
              "cabbage", "pumpkin", "squash", "beetroot", "radish", "spinach", "chard", "bean", "pea")
KINDS = ("juice", "jam", "chutney", "pie", "soup", "box", "crate", "bunch", "loaf", "cake", "pickle", "cordial")
ADJECTIVES = ("heritage", "organic", "smoked", "spiced", "sweet", "early", "late", "wild", "golden", "red")
QUERIES = ("apple", "pear jam", "heritage", "smoked garlic", "pumpkin soup", "tom", "organic kale", "cherry",
           "spiced chutney", "wild", "golden beetroot", "carrot cake", "plum", "squash box", "radish", "sweet pea",
           "red onion", "leek", "late potato", "cordial")


def write_csv(path: Path, rows: int, seed: int = 7) -> None:
    from domains.market.csv_import import HEADER

    rng = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        for i in range(rows):
            veg, kind, adj = rng.choice(VEGETABLES), rng.choice(KINDS), rng.choice(ADJECTIVES)
            title = f"{adj.title()} {veg} {kind} {i}"
            description = (f"Our {adj} {veg} {kind}, made in small batches from {rng.choice(VEGETABLES)}s grown "
                           f"on the farm. Best with {rng.choice(VEGETABLES)}.")
            price = f"{rng.randint(1, 40)}.{rng.randint(0, 99):02d}"
            writer.writerow([f"p-{i}", title, description, f"SKU-{i}", "", price, "", "", str(rng.randint(0, 30)),
                             "", f"{veg};{kind}", "active"])


async def import_csv(settings: Any, path: Path) -> tuple[float, float, Any]:
    """The real import path in this process: store the upload, run the job's work to the end."""
    from uuid_utils.compat import uuid7

    from app.db import make_engine, make_sessionmaker
    from domains.account.schemas import SignupInput
    from domains.account.services import AccountService
    from domains.market.csv_import import run_import, store_upload
    from domains.market.import_models import CsvImport

    engine = make_engine(settings.database_url)
    sessionmaker = make_sessionmaker(engine, settings)
    try:
        async with sessionmaker() as session, session.begin():
            user = await AccountService(session).signup(SignupInput(
                username="grower", email="grower@example.org", password="correct horse battery staple",
                display_name="Grower"))
            user.is_producer = True
            user_id = user.id
        import_id = uuid7()

        async def chunks() -> Any:
            with path.open("rb") as f:
                while chunk := f.read(1 << 20):
                    yield chunk

        started, cpu = time.perf_counter(), time.process_time()
        await store_upload(settings.data_dir, import_id, chunks())
        async with sessionmaker() as session, session.begin():
            session.add(CsvImport(id=import_id, owner_id=user_id, filename=path.name))
        run = await run_import(sessionmaker, settings.data_dir, import_id, currency=settings.market_currency,
                               base_url=settings.base_url)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        assert run is not None and run.state == "done", run and run.error
        return elapsed, cpu, run
    finally:
        await engine.dispose()


async def analyze(url: str) -> None:
    """``ANALYZE`` the scratch database (what autovacuum does within a minute of a bulk import)."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text("ANALYZE"))
    finally:
        await engine.dispose()


CSV_GOAL = 1_000  # rows/s (issue 16)


def report_csv(engine: str, elapsed: float, cpu: float, run: Any) -> None:
    """One line per engine. The importing process's own CPU time too: on a shared machine the wall
    clock mostly measures the other processes; rows per CPU-second is what this code costs."""
    from domains.market.csv_import import CHUNK

    load = os.getloadavg()
    rate = run.processed_rows / elapsed
    print(f"CSV import on {engine}: {run.processed_rows} rows ({run.created_count} created, {run.skipped_count} "
          f"skipped) in {elapsed:.1f} s: {rate:.0f} rows/s wall ({rate / CSV_GOAL:.2f}x the goal of {CSV_GOAL}); "
          f"{cpu:.1f} s of this process's CPU ({run.processed_rows / cpu:.0f} rows per CPU-second); chunks of "
          f"{CHUNK}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)


def rotating_queries(path: Path) -> Path:
    """A wrk script sending each request with the next query of :data:`QUERIES` and a fresh ``&n=``:
    the whole-page cache (fragments/page_cache.py) keys on the query string, so it never answers
    and every request runs the search (uncached, as the issue asks)."""
    from urllib.parse import quote_plus

    return rotating_script(path, [f"/market/search?q={quote_plus(q)}" for q in QUERIES])


@contextmanager
def kept_database(database_url: str, name: str, rows: int) -> Iterator[tuple[str, Path, bool]]:
    """``(url, tmp_path, seeded)``: the database ``name`` beside ``database_url``, created if absent
    and migrated to head, kept afterwards; ``seeded`` when it already holds ``rows`` products (the
    import is then skipped)."""
    import tempfile

    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    if not name.replace("_", "").isalnum():
        raise SystemExit("--keep-database: letters, digits and _ only")
    base = make_url(database_url)
    url = base.set(database=name).render_as_string(hide_password=False)

    async def prepare() -> bool:
        engine = create_async_engine(base, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                exists = (await conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})).first()
                if exists is None:
                    await conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            await engine.dispose()
        return exists is not None

    existed = asyncio.run(prepare())
    with tempfile.TemporaryDirectory(prefix="rose-ash-bench-") as tmp:
        tmp_path = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROSE_ASH_")}
        env.update({"ROSE_ASH_DATA_DIR": str(tmp_path / "data"), "ROSE_ASH_DATABASE_URL": url,
                    "PYTHONPATH": str(ROOT)})
        subprocess.run([ROSE_ASH, "database", "upgrade", "--no-prompt"], env=env, cwd=ROOT, check=True,
                       capture_output=True)

        async def count() -> int:
            engine = create_async_engine(url)
            try:
                async with engine.connect() as conn:
                    return int((await conn.execute(text("SELECT count(*) FROM market_product"))).scalar_one())
            finally:
                await engine.dispose()

        yield url, tmp_path, existed and asyncio.run(count()) >= rows


@contextmanager
def _fresh(database_url: str) -> Iterator[tuple[str, Path, bool]]:
    with migrated_scratch(database_url) as (url, tmp_path):
        yield url, tmp_path, False


def search_sql(url: str, hinted: bool = True) -> list[str]:
    """The first-page statement the search page sends for each of :data:`QUERIES` once it has
    answered that query before (so with the short-walk hint, search.short_walks, learnt by
    searching each query once here), its words written in: what pgbench runs. ``hinted=False``:
    every query walks first (what was sent before the hint)."""
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.db import make_engine
    from domains.market import search
    from domains.market.controllers import LIST_SIZE

    async def learn() -> None:
        engine = make_engine(url)
        try:
            async with AsyncSession(engine) as session:
                for q in QUERIES:
                    await search.MarketSearch(session, page_size=LIST_SIZE).search(search.SearchFilters(q=q))
        finally:
            await engine.dispose()

    asyncio.run(learn())
    out = []
    for q in QUERIES:
        words = search.terms(q)
        engine = search.PostgresEngine()
        gin_only = hinted and (engine.params(words)["tq"], "", "") in search.short_walks
        stmt = search._first_page(search._windowed_shape(search.PostgresEngine, len(words), False, False,
                                                         search.RANK_WINDOW, gin_only), LIST_SIZE)
        params = engine.params(words)
        compiled = stmt.params(params).compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
        # pgbench reads ``:name`` as a variable even inside a string literal (``'pear':A``):
        # write the tsquery literals' colons as an escape.
        sql = re.sub(r"'(?:[^']|'')*'", lambda m: "E" + m[0].replace(":", "\\072") if ":" in m[0] else m[0],
                     str(compiled))
        out.append(sql + ";\n")
    return out


def run_pgbench(url: str, tmp_path: Path, duration: int, clients: int = 4, hinted: bool = True) -> tuple[float, float]:
    """``(tps, mean latency ms)`` of ``pgbench -n -M prepared`` running the search's SQL
    (:func:`search_sql`), a query of :data:`QUERIES` drawn at random per transaction. Prepared, as
    the app's statements are (asyncpg prepares each once per connection): each query is planned
    once per client, not on every run."""
    import shutil

    pgbench = shutil.which("pgbench")
    if pgbench is None:
        raise SystemExit("pgbench is not installed (apt-get install postgresql-client)")
    files = []
    for i, sql in enumerate(search_sql(url, hinted)):
        path = tmp_path / f"query-{i}-{hinted}.sql"
        path.write_text(sql)
        files += ["-f", str(path)]
    u = make_url(url)
    env = {**os.environ, "PGPASSWORD": u.password or ""}
    out = subprocess.run([pgbench, "-n", "-h", u.host or "127.0.0.1", "-p", str(u.port or 5432), "-U",
                          u.username or "postgres", "-M", "prepared", *files, "-c", str(clients), "-j", "2",
                          "-T", str(duration), u.database or ""],
                         capture_output=True, text=True, env=env, check=True).stdout
    tps = float(re.search(r"tps = ([\d.]+)", out).group(1))  # type: ignore[union-attr]
    latency = float(re.search(r"latency average = ([\d.]+) ms", out).group(1))  # type: ignore[union-attr]
    return tps, latency


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("ROSE_ASH_DATABASE_URL", ""))
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--skip-search", action="store_true", help="only the CSV import")
    parser.add_argument("--csv-sqlite", action="store_true",
                        help="also import the same file into a fresh SQLite database (after PostgreSQL)")
    parser.add_argument("--keep-database", default="", metavar="NAME",
                        help="seed this database once and keep it; later runs skip the import")
    parser.add_argument("--pgbench", action="store_true", help="also run the search's SQL alone under pgbench")
    args = parser.parse_args()
    require_postgresql(args.database_url)
    from app.settings import Settings

    if args.keep_database:
        place = kept_database(args.database_url, args.keep_database, args.rows)
    else:
        place = _fresh(args.database_url)
    with place as (url, tmp_path, seeded):
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROSE_ASH_")}
        env.update({"ROSE_ASH_DATA_DIR": str(tmp_path / "data"), "ROSE_ASH_DATABASE_URL": url, "PYTHONPATH": str(ROOT)})
        settings = Settings.from_env({}, data_dir=tmp_path / "data", database_url=url,
                                     secret_key="bench-secret-0123456789abcdef0123456789")
        from app.factory import create_app

        create_app(settings)  # every domain's job kinds and topic subscribers, as in the web process
        source = tmp_path / "products.csv"
        write_csv(source, args.rows)
        if seeded:
            print(f"{args.keep_database}: already seeded, import skipped", flush=True)
        else:
            elapsed, cpu, run = asyncio.run(import_csv(settings, source))
            report_csv("PostgreSQL", elapsed, cpu, run)
        # Statistics for the planner, as autovacuum's ANALYZE would soon have them after 50,000
        # inserts: without them it plans the search on an empty table's guesses.
        asyncio.run(analyze(url))
        if args.csv_sqlite:
            lite_url = f"sqlite+aiosqlite:///{tmp_path / 'csv-bench.sqlite3'}"
            lite_env = {**env, "ROSE_ASH_DATA_DIR": str(tmp_path / "data-sqlite"), "ROSE_ASH_DATABASE_URL": lite_url}
            subprocess.run([ROSE_ASH, "database", "upgrade", "--no-prompt"], env=lite_env, cwd=ROOT, check=True,
                           capture_output=True)
            lite = Settings.from_env({}, data_dir=tmp_path / "data-sqlite", database_url=lite_url,
                                     secret_key="bench-secret-0123456789abcdef0123456789")
            report_csv("SQLite", *asyncio.run(import_csv(lite, source)))
        if args.skip_search:
            return
        script = rotating_queries(tmp_path / "queries.lua")
        with serve_app(tmp_path, url, args.workers) as server:
            sample = httpx.get(server.base_url + "/market/search?q=apple", timeout=30)
            if sample.status_code != 200 or "apple" not in sample.text.lower():
                raise SystemExit(f"/market/search?q=apple answered {sample.status_code}")
            with bare_page(tmp_path, sample.text) as (bare_url, bare_pid):
                base = run_wrk(bare_url, args.duration, args.connections, args.threads, cpu_session=bare_pid)
            search = run_wrk(server.base_url + "/market/search?q=apple", args.duration, args.connections,
                             args.threads, script, cpu_session=server.proc.pid if server.proc else 0,
                             cpu_database=make_url(url).database or "")
        pg = (run_pgbench(url, tmp_path, args.duration), run_pgbench(url, tmp_path, args.duration, hinted=False)) \
            if args.pgbench else None
        load = os.getloadavg()
        print(f"\nPostgreSQL, {args.rows} products; wrk -t{args.threads} -c{args.connections} -d{args.duration}s; "
              f"{args.workers} web worker(s); search page {len(sample.content)} bytes; load average after the run "
              f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
        # CPU ms per request of the serving processes (all web workers): on a shared machine the
        # wall-clock numbers mostly measure the neighbours; this is what the page itself costs.
        print(f"{'target':<44} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'rps/base':>9} {'timeouts':>9} "
              f"{'CPU ms/req':>11} {'DB CPU ms/req':>14}")
        rows = (("bare Litestar + 1 Jinja template", base), (f"/market/search?q= ({len(QUERIES)} queries)", search))
        for name, (rps, p50, p99, timeouts, per_request, db_per_request) in rows:
            print(f"{name:<44} {rps:>9.0f} {p50:>8.2f} {p99:>8.2f} {rps / base[0]:>9.2f} {timeouts:>9} "
                  f"{per_request:>11.2f} {db_per_request:>14.2f}")
        if pg is not None:
            for name, (tps, latency) in (("pgbench -c4: the search SQL alone", pg[0]),
                                         ("pgbench -c4: the same, every query walked", pg[1])):
                print(f"{name:<44} {tps:>9.0f} {'':>8} {'':>8} {tps / base[0]:>9.2f}   (mean latency {latency:.2f} ms)")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
