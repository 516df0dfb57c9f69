"""The market JSON API (issue 16 item 11): reads for everyone, writes for tokens with the
``market`` scope, JSON only, problem+json errors, keyset paging, the OpenAPI description.
Both databases."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domains.account.models import User
from domains.account.services import TokenService
from tests.domains.market.conftest import make_producer

pytestmark = pytest.mark.anyio


async def token(sessionmaker: async_sessionmaker[AsyncSession], username: str, *scopes: str) -> dict[str, str]:
    async with sessionmaker() as session, session.begin():
        user = (await session.scalars(select(User).where(User.username == username))).one()
        _row, secret = await TokenService(session).issue(user, f"t-{'-'.join(scopes)}", list(scopes))
    return {"Authorization": f"Bearer {secret}"}


def product(title: str, *skus: str, status: str = "active") -> dict[str, Any]:
    return {"title": title, "status": status, "description_md": "Fresh *today*.", "tags": ["veg"],
            "variants": [{"sku": sku, "price_minor": 300 + i * 50, "options": {"size": f"s{i}"}}
                         for i, sku in enumerate(skus)]}


async def test_write_needs_the_market_scope_and_a_token(client: Any,
                                                         sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    await make_producer(client, sessionmaker)  # the client now holds alice's session cookie
    body = product("Leeks", "LEEK-1")
    # The session cookie is never honoured under /api/: as if anonymous.
    r = await client.post("/api/market/products", json=body)
    assert r.status_code == 401 and r.headers["content-type"].startswith("application/problem+json")
    client.cookies.clear()
    r = await client.post("/api/market/products", json=body, headers=await token(sessionmaker, "alice", "api"))
    assert r.status_code == 403 and "market" in r.json()["detail"]
    r = await client.post("/api/market/products", json=body,
                          headers=await token(sessionmaker, "alice", "repo:read", "repo:write"))
    assert r.status_code == 403
    market = await token(sessionmaker, "alice", "market")
    r = await client.post("/api/market/products", content=b"title=Leeks", headers={
        **market, "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415 and r.headers["content-type"].startswith("application/problem+json")
    r = await client.post("/api/market/products", json=body, headers=market)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["slug"] == "leeks" and created["status"] == "active"
    assert created["variants"][0]["sku"] == "LEEK-1" and created["variants"][0]["available"] == 0
    assert created["description_html"].strip() == "<p>Fresh <em>today</em>.</p>"


async def test_read_for_everyone_with_availability(client: Any, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    await make_producer(client, sessionmaker)
    client.cookies.clear()
    market = await token(sessionmaker, "alice", "market")
    assert (await client.post("/api/market/products", json=product("Carrots", "CAR-1", "CAR-2"),
                              headers=market)).status_code == 201
    assert (await client.post("/api/market/products", json=product("Secret", "SEC-1", status="draft"),
                              headers=market)).status_code == 201
    r = await client.post("/api/market/stock", json={"sku": "CAR-2", "set": 7}, headers=market)
    assert r.status_code == 200 and r.json() == {"sku": "CAR-2", "on_hand": 7, "available": 7}
    r = await client.post("/api/market/stock", json={"sku": "CAR-2", "add": -2}, headers=market)
    assert r.json()["available"] == 5
    r = await client.post("/api/market/stock", json={"sku": "CAR-2", "add": -9}, headers=market)
    assert r.status_code in (409, 422) and r.headers["content-type"].startswith("application/problem+json")
    r = await client.post("/api/market/stock", json={"sku": "CAR-2", "set": 1, "add": 1}, headers=market)
    assert r.status_code == 422
    # anonymous reads
    r = await client.get("/api/market/products/carrots")
    assert r.status_code == 200
    assert {v["sku"]: v["available"] for v in r.json()["variants"]} == {"CAR-1": 0, "CAR-2": 5}
    # What only the producer may see is not in the public shape (issue: low stock, import source).
    assert "source_url" not in r.json()
    assert all("low_stock_threshold" not in v for v in r.json()["variants"])
    assert (await client.get("/api/market/products/secret")).status_code == 404  # a draft is absent
    listed = (await client.get("/api/market/products")).json()
    assert [p["slug"] for p in listed["items"]] == ["carrots"] and listed["next"] is None
    assert "source_url" not in listed["items"][0]
    assert all("low_stock_threshold" not in v for v in listed["items"][0]["variants"])
    # a token without the market scope may still read (with "api"), not with an unrelated scope
    assert (await client.get("/api/market/products", headers=await token(sessionmaker, "alice", "api"))).status_code \
        == 200
    assert (await client.get("/api/market/products",
                             headers=await token(sessionmaker, "alice", "repo:read"))).status_code == 403


async def test_keyset_paging(client: Any, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    await make_producer(client, sessionmaker)
    client.cookies.clear()
    market = await token(sessionmaker, "alice", "market")
    for i in range(5):
        assert (await client.post("/api/market/products", json=product(f"Box {i}", f"BOX-{i}"),
                                  headers=market)).status_code == 201
    slugs: list[str] = []
    url = "/api/market/products?limit=2"
    pages = 0
    while url:
        page = (await client.get(url)).json()
        slugs += [p["slug"] for p in page["items"]]
        pages += 1
        url = f"/api/market/products?limit=2&after={page['next']}" if page["next"] else ""
    assert pages == 3 and slugs == [f"box-{i}" for i in (4, 3, 2, 1, 0)]
    bad = await client.get("/api/market/products?after=nonsense!")
    assert bad.status_code == 400 and bad.headers["content-type"].startswith("application/problem+json")
    assert (await client.get("/api/market/products?limit=100000")).status_code == 400


async def test_replace_add_variant_and_ownership(client: Any, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    await make_producer(client, sessionmaker, "alice")
    client.cookies.clear()
    await make_producer(client, sessionmaker, "bob")
    client.cookies.clear()
    alice, bob = await token(sessionmaker, "alice", "market"), await token(sessionmaker, "bob", "market")
    assert (await client.post("/api/market/products", json=product("Kale", "KALE-1"), headers=alice)).status_code == 201
    r = await client.post("/api/market/products/kale/variants", json={"sku": "KALE-2", "price_minor": 450,
                                                                      "options": {"size": "big"}}, headers=alice)
    assert r.status_code == 201 and [v["sku"] for v in r.json()["variants"]] == ["KALE-1", "KALE-2"]
    r = await client.post("/api/market/products/kale/variants", json={"sku": "KALE-2", "price_minor": 1},
                          headers=alice)
    assert r.status_code == 409
    replaced = {**product("Curly kale", "KALE-2"), "slug": "kale"}
    r = await client.put("/api/market/products/kale", json=replaced, headers=alice)
    assert r.status_code == 200 and r.json()["title"] == "Curly kale" and len(r.json()["variants"]) == 1
    # bob may not touch alice's product: 404, as if it were absent
    assert (await client.put("/api/market/products/kale", json=replaced, headers=bob)).status_code == 404
    assert (await client.post("/api/market/products/kale/variants", json={"sku": "B-1", "price_minor": 1},
                              headers=bob)).status_code == 404
    assert (await client.post("/api/market/stock", json={"sku": "KALE-2", "set": 3}, headers=bob)).status_code == 404
    # the catalogue's rules, as problem+json: a duplicate SKU, a negative price, unknown fields
    r = await client.post("/api/market/products", json=product("Other", "KALE-2"), headers=bob)
    assert r.status_code in (409, 422) and r.headers["content-type"].startswith("application/problem+json")
    assert "KALE-2" in r.json()["detail"]
    r = await client.post("/api/market/products", json={**product("Neg", "NEG-1"), "variants": [
        {"sku": "NEG-1", "price_minor": -5}]}, headers=bob)
    assert r.status_code in (400, 422)
    r = await client.post("/api/market/products", json={**product("X", "X-1"), "surprise": 1}, headers=bob)
    assert r.status_code == 400


async def test_openapi_describes_the_market_api(client: Any) -> None:
    schema = (await client.get("/api/schema/openapi.json")).json()
    paths = schema["paths"]
    assert {"get", "post"} <= set(paths["/api/market/products"])
    assert {"get", "put", "patch"} <= set(paths["/api/market/products/{slug}"])
    assert "post" in paths["/api/market/stock"]
    names = set(schema["components"]["schemas"])
    assert {"ProductIn", "ProductPatch", "ProductReplace", "VariantPatch", "VariantIn", "ProductRead", "ProductPage",
            "StockIn", "StockOut"} <= names


async def test_market_pages(client: Any, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    from domains.market.models import Product
    from domains.market.page_models import MarketPage, MarketPageItem

    await make_producer(client, sessionmaker)
    client.cookies.clear()
    market = await token(sessionmaker, "alice", "market")
    for title, sku, status in (("Pumpkin", "PUMP-1", "active"), ("Squash", "SQ-1", "active"),
                               ("Hidden", "HID-1", "draft")):
        assert (await client.post("/api/market/products", json=product(title, sku, status=status),
                                  headers=market)).status_code == 201
    async with sessionmaker() as session, session.begin():
        ids = dict((await session.execute(select(Product.slug, Product.id))).tuples().all())
        page = MarketPage(title="Saturday market", slug="saturday", intro_md="Come", intro_html="<p>Come</p>",
                          published=True)
        session.add(page)
        session.add(MarketPage(title="Not yet", slug="later", published=False))
        await session.flush()
        for position, slug in enumerate(("squash", "hidden", "pumpkin")):
            session.add(MarketPageItem(page_id=page.id, product_id=ids[slug], position=position))
    listed = (await client.get("/api/market/pages")).json()
    assert [p["slug"] for p in listed] == ["saturday"] and listed[0]["products"] is None
    one = (await client.get("/api/market/pages/saturday")).json()
    assert [p["slug"] for p in one["products"]] == ["squash", "pumpkin"]  # the page's order; the draft is absent
    assert all("source_url" not in p and all("low_stock_threshold" not in v for v in p["variants"])
               for p in one["products"])
    assert (await client.get("/api/market/pages/later")).status_code == 404


async def test_patch_is_a_partial_update_and_put_demands_every_field(
        client: Any, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    from domains.market.models import Product

    await make_producer(client, sessionmaker, "alice")
    client.cookies.clear()
    await make_producer(client, sessionmaker, "bob")
    client.cookies.clear()
    alice, bob = await token(sessionmaker, "alice", "market"), await token(sessionmaker, "bob", "market")
    assert (await client.post("/api/market/products", json=product("Kale", "KALE-1", "KALE-2"),
                              headers=alice)).status_code == 201
    async with sessionmaker() as session, session.begin():
        (await session.scalars(select(Product).where(Product.slug == "kale"))).one().featured = True
    # Only the title: the slug is not re-made from it, the status stays active, the variants stay.
    r = await client.patch("/api/market/products/kale", json={"title": "Curly kale"}, headers=alice)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["title"], body["slug"], body["status"]) == ("Curly kale", "kale", "active")
    assert [(v["sku"], v["price_minor"]) for v in body["variants"]] == [("KALE-1", 300), ("KALE-2", 350)]
    assert body["description_md"] == "Fresh *today*." and body["tags"] == ["veg"]
    # One variant's price only; a new SKU is added; the rest is kept.
    r = await client.patch("/api/market/products/kale", json={"variants": [
        {"sku": "KALE-2", "price_minor": 999}, {"sku": "KALE-3", "price_minor": 120, "options": {"size": "s9"}}]},
        headers=alice)
    assert r.status_code == 200, r.text
    variants = {v["sku"]: v for v in r.json()["variants"]}
    assert {s: v["price_minor"] for s, v in variants.items()} == {"KALE-1": 300, "KALE-2": 999, "KALE-3": 120}
    assert variants["KALE-2"]["options"] == {"size": "s1"}
    assert (await client.patch("/api/market/products/kale", json={}, headers=alice)).json()["title"] == "Curly kale"
    # bad PATCHes: clear 422s, nothing written
    for bad, words in (({"variants": [{"sku": "NEW-1"}]}, "price_minor"),
                       ({"status": "gone"}, "status"),
                       ({"variants": [{"sku": "KALE-1", "price_minor": 1}, {"sku": "KALE-1", "price_minor": 2}]},
                        "twice"),
                       ({"variants": [{"sku": "KALE-1", "price_minor": -5}]}, "")):
        r = await client.patch("/api/market/products/kale", json=bad, headers=alice)
        assert r.status_code in (409, 422), (bad, r.text)
        assert r.headers["content-type"].startswith("application/problem+json") and words in r.json()["detail"]
    r = await client.patch("/api/market/products/kale", json={"price": 1}, headers=alice)  # unknown field
    assert r.status_code == 400
    # another producer: 404, as if absent
    assert (await client.patch("/api/market/products/kale", json={"title": "Mine"}, headers=bob)).status_code == 404
    assert (await client.patch("/api/market/products/nothing", json={}, headers=alice)).status_code == 404
    after = (await client.get("/api/market/products/kale")).json()
    assert after["title"] == "Curly kale" and {v["sku"]: v["price_minor"] for v in after["variants"]} == {
        "KALE-1": 300, "KALE-2": 999, "KALE-3": 120}
    # PUT without every field is refused (422 names the missing ones), nothing renamed or unpublished
    r = await client.put("/api/market/products/kale", json={"title": "Kale", "variants": [
        {"sku": "KALE-1", "price_minor": 300}]}, headers=alice)
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert "slug, description_md, status, tags" in r.json()["detail"] and "PATCH" in r.json()["detail"]
    r = await client.get("/api/market/products/kale")
    assert r.status_code == 200 and r.json()["title"] == "Curly kale" and len(r.json()["variants"]) == 3
    # a full PUT replaces: variants left out are removed; "featured" (not carried by the API) is kept
    r = await client.put("/api/market/products/kale", json={**product("Kale", "KALE-1"), "slug": "kale"},
                         headers=alice)
    assert r.status_code == 200 and [v["sku"] for v in r.json()["variants"]] == ["KALE-1"]
    async with sessionmaker() as session:
        assert (await session.scalars(select(Product).where(Product.slug == "kale"))).one().featured is True
    # a PATCH to draft unpublishes only when asked
    r = await client.patch("/api/market/products/kale", json={"status": "draft"}, headers=alice)
    assert r.status_code == 200 and r.json()["status"] == "draft"
    assert (await client.get("/api/market/products/kale")).status_code == 404
