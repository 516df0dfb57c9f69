"""What makes a market search cheaper (issue 16's benchmark) without changing what it answers.

- The short-walk hint (search.short_walks): on PostgreSQL a question whose newest-first walk came
  back short goes straight to the GIN index next time; both ways give the same page, the hint is
  remembered per question (words and filters), bounded, and forgotten after its time.
- The card HTML memo (cards.cards_html): the search page's cards come from the ``product_card``
  macro byte for byte, a changed card is never served from the memo, and a hostile title stays
  escaped.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from domains.market import cards as cards_module
from domains.market import search as search_module
from domains.market.cards import CARD_TEMPLATE, cards_html
from domains.market.models import Product
from domains.market.schemas import ProductInput
from domains.market.search import MarketSearch, PostgresEngine, SearchFilters, short_walks, terms
from domains.market.services.catalogue import CatalogueService
from tests.domains.market.view_world import World, build, v

pytestmark = pytest.mark.anyio


@pytest.fixture
def sm(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@pytest.fixture
async def world(sm: async_sessionmaker[AsyncSession]) -> World:
    return await build(sm)


@pytest.fixture(autouse=True)
def _no_hints() -> Iterator[None]:
    short_walks.clear()  # process-wide: another test's questions must not decide this one's plan
    yield
    short_walks.clear()


def question(q: str, category: str = "", producer: str = "") -> tuple[str, str, str]:
    return (PostgresEngine().params(terms(q))["tq"], category, producer)


async def page_of(sm: async_sessionmaker[AsyncSession], filters: SearchFilters, **kw: Any) -> Any:
    async with sm() as session:
        return await MarketSearch(session, **kw).search(filters)


QUERIES = ["honey", "hon", "oat hon", "jam", "carr", "nothing-like-it", "o"]


@pytest.mark.parametrize("window", [1, 2, 240])
async def test_the_hint_changes_the_plan_never_the_page(sm: Any, world: World, db_kind: str, window: int) -> None:
    """Each query twice: the first time walked (PostgreSQL) and remembered if short, the second
    time from the GIN index at once; the same ids and cursor both times, on both engines."""
    producer = world.producers["hill-farm"]
    for i in range(6):  # a few newer "jam" products: a window of 1 or 2 is filled by the walk
        async with sm() as session, session.begin():
            await CatalogueService(session).save(None, ProductInput(
                title=f"Jam {i}", description_md="Jam", status="active", variants=[v(f"HJ-{i}", 300 + i)],
                producer_id=producer, tags=["jam"]))
    for q in QUERIES:
        first = await page_of(sm, SearchFilters(q=q), window=window, page_size=2)
        second = await page_of(sm, SearchFilters(q=q), window=window, page_size=2)
        assert (second.ids, second.next_cursor) == (first.ids, first.next_cursor), q
    if db_kind == "postgresql":
        # 12 documents, the walk reads 12 per window place: a window of 1 or 2 is full after it
        # (six jams are the newest; three honeys among the twelve); 240 is more than all of them.
        assert (question("honey") in short_walks) == (question("jam") in short_walks) == (window == 240)
        assert question("nothing-like-it") not in short_walks  # no rows: nothing to read the count from
    else:
        assert not short_walks._until  # SQLite has no walk to remember


async def test_the_hint_is_per_question(sm: Any, world: World, db_kind: str) -> None:
    """Filters are part of the question: the same words under a category are remembered apart."""
    if db_kind != "postgresql":
        pytest.skip("the walk (and its hint) is PostgreSQL's")
    whole = await page_of(sm, SearchFilters(q="honey"))
    assert question("honey") in short_walks and question("honey", category="bakery") not in short_walks
    bakery = await page_of(sm, SearchFilters(q="honey", category="bakery"))
    assert question("honey", category="bakery") in short_walks
    assert set(bakery.ids) < set(whole.ids)
    again = await page_of(sm, SearchFilters(q="honey", category="bakery"))
    assert again.ids == bakery.ids


async def test_a_hinted_query_still_sees_new_products(sm: Any, world: World, db_kind: str) -> None:
    """The hint is a plan, not a cache of answers: a product added after it is found at once."""
    await page_of(sm, SearchFilters(q="honey"))
    async with sm() as session, session.begin():
        await CatalogueService(session).save(None, ProductInput(
            title="Heather honey", description_md="", status="active", variants=[v("HH-1", 900)],
            producer_id=world.producers["hill-farm"], tags=[]))
    page = await page_of(sm, SearchFilters(q="honey"))
    async with sm() as session:
        slug_of = dict((await session.execute(select(Product.id, Product.slug))).tuples().all())
    assert [slug_of[i] for i in page.ids][:2] == ["wildflower-honey", "heather-honey"]  # title+tag, then title


def test_short_walks_are_bounded_and_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(search_module.time, "monotonic", lambda: now[0])
    hints = search_module._ShortWalks(size=2, ttl=10.0)
    hints.add(("'a':*", "", ""))
    hints.add(("'b':*", "", ""))
    assert ("'a':*", "", "") in hints  # used: now the most recent
    hints.add(("'c':*", "", ""))  # over the bound: the least recently used ("b") goes
    assert ("'b':*", "", "") not in hints
    assert ("'a':*", "", "") in hints and ("'c':*", "", "") in hints
    now[0] += 10.5  # past the time to live: the walk is tried again
    assert ("'a':*", "", "") not in hints and ("'c':*", "", "") not in hints
    assert not hints._until


def _card(title: str = "Wildflower honey", price: str = "£4.50", in_stock: bool = True) -> dict[str, Any]:
    return {"id": "0190b2c0-0000-7000-8000-000000000001", "title": title, "slug": "wildflower-honey",
            "url": "/market/wildflower-honey", "price": price, "in_stock": in_stock,
            "producer": {"name": "Hill Farm", "url": "/market/producer/hill-farm"},
            "image": {"src": "/media/x-640.jpeg", "srcset": "/media/x-320.jpeg 320w", "width": 640,
                      "height": 480, "alt": "A jar"}}


@pytest.fixture
def env(app: Any) -> Any:
    return app.template_engine.engine  # the app's own environment (autoescape, trim_blocks)


async def test_cards_html_is_the_macro_s_bytes_and_never_stale(env: Any) -> None:
    macro = env.get_template(CARD_TEMPLATE).module.product_card
    cards = [_card(), _card(title="Oat biscuits", in_stock=False), {**_card(), "image": None}]
    for level in (2, 3):
        expected = "".join(macro(c, level) for c in cards)
        assert cards_html(env, cards, level=level) == expected
        assert cards_html(env, cards, level=level) == expected  # from the memo: the same bytes
    memo = cards_module._html[env.get_template(CARD_TEMPLATE)]
    assert len(memo) == 6  # three cards at two heading levels
    # A change to anything the card shows is another key, never the remembered HTML.
    changed = cards_html(env, [_card(price="£5.00", in_stock=False)])
    assert "£5.00" in changed and "Out of stock" in changed and "£4.50" not in changed
    assert isinstance(cards_html(env, []), Markup) and cards_html(env, []) == ""


async def test_cards_html_escapes_hostile_text(env: Any) -> None:
    hostile = _card(title='<script>alert(1)</script>"')
    hostile["producer"] = {"name": "<b>Farm</b>", "url": "/market/producer/x\" onmouseover=\"y"}
    html = cards_html(env, [hostile])
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;&#34;" in html
    assert "<b>Farm</b>" not in html and 'onmouseover="y' not in html


async def test_the_search_page_reads_in_autocommit_on_postgresql(client: Any, world: World, db_kind: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """No BEGIN/COMMIT around the search page's reads on PostgreSQL (the driver in autocommit while
    it searches); SQLite keeps its own lazy transactions. Same page either way, and a bad cursor is
    still a 400 with nothing left open."""
    from domains.market import controllers

    seen: list[bool] = []

    class Watched(MarketSearch):
        async def search(self, filters: SearchFilters, **kw: Any) -> Any:
            # The driver's own flag (the server reports its isolation level, autocommit or not).
            raw = await (await self.session.connection()).get_raw_connection()
            seen.append(getattr(raw.dbapi_connection, "autocommit", False) is True)
            return await super().search(filters, **kw)

    # A fresh n= each time: the page cache keys on the query string and would answer instead.
    plain = await client.get("/market/search?q=honey&n=1")
    monkeypatch.setattr(controllers, "MarketSearch", Watched)
    watched = await client.get("/market/search?q=honey&n=2")
    results = await client.get("/market/search/results?q=hon&n=3")
    assert plain.status_code == watched.status_code == results.status_code == 200
    assert watched.content == plain.content and b"Wildflower Honey" in results.content
    assert seen == [db_kind == "postgresql"] * 2, seen
    bad = await client.get("/market/search?q=honey&cursor=not-a-cursor")
    assert bad.status_code == 400
    after = await client.get("/market/search?q=honey&n=4")  # the pool's connection is fine afterwards
    assert after.status_code == 200 and after.content == plain.content
