"""Public market pages: the public route class (no session, ETag/304, Surrogate-Key).

Every handler here is ``public_get``: it never reads the session or the user, so the answer is the
same for everyone and an edge may keep it (design/fragments.md §2). Availability is read fresh on
each render and every page that shows a product carries that product's key (or the product-list
key), which every product and stock change purges (domains/market/keys.py), so no cached page
outlives the stock it shows. ETags hash the body, so they change whenever availability does.

- ``/market/``                      featured and newest products, categories
- ``/market/<slug>``                a product (old slug: 301) with its variant picker;
  ``/market/<slug>/offer``          the picker's price/availability block alone, for htmx
- ``/market/category/<slug>``, ``/market/producer/<slug>``   lists, keyset-paged
- ``/market/search``, ``/market/search/results``             search, and its results block for htmx
- ``/market/pages/``, ``/market/pages/<slug>``               market pages
"""

from __future__ import annotations

import json
from typing import Any, Final, cast
from urllib.parse import urlencode

from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.caching import CachePolicy, policy_headers
from app.money import minor_exponent, parse_major
from app.settings import Settings
from domains.market import keys
from domains.market.cards import cards_html, load_cards
from domains.market.fragments import page_keys
from domains.market.models import ACTIVE, Producer, Product
from domains.market.pages import MarketPageService, page_view
from domains.market.schemas import ProductRead, VariantRead
from domains.market.search import MAX_QUERY, BadCursor, MarketSearch, SearchFilters
from domains.market.services.catalogue import CatalogueService, producer_read
from fragments.pages import public_get, render_page
from fragments.registry import _env

__all__ = ["public_handlers"]

SCHEMA: Final = "https://schema.org/"
LIST_SIZE: Final = 24
FEATURED: Final = 8
NEWEST: Final = 12
NOT_FOUND = "We couldn't find that product."


# -- the product page ---------------------------------------------------------------------------------

def choose_variant(product: ProductRead, params: dict[str, str]) -> VariantRead | None:
    """The variant the visitor asked for (``?variant=<sku>`` or one param per option name), else the
    first one in stock, else the first. An unknown choice falls back the same way."""
    if not product.variants:
        return None
    sku = params.get("variant", "")
    if sku:
        for v in product.variants:
            if v.sku == sku:
                return v
    asked = {k.casefold(): v.casefold() for k, v in params.items() if k not in ("variant",)}
    if asked:
        for v in product.variants:
            options = {k.casefold(): str(val).casefold() for k, val in v.options.items()}
            if options and all(asked.get(name) == value for name, value in options.items()):
                return v
    return next((v for v in product.variants if v.in_stock), product.variants[0])


def major(variant: VariantRead) -> str:
    """The price in major units as schema.org and Open Graph write it (``12.50``; ``1200`` for JPY)."""
    exp = minor_exponent(variant.currency) if variant.currency else 2
    whole, frac = divmod(variant.price_minor, 10 ** exp)
    return f"{whole}.{frac:0{exp}d}" if exp else str(whole)


def json_ld(product: ProductRead, base_url: str) -> Markup:
    """schema.org ``Product`` with one ``Offer`` per variant, safe inside ``<script>``."""
    url = f"{base_url}/market/{product.slug}"
    data: dict[str, Any] = {
        "@context": "https://schema.org", "@type": "Product", "name": product.title, "url": url,
        "description": _summary(product, 5000),
        "brand": {"@type": "Brand", "name": product.producer.name},
        "image": [_absolute(i.url, base_url) for i in product.images],
        "offers": [{
            "@type": "Offer", "sku": v.sku, "price": major(v), "priceCurrency": v.currency,
            "availability": SCHEMA + ("InStock" if v.in_stock else "OutOfStock"),
            "url": f"{url}?{urlencode({'variant': v.sku})}", "itemCondition": SCHEMA + "NewCondition",
            **({"gtin": v.barcode} if v.barcode else {}),
            **({"name": v.label} if len(product.variants) > 1 else {}),
        } for v in product.variants],
    }
    if product.categories:
        data["category"] = product.categories[0].name
    if len(product.variants) == 1:
        data["sku"] = product.variants[0].sku
        if product.variants[0].barcode:
            data["gtin"] = product.variants[0].barcode
    # json.dumps escapes nothing for HTML: "<", ">" and "&" as \u escapes keep "</script>" (and
    # "<!--") in a title or description from ending the script element.
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)  # noqa: S704 (escaped above for the script context)


def _absolute(url: str, base_url: str) -> str:
    return base_url + url if url.startswith("/") else url


def _summary(product: ProductRead, limit: int = 200) -> str:
    from app.markdown import plain_text

    text = plain_text(product.description_html)
    return text[:limit] + ("…" if len(text) > limit else "")


def _string_params(request: Request[Any, Any, Any]) -> dict[str, str]:
    return {k: v[:MAX_QUERY] for k, v in request.query_params.items() if isinstance(v, str)}


async def _product_or_redirect(request: Request[Any, Any, Any], db: AsyncSession, settings: Settings,
                               slug: str, suffix: str = "") -> ProductRead | Response[bytes]:
    found = await CatalogueService(db, base_url=settings.base_url).resolve_public(slug)
    if found is None:
        raise NotFoundException(NOT_FOUND)
    if isinstance(found, str):  # an old slug: permanently moved, the query kept
        query = request.url.query
        location = f"/market/{found}{suffix}" + (f"?{query}" if query else "")
        return Response(b"", status_code=301, headers={**policy_headers(CachePolicy.PUBLIC), "Location": location})
    reads = await CatalogueService(db, base_url=settings.base_url).reads([found])
    return reads[0]


@public_get("/market/{slug:str}", name="market:product")
async def product_page(request: Request[Any, Any, Any], db_session: AsyncSession, settings: Settings,
                       slug: str) -> Response[bytes]:
    found = await _product_or_redirect(request, db_session, settings, slug)
    if isinstance(found, Response):
        return found
    product = found
    selected = choose_variant(product, _string_params(request))
    option_names: list[str] = []
    for v in product.variants:
        option_names.extend(name for name in v.options if name not in option_names)
    return await render_page(request, "market/product.html", {
        "product": product, "selected": selected, "option_names": option_names,
        "canonical": f"{settings.base_url}/market/{product.slug}", "summary": _summary(product),
        "json_ld": json_ld(product, settings.base_url), "major": major,
        "absolute": lambda url: _absolute(url, settings.base_url),
    }, keys=_product_keys(product))


@public_get("/market/{slug:str}/offer", name="market:offer", include_in_schema=False)
async def product_offer(request: Request[Any, Any, Any], db_session: AsyncSession, settings: Settings,
                        slug: str) -> Response[bytes]:
    """The offer block for the chosen variant (htmx swaps it in); a plain visit goes to the page."""
    found = await _product_or_redirect(request, db_session, settings, slug, "/offer")
    if isinstance(found, Response):
        return found
    selected = choose_variant(found, _string_params(request))
    headers: dict[str, str] = {}
    if selected is not None:  # the address bar follows the choice, so a reload shows it
        headers["HX-Replace-Url"] = f"/market/{found.slug}?{urlencode({'variant': selected.sku})}"
    return await render_page(request, "market/_offer.html", {"product": found, "selected": selected},
                             keys=_product_keys(found), headers=headers)


def _product_keys(product: ProductRead) -> tuple[str, ...]:
    # The product's own key (its edits and stock changes purge it) and its producer's (name, logo).
    return tuple(sorted({keys.product(product.id), keys.producer(product.producer.id)}))


# -- the front page and lists -----------------------------------------------------------------------

@public_get("/market/", name="market:index")
async def market_index(request: Request[Any, Any, Any], db_session: AsyncSession,
                       settings: Settings) -> Response[bytes]:
    catalogue = CatalogueService(db_session, base_url=settings.base_url)
    featured_ids = list((await db_session.execute(
        select(Product.id).where(Product.status == ACTIVE, Product.featured.is_(True))
        .order_by(Product.published_at.desc().nulls_last(), Product.id.desc()).limit(FEATURED))).scalars())
    newest_ids = list((await db_session.execute(
        select(Product.id).where(Product.status == ACTIVE)
        .order_by(Product.published_at.desc().nulls_last(), Product.id.desc()).limit(NEWEST))).scalars())
    cards = {c.id: c.data for c in await load_cards(db_session, list(dict.fromkeys(featured_ids + newest_ids)))}
    categories = [c for c in await catalogue.categories() if c.parent_id is None]
    return await render_page(request, "market/index.html", {
        "featured": [cards[i] for i in featured_ids if i in cards],
        "newest": [cards[i] for i in newest_ids if i in cards],
        "categories": categories, "filters": None,
    }, keys=(keys.PRODUCTS,))


def _price(raw: str, currency: str, name: str) -> int | None:
    if not raw.strip():
        return None
    try:
        return parse_major(raw, currency)
    except ValueError:
        raise HTTPException(status_code=400, detail=f"The {name} price is not an amount like 4.50.") from None


def _filters(request: Request[Any, Any, Any], settings: Settings) -> tuple[SearchFilters, dict[str, str]]:
    """The search filters from the query string (``q``, ``category``, ``producer``, ``min``, ``max``, ``in_stock``)."""
    raw = _string_params(request)  # each at most MAX_QUERY characters
    filters = SearchFilters(
        q=raw.get("q", ""), category=raw.get("category", "").strip(), producer=raw.get("producer", "").strip(),
        min_price=_price(raw.get("min", ""), settings.market_currency, "lowest"),
        max_price=_price(raw.get("max", ""), settings.market_currency, "highest"),
        in_stock=raw.get("in_stock", "") not in ("", "0", "false"))
    shown = {"q": filters.q, "category": filters.category, "producer": filters.producer,
             "min": raw.get("min", ""), "max": raw.get("max", ""), "in_stock": "1" if filters.in_stock else ""}
    return filters, shown


def _next_url(base: str, shown: dict[str, str], cursor: str | None) -> str | None:
    if cursor is None:
        return None
    params = [(k, v) for k, v in shown.items() if v]
    return f"{base}?{urlencode([*params, ('cursor', cursor)])}"


async def _results(request: Request[Any, Any, Any], db: AsyncSession, filters: SearchFilters,
                   size: int = LIST_SIZE) -> tuple[list[dict[str, Any]], str | None]:
    cursor = request.query_params.get("cursor", "")
    try:
        found = await MarketSearch(db, page_size=size).search(filters, cursor=cursor if isinstance(cursor, str) else "")
    except BadCursor as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from None
    return [c.data for c in await load_cards(db, found.ids)], found.next_cursor


@public_get("/market/category/{slug:str}", name="market:category")
async def category_page(request: Request[Any, Any, Any], db_session: AsyncSession, settings: Settings,
                        slug: str) -> Response[bytes]:
    category = await CatalogueService(db_session).category_by_slug(slug)
    if category is None:
        raise NotFoundException("No such category.")
    filters = SearchFilters(category=category.slug)
    results, cursor = await _results(request, db_session, filters)
    return await render_page(request, "market/listing.html", {
        "kind": "Category", "heading": category.name, "description": category.description, "results": results,
        "next_url": _next_url(f"/market/category/{slug}", {}, cursor), "canonical": f"/market/category/{slug}",
        "cursor": request.query_params.get("cursor"),
    }, keys=(keys.category(category.slug), keys.PRODUCTS))


@public_get("/market/producer/{slug:str}", name="market:producer")
async def producer_page(request: Request[Any, Any, Any], db_session: AsyncSession, settings: Settings,
                        slug: str) -> Response[bytes]:
    from sqlalchemy.orm import selectinload

    producer = (await db_session.execute(
        select(Producer).where(Producer.slug == slug).options(selectinload(Producer.logo)))).scalar_one_or_none()
    if producer is None:
        raise NotFoundException("No such producer.")
    results, cursor = await _results(request, db_session, SearchFilters(producer=producer.slug))
    return await render_page(request, "market/listing.html", {
        "kind": "Producer", "heading": producer.name, "producer": producer_read(producer), "results": results,
        "next_url": _next_url(f"/market/producer/{slug}", {}, cursor), "canonical": f"/market/producer/{slug}",
        "cursor": request.query_params.get("cursor"),
    }, keys=(keys.producer(producer.id), keys.PRODUCTS))


# -- search -------------------------------------------------------------------------------------------

# The search box's category list, kept in the shared-fragment cache (fragments/cache.py: in
# process, and in Redis when configured) as JSON under ``market-products``, which creating a
# category purges (CatalogueService.create_category), like every product change: a search then
# asks the database for its results only, not for the same list on every keystroke.
_CATEGORY_LIST: Final = "market.search-categories"


async def _categories(request: Request[Any, Any, Any], db: AsyncSession) -> list[dict[str, str]]:
    """Every category's slug and name, in the catalogue's order, for the search box's select."""
    from fragments.cache import CachedFragment, FragmentCache

    cache = request.app.state.get("fragment_cache")
    key = cache.key(_CATEGORY_LIST, {}, "") if isinstance(cache, FragmentCache) else ""
    if isinstance(cache, FragmentCache):
        found = await cache.get(request.scope, key)
        if found is not None:
            return cast("list[dict[str, str]]", json.loads(found.html))
        epoch = cache.epoch  # a purge while the list is read: not stored (put compares it)
    listed = [{"slug": c.slug, "name": c.name} for c in await CatalogueService(db).categories()]
    if isinstance(cache, FragmentCache):
        await cache.put(request.scope, key, CachedFragment(json.dumps(listed), (keys.PRODUCTS,), None), epoch)
    return listed


async def _autocommit_reads(db: AsyncSession) -> None:
    """On PostgreSQL, run the search page's reads in autocommit: no ``BEGIN`` and ``COMMIT``
    round trips around its two SELECTs (the results' ids, their cards), a third of the statements
    a search sent. Only this read-only page does it (its session writes nothing; the app's other
    pages keep their transaction: the forge's advisory locks and the CSV import's ``SET LOCAL``
    need one). The two reads may see two snapshots: a product archived in between is left out of
    the cards (``load_cards`` reads active ones only), never shown wrongly. The isolation level
    is the driver's own setting, put back when the connection returns to the pool."""
    if db.bind.dialect.name == "postgresql" and not db.in_transaction():
        await db.connection(execution_options={"isolation_level": "AUTOCOMMIT"})


async def _search_context(request: Request[Any, Any, Any], db: AsyncSession,
                          settings: Settings) -> dict[str, Any]:
    await _autocommit_reads(db)
    try:
        filters, shown = _filters(request, settings)
    except HTTPException as exc:  # a bad price: say so where the results would be, no 500, no 400 page
        return {"filters": {"q": request.query_params.get("q", "")}, "results": [], "next_url": None,
                "problem": exc.detail, "categories": await _categories(request, db), "cards_html": ""}
    results, cursor = await _results(request, db, filters)
    return {"filters": shown, "results": results, "next_url": _next_url("/market/search", shown, cursor),
            "problem": "", "categories": await _categories(request, db),
            "cards_html": cards_html(_env(request), results)}


@public_get("/market/search", name="market:search")
async def search_page(request: Request[Any, Any, Any], db_session: AsyncSession, settings: Settings) -> Response[bytes]:
    context = await _search_context(request, db_session, settings)
    return await render_page(request, "market/search.html", context, keys=(keys.PRODUCTS,))


@public_get("/market/search/results", name="market:search-results", include_in_schema=False)
async def search_results(request: Request[Any, Any, Any], db_session: AsyncSession,
                         settings: Settings) -> Response[bytes]:
    """The results block alone, for the search box's htmx requests (a URL of its own: no Vary)."""
    context = await _search_context(request, db_session, settings)
    query = urlencode([(k, v) for k, v in context["filters"].items() if v])
    return await render_page(request, "market/_results.html", context, keys=(keys.PRODUCTS,),
                             headers={"HX-Replace-Url": "/market/search" + (f"?{query}" if query else "")})


# -- market pages -------------------------------------------------------------------------------------

@public_get("/market/pages/", name="market:pages")
async def pages_index(request: Request[Any, Any, Any], db_session: AsyncSession) -> Response[bytes]:
    pages = await MarketPageService(db_session).list_public()
    return await render_page(request, "market/pages_index.html", {"pages": [page_view(p) for p in pages]},
                             keys=(keys.MARKET_PAGES,))


@public_get("/market/pages/{slug:str}", name="market:page")
async def market_page(request: Request[Any, Any, Any], db_session: AsyncSession, settings: Settings,
                      slug: str) -> Response[bytes]:
    service = MarketPageService(db_session)
    page = await service.get_public(slug)
    if page is None:
        raise NotFoundException("No such market page.")
    cards = [c.data for c in await load_cards(db_session, await service.product_ids(page))]
    og_image = next((_absolute(c["image"]["src"], settings.base_url) for c in cards if c["image"]), "")
    return await render_page(request, "market/page.html", {
        "page": page_view(page), "products": cards, "og_image": og_image,
    }, keys=page_keys(page.id, page.mode, [item.product_id for item in page.items]))


public_handlers = [market_index, search_page, search_results, pages_index, market_page, category_page,
                   producer_page, product_page, product_offer]
