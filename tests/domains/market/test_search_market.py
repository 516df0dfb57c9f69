"""Market search (issue 16 item 6) on both engines: PostgreSQL full-text search and SQLite FTS5.

The same fixture gives the same answers on both (every test here runs on each database): the
ranking (title over tags over description), prefix matching as one types, each filter, keyset
paging through every result exactly once, the index following edits, and hostile queries that
must never reach an engine as syntax.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from domains.market.models import Product
from domains.market.schemas import ProductInput
from domains.market.search import MarketSearch, SearchFilters, terms
from domains.market.services.catalogue import CatalogueService
from tests.domains.market.view_world import World, build, stock, v

pytestmark = pytest.mark.anyio


@pytest.fixture
def sm(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@pytest.fixture
async def world(sm: async_sessionmaker[AsyncSession]) -> World:
    return await build(sm)


async def slugs(sm: async_sessionmaker[AsyncSession], filters: SearchFilters, **kw: Any) -> list[str]:
    async with sm() as session:
        page = await MarketSearch(session).search(filters, **kw)
        by_id = dict((await session.execute(select(Product.id, Product.slug).where(Product.id.in_(page.ids))))
                     .tuples().all())
        return [by_id[i] for i in page.ids]


async def test_ranking_title_over_tags_over_description(sm: Any, world: World, db_kind: str) -> None:
    # Title+tag, tag only, description only; the draft and the archived "honey" products never.
    assert await slugs(sm, SearchFilters(q="honey")) == ["wildflower-honey", "sourdough-loaf", "oat-biscuits"]
    assert await slugs(sm, SearchFilters(q="HONEY")) == ["wildflower-honey", "sourdough-loaf", "oat-biscuits"]


async def test_the_last_word_is_a_prefix_and_every_word_must_match(sm: Any, world: World) -> None:
    assert await slugs(sm, SearchFilters(q="hon")) == ["wildflower-honey", "sourdough-loaf", "oat-biscuits"]
    assert await slugs(sm, SearchFilters(q="oat hon")) == ["oat-biscuits"]
    assert await slugs(sm, SearchFilters(q="carr")) == ["carrots"]
    assert await slugs(sm, SearchFilters(q="honey carrots")) == []
    assert await slugs(sm, SearchFilters(q="Ünfiltered")) == ["wildflower-honey"]  # diacritics folded


async def test_filters(sm: Any, world: World) -> None:
    assert await slugs(sm, SearchFilters(q="honey", category="preserves")) == ["wildflower-honey"]
    assert await slugs(sm, SearchFilters(category="vegetables")) == ["carrots"]  # a child category counts
    assert await slugs(sm, SearchFilters(q="honey", producer="town-bakery")) == ["sourdough-loaf", "oat-biscuits"]
    # Any variant within the range: the honey's 250 g jar (500), the loaf (450), the biscuits (600).
    assert await slugs(sm, SearchFilters(q="honey", min_price=450, max_price=800)) == [
        "wildflower-honey", "sourdough-loaf", "oat-biscuits"]
    assert await slugs(sm, SearchFilters(q="honey", min_price=450, max_price=460)) == ["sourdough-loaf"]
    assert await slugs(sm, SearchFilters(q="honey", min_price=901)) == []
    assert await slugs(sm, SearchFilters(q="honey", max_price=449)) == ["oat-biscuits"]
    # Oat biscuits have no stock at all; the honey's 250 g jar is in stock though the 500 g is not.
    assert await slugs(sm, SearchFilters(q="honey", in_stock=True)) == ["wildflower-honey", "sourdough-loaf"]
    await stock(sm, {"OAT-24": 2})
    assert await slugs(sm, SearchFilters(q="honey", in_stock=True)) == ["wildflower-honey", "sourdough-loaf",
                                                                        "oat-biscuits"]
    # No words: every active product, newest first.
    assert await slugs(sm, SearchFilters()) == ["wildflower-honey", "sourdough-loaf", "oat-biscuits", "carrots"]


async def test_the_index_follows_edits_and_status(sm: Any, world: World) -> None:
    async with sm() as session, session.begin():
        service = CatalogueService(session)
        carrots = await service.get(world.ids["carrots"])
        assert carrots is not None
        await service.save(None, ProductInput(title="Honey Carrots", slug="carrots", description_md="Glazed.",
                                              status="active", tags=["veg"],
                                              variants=[_keep(carrots, "CARROT-1KG", 250)]), product=carrots)
    # A title match: after the title-and-tag match, before the tag-only and description-only ones.
    assert await slugs(sm, SearchFilters(q="honey")) == ["wildflower-honey", "carrots", "sourdough-loaf",
                                                         "oat-biscuits"]
    assert await slugs(sm, SearchFilters(q="glazed")) == ["carrots"]
    assert await slugs(sm, SearchFilters(q="pulled")) == []  # the old description is gone from the index
    async with sm() as session, session.begin():
        service = CatalogueService(session)
        loaf = await service.get(world.ids["sourdough-loaf"])
        assert loaf is not None
        await service.set_status(None, loaf, "archived")
    assert "sourdough-loaf" not in await slugs(sm, SearchFilters(q="honey"))


async def test_the_index_follows_publishing_and_the_published_time(sm: Any, world: World) -> None:
    """Status and published time live on the search document too: a draft is found once it is
    published, and moving a published time reorders ties (the no-words listing is newest first)."""
    assert "honey-mustard" not in await slugs(sm, SearchFilters(q="honey"))
    async with sm() as session, session.begin():
        service = CatalogueService(session)
        mustard = await service.get(world.ids["honey-mustard"])
        assert mustard is not None
        await service.set_status(None, mustard, "active")
    # Title and tag match: beside the honey; newer published time (day 6 vs day 10): after it.
    assert await slugs(sm, SearchFilters(q="honey")) == ["wildflower-honey", "honey-mustard", "sourdough-loaf",
                                                         "oat-biscuits"]
    async with sm() as session, session.begin():
        mustard = await CatalogueService(session).get(world.ids["honey-mustard"])
        honey = await CatalogueService(session).get(world.ids["wildflower-honey"])
        assert mustard is not None and honey is not None and honey.published_at is not None
        mustard.published_at = honey.published_at + timedelta(days=1)
    assert await slugs(sm, SearchFilters(q="honey")) == ["honey-mustard", "wildflower-honey", "sourdough-loaf",
                                                         "oat-biscuits"]
    assert (await slugs(sm, SearchFilters()))[:2] == ["honey-mustard", "wildflower-honey"]
    async with sm() as session, session.begin():
        mustard = await CatalogueService(session).get(world.ids["honey-mustard"])
        assert mustard is not None
        await session.delete(mustard)
    assert "honey-mustard" not in await slugs(sm, SearchFilters())


async def test_paging_through_stock_and_price_filters_visits_every_match_once(sm: Any, world: World) -> None:
    """The per-variant filters (in stock, price range) run on the ranked matches in order: every
    page is the next slice of the filtered ranking, and the cursor carries on across them."""
    producer = world.producers["hill-farm"]
    async with sm() as session, session.begin():
        for i in range(17):
            await CatalogueService(session).save(None, ProductInput(
                title=f"Plum jam {i}", description_md="Plum" if i % 2 else "Plum jam, plums", status="active",
                variants=[v(f"PLUM-{i}", 200 + 10 * i)], producer_id=producer, tags=["jam"] if i % 3 else []))
    await stock(sm, {f"PLUM-{i}": (0 if i % 4 == 0 else i) for i in range(17)})
    everything = await slugs(sm, SearchFilters(q="plum"), limit=100)
    in_stock = [s for s in everything if int(s.rsplit("-", 1)[1]) % 4]
    priced = [s for s in everything if 250 <= 200 + 10 * int(s.rsplit("-", 1)[1]) <= 330]
    both = [s for s in in_stock if s in priced]
    assert len(everything) == 17 and len(in_stock) == 12 and len(priced) == 9 and both
    for filters, expected in ((SearchFilters(q="plum", in_stock=True), in_stock),
                              (SearchFilters(q="plum", min_price=250, max_price=330), priced),
                              (SearchFilters(q="plum", min_price=250, max_price=330, in_stock=True), both),
                              (SearchFilters(in_stock=True, producer="hill-farm"), None)):
        seen: list[str] = []
        cursor = ""
        while True:
            async with sm() as session:
                page = await MarketSearch(session, page_size=4).search(filters, cursor=cursor)
                by_id = dict((await session.execute(select(Product.id, Product.slug)
                                                    .where(Product.id.in_(page.ids)))).tuples().all())
            seen += [by_id[i] for i in page.ids]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == (expected if expected is not None else await slugs(sm, filters, limit=100))
        assert len(set(seen)) == len(seen)
    # Hill Farm in stock: the honey, the carrots and the plum jams with stock, newest first.
    assert set(await slugs(sm, SearchFilters(in_stock=True, producer="hill-farm"), limit=100)) == {
        "wildflower-honey", "carrots", *in_stock}


def _keep(product: Product, sku: str, price: int) -> Any:
    from domains.market.schemas import VariantInput

    variant = next(x for x in product.variants if x.sku == sku)
    return VariantInput(id=variant.id, sku=sku, price_minor=price)


async def test_keyset_paging_visits_every_result_once_in_order(sm: Any, world: World) -> None:
    producer = world.producers["hill-farm"]
    for i in range(23):
        async with sm() as session, session.begin():
            await CatalogueService(session).save(None, ProductInput(
                title=f"Jar of jam {i}", description_md="Jam" + " jam" * (i % 4), status="active",
                variants=[v(f"JAM-{i}", 300 + i)], producer_id=producer, tags=["jam"] if i % 3 == 0 else []))
    for filters in (SearchFilters(q="jam"), SearchFilters()):
        everything = await slugs(sm, filters, limit=100)
        seen: list[str] = []
        cursor = ""
        pages = 0
        while True:
            async with sm() as session:
                page = await MarketSearch(session, page_size=5).search(filters, cursor=cursor)
                by_id = dict((await session.execute(select(Product.id, Product.slug)
                                                    .where(Product.id.in_(page.ids)))).tuples().all())
            seen += [by_id[i] for i in page.ids]
            pages += 1
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == everything and len(set(seen)) == len(seen)
        assert pages == -(-len(everything) // 5)
    assert len(await slugs(sm, SearchFilters(q="jam"), limit=100)) == 23


async def test_the_search_does_not_use_offset(sm: Any, world: World, db_kind: str) -> None:
    """Deep pages are keyset: the statement has no OFFSET, only the cursor's comparison."""
    statements: list[tuple[str, Any]] = []
    from sqlalchemy import event

    async with sm() as session:
        search = MarketSearch(session, page_size=1)
        first = await search.search(SearchFilters(q="honey"))
        assert first.next_cursor

        def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            statements.append((statement, args[0] if args else None))

        sync_engine = session.bind.sync_engine if hasattr(session.bind, "sync_engine") else session.bind
        event.listen(sync_engine, "before_cursor_execute", record)
        try:
            await search.search(SearchFilters(q="honey"), cursor=first.next_cursor)
        finally:
            event.remove(sync_engine, "before_cursor_execute", record)
        # The per-variant filters rank in a subquery fenced with a literal OFFSET 0 (it skips nothing).
        second = await search.search(SearchFilters(q="honey", in_stock=True), cursor=first.next_cursor)
        assert second.ids
    assert statements
    for statement, params in statements:
        # SQLite's compiler always writes "LIMIT ? OFFSET ?" (the ranking window's subquery too);
        # the offset it binds must be 0.
        offsets = re.findall(r"OFFSET (\?|\d+)", statement.upper())
        assert all(o == "0" for o in offsets if o != "?"), statement
        if "?" in offsets:
            assert db_kind == "sqlite" and statement.rstrip().endswith("OFFSET ?") and params[-1] == 0


@pytest.mark.parametrize("q", ['"', '"honey', "honey*", "*", "NEAR(honey oat)", "honey OR oat", "-honey", "title:honey",
                               "h'oney", "(", ")", "^honey", "honey AND", "\\", ":*", "&|!", "'", "x" * 5000,
                               "honey " * 300, "🍯 honey", "\u0000honey"])
async def test_hostile_queries_never_reach_an_engine_as_syntax(sm: Any, world: World, q: str) -> None:
    found = await slugs(sm, SearchFilters(q=q))
    words = terms(q)
    if words == ["honey"] or (words and set(words) == {"honey"}):
        assert found == ["wildflower-honey", "sourdough-loaf", "oat-biscuits"]
    assert len(words) <= 8


async def test_the_index_is_the_engine_s(sm: Any, world: World, db_kind: str) -> None:
    """PostgreSQL: a GIN index on the generated tsvector; SQLite: the FTS5 table holds every document."""
    async with sm() as session:
        if db_kind == "postgresql":
            found = (await session.execute(text(
                "SELECT indexdef FROM pg_indexes WHERE tablename = 'market_search_document'"))).scalars().all()
            assert any("gin" in d.lower() and "document" in d for d in found), found
            weights = (await session.execute(text(
                "SELECT document::text FROM market_search_document d JOIN market_product p ON p.id = d.product_id"
                " WHERE p.slug = 'wildflower-honey'"))).scalar_one()
            assert "'honey':" in weights and "A" in weights and "C" in weights
        else:
            count = (await session.execute(text("SELECT count(*) FROM market_search_fts"))).scalar_one()
            documents = (await session.execute(text("SELECT count(*) FROM market_search_document"))).scalar_one()
            assert count == documents == 6


@pytest.mark.parametrize(("q", "window"), [("jam", 1), ("jam", 4), ("jam", 10), ("honey", 1), ("honey", 2)])
async def test_a_query_ranks_its_newest_matches_only(sm: Any, world: World, q: str, window: int) -> None:
    """The ranking window: the ``window`` newest matches, in the full ranking's order. With 23 new
    "jam" products, PostgreSQL's newest-first walk finds a small window among the newest documents;
    "honey" is only in the older fixture, so the walk comes back short and the GIN branch answers."""
    from domains.market.search_models import SearchDocument

    producer = world.producers["hill-farm"]
    for i in range(23):
        async with sm() as session, session.begin():
            await CatalogueService(session).save(None, ProductInput(
                title=f"Jar of jam {i}" if i % 2 else f"Preserve {i}", description_md="Jam" + " jam" * (i % 4),
                status="active", variants=[v(f"JAM-{i}", 300 + i)], producer_id=producer,
                tags=["jam"] if i % 3 == 0 else []))
    full = await slugs(sm, SearchFilters(q=q), limit=100)  # fewer matches than RANK_WINDOW: every one ranked
    assert len(full) > window
    async with sm() as session:
        slug_of = dict((await session.execute(select(Product.id, Product.slug))).tuples().all())
        newest = (await session.execute(
            select(SearchDocument.product_id).where(SearchDocument.product_id.in_(
                [i for i, s in slug_of.items() if s in full]))
            .order_by(SearchDocument.published.desc(), SearchDocument.product_id.desc()).limit(window))).scalars().all()
        page = await MarketSearch(session, window=window).search(SearchFilters(q=q), limit=100)
    assert [slug_of[i] for i in page.ids] == [s for s in full if s in {slug_of[i] for i in newest}]
    assert len(page.ids) == window
