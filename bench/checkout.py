"""Benchmark: checkouts per second through HTTP on PostgreSQL, beside the bare Litestar page, and
the oversell race (issue 17, Benchmark).

In one invocation, on a scratch PostgreSQL database made beside ``--database-url``:

1. Checkouts: ``rose-ash run`` (``--workers`` web processes, jobs not run in process, so the
   receipts and staff notices placing queues stay queued) serves ``--connections`` anonymous
   visitors, each with its own session, looping for ``--duration`` seconds over one single-line
   checkout: ``POST /cart/add`` (one unit of a variant with plenty of stock) then ``POST
   /cart/place`` (collection, pay on collection, a fresh idempotency key), both the real forms
   with their CSRF token, answered 303. Prints checkouts/s and p50/p99 of one checkout (the two
   requests). Beside it, in the same run and with the same client, the bare Litestar page of
   bench/pages.py (one route rendering one Jinja template with the bytes of the cart page) is
   fetched by as many connections: req/s and p99. The client is Python (httpx) for both, so its
   own cost weighs on both alike; wrk cannot log in, keep a cart and post forms.
2. The oversell race: ``--racers`` (100) visitors each put one unit of a variant with stock
   ``--race-stock`` (10) in their cart, then all place their order at the same moment. Prints the
   orders placed (must equal the stock), the refusals ("insufficient stock", 409) and the
   variant's ``allocated``/``on_hand`` after the race (allocated ≤ on_hand).

    .venv/bin/python bench/checkout.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/postgres \
        [--duration 10] [--connections 16] [--workers 1] [--racers 100] [--race-stock 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._harness import bare_page, migrated_scratch, require_postgresql  # noqa: E402
from bench.pages import serve_app  # noqa: E402

CSRF_FIELD = re.compile(r'name="_csrf_token" value="([^"]+)"')
BULK_SKU, RACE_SKU = "BENCH-BULK", "BENCH-RACE"


async def seed(database_url: str, bulk_stock: int, race_stock: int) -> None:
    """A producer and two active products: one with plenty of stock, one with ``race_stock``."""
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    from domains.market.schemas import StockAdjust
    from domains.market.services import CatalogueService
    from tests.domains.blog.test_roles import member
    from tests.domains.market.conftest import product_input

    engine = create_async_engine(database_url)
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            user = await member(session, "grower")
            user.is_producer = True
            catalogue = CatalogueService(session)
            for title, sku, stock in (("Bench apples", BULK_SKU, bulk_stock), ("Last ten pears", RACE_SKU, race_stock)):
                await catalogue.save(user, product_input(title, skus=(sku,), status="active"))
                await catalogue.adjust_stock(user, StockAdjust(sku=sku, set=stock))
            await session.commit()
    finally:
        await engine.dispose()


async def stock_of(database_url: str, sku: str) -> tuple[int, int, int]:
    """``(on_hand, allocated, orders placed with the SKU)``."""
    from sqlalchemy import func, select
    from sqlalchemy.ext.asyncio import create_async_engine

    from domains.cart.models import Order, OrderLine
    from domains.market.models import StockLevel, Variant

    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            on_hand, allocated = (await conn.execute(
                select(func.coalesce(func.sum(StockLevel.on_hand), 0), func.coalesce(func.sum(StockLevel.allocated), 0))
                .join(Variant, Variant.id == StockLevel.variant_id).where(Variant.sku == sku))).one()
            placed = (await conn.execute(select(func.count()).select_from(OrderLine).join(Order, Order.id ==
                                         OrderLine.order_id).where(OrderLine.sku == sku,
                                                                   Order.number.is_not(None)))).scalar_one()
        return int(on_hand), int(allocated), int(placed)
    finally:
        await engine.dispose()


async def visitor(base_url: str) -> tuple[httpx.AsyncClient, str]:
    client = httpx.AsyncClient(base_url=base_url, timeout=30, follow_redirects=False)
    page = await client.get("/account/login")  # any page with a form: the session's CSRF token
    match = CSRF_FIELD.search(page.text)
    if page.status_code != 200 or match is None:
        raise SystemExit(f"/account/login answered {page.status_code} without a CSRF token")
    return client, match.group(1)


async def add(client: httpx.AsyncClient, csrf: str, sku: str) -> httpx.Response:
    return await client.post("/cart/add", data={"sku": sku, "quantity": "1", "_csrf_token": csrf})


async def place(client: httpx.AsyncClient, csrf: str, n: int) -> httpx.Response:
    return await client.post("/cart/place", data={
        "_csrf_token": csrf, "idempotency_key": secrets.token_urlsafe(24), "email": f"buyer{n}@example.org",
        "fulfilment": "collection", "payment": "collection"})


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


async def checkouts(base_url: str, duration: float, connections: int) -> tuple[float, list[float], int]:
    """``(checkouts/s, per-checkout seconds, failures)`` over ``duration`` seconds."""
    visitors = await asyncio.gather(*(visitor(base_url) for _ in range(connections)))
    times: list[float] = []
    failures = 0
    deadline = time.monotonic() + duration

    async def loop(client: httpx.AsyncClient, csrf: str, who: int) -> None:
        nonlocal failures
        n = 0
        while time.monotonic() < deadline:
            start = time.perf_counter()
            added = await add(client, csrf, BULK_SKU)
            done = await place(client, csrf, who * 1_000_000 + n)
            n += 1
            if added.status_code != 303 or done.status_code != 303 or "/cart/order/" not in done.headers.get(
                    "location", ""):
                failures += 1
                continue
            times.append(time.perf_counter() - start)

    began = time.monotonic()
    await asyncio.gather(*(loop(client, csrf, i) for i, (client, csrf) in enumerate(visitors)))
    elapsed = time.monotonic() - began
    for client, _ in visitors:
        await client.aclose()
    return len(times) / elapsed, times, failures


async def bare_requests(url: str, duration: float, connections: int) -> tuple[float, list[float]]:
    times: list[float] = []
    deadline = time.monotonic() + duration
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=connections)) as client:
        async def loop() -> None:
            while time.monotonic() < deadline:
                start = time.perf_counter()
                answer = await client.get(url)
                if answer.status_code == 200:
                    times.append(time.perf_counter() - start)

        began = time.monotonic()
        await asyncio.gather(*(loop() for _ in range(connections)))
        return len(times) / (time.monotonic() - began), times


async def race(base_url: str, racers: int) -> tuple[int, int, int]:
    """Every racer has the last units in the cart; all place at once. ``(placed, refused, other)``."""
    visitors = await asyncio.gather(*(visitor(base_url) for _ in range(racers)))
    added = await asyncio.gather(*(add(client, csrf, RACE_SKU) for client, csrf in visitors))
    if any(answer.status_code != 303 for answer in added):
        raise SystemExit(f"adding to the cart before the race answered {[a.status_code for a in added]}")
    go = asyncio.Event()

    async def one(client: httpx.AsyncClient, csrf: str, n: int) -> httpx.Response:
        # A fresh connection with the visitor's session: the server closes idle keep-alive ones.
        async with httpx.AsyncClient(base_url=base_url, cookies=client.cookies, timeout=60,
                                     follow_redirects=False) as fresh:
            await fresh.get("/healthz")
            await go.wait()
            return await place(fresh, csrf, n)

    tasks = [asyncio.create_task(one(client, csrf, i)) for i, (client, csrf) in enumerate(visitors)]
    await asyncio.sleep(1.0)  # every racer connected and waiting
    go.set()
    answers = await asyncio.gather(*tasks)
    for client, _ in visitors:
        await client.aclose()
    placed = sum(1 for a in answers if a.status_code == 303 and "/cart/order/" in a.headers.get("location", ""))
    refused = sum(1 for a in answers if a.status_code == 409 and "Not enough stock" in a.text)
    return placed, refused, len(answers) - placed - refused


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("ROSE_ASH_DATABASE_URL", ""))
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--racers", type=int, default=100)
    parser.add_argument("--race-stock", type=int, default=10)
    args = parser.parse_args()
    require_postgresql(args.database_url)
    with migrated_scratch(args.database_url) as (url, tmp_path):
        asyncio.run(seed(url, 10_000_000, args.race_stock))
        with serve_app(tmp_path, url, args.workers) as server:
            sample = httpx.get(server.base_url + "/cart/", timeout=30)
            with bare_page(tmp_path, sample.text) as (bare_url, _pid):
                asyncio.run(bare_requests(bare_url, 2, 4))  # warm up
                base_rps, base_times = asyncio.run(bare_requests(bare_url, args.duration, args.connections))
            asyncio.run(checkouts(server.base_url, 2, 2))  # warm up
            rate, times, failures = asyncio.run(checkouts(server.base_url, args.duration, args.connections))
            try:
                placed, refused, other = asyncio.run(race(server.base_url, args.racers))
            except httpx.HTTPError:
                print(server.log_path.read_text(errors="replace")[-4000:], file=sys.stderr)  # why the server hung up
                raise
            on_hand, allocated, orders = asyncio.run(stock_of(url, RACE_SKU))
    load = os.getloadavg()
    print(f"\nPostgreSQL; {args.connections} concurrent visitors for {args.duration:g}s (Python httpx client); "
          f"{args.workers} web worker(s); load average after the run {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    print(f"{'target':<52} {'per s':>9} {'p50 ms':>8} {'p99 ms':>8} {'failed':>7}")
    print(f"{'bare Litestar + 1 Jinja template (req)':<52} {base_rps:>9.1f} {percentile(base_times, .5) * 1000:>8.2f} "
          f"{percentile(base_times, .99) * 1000:>8.2f} {0:>7}")
    print(f"{'checkout: POST /cart/add + POST /cart/place':<52} {rate:>9.1f} {percentile(times, .5) * 1000:>8.2f} "
          f"{percentile(times, .99) * 1000:>8.2f} {failures:>7}")
    print(f"{'  (HTTP requests/s of the checkouts)':<52} {rate * 2:>9.1f}   ratio to the bare page "
          f"{rate * 2 / base_rps:.3f}")
    print(f"\nOversell race: {args.racers} concurrent checkouts for stock {args.race_stock}: {placed} orders placed "
          f"({orders} in the database), {refused} refused for insufficient stock, {other} other answers; "
          f"on_hand {on_hand}, allocated {allocated}")
    ok = placed == orders == args.race_stock and allocated <= on_hand and other == 0
    print("race: OK (orders placed == stock, allocated <= on_hand)" if ok else "race: FAILED")
    sys.stdout.flush()
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
