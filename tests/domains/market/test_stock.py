"""Stock: conditional UPDATEs only, the availability rule (on hand - allocated - reservations),
the stock form through HTTP (all or nothing), the low-stock list and ``rose-ash market stock``."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.forms import InputProblems
from domains.market.models import StockLevel, StockLocation, Variant
from domains.market.schemas import StockAdjust
from domains.market.services import (
    CatalogueService,
    StockRefused,
    available_expr,
    register_reserved,
    unregister_reserved,
)
from tests.domains.blog.test_roles import member
from tests.domains.market.conftest import form_token, make_producer, product_input
from tests.domains.market.helpers import THREE, submit
from tests.helpers.server import REPO_ROOT, ROSE_ASH

pytestmark = pytest.mark.anyio


async def seller(session: AsyncSession, username: str = "alice") -> Any:
    user = await member(session, username)
    user.is_producer = True
    return user


async def available(session: AsyncSession, sku: str) -> int:
    variant = (await session.execute(select(Variant).where(Variant.sku == sku))).scalar_one()
    return (await CatalogueService(session).availability([variant.id]))[variant.id]


async def allocate(session: AsyncSession, sku: str, quantity: int) -> int:
    """What the cart will do when an order is placed (design §2): a conditional UPDATE."""
    variant_id = (await session.execute(select(Variant.id).where(Variant.sku == sku))).scalar_one()
    result = await session.execute(
        update(StockLevel).where(StockLevel.variant_id == variant_id,
                                 StockLevel.on_hand - StockLevel.allocated >= quantity)
        .values(allocated=StockLevel.allocated + quantity).execution_options(synchronize_session=False))
    return int(result.rowcount)  # type: ignore[attr-defined]


async def test_availability_follows_stock_as_it_moves(db_session: AsyncSession) -> None:
    alice = await seller(db_session)
    catalogue = CatalogueService(db_session)
    await catalogue.save(alice, product_input(status="active"))
    assert await available(db_session, "TOM-M") == 0  # no stock rows yet
    assert await catalogue.adjust_stock(alice, StockAdjust(sku="TOM-M", set=10)) == 10
    assert await available(db_session, "TOM-M") == 10
    assert await allocate(db_session, "TOM-M", 4) == 1
    assert await available(db_session, "TOM-M") == 6
    assert await catalogue.adjust_stock(alice, StockAdjust(sku="TOM-M", add=-5)) == 5
    assert await available(db_session, "TOM-M") == 1
    assert await allocate(db_session, "TOM-M", 2) == 0  # only one left: the conditional UPDATE refuses
    # A second location adds up.
    await catalogue.adjust_stock(None, StockAdjust(sku="TOM-M", set=3, location="Farm shop"))
    assert await available(db_session, "TOM-M") == 4
    # Below what is allocated: refused, nothing written.
    with pytest.raises(StockRefused) as refused:
        await catalogue.adjust_stock(alice, StockAdjust(sku="TOM-M", set=3))
    assert "4 of these are allocated" in refused.value.errors["quantity"]
    with pytest.raises(StockRefused):
        await catalogue.adjust_stock(alice, StockAdjust(sku="TOM-M", add=-2))
    with pytest.raises(StockRefused):
        await catalogue.adjust_stock(alice, StockAdjust(sku="TOM-S", add=-1))  # no stock to take from
    with pytest.raises(StockRefused):
        await catalogue.adjust_stock(alice, StockAdjust(sku="TOM-S", set=-1))
    with pytest.raises(StockRefused):
        await catalogue.adjust_stock(alice, StockAdjust(sku="TOM-S", set=1, add=1))
    assert await available(db_session, "TOM-M") == 4
    levels = (await db_session.execute(select(StockLevel.on_hand, StockLevel.allocated)
                                       .order_by(StockLevel.on_hand))).all()
    assert [tuple(r) for r in levels] == [(3, 0), (5, 4)]
    # The read DTO carries it too.
    product = await catalogue.by_slug("heritage-tomatoes")
    assert product is not None
    read = await catalogue.read(product)
    assert [(v.sku, v.available, v.in_stock) for v in read.variants] == [
        ("TOM-S", 0, False), ("TOM-M", 4, True), ("TOM-L", 0, False)]


async def test_the_cart_can_subtract_reservations(db_session: AsyncSession) -> None:
    """The cart registers its reservation term; every availability then counts it, never below 0."""
    alice = await seller(db_session)
    catalogue = CatalogueService(db_session)
    await catalogue.save(alice, product_input(status="active"))
    await catalogue.adjust_stock(alice, StockAdjust(sku="TOM-L", set=5))

    def two_reserved(variant_id: Any) -> Any:
        return literal(2)

    register_reserved(two_reserved)
    try:
        assert await available(db_session, "TOM-L") == 3
        assert await available(db_session, "TOM-S") == 0  # 0 - 2 is shown as 0
        in_stock = (await db_session.execute(
            select(Variant.sku).where(available_expr(Variant.id) > 0).order_by(Variant.sku))).scalars().all()
        assert in_stock == ["TOM-L"]
    finally:
        unregister_reserved(two_reserved)
    assert await available(db_session, "TOM-L") == 5


async def test_the_database_refuses_impossible_stock(db_session: AsyncSession) -> None:
    alice = await seller(db_session)
    catalogue = CatalogueService(db_session)
    await catalogue.save(alice, product_input())
    await catalogue.adjust_stock(alice, StockAdjust(sku="TOM-S", set=2))
    await db_session.commit()
    for values in ({"allocated": 3}, {"on_hand": -1}, {"allocated": -1}):
        with pytest.raises(IntegrityError):
            await db_session.execute(update(StockLevel).values(**values))
        await db_session.rollback()


async def test_concurrent_adjustments_lose_nothing(engine: Any, sessionmaker: Any) -> None:
    async with sessionmaker() as session, session.begin():
        alice = await seller(session)
        await CatalogueService(session).save(alice, product_input())

    async def add_one() -> None:
        async with sessionmaker() as session, session.begin():
            await CatalogueService(session).adjust_stock(None, StockAdjust(sku="TOM-S", add=1))

    await add_one()  # creates the row
    await asyncio.gather(*(add_one() for _ in range(12)))
    async with sessionmaker() as session:
        assert await available(session, "TOM-S") == 13


async def test_the_stock_form_sets_figures_all_or_nothing(client: Any, sessionmaker: Any) -> None:
    await make_producer(client, sessionmaker, "alice")
    made = await submit(client, {**THREE, "status": "active"})
    where = made.headers["location"]
    page = await client.get(where)
    fields = dict(re.findall(r'name="(s_[0-9a-f-]+_default)" value="(\d+)"', page.text))
    assert len(fields) == 3
    first, second, third = fields
    token = await form_token(client, where)
    saved = await client.post(f"{where}/stock", data={"_csrf_token": token, first: "5", second: "7", third: "0",
                                                      **{f"was_{k[2:]}": "0" for k in fields}})
    assert saved.status_code == 303, saved.text[:2000]
    async with sessionmaker() as session:
        assert await available(session, "SOCK-S-RED") == 5 and await available(session, "SOCK-M-RED") == 7
    page = await client.get(where)
    assert "Main store" in page.text
    levels = dict(re.findall(r'name="(s_[0-9a-f-]+_[0-9a-f-]+)" value="(\d+)"', page.text))
    assert sorted(levels.values()) == ["5", "7"]  # the unchanged 0 made no row
    async with sessionmaker() as session, session.begin():
        assert await allocate(session, "SOCK-M-RED", 6) == 1
    key_s, key_m = (k for k, v in levels.items() if v in ("5", "7"))
    if levels[key_s] == "7":
        key_s, key_m = key_m, key_s
    # M below its allocation, S changed in the same form: refused, neither is written.
    token = await form_token(client, where)
    refused = await client.post(f"{where}/stock", data={
        "_csrf_token": token, key_s: "9", f"was_{key_s[2:]}": "5", key_m: "3", f"was_{key_m[2:]}": "7"})
    assert refused.status_code == 422 and "6 of these are allocated" in refused.text
    bad = await client.post(f"{where}/stock", data={"_csrf_token": token, key_s: "2.5", f"was_{key_s[2:]}": "5"})
    assert bad.status_code == 422 and "is not a whole number" in bad.text
    negative = await client.post(f"{where}/stock", data={"_csrf_token": token, key_s: "-4", f"was_{key_s[2:]}": "5"})
    assert negative.status_code == 422
    async with sessionmaker() as session:
        assert await available(session, "SOCK-S-RED") == 5 and await available(session, "SOCK-M-RED") == 1


async def test_the_low_stock_list(client: Any, sessionmaker: Any) -> None:
    await make_producer(client, sessionmaker, "alice")
    assert (await submit(client, {**THREE, "status": "active"})).status_code == 303
    async with sessionmaker() as session, session.begin():
        catalogue = CatalogueService(session)
        await catalogue.adjust_stock(None, StockAdjust(sku="SOCK-S-RED", set=2))  # threshold 2: low
        await catalogue.adjust_stock(None, StockAdjust(sku="SOCK-M-RED", set=9))  # fine
        # SOCK-L-BLUE: none at all: out of stock
    page = await client.get("/market/admin/low-stock")
    assert page.status_code == 200
    assert "SOCK-S-RED" in page.text and "SOCK-L-BLUE" in page.text and "SOCK-M-RED" not in page.text
    assert page.text.index("SOCK-L-BLUE") < page.text.index("SOCK-S-RED")  # fewest first
    assert "out of stock" in page.text
    client.cookies.clear()
    await make_producer(client, sessionmaker, "bob")
    theirs = await client.get("/market/admin/low-stock")
    assert "SOCK-S-RED" not in theirs.text and "Nothing is low on stock" in theirs.text


async def test_a_producer_cannot_move_another_producers_stock(db_session: AsyncSession) -> None:
    alice, bob = await seller(db_session, "alice"), await seller(db_session, "bob")
    catalogue = CatalogueService(db_session)
    await catalogue.save(alice, product_input())
    with pytest.raises(InputProblems) as hidden:
        await catalogue.adjust_stock(bob, StockAdjust(sku="TOM-S", set=100))
    assert hidden.value.status == 404 and "No variant has SKU" in hidden.value.errors["sku"]
    with pytest.raises(InputProblems) as unknown_place:
        await catalogue.adjust_stock(alice, StockAdjust(sku="TOM-S", set=1, location="Nowhere"))
    assert "No stock location" in unknown_place.value.errors["location"]
    assert (await db_session.execute(select(StockLocation))).scalars().all() == []


@pytest.mark.e2e
def test_the_stock_command(tmp_path: Path, server_database_url: str | None) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROSE_ASH_")}
    env.update({"ROSE_ASH_DATA_DIR": str(tmp_path / "data"), "ROSE_ASH_SECRET_KEY": "cli-test-secret-0123456789"})
    if server_database_url:
        env["ROSE_ASH_DATABASE_URL"] = server_database_url

    def rose_ash(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([ROSE_ASH, *args], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)

    assert rose_ash("database", "upgrade", "--no-prompt").returncode == 0
    made = rose_ash("users", "create", "--username", "alice", "--email", "alice@example.org",
                    "--password", "correct horse battery staple")
    assert made.returncode == 0, made.stderr
    granted = rose_ash("users", "grant-role", "alice", "producer")
    assert granted.returncode == 0 and granted.stdout.strip() == "alice: producer", granted.stderr
    assert rose_ash("users", "grant-role", "nobody", "producer").returncode == 1
    assert rose_ash("users", "grant-role", "alice", "wizard").returncode == 2  # click: not a choice

    async def make_product() -> None:
        from app.commands import with_session  # noqa: F401 (the same path the CLI takes)
        from app.db import make_engine, make_sessionmaker
        from app.settings import Settings
        from domains.account.services import AccountService

        settings = Settings.from_env(env)
        engine = make_engine(settings.database_url)
        try:
            async with make_sessionmaker(engine, settings)() as session, session.begin():
                user = await AccountService(session).by_username("alice")
                await CatalogueService(session).save(user, product_input())
        finally:
            await engine.dispose()

    asyncio.run(make_product())
    set_ = rose_ash("market", "stock", "TOM-M", "--set", "12")
    assert set_.returncode == 0, set_.stderr
    assert set_.stdout.strip().splitlines()[-1] == "TOM-M: 12 on hand at the main store, 12 available in all"
    added = rose_ash("market", "stock", "TOM-M", "--add", "-2")
    assert "TOM-M: 10 on hand" in added.stdout, added.stderr
    below = rose_ash("market", "stock", "TOM-M", "--add", "-11")
    assert below.returncode == 1 and "stock cannot go below 0" in below.stderr
    unknown = rose_ash("market", "stock", "NOPE", "--set", "1")
    assert unknown.returncode == 1 and "No variant has SKU" in unknown.stderr
    both = rose_ash("market", "stock", "TOM-M", "--set", "1", "--add", "1")
    assert both.returncode == 1 and "exactly one of --set N or --add N" in both.stderr
    not_a_number = rose_ash("market", "stock", "TOM-M", "--set", "1.5")
    assert not_a_number.returncode == 2
    revoked = rose_ash("users", "grant-role", "alice", "producer", "--remove")
    assert revoked.stdout.strip() == "alice: member"


async def test_a_stock_change_purges_the_pages_showing_the_product(db_session: AsyncSession) -> None:
    import msgspec

    from app.jobs import Job
    from fragments.purge import PURGE_KIND, PurgePayload

    alice = await seller(db_session)
    catalogue = CatalogueService(db_session)
    product = await catalogue.save(alice, product_input(status="active"))
    revision = product.revision
    await db_session.execute(Job.__table__.delete())
    await catalogue.adjust_stock(alice, StockAdjust(sku="TOM-S", set=4))
    jobs = (await db_session.execute(select(Job).where(Job.kind == PURGE_KIND))).scalars().all()
    assert len(jobs) == 1
    keys = msgspec.convert(jobs[0].payload, PurgePayload).keys
    assert f"market-product:{product.id}" in keys and "market-products" in keys
    fresh = await catalogue.get(product.id)
    assert fresh is not None and fresh.revision == revision + 1
    # A draft's stock is on no public page: nothing to purge.
    draft = await catalogue.save(alice, product_input("Draft jam", skus=("JAM-1",)))
    await db_session.execute(Job.__table__.delete())
    await catalogue.adjust_stock(alice, StockAdjust(sku="JAM-1", set=4))
    assert (await db_session.execute(select(Job))).scalars().all() == []
    assert draft.status == "draft"
