"""The oversell race (issue 17, design/domains.md §2): many concurrent checkouts for a variant with
stock 10 place exactly 10 orders, the rest get "insufficient stock", and ``allocated <= on_hand``
holds throughout (sampled while the race runs). PostgreSQL: 100 checkouts; SQLite: 20. Each
checkout is its own session and transaction, through the service layer the HTML and API use."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from app.settings import Settings
from domains.cart.models import Order
from domains.cart.services import CartService, CheckoutDetails, InsufficientStock
from domains.market.models import StockLevel
from tests.domains.cart.helpers import allocated, stocked

pytestmark = pytest.mark.anyio

STOCK = 10


def racers(db_kind: str) -> int:
    return 100 if db_kind == "postgresql" else 20


async def _race(engine: AsyncEngine, settings: Settings, n: int, *, reserve_first: bool) -> tuple[int, int, bool]:
    maker = async_sessionmaker(engine, expire_on_commit=False)
    # Every buyer has one unit in a cart before the race (carts are cheap; the race is checkout).
    tokens: list[str] = []
    async with maker() as session:
        cart = CartService(session, settings)
        for _ in range(n):
            order = await cart.new_cart()
            await cart.add(order, sku="TOM-S", quantity="1")
            tokens.append(order.token)
        await session.commit()

    go = asyncio.Event()
    done = asyncio.Event()
    broken: list[tuple[int, int]] = []

    async def sample() -> None:
        async with maker() as session:
            while not done.is_set():
                rows = (await session.execute(select(StockLevel.on_hand, StockLevel.allocated))).all()
                broken.extend((int(a), int(b)) for a, b in rows if b > a)
                await session.rollback()
                await asyncio.sleep(0)

    async def checkout(i: int) -> str:
        await go.wait()
        async with maker() as session:
            cart = CartService(session, settings)
            order = await cart.open_cart(token=tokens[i])
            assert order is not None
            try:
                if reserve_first:
                    await cart.start_checkout(order)
                    await session.commit()
                    order = await cart.open_cart(token=tokens[i])
                    assert order is not None
                await cart.place(order, CheckoutDetails(email=f"buyer{i}@example.org"),
                                 idempotency_key=f"race-{i:04d}-" + "x" * 16)
                await session.commit()
                return "placed"
            except InsufficientStock as exc:
                await session.rollback()
                assert "TOM-S" in exc.errors["stock"]
                return "short"

    sampler = asyncio.create_task(sample())
    tasks = [asyncio.create_task(checkout(i)) for i in range(n)]
    go.set()
    results = await asyncio.gather(*tasks)
    done.set()
    await sampler
    return results.count("placed"), results.count("short"), not broken


@pytest.mark.parametrize("reserve_first", [True, False], ids=["reserve-then-place", "place-directly"])
async def test_concurrent_checkouts_never_oversell(db_kind: str, database_url: str, engine: AsyncEngine,
                                                   settings: Settings, reserve_first: bool) -> None:
    async with async_sessionmaker(engine, expire_on_commit=False)() as session:
        await stocked(session, stock={"TOM-S": STOCK})
    n = racers(db_kind)
    # 100 racing tasks share 30 connections (the server allows 100 for everybody on this machine):
    # 30 transactions contend at any moment, the rest queue for a connection, as in a web process.
    race_engine = (create_async_engine(database_url, pool_size=30, max_overflow=0, pool_timeout=300)
                   if db_kind == "postgresql" else engine)
    try:
        placed, short, held = await _race(race_engine, settings, n, reserve_first=reserve_first)
    finally:
        if race_engine is not engine:
            await race_engine.dispose()
    assert (placed, short) == (STOCK, n - STOCK)
    assert held, "allocated exceeded on_hand while the race ran"
    async with async_sessionmaker(engine, expire_on_commit=False)() as session:
        assert await allocated(session, "TOM-S") == (STOCK, STOCK)
        numbers: Any = (await session.execute(select(func.count(func.distinct(Order.number)))
                                              .where(Order.number.is_not(None)))).scalar_one()
        assert numbers == STOCK
