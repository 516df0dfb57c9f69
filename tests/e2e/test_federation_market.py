"""The market's service actor federating products between two real instances (issue 16 item 9),
with the listing import's command line (item 10) making the product: bob on B follows
``market@A``; a producer on A imports a product page from a loopback fixture shop with
``rose-ash market import-url --publish``; its ``Create`` (a Note with the link, the price and the
first image as an attachment) reaches bob's home timeline on B; a change of its title and price
through the API's PATCH sends ``Update`` (the same note on B, new text); archiving it sends
``Delete`` (a Tombstone: B keeps the note as deleted) and its image stops being served.
Uses the helpers of test_federation_two_instances.py."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from tests.conftest import DB_KINDS
from tests.domains.market.shop_server import ShopServer, shop_server
from tests.e2e.test_federation_two_instances import ENV, _eventually, _form, _host, _page, _session, _signup
from tests.helpers.server import AppServer, app_server

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]


@pytest.fixture(scope="module")
def shop() -> Iterator[ShopServer]:
    with shop_server() as server:
        yield server


@pytest.fixture(scope="module", params=DB_KINDS)
def peers(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, AppServer]]:
    tmp: Path = tmp_path_factory.mktemp(f"market-federation-{request.param}")
    with ExitStack() as stack:
        urls: list[str | None] = [None, None]
        if request.param == "postgresql":
            from tests.helpers.pg import pg_database

            urls = [stack.enter_context(pg_database("mfed_a")), stack.enter_context(pg_database("mfed_b"))]
        a = stack.enter_context(app_server(tmp, name="a", database_url=urls[0],
                                           extra_env={**ENV, "ROSE_ASH_MARKET_CURRENCY": "GBP"}))
        b = stack.enter_context(app_server(tmp, name="b", database_url=urls[1], extra_env=ENV))
        _signup(a, "grower")
        _signup(b, "bob")
        yield {"a": a, "b": b}


async def _rows(server: AppServer, sql: str, **params: Any) -> list[Any]:
    url = server.env.get("ROSE_ASH_DATABASE_URL") or f"sqlite+aiosqlite:///{server.data_dir / 'rose-ash.sqlite3'}"
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(text(sql), params)).all())
    finally:
        await engine.dispose()


def _cli_csv_import(a: AppServer) -> None:
    """``rose-ash market import-csv``: counts, where the per-row report is, a wrong header refused."""
    sheet = a.data_dir / "cli-import.csv"
    sheet.write_text("product_slug,title,description,sku,options,price,currency,compare_at,stock,category,tags,"
                     "status\nsalad,Salad bag,,SALAD-1,,2.00,GBP,,4,,,draft\n"
                     "salad,,,SALAD-2,size=L,3.00,,,,,,draft\nsalad,,,SALAD-3,size=L,3.00,,,,,,draft\n")
    imported = a.cli("market", "import-csv", str(sheet), "--owner", "grower")
    assert "3 rows: 2 created, 0 updated, 1 skipped" in imported.stdout, imported.stdout + imported.stderr
    report = Path(imported.stdout.strip().splitlines()[-1].removeprefix("report: "))
    assert "repeat those of SKU SALAD-2" in report.read_text()
    wrong = a.data_dir / "wrong.csv"
    wrong.write_text("name,price\nx,1\n")
    refused = a.cli("market", "import-csv", str(wrong), "--owner", "grower", check=False)
    assert refused.returncode == 1 and "The first line must be the header" in refused.stderr


async def test_market_actor_create_reaches_a_peer(peers: dict[str, AppServer], shop: ShopServer) -> None:
    a, b = peers["a"], peers["b"]

    async def make_producer(session: AsyncSession) -> None:
        await session.execute(text("UPDATE account_user SET is_producer = :yes WHERE username = 'grower'"),
                              {"yes": True})

    a.in_process(make_producer)
    bob = await _session(b, "bob")
    try:
        market_uri = f"{a.base_url}/ap/actors/market"
        await _form(bob, "/social/follow", {"handle": f"market@{_host(a)}"})

        async def accepted() -> bool:
            rows = await _rows(a, "SELECT state FROM ap_follow WHERE followee = :uri", uri=market_uri)
            return [r[0] for r in rows] == ["accepted"]

        await _eventually(accepted, what="bob following market@A")

        done = a.cli("market", "import-url", shop.url("/shopify.html"), "--owner", "grower", "--publish")
        public_url = done.stdout.strip().splitlines()[-1]
        assert public_url == f"{a.base_url}/market/heritage-apple-juice", done.stdout + done.stderr
        async with httpx.AsyncClient(timeout=10) as c:
            assert (await c.get(public_url)).status_code == 200

        _cli_csv_import(a)  # the CSV import's command on the same instance

        async def on_bobs_home() -> bool:
            return "Heritage Apple Juice" in await _page(bob, "/social/")

        await _eventually(on_bobs_home, what="the market's Create on B")
        home = await _page(bob, "/social/")
        assert "£4.50" in home and public_url in home
        [(raw,)] = await _rows(b, "SELECT raw FROM ap_object WHERE url = :url", url=public_url)
        doc = raw if isinstance(raw, dict) else __import__("json").loads(raw)
        assert doc["type"] == "Note" and doc["attributedTo"] == market_uri
        [image] = doc["attachment"]
        assert image["type"] == "Image" and image["mediaType"] in ("image/png", "image/jpeg", "image/webp")
        assert image["url"].startswith(f"{a.base_url}/")

        # changed while active on A (the API's partial update: title and price): an Update reaches B,
        # the same note (one row on B) now shows the new title and price
        async def market_token(session: AsyncSession) -> str:
            from sqlalchemy import select

            from domains.account.models import User
            from domains.account.services import TokenService

            user = (await session.scalars(select(User).where(User.username == "grower"))).one()
            return (await TokenService(session).issue(user, "e2e", ["market"]))[1]

        secret = a.in_process(market_token)
        async with httpx.AsyncClient(base_url=a.base_url, timeout=10) as c:
            current = (await c.get("/api/market/products/heritage-apple-juice")).json()
            change = {"title": "Heritage Apple Juice, pressed today",
                      "variants": [{"sku": v["sku"], "price_minor": 525} for v in current["variants"]]}
            patched = await c.patch("/api/market/products/heritage-apple-juice", json=change,
                                    headers={"Authorization": f"Bearer {secret}"})
            assert patched.status_code == 200, patched.text
            assert patched.json()["slug"] == "heritage-apple-juice" and patched.json()["status"] == "active"

        async def updated_on_b() -> bool:
            return "pressed today" in await _page(bob, "/social/")

        await _eventually(updated_on_b, what="the market's Update on B")
        home = await _page(bob, "/social/")
        assert "£5.25" in home and "£4.50" not in home
        [(raw,)] = await _rows(b, "SELECT raw FROM ap_object WHERE url = :url", url=public_url)
        doc = raw if isinstance(raw, dict) else __import__("json").loads(raw)
        assert "pressed today" in doc["content"] and doc["attachment"][0]["url"].startswith(f"{a.base_url}/media/")
        async with httpx.AsyncClient(timeout=10) as c:  # the attachment is public while the product is
            assert (await c.get(doc["attachment"][0]["url"])).status_code == 200

        # archived on A: a Delete reaches B and the note leaves bob's timeline
        async def archive(session: AsyncSession) -> None:
            from domains.market.services import CatalogueService

            catalogue = CatalogueService(session, base_url=a.base_url, currency="GBP")
            product = await catalogue.by_slug("heritage-apple-juice")
            assert product is not None
            await catalogue.set_status(None, product, "archived")

        a.in_process(archive)

        async def gone() -> bool:
            return "Heritage Apple Juice" not in await _page(bob, "/social/")

        await _eventually(gone, what="the market's Delete on B")
        [(deleted, content)] = await _rows(b, "SELECT deleted, content FROM ap_object WHERE ap_id = :id", id=doc["id"])
        assert deleted and content == ""  # the Tombstone: the note is kept as deleted, its text gone
        async with httpx.AsyncClient(timeout=10) as c:  # the archived product's image is no longer served
            assert (await c.get(doc["attachment"][0]["url"])).status_code == 404
    finally:
        await bob.aclose()
