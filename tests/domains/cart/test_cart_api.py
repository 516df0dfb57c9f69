"""The storefront JSON API (/api/cart): token-addressed carts, lines, bad input as 4xx problems,
checkout with an Idempotency-Key (a retry is the same order), 409 naming the lines short of stock."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from domains.cart.models import Order
from tests.domains.cart.helpers import allocated, stocked

pytestmark = pytest.mark.anyio


async def test_cart_api_journey(client: Any, engine: AsyncEngine) -> None:
    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with maker() as session:
        await stocked(session, stock={"TOM-S": 3, "TOM-M": 1})
    empty = await client.get("/api/cart")  # no token: nothing made yet
    assert empty.status_code == 200 and empty.json()["id"] is None and empty.json()["lines"] == []
    made = await client.post("/api/cart")
    assert made.status_code == 201
    token = made.json()["token"]
    h = {"X-Cart-Token": token}
    added = await client.post("/api/cart/lines", json={"sku": "TOM-S", "quantity": 2}, headers=h)
    assert added.status_code == 201, added.text
    assert [(x["sku"], x["quantity"]) for x in added.json()["lines"]] == [("TOM-S", 2)]
    assert added.json()["total_minor"] == 500
    line_id = added.json()["lines"][0]["id"]
    # Bad input: each a 4xx problem, nothing changed.
    for body in ({"sku": "TOM-S", "quantity": 0}, {"sku": "TOM-S", "quantity": -1},
                 {"sku": "TOM-S", "quantity": 10**9}):
        bad = await client.post("/api/cart/lines", json=body, headers=h)
        assert bad.status_code == 422, (body, bad.status_code, bad.text)
    two = await client.post("/api/cart/lines", json={"sku": "TOM-S", "quantity": "two"}, headers=h)
    assert two.status_code == 400
    assert (await client.post("/api/cart/lines", json={"sku": "NOPE"}, headers=h)).status_code == 404
    short = await client.post("/api/cart/lines", json={"sku": "TOM-M", "quantity": 2}, headers=h)
    assert short.status_code == 409 and short.json()["lines"] == [
        {"sku": "TOM-M", "title": "Heritage tomatoes (M)", "wanted": 2, "available": 1}]
    assert (await client.get("/api/cart", headers={"X-Cart-Token": "someone-elses"})).status_code == 404
    assert (await client.patch("/api/cart/lines/" + "0" * 8, json={"quantity": 1}, headers=h)).status_code == 404
    changed = await client.patch(f"/api/cart/lines/{line_id}", json={"quantity": 3}, headers=h)
    assert changed.status_code == 200 and changed.json()["lines"][0]["quantity"] == 3
    await client.post("/api/cart/lines", json={"sku": "TOM-M", "quantity": 1}, headers=h)
    removed = await client.delete(f"/api/cart/lines/{line_id}", headers=h)
    assert removed.status_code == 200 and [x["sku"] for x in removed.json()["lines"]] == ["TOM-M"]
    await client.post("/api/cart/lines", json={"sku": "TOM-S", "quantity": 3}, headers=h)

    body = {"email": "api@example.org", "fulfilment": {"method": "collection"}, "payment": "collection"}
    assert (await client.post("/api/cart/checkout", json=body, headers=h)).status_code == 400  # no key
    bad_email = await client.post("/api/cart/checkout", json={**body, "email": "nope"},
                                  headers={**h, "Idempotency-Key": "i" * 20})
    assert bad_email.status_code == 422
    placed = await client.post("/api/cart/checkout", json=body, headers={**h, "Idempotency-Key": "k" * 20})
    assert placed.status_code == 201, placed.text
    order = placed.json()
    assert order["state"] == "payment_pending" and order["number"].startswith("RA-") and order["total_minor"] == 1100
    again = await client.post("/api/cart/checkout", json=body, headers={**h, "Idempotency-Key": "k" * 20})
    assert again.status_code == 201 and again.json()["number"] == order["number"]
    async with maker() as session:
        assert await allocated(session, "TOM-S") == (3, 3)
        placed_count = (await session.execute(select(func.count()).select_from(Order)
                                              .where(Order.number.is_not(None)))).scalar_one()
        assert placed_count == 1

    # A second buyer finds nothing left: 409 naming the line, nothing placed.
    other = (await client.post("/api/cart")).json()["token"]
    async with maker() as session:
        from domains.market.schemas import StockAdjust
        from domains.market.services import CatalogueService

        await CatalogueService(session).adjust_stock(None, StockAdjust(sku="TOM-S", set=4))
        await session.commit()
    h2 = {"X-Cart-Token": other}
    assert (await client.post("/api/cart/lines", json={"sku": "TOM-S", "quantity": 1}, headers=h2)).status_code == 201
    async with maker() as session:
        await CatalogueService(session).adjust_stock(None, StockAdjust(sku="TOM-S", set=3))
        await session.commit()
    lost = await client.post("/api/cart/checkout", json=body, headers={**h2, "Idempotency-Key": "z" * 20})
    assert lost.status_code == 409 and lost.json()["lines"][0]["sku"] == "TOM-S"
    assert lost.json()["lines"][0]["available"] == 0
