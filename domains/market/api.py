"""Market JSON API under ``/api/market/`` (issue 16 item 11), described by the OpenAPI schema.

Reads are for everyone (active products only: a draft or archived product is absent, 404):
``GET /api/market/products`` (keyset paging: ``?after=<cursor>`` from the previous page's
``next``), ``GET /api/market/products/{slug}`` (variants with what is available now).
Writes need a token with the ``market`` scope (app/access.py; the session cookie never counts
under ``/api/``): create products, change them, add variants, adjust stock. A producer's token
manages that producer's products; a product it may not manage is 404, as on the website.

Changing a product:

``PATCH /api/market/products/{slug}``  a **partial update**: only the fields sent change; a field
    left out keeps its value (the slug is never re-made from a new title, the status never falls
    back to draft). ``variants``, when sent, are matched by SKU: a known SKU changes only the
    variant fields sent, a new SKU is added (``price_minor`` required); variants not listed are
    kept. ``{}`` changes nothing.
``PUT /api/market/products/{slug}``    a **full replace**: every field of :class:`ProductReplace`
    is required (a PUT missing one is refused with 422 naming the missing fields, never read as
    "empty"); variants not listed are removed.

Neither changes what the API does not carry (categories, featured, images, the import source).

Bodies are ``application/json`` only (415 otherwise, app/strict_input.py); every error is
``application/problem+json`` (app/errors.py). The rules are the catalogue's
(``CatalogueService.save``/``adjust_stock``): the API adds no rule of its own.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Request, get, patch, post, put
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import Parameter
from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.forms import InputProblems
from app.settings import Settings
from domains.account.models import User
from domains.market.models import ACTIVE, Product
from domains.market.schemas import (
    CategoryRead,
    ImageRead,
    ProducerRead,
    ProductInput,
    ProductRead,
    StockAdjust,
    VariantInput,
)
from domains.market.services import CatalogueService, availability, with_relations

__all__ = ["api_handlers"]

PAGE_SIZE = 50
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)

Limit = Annotated[int, Parameter(ge=1, le=200, description="Products per page.")]
After = Annotated[str, Parameter(max_length=80, description="The `next` cursor of the previous page.")]


class VariantIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A variant as an API client sends it; prices in minor units of the market's currency."""

    sku: str
    price_minor: int
    options: dict[str, str] = {}
    compare_at_minor: int | None = None
    weight_grams: int | None = None
    barcode: str = ""
    low_stock_threshold: int = 0
    currency: str | None = None

    def to_input(self, variant_id: UUID | None = None) -> VariantInput:
        return VariantInput(sku=self.sku, price_minor=self.price_minor, options=self.options,
                            compare_at_minor=self.compare_at_minor, weight_grams=self.weight_grams,
                            barcode=self.barcode, low_stock_threshold=self.low_stock_threshold,
                            currency=self.currency, id=variant_id)


class ProductIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A product with all its variants (a replace: variants left out of a PUT are removed)."""

    title: str
    variants: list[VariantIn]
    slug: str = ""
    description_md: str = ""
    status: str = "draft"
    tags: list[str] = []


class ProductReplace(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A PUT body: the whole product. Every field is required (422 names those missing); the
    variants are the full list (matched by SKU; those left out are removed)."""

    title: str | msgspec.UnsetType = msgspec.UNSET
    slug: str | msgspec.UnsetType = msgspec.UNSET
    description_md: str | msgspec.UnsetType = msgspec.UNSET
    status: str | msgspec.UnsetType = msgspec.UNSET
    tags: list[str] | msgspec.UnsetType = msgspec.UNSET
    variants: list[VariantIn] | msgspec.UnsetType = msgspec.UNSET


class VariantPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A variant in a PATCH, found by ``sku``: only the fields sent change (a new SKU needs ``price_minor``)."""

    sku: str
    price_minor: int | msgspec.UnsetType = msgspec.UNSET
    options: dict[str, str] | msgspec.UnsetType = msgspec.UNSET
    compare_at_minor: int | msgspec.UnsetType | None = msgspec.UNSET
    weight_grams: int | msgspec.UnsetType | None = msgspec.UNSET
    barcode: str | msgspec.UnsetType = msgspec.UNSET
    low_stock_threshold: int | msgspec.UnsetType = msgspec.UNSET
    currency: str | msgspec.UnsetType | None = msgspec.UNSET


class ProductPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A PATCH body: any of the product's fields; those left out keep their value. ``variants``
    lists only the variants to change or add (by SKU); the others are kept."""

    title: str | msgspec.UnsetType = msgspec.UNSET
    slug: str | msgspec.UnsetType = msgspec.UNSET
    description_md: str | msgspec.UnsetType = msgspec.UNSET
    status: str | msgspec.UnsetType = msgspec.UNSET
    tags: list[str] | msgspec.UnsetType = msgspec.UNSET
    variants: list[VariantPatch] | msgspec.UnsetType = msgspec.UNSET


class StockIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Set or change (``add``, may be negative) a SKU's stock on hand; exactly one of the two."""

    sku: str
    set: int | None = None
    add: int | None = None
    location: str | None = None


class StockOut(msgspec.Struct, kw_only=True):
    sku: str
    on_hand: int  # at the location changed
    available: int  # over every location, as the product page shows it


class PublicVariantOut(msgspec.Struct, kw_only=True):
    """A variant as anyone may read it: no ``low_stock_threshold`` (the seller's own reorder level)."""

    id: UUID
    product_id: UUID
    sku: str
    options: dict[str, str]
    label: str
    price_minor: int
    currency: str
    compare_at_minor: int | None
    weight_grams: int | None
    barcode: str
    available: int


class PublicProductOut(msgspec.Struct, kw_only=True):
    """A product as anyone may read it: :class:`ProductRead` without what only its producer may
    see (``source_url``, where it was imported from; the variants' low-stock thresholds). The
    producer's own writes still answer with the full :class:`ProductRead`."""

    id: UUID
    title: str
    slug: str
    url: str
    status: str
    featured: bool
    description_md: str
    description_html: str
    tags: list[str]
    published_at: datetime | None
    created_at: datetime
    updated_at: datetime
    revision: int
    producer: ProducerRead
    categories: list[CategoryRead]
    images: list[ImageRead]
    variants: list[PublicVariantOut]


def public(read: ProductRead) -> PublicProductOut:
    return msgspec.convert(read, PublicProductOut, from_attributes=True)


class MarketPageOut(msgspec.Struct, kw_only=True):
    """A published market page (a Saturday market, a seasonal box); ``products`` in its order."""

    slug: str
    title: str
    url: str
    intro_html: str
    starts_on: date | None
    ends_on: date | None
    place: str
    products: list[PublicProductOut] | None = None  # only on the single page


class ProductPage(msgspec.Struct, kw_only=True):
    items: list[PublicProductOut]
    next: str | None  # pass as ?after= for the next page; null on the last page


def _catalogue(db_session: AsyncSession, settings: Settings) -> CatalogueService:
    return CatalogueService(db_session, base_url=settings.base_url, currency=settings.market_currency,
                            vat_rates=settings.cart_vat_rates)


def _cursor(product: Product) -> str:
    """The last row's sort key (published µs, id): the next page starts strictly after it."""
    at = product.published_at or EPOCH
    raw = f"{(at - EPOCH) // MICROSECOND}_{product.id.hex}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _parse_cursor(value: str) -> tuple[datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        micros, _, row = raw.partition("_")
        return EPOCH + int(micros) * MICROSECOND, UUID(hex=row)
    except (ValueError, binascii.Error, OverflowError, UnicodeDecodeError):
        raise ClientException("`after` is not a cursor this API gave out; start from the first page.") from None


@get("/api/market/products", name="api:market-products")
async def list_products(db_session: AsyncSession, settings: Settings, after: After = "",
                        limit: Limit = PAGE_SIZE) -> ProductPage:
    """Active products, newest first (keyset paging)."""
    stmt = select(Product).where(Product.status == ACTIVE)
    if after:
        at, row = _parse_cursor(after)
        stmt = stmt.where(or_(Product.published_at < at, and_(Product.published_at == at, Product.id < row)))
    stmt = with_relations(stmt.order_by(Product.published_at.desc(), Product.id.desc()).limit(limit + 1))
    products = list((await db_session.scalars(stmt)).unique().all())
    more = len(products) > limit
    products = products[:limit]
    items = await _catalogue(db_session, settings).reads(products)
    return ProductPage(items=[public(i) for i in items], next=_cursor(products[-1]) if more and products else None)


@get("/api/market/products/{slug:str}", name="api:market-product")
async def get_product(db_session: AsyncSession, settings: Settings, slug: str) -> PublicProductOut:
    """One active product with its variants and what is available of each now."""
    catalogue = _catalogue(db_session, settings)
    product = await catalogue.by_slug(slug)
    if product is None or product.status != ACTIVE:
        raise NotFoundException("No product has that slug.")
    return public(await catalogue.read(product))


def _page_out(page: Any, base_url: str, products: list[PublicProductOut] | None = None) -> MarketPageOut:
    return MarketPageOut(slug=page.slug, title=page.title, url=f"{base_url.rstrip('/')}/market/pages/{page.slug}",
                         intro_html=page.intro_html, starts_on=page.starts_on, ends_on=page.ends_on, place=page.place,
                         products=products)


@get("/api/market/pages", name="api:market-pages")
async def list_pages(db_session: AsyncSession, settings: Settings) -> list[MarketPageOut]:
    """Published market pages (without their products: ask for one page)."""
    from domains.market.pages import MarketPageService

    return [_page_out(p, settings.base_url) for p in await MarketPageService(db_session).list_public()]


@get("/api/market/pages/{slug:str}", name="api:market-page")
async def get_page(db_session: AsyncSession, settings: Settings, slug: str) -> MarketPageOut:
    """One published market page with its active products, in the page's order."""
    from domains.market.pages import MarketPageService

    pages = MarketPageService(db_session)
    page = await pages.get_public(slug)
    if page is None:
        raise NotFoundException("No market page has that slug.")
    ids = await pages.product_ids(page)
    catalogue = _catalogue(db_session, settings)
    found = {p.id: p for p in (await db_session.scalars(
        with_relations(select(Product).where(Product.id.in_(ids))))).unique().all()} if ids else {}
    products = await catalogue.reads([found[i] for i in ids if i in found])
    return _page_out(page, settings.base_url, [public(p) for p in products])


def _input(data: ProductIn, existing: Product | None = None) -> ProductInput:
    by_sku = {v.sku: v.id for v in existing.variants} if existing is not None else {}
    status: Any = data.status
    return ProductInput(title=data.title, slug=data.slug, description_md=data.description_md, status=status,
                        tags=data.tags, variants=[v.to_input(by_sku.get(v.sku)) for v in data.variants],
                        category_ids=[link.category_id for link in existing.category_links] if existing else [],
                        producer_id=existing.producer_id if existing is not None else None,
                        source_url=existing.source_url if existing is not None else "",
                        # what the API does not carry is kept, never reset (staff's "featured")
                        featured=existing.featured if existing is not None else False)


def _variant_in(variant: Any) -> VariantIn:
    return VariantIn(sku=variant.sku, price_minor=variant.price_minor, options=dict(variant.options),
                     compare_at_minor=variant.compare_at_minor, weight_grams=variant.weight_grams,
                     barcode=variant.barcode, low_stock_threshold=variant.low_stock_threshold)


def _current(product: Product) -> ProductIn:
    """The product as a full :class:`ProductIn`, the base a PATCH or an added variant changes."""
    return ProductIn(title=product.title, slug=product.slug, description_md=product.description_md,
                     status=product.status, tags=list(product.tags),
                     variants=[_variant_in(v) for v in product.variants])


def _check_status(status: str) -> None:
    if status not in ("draft", "active", "archived"):
        raise ClientException("status must be draft, active or archived.", status_code=422)


def _patched(product: Product, data: ProductPatch) -> ProductIn:
    """The product with ``data``'s fields over its own (a partial update)."""
    merged = _current(product)
    changes = {name: getattr(data, name) for name in ("title", "slug", "description_md", "status", "tags")
               if getattr(data, name) is not msgspec.UNSET}
    merged = msgspec.structs.replace(merged, **changes)
    if data.variants is not msgspec.UNSET:
        by_sku = {v.sku: i for i, v in enumerate(merged.variants)}
        seen: set[str] = set()
        for change in data.variants:
            sku = change.sku.strip()
            if sku in seen:
                raise ClientException(f"SKU {sku[:64]} is listed twice in variants.", status_code=422)
            seen.add(sku)
            fields = {f: getattr(change, f) for f in change.__struct_fields__
                      if f != "sku" and getattr(change, f) is not msgspec.UNSET}
            if sku in by_sku:
                merged.variants[by_sku[sku]] = msgspec.structs.replace(merged.variants[by_sku[sku]], **fields)
            elif "price_minor" not in fields:
                raise ClientException(f"SKU {sku[:64]} is new to this product: send its price_minor too.",
                                      status_code=422)
            else:
                merged.variants.append(VariantIn(sku=sku, **fields))
    return merged


def _refused(exc: InputProblems) -> ClientException:
    detail = "; ".join(f"{k}: {v}" for k, v in exc.errors.items())
    return ClientException(detail or "The product was refused.", status_code=exc.status,
                           extra=[{"key": k, "message": v} for k, v in exc.errors.items()])


@post("/api/market/products", name="api:market-create", status_code=201)
async def create_product(request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings,
                         data: ProductIn) -> ProductRead:
    """Create a product (a draft unless `status` says active) for the token's producer."""
    if data.status not in ("draft", "active", "archived"):
        raise ClientException("status must be draft, active or archived.", status_code=422)
    catalogue = _catalogue(db_session, settings)
    try:
        product = await catalogue.save(request.user, _input(data))
    except InputProblems as exc:
        raise _refused(exc) from None
    return await catalogue.read(product)


async def _managed(request: Request[User, Any, Any], catalogue: CatalogueService, slug: str) -> Product:
    from domains.market.guards import can_manage

    product = await catalogue.by_slug(slug)
    if product is None or not can_manage(request.user, product):
        raise NotFoundException("No product of yours has that slug.")
    return product


@patch("/api/market/products/{slug:str}", name="api:market-update")
async def update_product(request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings,
                         slug: str, data: ProductPatch) -> ProductRead:
    """Change some fields of a product of yours (a partial update): fields left out keep their
    value; `variants` lists only the variants to change (by SKU, only the fields sent) or add."""
    if data.status is not msgspec.UNSET:
        _check_status(data.status)
    catalogue = _catalogue(db_session, settings)
    product = await _managed(request, catalogue, slug)
    merged = _patched(product, data)
    try:
        saved = await catalogue.save(request.user, _input(merged, product), product=product)
    except InputProblems as exc:
        raise _refused(exc) from None
    return await catalogue.read(saved)


@put("/api/market/products/{slug:str}", name="api:market-replace")
async def replace_product(request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings,
                          slug: str, data: ProductReplace) -> ProductRead:
    """Replace a product of yours: every field is required (422 names any missing; PATCH changes
    only some), and the variants are the full list (matched by SKU; those left out are removed)."""
    missing = [name for name in data.__struct_fields__ if getattr(data, name) is msgspec.UNSET]
    if missing:
        raise ClientException(
            f"PUT replaces the whole product: send every field ({', '.join(data.__struct_fields__)}); missing: "
            f"{', '.join(missing)}. To change only some fields, use PATCH.", status_code=422,
            extra=[{"key": name, "message": "required by PUT"} for name in missing])
    full = msgspec.convert(msgspec.to_builtins(data), ProductIn)
    _check_status(full.status)
    catalogue = _catalogue(db_session, settings)
    product = await _managed(request, catalogue, slug)
    try:
        saved = await catalogue.save(request.user, _input(full, product), product=product)
    except InputProblems as exc:
        raise _refused(exc) from None
    return await catalogue.read(saved)


@post("/api/market/products/{slug:str}/variants", name="api:market-add-variant", status_code=201)
async def add_variant(request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings,
                      slug: str, data: VariantIn) -> ProductRead:
    """Add one variant to a product of yours."""
    catalogue = _catalogue(db_session, settings)
    product = await _managed(request, catalogue, slug)
    if any(v.sku == data.sku.strip() for v in product.variants):
        raise ClientException(f"This product already has SKU {data.sku.strip()[:64]}; PATCH the product to change it.",
                              status_code=409)
    current = _current(product)
    current.variants.append(data)
    try:
        saved = await catalogue.save(request.user, _input(current, product), product=product)
    except InputProblems as exc:
        raise _refused(exc) from None
    return await catalogue.read(saved)


@post("/api/market/stock", name="api:market-stock", status_code=200)
async def adjust_stock(request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings,
                       data: StockIn) -> StockOut:
    """Set or change a SKU's stock on hand (never below what is allocated to orders)."""
    if (data.set is None) == (data.add is None):
        raise ClientException("Send exactly one of `set` and `add`.", status_code=422)
    catalogue = _catalogue(db_session, settings)
    try:
        on_hand = await catalogue.adjust_stock(request.user, StockAdjust(sku=data.sku, set=data.set, add=data.add,
                                                                         location=data.location))
    except InputProblems as exc:
        raise _refused(exc) from None
    variant = await catalogue.variant_by_sku(data.sku)
    assert variant is not None
    available = (await availability(db_session, [variant.id])).get(variant.id, 0)
    return StockOut(sku=variant.sku, on_hand=on_hand, available=available)


read_handlers = [list_products, get_product, list_pages, get_page]
write_handlers = [create_product, update_product, replace_product, add_variant, adjust_stock]
api_handlers = [*read_handlers, *write_handlers]
