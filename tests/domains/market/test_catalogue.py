"""The catalogue through HTTP as a producer uses it: a product with three variants, its rules
(duplicate SKU or slug with a suggestion, prices, option combinations, currency), slugs that
move (301 source), and that a refusal writes nothing."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.forms import InputProblems
from app.jobs import Job, JobContext, job_handler
from domains.market import events
from domains.market.models import ACTIVE, Product, ProductSlugRedirect, Variant
from domains.market.schemas import ProductEvent, ProductInput, VariantInput
from domains.market.services import CatalogueService, SkuTaken, SlugTaken
from fragments.purge import PURGE_KIND, PurgePayload
from tests.domains.market.conftest import make_producer, product_input
from tests.domains.market.helpers import THREE, submit

pytestmark = pytest.mark.anyio

SEEN: list[ProductEvent] = []


@job_handler("test.market-product")
async def record_event(ctx: JobContext, event: ProductEvent) -> None:
    """A stand-in subscriber (as the federation of products is a real one)."""
    SEEN.append(event)



async def counts(sessionmaker: async_sessionmaker[AsyncSession]) -> tuple[int, int]:
    async with sessionmaker() as session:
        products = (await session.execute(select(func.count()).select_from(Product))).scalar_one()
        variants = (await session.execute(select(func.count()).select_from(Variant))).scalar_one()
    return int(products), int(variants)


async def test_a_producer_lists_a_product_with_three_variants(client: Any, sessionmaker: Any) -> None:
    await make_producer(client, sessionmaker, "alice")
    made = await submit(client, THREE)
    assert made.status_code == 303, made.text[:2000]
    where = made.headers["location"]
    page = await client.get(where)
    assert page.status_code == 200 and "SOCK-M-RED" in page.text and 'value="12.50"' in page.text
    async with sessionmaker() as session:
        product = await CatalogueService(session).by_slug("wool-socks")
        assert product is not None and product.status == "draft"
        assert [(v.sku, v.options, v.price_minor, v.currency) for v in product.variants] == [
            ("SOCK-S-RED", {"size": "S", "colour": "red"}, 1250, "EUR"),
            ("SOCK-M-RED", {"size": "M", "colour": "red"}, 1250, "EUR"),
            ("SOCK-L-BLUE", {"size": "L", "colour": "blue"}, 1300, "EUR")]
        assert product.variants[1].compare_at_minor == 1500 and product.variants[2].weight_grams == 120
        assert product.variants[0].low_stock_threshold == 2 and product.variants[2].barcode == "4006381333931"
        assert "<strong>our own</strong>" in product.description_html and "<script" not in product.description_html
        assert product.tags == ["wool", "winter"] and product.producer.name == "alice"
        read = await CatalogueService(session).read(product)
        assert read.price_range == "€12.50 - €13.00" and read.variants[1].compare_at == "€15.00"
        # A draft is nobody's business: no purge, no event.
        assert (await session.execute(select(func.count()).select_from(Job))).scalar_one() == 0


async def test_publishing_purges_and_emits_one_event_per_subscriber(client: Any, sessionmaker: Any) -> None:
    events.subscribe("test.market-product")
    try:
        await make_producer(client, sessionmaker, "alice")
        made = await submit(client, {**THREE, "status": "active"})
        assert made.status_code == 303, made.text[:2000]
        async with sessionmaker() as session:
            jobs = (await session.execute(select(Job).order_by(Job.created_at))).scalars().all()
            product = (await session.execute(select(Product))).scalar_one()
        kinds = [j.kind for j in jobs]
        assert kinds.count("test.market-product") == 1 and kinds.count(PURGE_KIND) == 1
        purge = next(j for j in jobs if j.kind == PURGE_KIND)
        import msgspec

        keys = msgspec.convert(purge.payload, PurgePayload).keys
        assert f"market-product:{product.id}" in keys and "market-products" in keys
        assert f"market-producer:{product.producer_id}" in keys
        event = next(j for j in jobs if j.kind == "test.market-product")
        assert event.payload["kind"] == "created" and event.payload["product_id"] == str(product.id)
        assert product.status == ACTIVE and product.published_at is not None

        # Archiving stops it being public: a "deleted" event.
        page = f"/market/admin/products/{product.id}"
        archived = await submit(client, {}, path=f"{page}/archive", page=f"{page}/archive")
        assert archived.status_code == 303
        async with sessionmaker() as session:
            kinds = [j.payload.get("kind") for j in (await session.execute(
                select(Job).where(Job.kind == "test.market-product").order_by(Job.created_at))).scalars()]
        assert kinds == ["created", "deleted"]
    finally:
        events.unsubscribe("test.market-product")


async def test_duplicate_sku_and_slug_get_a_message_and_a_suggestion(client: Any, sessionmaker: Any) -> None:
    await make_producer(client, sessionmaker, "alice")
    assert (await submit(client, THREE)).status_code == 303
    before = await counts(sessionmaker)

    again = await submit(client, {**THREE, "title": "Other socks"})
    assert again.status_code == 422
    assert "SKU “SOCK-S-RED” is already used by another variant" in again.text
    assert "SOCK-S-RED-2" in again.text  # the suggestion
    assert 'value="Other socks"' in again.text  # what was typed comes back

    clash = await submit(client, {**THREE, "slug": "wool-socks", "v0_sku": "A1", "v1_sku": "A2", "v2_sku": "A3"})
    assert clash.status_code == 422
    assert "“wool-socks” is already used by another product" in clash.text and "wool-socks-2" in clash.text

    reserved = await submit(client, {**THREE, "slug": "admin", "v0_sku": "A1", "v1_sku": "A2", "v2_sku": "A3"})
    assert reserved.status_code == 422 and "reserved" in reserved.text

    twice = await submit(client, {**THREE, "title": "Twice", "v0_sku": "B1", "v1_sku": "B1", "v2_sku": "B3"})
    assert twice.status_code == 422 and "listed twice" in twice.text
    assert await counts(sessionmaker) == before  # nothing partial


@pytest.mark.parametrize(("field", "value", "message"), [
    ("v0_price", "-1", "is not a price"),
    ("v0_price", "12.505", "is not a price"),
    ("v0_price", "twelve", "is not a price"),
    ("v0_price", "", "Give a price"),
    ("v0_compare_at", "-3", "compare-at price must be"),
    ("v1_weight", "1.5", "Weight (grams) must be a whole number"),
    ("v1_threshold", "-2", "low-stock threshold must be a whole number"),
    ("v0_sku", "bad sku!", "use up to 64 letters"),
    ("title", "", "Give the product a title"),
])
async def test_bad_values_are_refused_with_the_form(client: Any, sessionmaker: Any, field: str, value: str,
                                                     message: str) -> None:
    await make_producer(client, sessionmaker, "alice")
    refused = await submit(client, {**THREE, field: value})
    assert refused.status_code == 422, refused.text[:500]
    assert message in refused.text
    # The error summary names a variant's field for people ("Variant 2 weight (grams)"), not by its path.
    assert "Variants." not in refused.text
    if field.startswith("v"):
        row, name = int(field[1]), field.split("_", 1)[1]
        label = {"price": "price", "compare_at": "compare-at price", "weight": "weight (grams)",
                 "threshold": "low-stock threshold", "sku": "SKU"}[name]
        assert f"Variant {row + 1} {label}: " in refused.text
    assert await counts(sessionmaker) == (0, 0)


async def test_repeated_option_combinations_are_refused(client: Any, sessionmaker: Any) -> None:
    await make_producer(client, sessionmaker, "alice")
    same = await submit(client, {**THREE, "v2_o0": "s", "v2_o1": " RED "})  # same as row 1, case and spaces aside
    assert same.status_code == 422
    assert "Variants 1 and 3 have the same options" in same.text
    missing = await submit(client, {**THREE, "v2_o1": ""})
    assert missing.status_code == 422 and "Give this variant a colour" in missing.text
    assert await counts(sessionmaker) == (0, 0)


async def test_the_currency_is_the_markets(sessionmaker: Any, db_session: AsyncSession) -> None:
    from tests.domains.blog.test_roles import member

    alice = await member(db_session, "alice")
    alice.is_producer = True
    catalogue = CatalogueService(db_session, currency="EUR")
    for code, message in (("XYZ", "not an ISO 4217 currency code"), ("USD", "This market sells in EUR")):
        data = ProductInput(title="Imported", variants=[VariantInput(sku="IMP-1", price_minor=100, currency=code)])
        with pytest.raises(InputProblems) as refused:
            await catalogue.save(alice, data)
        assert message in refused.value.errors["variants.0.currency"]
    ok = await catalogue.save(alice, ProductInput(title="Priced", variants=[
        VariantInput(sku="OK-1", price_minor=100, currency="EUR")]))
    assert ok.variants[0].currency == "EUR"
    with pytest.raises(InputProblems):  # negative and non-integer prices from an API client
        await catalogue.save(alice, ProductInput(title="Neg", variants=[VariantInput(sku="N-1", price_minor=-5)]))
    yen = CatalogueService(db_session, currency="JPY")
    assert yen.price(1500) == "¥1,500"


async def test_the_add_variant_button_adds_a_row_without_saving(client: Any, sessionmaker: Any) -> None:
    await make_producer(client, sessionmaker, "alice")
    more = await submit(client, {**THREE, "action": "add_variant"})
    assert more.status_code == 200 and 'name="v3_sku"' in more.text and 'value="SOCK-L-BLUE"' in more.text
    assert await counts(sessionmaker) == (0, 0)


async def test_editing_variants_keeps_ids_swaps_and_removes(client: Any, sessionmaker: Any) -> None:
    await make_producer(client, sessionmaker, "alice")
    made = await submit(client, THREE)
    where = made.headers["location"]
    async with sessionmaker() as session:
        product = (await session.execute(select(Product))).scalar_one()
        ids = [str(v.id) for v in (await CatalogueService(session).get(product.id)).variants]  # type: ignore[union-attr]
    # Swap the SKUs of the first two rows, remove the third, add a fourth.
    edit = {**THREE, "v0_id": ids[0], "v1_id": ids[1], "v2_id": ids[2], "v0_sku": "SOCK-M-RED",
            "v1_sku": "SOCK-S-RED", "v2_remove": "1", "v3_sku": "SOCK-XL", "v3_o0": "XL", "v3_o1": "red",
            "v3_price": "14"}
    saved = await submit(client, edit, path=where, page=where)
    assert saved.status_code == 303, saved.text[:3000]
    async with sessionmaker() as session:
        fresh = await CatalogueService(session).get(product.id)
        assert fresh is not None
        assert [(str(v.id), v.sku) for v in fresh.variants][:2] == [(ids[0], "SOCK-M-RED"), (ids[1], "SOCK-S-RED")]
        assert [v.sku for v in fresh.variants] == ["SOCK-M-RED", "SOCK-S-RED", "SOCK-XL"]


async def test_a_changed_slug_of_a_public_product_redirects(sessionmaker: Any, db_session: AsyncSession) -> None:
    from tests.domains.blog.test_roles import member

    alice = await member(db_session, "alice")
    alice.is_producer = True
    catalogue = CatalogueService(db_session)
    product = await catalogue.save(alice, product_input(status="active"))
    assert product.slug == "heritage-tomatoes"
    data = product_input(status="active", slug="tomatoes")
    data.variants = [VariantInput(sku=v.sku, price_minor=v.price_minor, options=dict(v.options), id=v.id)
                     for v in product.variants]
    moved = await catalogue.save(alice, data, product=product)
    assert moved.slug == "tomatoes"
    assert await catalogue.resolve_public("heritage-tomatoes") == "tomatoes"
    resolved = await catalogue.resolve_public("tomatoes")
    assert isinstance(resolved, Product) and resolved.id == product.id
    assert (await db_session.execute(select(ProductSlugRedirect.old_slug))).scalars().all() == ["heritage-tomatoes"]
    with pytest.raises(SlugTaken) as taken:
        await catalogue.save(alice, product_input("Other", skus=("O-1",), slug="tomatoes"))
    assert taken.value.suggestion == "tomatoes-2"
    with pytest.raises(SkuTaken) as sku:
        await catalogue.save(alice, product_input("Other", skus=("TOM-S",)))
    assert sku.value.suggestion == "TOM-S-2"
    await catalogue.archive(alice, moved)
    assert await catalogue.resolve_public("tomatoes") is None and await catalogue.get_public(product.id) is None


async def test_the_product_list_shows_a_producers_own_products(client: Any, sessionmaker: Any) -> None:
    await make_producer(client, sessionmaker, "alice")
    assert (await submit(client, THREE)).status_code == 303
    listing = await client.get("/market/admin/")
    assert listing.status_code == 200 and "Wool socks" in listing.text and "€12.50 - €13.00" in listing.text
    client.cookies.clear()
    await make_producer(client, sessionmaker, "bob")
    theirs = await client.get("/market/admin/")
    assert theirs.status_code == 200 and "Wool socks" not in theirs.text and "No products yet" in theirs.text


async def test_the_market_link_leads_to_the_active_products(client: Any, sessionmaker: Any) -> None:
    """/market/ (linked from the navigation) lists active products only, as a public page."""
    await make_producer(client, sessionmaker, "alice")
    assert (await submit(client, {**THREE, "status": "active"})).status_code == 303
    draft = {**THREE, "title": "Secret draft", "v0_sku": "D1", "v1_sku": "D2", "v2_sku": "D3"}
    assert (await submit(client, draft)).status_code == 303
    client.cookies.clear()
    page = await client.get("/market/")
    assert page.status_code == 200 and "Wool socks" in page.text and "Secret draft" not in page.text
    assert "set-cookie" not in page.headers and "market-products" in page.headers.get("surrogate-key", "")


async def test_a_product_with_more_options_than_the_form_offers_keeps_them_all(client: Any, sessionmaker: Any) -> None:
    """The API and CSV take up to five options; the edit form shows as many as the product has, so
    saving it as shown drops none (it offered three and lost the fourth)."""
    await make_producer(client, sessionmaker, "alice")
    four = {**THREE, "option_2": "material", "option_3": "cuff",
            **{f"v{i}_o2": "wool" for i in range(3)}, **{f"v{i}_o3": "long" for i in range(3)}}
    made = await submit(client, four)
    assert made.status_code == 303, made.text[:2000]
    page = await client.get(made.headers["location"])
    # Four option columns (their order follows the stored JSON, which PostgreSQL's jsonb reorders).
    shown = re.findall(r'name="option_(\d)" value="([^"]*)"', page.text)
    assert sorted(value for _, value in shown) == ["colour", "cuff", "material", "size"]
    async with sessionmaker() as session:
        product = await CatalogueService(session).by_slug("wool-socks")
        assert product is not None
        ids = {v.sku: str(v.id) for v in product.variants}
    again = {**four, **{f"v{i}_id": ids[four[f"v{i}_sku"]] for i in range(3)}}
    saved = await submit(client, again, path=made.headers["location"], page=made.headers["location"])
    assert saved.status_code == 303, saved.text[:2000]
    async with sessionmaker() as session:
        product = await CatalogueService(session).by_slug("wool-socks")
        assert product is not None
        assert all(v.options.get("cuff") == "long" and v.options.get("material") == "wool" for v in product.variants)
