"""Benchmark: the Mastodon API's home timeline, ``GET /api/v1/timelines/home?limit=40``, for a
member following 200 accounts with 20,000 statuses, on PostgreSQL (issue 20, item 3).

In one invocation, on a scratch PostgreSQL database made beside ``--database-url``:

1. Seed, with bulk inserts through the hub's models (not 20,000 HTTP posts): ``--accounts``
   remote accounts (default 200) the member follows, ``--statuses`` public notes (default 20,000)
   spread over them and over a year, ``--others`` accounts nobody here follows with as many notes
   again between them (what the home query must skip), and a boost, a like and a reply for every
   tenth note (what the page's counts and boost wrappers read). The member's OAuth token (scope
   ``read``) is stored through the OAuth provider's own store.
2. ``rose-ash run`` (``--workers`` web processes, no edge) answers the home timeline under ``wrk``
   with the member's token, beside the bare Litestar page of bench/pages.py serving the same JSON
   bytes from one template, in the same run. Prints req/s, p50, p99 (goal p99 < 50 ms), wrk's
   timeouts, the server's and PostgreSQL's CPU ms per request and the ratio to the bare page;
   before wrk, ``--solo`` requests one at a time (what the page costs alone). Then a paced run
   (``--paced-rate``, 0 to skip): ``--paced-connections`` connections, each waiting
   connections/rate seconds before each request (wrk's ``delay()``), so at most that rate is
   offered, well below saturation: its p99 is the page's latency without wrk's own queue.
3. Before both, in this process: the app built as the tests build it answers the page
   ``--solo`` times through httpx's ASGI transport, counting its SQL statements (a 10-status page
   must cost as many as a 40-status one) and the CPU ms each request takes (client included).

    .venv/bin/python bench/mastodon_api.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/postgres \
        [--accounts 200] [--statuses 20000] [--others 50] [--duration 10] [--connections 16] [--threads 2]
        [--workers 1] [--solo 10] [--paced-rate 10] [--paced-connections 4]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._harness import solo_times  # noqa: E402
from bench.events import settle  # noqa: E402
from bench.market import run_wrk  # noqa: E402
from bench.pages import PASSWORD, free_port, scratch_database, serve_app, wait_ok  # noqa: E402
from tests.helpers.server import ROSE_ASH  # noqa: E402

P99_GOAL_MS = 50.0
PATH = "/api/v1/timelines/home?limit=40"
MEMBER = "reader"
BATCH = 2000


async def seed(url: str, base_url: str, args: argparse.Namespace) -> str:
    """The accounts, follows, notes, boosts, likes and replies; returns the member's access token."""
    from sqlalchemy import insert, select
    from sqlalchemy.ext.asyncio import async_sessionmaker

    from app.db import make_engine
    from app.settings import Settings
    from domains.account.models import User
    from federation.activitypub.core import Federation
    from federation.activitypub.models import Actor, Announce, APObject, Follow, Like
    from federation.oauth.store import OAuthStore, new_access_token

    settings = Settings.from_env({}, database_url=url, base_url=base_url,
                                 secret_key="bench-secret-0123456789abcdef0123456789")
    engine = make_engine(settings.database_url)
    rng = random.Random(20)
    now = datetime.now(UTC)
    public = "https://www.w3.org/ns/activitystreams#Public"
    started = time.perf_counter()
    try:
        maker = async_sessionmaker(engine, expire_on_commit=False)
        async with maker() as session, session.begin():
            user = (await session.scalars(select(User).where(User.username == MEMBER))).one()
            async with Federation(session, settings) as fed:
                me = await fed.local_actor_for_user(user)
            followed = [f"https://peer{i % 40}.example/users/u{i}" for i in range(args.accounts)]
            others = [f"https://other{i % 10}.example/users/o{i}" for i in range(args.others)]
            await session.execute(insert(Actor), [
                {"uri": uri, "local": False, "type": "Person", "username": uri.rsplit("/", 1)[-1],
                 "domain": uri.split("/")[2], "name": f"Account {n}", "inbox": uri + "/inbox",
                 "followers_url": uri + "/followers", "fetched_at": now, "icon_url": ""}
                for n, uri in enumerate([*followed, *others])])
            await session.execute(insert(Follow), [
                {"follower": me.uri, "followee": uri, "state": "accepted", "activity_id": f"{me.uri}#f{n}"}
                for n, uri in enumerate(followed)])
            client, _secret = await OAuthStore(session).create_client(
                name="bench", redirect_uris=["urn:ietf:wg:oauth:2.0:oob"], scope="read",
                grant_types=["authorization_code"], dynamic=True)
            token = new_access_token()
            await OAuthStore(session).save_token(client=client, user=user, family_id=uuid.uuid4(), access_token=token,
                                                 refresh_token=None, scope="read", expires_in=7 * 24 * 3600)
        notes: list[str] = []
        for authors, count in ((followed, args.statuses), (others, args.statuses if others else 0)):
            for first in range(0, count, BATCH):
                rows: list[dict[str, Any]] = []
                for n in range(first, min(first + BATCH, count)):
                    author = authors[n % len(authors)]
                    oid = f"{author}/statuses/{n}"
                    notes.append(oid)
                    rows.append({"ap_id": oid, "type": "Note", "local": False, "attributed_to": author,
                                 "content": f"<p>Note {n} from {author.rsplit('/', 1)[-1]}: #garden news</p>",
                                 "url": oid, "visibility": "public", "to": [public], "cc": [author + "/followers"],
                                 "mentions": [], "published": now - timedelta(minutes=rng.randint(1, 525_600)),
                                 "raw": {}})
                async with maker() as session, session.begin():
                    await session.execute(insert(APObject), rows)
        async with maker() as session, session.begin():
            tenth = notes[: args.statuses: 10]
            booster = [followed[(n * 7) % len(followed)] for n in range(len(tenth))]
            await session.execute(insert(Announce), [
                {"actor": b, "object_id": oid, "activity_id": f"{oid}#boost", "published": now}
                for b, oid in zip(booster, tenth, strict=True) if not oid.startswith(b)])
            await session.execute(insert(Like), [
                {"actor": followed[(n * 3 + 1) % len(followed)], "object_id": oid, "activity_id": f"{oid}#like"}
                for n, oid in enumerate(tenth)])
            await session.execute(insert(APObject), [
                {"ap_id": f"{oid}/reply", "type": "Note", "local": False, "attributed_to": followed[n % len(followed)],
                 "content": "<p>a reply</p>", "url": f"{oid}/reply", "in_reply_to": oid, "visibility": "public",
                 "to": [public], "cc": [], "mentions": [], "published": now - timedelta(minutes=n), "raw": {}}
                for n, oid in enumerate(tenth)])
        async with engine.connect() as conn:
            from sqlalchemy import text

            await conn.execute(text("COMMIT"))
            await conn.execute(text("ANALYZE"))
        total = len(notes) + len(notes[: args.statuses: 10])
        print(f"seeded {args.accounts} followed + {args.others} other accounts, {total} notes, "
              f"{len(notes[: args.statuses: 10])} boosts/likes in {time.perf_counter() - started:.1f} s", flush=True)
        return token
    finally:
        await engine.dispose()


async def in_process(url: str, base_url: str, data_dir: Path, token: str, count: int) -> tuple[int, int, float]:
    """The page answered in this process: (SQL statements for limit=10, for limit=40, median CPU
    ms per request). No server, no sockets but PostgreSQL's: what the handler itself costs."""
    import statistics

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from app import create_app
    from app.settings import Settings

    settings = Settings.from_env({}, database_url=url, base_url=base_url, data_dir=data_dir, log_level="WARNING",
                                 secret_key="bench-secret-0123456789abcdef0123456789", worker_in_process=False)
    app = create_app(settings)
    seen: list[str] = []

    def counted(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    headers = {"Authorization": f"Bearer {token}"}
    statements: dict[int, int] = {}
    cpu: list[float] = []
    async with app.lifespan(), httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url) as client:
        for limit in (10, 40, 10, 40):  # the second round counts: the first warms caches
            seen.clear()
            event.listen(Engine, "before_cursor_execute", counted)
            try:
                got = await client.get(f"/api/v1/timelines/home?limit={limit}", headers=headers)
            finally:
                event.remove(Engine, "before_cursor_execute", counted)
            if got.status_code != 200 or len(got.json()) != limit:
                raise SystemExit(f"in process, limit={limit} answered {got.status_code}: {got.text[:300]}")
            statements[limit] = len(seen)
        for _ in range(count):
            started = time.process_time()
            await client.get(PATH, headers=headers)
            cpu.append((time.process_time() - started) * 1000)
    return statements[10], statements[40], statistics.median(cpu)


def auth_script(path: Path, token: str, pause_ms: float = 0.0) -> Path:
    """A wrk script sending the member's bearer token; with ``pause_ms``, each connection waits
    that long before each request (a paced run)."""
    pacing = f"function delay()\n  return {pause_ms:.0f}\nend\n" if pause_ms else ""
    path.write_text(f'wrk.headers["Authorization"] = "Bearer {token}"\n{pacing}')
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("ROSE_ASH_DATABASE_URL", ""))
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--statuses", type=int, default=20_000)
    parser.add_argument("--others", type=int, default=50)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--solo", type=int, default=10, help="requests one at a time, before wrk")
    parser.add_argument("--paced-rate", type=float, default=10.0,
                        help="req/s offered in the paced run after the saturating one (0: none)")
    parser.add_argument("--paced-connections", type=int, default=4)
    args = parser.parse_args()
    if not args.database_url.startswith("postgresql"):
        raise SystemExit("--database-url must be a PostgreSQL URL (the benchmark is on PostgreSQL)")
    if args.accounts < 1 or args.statuses < args.accounts:
        raise SystemExit("--accounts must be at least 1 and --statuses at least --accounts")

    with scratch_database(args.database_url) as url, tempfile.TemporaryDirectory(prefix="rose-ash-bench-") as tmp:
        tmp_path = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROSE_ASH_")}
        env.update({"ROSE_ASH_DATA_DIR": str(tmp_path / "data"), "ROSE_ASH_DATABASE_URL": url, "PYTHONPATH": str(ROOT)})
        subprocess.run([ROSE_ASH, "database", "upgrade", "--no-prompt"], env=env, cwd=ROOT, check=True,
                       capture_output=True)
        with serve_app(tmp_path, url, args.workers) as server:
            server.cli("users", "create", "--username", MEMBER, "--email", "reader@example.org", "--password", PASSWORD)
            token = asyncio.run(seed(url, server.base_url, args))
            small, large, cpu = asyncio.run(in_process(url, server.base_url, tmp_path / "in-process", token,
                                                       max(args.solo, 10)))
            print(f"  in process: {small} SQL statements for 10 statuses, {large} for 40; "
                  f"{cpu:.1f} ms CPU per request (median)", flush=True)
            headers = {"Authorization": f"Bearer {token}"}
            sample = httpx.get(server.base_url + PATH, headers=headers, timeout=60)
            if sample.status_code != 200 or len(sample.json()) != 40:
                raise SystemExit(f"{PATH} answered {sample.status_code}: {sample.text[:300]}")
            boosts = sum(1 for s in sample.json() if s["reblog"] is not None)
            templates = tmp_path / "bare-templates"
            templates.mkdir()
            (templates / "page.html").write_text("{{ title }}" + sample.text)
            bare_port = free_port()
            bare = subprocess.Popen([sys.executable, str(ROOT / "bench" / "pages.py"), "--serve-bare", str(bare_port),
                                     str(templates)], env={**os.environ, "PYTHONPATH": str(ROOT)},
                                    start_new_session=True)
            try:
                wait_ok(f"http://127.0.0.1:{bare_port}/")
                bare_solo = one_at_a_time_auth(f"http://127.0.0.1:{bare_port}", "/", args.solo, {})
                print(f"  bare page alone: median {bare_solo[0]:.1f} ms, slowest {bare_solo[1]:.1f} ms", flush=True)
                base = run_wrk(f"http://127.0.0.1:{bare_port}/", args.duration, args.connections, args.threads,
                               cpu_session=bare.pid)
                print(f"  bare page: {base[0]:.0f} req/s, p99 {base[2]:.1f} ms", flush=True)
            finally:
                bare.terminate()
                bare.wait(timeout=10)
            sid = server.proc.pid if server.proc else 0
            solo = one_at_a_time_auth(server.base_url, PATH, args.solo, headers)
            print(f"  home alone: median {solo[0]:.0f} ms, slowest {solo[1]:.0f} ms", flush=True)
            database = url.rsplit("/", 1)[-1]
            home = run_wrk(server.base_url + PATH, args.duration, args.connections, args.threads,
                           auth_script(tmp_path / "auth.lua", token), cpu_session=sid, cpu_database=database)
            print(f"  home: {home[0]:.0f} req/s, p99 {home[2]:.1f} ms", flush=True)
            waited = settle(server.base_url)
            print(f"  (the server finished the requests wrk gave up on {waited:.0f} s later)", flush=True)
            paced = None
            if args.paced_rate > 0:
                pause = args.paced_connections * 1000 / args.paced_rate
                paced = run_wrk(server.base_url + PATH, args.duration, args.paced_connections,
                                min(args.threads, args.paced_connections),
                                auth_script(tmp_path / "paced.lua", token, pause), cpu_session=sid,
                                cpu_database=database)
                print(f"  home paced at <= {args.paced_rate:g} req/s: {paced[0]:.1f} req/s, p99 {paced[2]:.1f} ms",
                      flush=True)
        load = os.getloadavg()
        print(f"\nPostgreSQL; member follows {args.accounts} accounts with {args.statuses} statuses ({args.others} "
              f"unfollowed accounts with as many); wrk -t{args.threads} -c{args.connections} -d{args.duration}s; "
              f"{args.workers} web worker(s); page {len(sample.content)} bytes, 40 statuses ({boosts} boosts); "
              f"load average after the run {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
        print(f"{'target':<46} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'rps/base':>9} {'timeouts':>9} "
              f"{'CPU ms/req':>11} {'DB CPU ms':>10} {'p99 goal':>9}")
        rows = [("bare Litestar + 1 Jinja template", base), (f"GET {PATH}", home)]
        if paced is not None:
            rows.append((f"  paced: {args.paced_connections} conns, <= {args.paced_rate:g} req/s offered", paced))
        for name, (rps, p50, p99, timeouts, per_request, db_per_request) in rows:
            goal = "" if name.startswith("bare") else (
                "met" if rps > 0 and p99 < P99_GOAL_MS and not timeouts else "MISSED")
            print(f"{name:<46} {rps:>9.1f} {p50:>8.2f} {p99:>8.2f} {rps / base[0]:>9.3f} {timeouts:>9} "
                  f"{per_request:>11.2f} {db_per_request:>10.2f} {goal:>9}")
        print(f"\none request at a time ({args.solo}, one client): median {solo[0]:.1f} ms, slowest {solo[1]:.1f} ms "
              f"(bare page: median {bare_solo[0]:.1f} ms, slowest {bare_solo[1]:.1f} ms)", flush=True)
        print(f"in process: {small} SQL statements for a page of 10 statuses, {large} for 40; "
              f"{cpu:.1f} ms CPU per request (median of {max(args.solo, 10)}, client included)", flush=True)


def one_at_a_time_auth(base_url: str, path: str, count: int, headers: dict[str, str]) -> tuple[float, float]:
    """``count`` requests one after another with the token, through one client as an app keeps
    one (bench._harness.solo_times): (median ms, slowest ms)."""
    import statistics

    with httpx.Client(headers=headers, timeout=300) as client:
        client.get(f"{base_url}{path}")  # the connection is opened before the clock starts
        times = solo_times(client, f"{base_url}{path}", count)
    return statistics.median(times), max(times)


if __name__ == "__main__":
    main()
