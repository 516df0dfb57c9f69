"""Benchmark: the events month view and ``/events.ics`` over 2,000 events, and check-ins per second.

In one invocation, on a scratch PostgreSQL database made beside ``--database-url`` (issue 18,
Benchmark):

1. Seed, through the events service (every check, as the staff form saves): one calendar with
   ``--events`` events (default 2,000), ``--series`` of them (default 100) weekly series running a
   year, the rest one-off dates spread over the year around today, with places, tags and a
   Markdown description. Plus a one-off event tomorrow with ``--tickets`` confirmed tickets
   (default 1,000; rows written directly, as the booking service writes them) and an admin with an
   ``events`` token, for the door.
2. Pages: ``rose-ash run`` (``--workers`` web processes, no edge) answers the current month's grid
   (``/events/month/YYYY-MM``) and the whole-site feed (``/events.ics``) under ``wrk``, each request
   with a fresh ``?n=`` so the in-process page cache (fragments/page_cache.py) never answers: every
   request runs the queries, the recurrence expansion and the template (uncached). Beside them, in
   the same run, the bare Litestar page of bench/pages.py (one route rendering one Jinja template
   with the same bytes as the month page). Prints req/s, p50, p99 (goal p99 < 50 ms), wrk's
   timeouts and the server's CPU ms per request; and, before each wrk run, ``--solo`` requests one at
   a time (what a page costs alone, when the load test saturates the server). After each
   saturation run, a paced run of the same page (``--paced-rate``, default about 50 req/s from
   ``--paced-connections`` connections, wrk's Lua ``delay()``): below saturation its p99 is the
   page's own latency, where the saturation run's p99 is mostly queueing.
3. Check-ins: ``POST /events/<slug>/checkin/redeem`` (Pretix's redeem API, token auth) for distinct
   tickets from ``--checkin-concurrency`` concurrent clients, each answer checked to be ``ok``:
   prints check-ins per second, p50 and p99.

    .venv/bin/python bench/events.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/postgres \
        [--events 2000] [--series 100] [--tickets 1000] [--duration 10] [--connections 32] [--threads 2]
        [--workers 1] [--checkin-concurrency 8] [--paced-rate 50] [--paced-connections 4] [--profile]

``--profile`` also renders the month page and the feed in this process under pyinstrument (when it
is installed) and prints where the time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import secrets
import statistics
import sys
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._harness import (  # noqa: E402
    bare_page,
    migrated_scratch,
    require_postgresql,
    rotating_script,
    run_wrk,
    session_cpu,
    solo_times,
)
from bench.pages import PASSWORD, serve_app  # noqa: E402

P99_GOAL_MS = 50.0
PLACES = ("The barn", "Community hall", "Orchard", "Market square", "Library room")
TOPICS = ("bread", "cheese", "pruning", "bees", "compost", "repair", "seeds", "knitting", "cider", "jam")
ZONES = ("Europe/London", "Europe/London", "Europe/London", "Europe/Paris", "America/New_York")
DOOR_EVENT = "door-night"


async def seed(url: str, args: argparse.Namespace) -> tuple[int, list[str]]:
    """The calendar's events and the door event's tickets; returns (dates in this month, secrets)."""
    from sqlalchemy import update

    from app.db import make_engine
    from app.settings import Settings
    from domains.account.models import User
    from domains.events.booking_models import CONFIRMED, Booking, Position
    from domains.events.services.events import CalendarForm, EventForm, EventService

    settings = Settings.from_env({}, database_url=url, secret_key="bench-secret-0123456789abcdef0123456789")
    engine = make_engine(settings.database_url)
    rng = random.Random(18)
    today = date.today()
    try:
        from sqlalchemy.ext.asyncio import async_sessionmaker

        maker = async_sessionmaker(engine, expire_on_commit=False)
        async with maker() as session, session.begin():
            await EventService(session).save_calendar(CalendarForm(name="Workshops", slug="workshops",
                                                                   description="Everything we teach."))
        started = time.perf_counter()
        batch = 100
        for first in range(0, args.events, batch):
            async with maker() as session, session.begin():
                service = EventService(session)
                for i in range(first, min(first + batch, args.events)):
                    series = i < args.series
                    day = today + timedelta(days=rng.randint(-30, 20) if series else rng.randint(-180, 180))
                    hour = rng.randint(9, 19)
                    topic = rng.choice(TOPICS)
                    await service.save(EventForm(
                        title=f"{topic.title()} {'club' if series else 'workshop'} {i}", calendar="workshops",
                        description=f"Learn **{topic}** with the co-op.\n\nBring a friend; tea is on us. ({i})",
                        tz=rng.choice(ZONES), start_date=day.isoformat(), start_time=f"{hour:02d}:00",
                        end_time=f"{hour + 2:02d}:00", place_name=rng.choice(PLACES),
                        place_address="1 Orchard Lane, Totnes", tags=f"{topic}, co-op",
                        rrule=f"FREQ=WEEKLY;UNTIL={(day + timedelta(days=365)):%Y%m%d}T235959Z" if series else ""))
        print(f"seeded {args.events} events ({args.series} weekly series) in {time.perf_counter() - started:.1f} s",
              flush=True)
        door_day = today + timedelta(days=1)
        async with maker() as session, session.begin():
            door = await EventService(session).save(EventForm(
                title="Door night", slug=DOOR_EVENT, calendar="workshops", tz="Europe/London",
                start_date=door_day.isoformat(), start_time="19:00", end_time="23:00",
                capacity=str(args.tickets), visibility="unlisted"))
            await session.execute(update(User).where(User.username == "door").values(is_admin=True))
            key = f"{door_day:%Y%m%d}T190000"
            codes: list[str] = []
            per_booking = 10
            for b in range(0, args.tickets, per_booking):
                quantity = min(per_booking, args.tickets - b)
                booking = Booking(id=uuid.uuid4(), event_id=door.id, occurrence=key, name=f"Guest {b}",
                                  email=f"guest{b}@example.org", quantity=quantity, state=CONFIRMED)
                session.add(booking)
                for p in range(quantity):
                    code = secrets.token_urlsafe(16)  # 128 random bits, as the booking service makes them
                    codes.append(code)
                    session.add(Position(booking_id=booking.id, secret=code, attendee=f"Guest {b + p}"))
        return len(codes), codes
    finally:
        await engine.dispose()


def paced_script(path: Path, targets: list[str], connections: int, rate: float) -> Path:
    """``rotating_script`` plus wrk's ``delay()``: each of ``connections`` connections waits
    ``connections / rate`` seconds before each request, so the offered load is about ``rate``
    requests per second (a little less: a request's own time adds to each connection's cycle),
    well below saturation. Its p99 is then a page's own latency, not the queue a saturated
    server's p99 is (about connections x service time / workers)."""
    rotating_script(path, targets)
    with path.open("a") as script:
        script.write(f"delay = function()\n  return {connections * 1000 / rate:.0f}\nend\n")
    return path


def settle(base_url: str, limit: float = 900.0) -> float:
    """Wait until the server answers ``/healthz`` within half a second: requests wrk gave up on are
    still being served after it stops, and the next phase must not queue behind them."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit:
        sent = time.perf_counter()
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(base_url + "/healthz", timeout=60)
        if time.perf_counter() - sent < 0.5:
            break
        time.sleep(1)
    return time.perf_counter() - started


def one_at_a_time(base_url: str, path: str, count: int, sid: int) -> tuple[float, float, float]:
    """``count`` requests one after another: (median ms, slowest ms, server CPU ms per request), what
    a page costs alone when the load test saturates the server."""
    cpu = session_cpu(sid)
    # No keep-alive: each request still opens its own connection and the workers share them.
    with httpx.Client(timeout=300, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        times = solo_times(client, f"{base_url}{path}", count, tag="solo-")
    return statistics.median(times), max(times), (session_cpu(sid) - cpu) * 1000 / count


async def checkins(base_url: str, token: str, codes: list[str], concurrency: int) -> tuple[float, float, float, int]:
    """Redeem every code once from ``concurrency`` clients; (per second, p50 ms, p99 ms, count)."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for code in codes:
        queue.put_nowait(code)
    latencies: list[float] = []
    url = f"{base_url}/events/{DOOR_EVENT}/checkin/redeem"
    headers = {"Authorization": f"Bearer {token}"}

    async def client() -> None:
        async with httpx.AsyncClient(timeout=120, headers=headers) as http:
            while True:
                try:
                    code = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                sent = time.perf_counter()
                answer = await http.post(url, json={"secret": code, "type": "entry", "nonce": secrets.token_hex(8)})
                latencies.append((time.perf_counter() - sent) * 1000)
                if answer.status_code != 201 or answer.json().get("status") != "ok":
                    raise RuntimeError(f"redeem answered {answer.status_code}: {answer.text[:200]}")

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return len(latencies) / elapsed, statistics.median(latencies), p99, len(latencies)


def profile(url: str, tmp_path: Path, month: str) -> None:
    """The month page and the feed rendered in this process under pyinstrument (if installed): the
    app runs in this event loop (ASGI transport), so the profile sees the handlers, not a test
    client's thread."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        print("--profile: pyinstrument is not installed; skipped", flush=True)
        return
    from app.factory import create_app
    from app.settings import Settings

    settings = Settings.from_env({}, data_dir=tmp_path / "data-profile", database_url=url,
                                 secret_key="bench-secret-0123456789abcdef0123456789", worker_in_process=False)

    async def run() -> None:
        app = create_app(settings)
        async with app.lifespan(), httpx.AsyncClient(transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
                                                     base_url="http://127.0.0.1:8000") as client:
            for path in (f"/events/month/{month}", "/events.ics"):
                await client.get(path, params={"n": "warm"})
                profiler = Profiler(async_mode="enabled")
                profiler.start()
                for n in range(10):
                    got = await client.get(path, params={"n": str(n)})
                    assert got.status_code == 200, (path, got.status_code)
                profiler.stop()
                print(f"\n--- pyinstrument: 10 x {path} ---", flush=True)
                print(profiler.output_text(unicode=True, color=False, show_all=False), flush=True)

    asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("ROSE_ASH_DATABASE_URL", ""))
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--series", type=int, default=100)
    parser.add_argument("--tickets", type=int, default=1000)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--checkin-concurrency", type=int, default=8)
    parser.add_argument("--solo", type=int, default=5, help="requests of each page one at a time, before wrk")
    parser.add_argument("--paced-rate", type=float, default=50.0,
                        help="also a paced run of each page at about this many req/s (0: none)")
    parser.add_argument("--paced-connections", type=int, default=4)
    parser.add_argument("--profile", action="store_true", help="also profile both pages in-process (pyinstrument)")
    args = parser.parse_args()
    require_postgresql(args.database_url)
    if not 0 <= args.series <= args.events:
        raise SystemExit("--series must be between 0 and --events")
    month = f"{date.today():%Y-%m}"

    with migrated_scratch(args.database_url) as (url, tmp_path):
        with serve_app(tmp_path, url, args.workers) as server:
            server.cli("users", "create", "--username", "door", "--email", "door@example.org", "--password", PASSWORD)
            tickets, codes = asyncio.run(seed(url, args))
            token = server.cli("tokens", "create", "--username", "door", "--scope", "events").stdout.strip() \
                .splitlines()[-1]
            month_path = f"/events/month/{month}"
            sample = httpx.get(server.base_url + month_path, timeout=60)
            feed = httpx.get(server.base_url + "/events.ics", timeout=60)
            if sample.status_code != 200 or feed.status_code != 200:
                raise SystemExit(f"{month_path} answered {sample.status_code}, /events.ics {feed.status_code}")
            dates_shown = sample.text.count('<li class="cal-')
            feed_events = feed.text.count("BEGIN:VEVENT")
            with bare_page(tmp_path, sample.text) as (bare_url, bare_pid):
                base = run_wrk(bare_url, args.duration, args.connections, args.threads, cpu_session=bare_pid)
                print(f"  bare page: {base.rps:.0f} req/s, p99 {base.p99:.1f} ms", flush=True)
            sid = server.proc.pid if server.proc else 0
            results = {"bare Litestar + 1 Jinja template": base}
            solo: dict[str, tuple[float, float, float]] = {}
            for name, path, script in ((f"{month_path} (month grid)", month_path, "month.lua"),
                                       ("/events.ics (whole-site feed)", "/events.ics", "feed.lua")):
                solo[name] = one_at_a_time(server.base_url, path, args.solo, sid)
                print(f"  {name} alone: median {solo[name][0]:.0f} ms, slowest {solo[name][1]:.0f} ms, "
                      f"server CPU {solo[name][2]:.1f} ms per request", flush=True)
                results[name] = run_wrk(server.base_url + path, args.duration, args.connections, args.threads,
                                        rotating_script(tmp_path / script, [path]), cpu_session=sid)
                print(f"  {name}: {results[name][0]:.0f} req/s, p99 {results[name][2]:.1f} ms", flush=True)
                waited = settle(server.base_url)
                print(f"  (the server finished the requests wrk gave up on {waited:.0f} s later)", flush=True)
                if args.paced_rate > 0:
                    # Added beside the saturation run (which stays): the same page at a fixed offered
                    # rate well below saturation, so its p99 is the page's latency, not a queue.
                    paced = f"{name.split(' ', 1)[0]} paced ~{args.paced_rate:.0f} req/s"
                    results[paced] = run_wrk(server.base_url + path, args.duration, args.paced_connections,
                                             min(args.threads, args.paced_connections),
                                             paced_script(tmp_path / f"paced-{script}", [path],
                                                          args.paced_connections, args.paced_rate),
                                             cpu_session=sid)
                    print(f"  {paced}: {results[paced][0]:.0f} req/s, p99 {results[paced][2]:.1f} ms", flush=True)
                    settle(server.base_url)
            cpu_before = session_cpu(sid)
            redeemed = asyncio.run(checkins(server.base_url, token, codes, args.checkin_concurrency))
            redeem_cpu_ms = (session_cpu(sid) - cpu_before) * 1000 / max(redeemed[3], 1)
        load = os.getloadavg()
        print(f"\nPostgreSQL, {args.events} events ({args.series} weekly series) in one calendar; wrk -t{args.threads} "
              f"-c{args.connections} -d{args.duration}s; {args.workers} web worker(s); month page "
              f"{len(sample.content)} bytes with {dates_shown} dates; feed {len(feed.content)} bytes with "
              f"{feed_events} VEVENTs; load average after the run {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
        if args.paced_rate > 0:
            print(f"(rows marked paced: wrk -c{args.paced_connections} with a Lua delay() offering about "
                  f"{args.paced_rate:.0f} req/s, below saturation; the other rows saturate the server, where p99 "
                  "is mostly queueing: about connections x service time / workers)\n")
        print(f"{'target':<40} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'rps/base':>9} {'timeouts':>9} "
              f"{'CPU ms/req':>11} {'p99 goal':>9}")
        for name, (rps, p50, p99, timeouts, per_request, *_) in results.items():
            # No completed request (each outlived wrk's run) reads as p99 0: that is a miss too.
            goal = "" if name.startswith("bare") else (
                "met" if rps > 0 and p99 < P99_GOAL_MS and not timeouts else "MISSED")
            print(f"{name:<40} {rps:>9.0f} {p50:>8.2f} {p99:>8.2f} {rps / base[0]:>9.2f} {timeouts:>9} "
                  f"{per_request:>11.2f} {goal:>9}")
        print(f"\none request at a time ({args.solo} each):")
        for name, (median, slowest, per_request) in solo.items():
            print(f"{name:<40} median {median:>8.1f} ms, slowest {slowest:>8.1f} ms, server CPU "
                  f"{per_request:>8.1f} ms per request")
        rate, p50, p99, count = redeemed
        print(f"\ncheck-ins through POST /events/{DOOR_EVENT}/checkin/redeem: {count} of {tickets} tickets, all ok, "
              f"from {args.checkin_concurrency} clients: {rate:.0f} check-ins/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms; "
              f"server CPU {redeem_cpu_ms:.2f} ms per check-in", flush=True)
        if args.profile:
            profile(url, tmp_path, month)


if __name__ == "__main__":
    main()
