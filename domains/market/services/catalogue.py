"""Catalogue rules: products, their variants, categories, images and stock, and what others read.

Every change that visitors can see writes, in the same transaction, an ``edge.purge`` job for
its surrogate keys (domains/market/keys.py) and a :class:`~domains.market.schemas.ProductEvent`
job for every subscriber (domains/market/events.py). Refused input raises
:class:`~app.forms.InputProblems` (or :class:`SlugTaken`/:class:`SkuTaken`, which carry a
suggestion) before anything is written; a product someone may not manage is a 404.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Select, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.attributes import set_committed_value

from app.forms import InputProblems
from app.markdown import render_key, render_markdown
from app.money import format_minor, is_currency
from domains.account.models import User
from domains.market import events, keys
from domains.market.guards import can_manage_producer, check_can_manage, is_staff
from domains.market.models import (
    ACTIVE,
    ARCHIVED,
    DRAFT,
    STATUSES,
    Category,
    Media,
    Producer,
    ProducerMember,
    Product,
    ProductCategory,
    ProductImage,
    ProductSlugRedirect,
    StockLevel,
    StockLocation,
    Variant,
)
from domains.market.schemas import (
    MAX_DESCRIPTION_CHARS,
    MAX_IMAGES,
    MAX_OPTIONS,
    MAX_PRICE_MINOR,
    MAX_STOCK,
    MAX_TAGS,
    MAX_TITLE,
    MAX_VARIANTS,
    RESERVED_SLUGS,
    SKU_RE,
    SLUG_RE,
    CategoryRead,
    LowStockLine,
    ProducerRead,
    ProductEvent,
    ProductEventKind,
    ProductInput,
    ProductRead,
    StockAdjust,
    VariantInput,
    VariantRead,
    options_key,
    slugify,
)
from domains.market.services.media import image_read
from domains.market.services.stock import (
    StockRefused,
    availability,
    available_expr,
    change_on_hand,
    default_location,
    location_named,
)
from fragments.purge import SurrogateKey, emit_purge

__all__ = ["CatalogueService", "SkuTaken", "SlugTaken", "producer_read", "vat_classes", "with_relations"]

MAX_OPTION_CHARS = 60
MAX_TAG_CHARS = 60


class SlugTaken(InputProblems):
    """The slug belongs to another product (or is reserved); ``suggestion`` is the next free one."""

    def __init__(self, errors: dict[str, str], suggestion: str) -> None:
        super().__init__(errors, 422)
        self.suggestion = suggestion


class SkuTaken(InputProblems):
    """A SKU is used by another variant; ``suggestion`` is a free one like it."""

    def __init__(self, errors: dict[str, str], suggestion: str) -> None:
        super().__init__(errors, 422)
        self.suggestion = suggestion


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def with_relations(stmt: Select[Any]) -> Select[Any]:
    """Everything a product page, guard or ``ProductRead`` needs, loaded up front (lazy="raise")."""
    return stmt.options(
        selectinload(Product.producer).selectinload(Producer.member_links),
        selectinload(Product.producer).selectinload(Producer.logo),
        selectinload(Product.variants),
        selectinload(Product.images).selectinload(ProductImage.media),
        selectinload(Product.category_links).selectinload(ProductCategory.category),
    )


def producer_read(producer: Producer, *, base_url: str = "") -> ProducerRead:
    """``producer`` (loaded with its logo) for other domains."""
    base = base_url.rstrip("/")
    return ProducerRead(
        id=producer.id, name=producer.name, slug=producer.slug, description=producer.description,
        location=producer.location, contact=producer.contact, url=f"{base}/market/producer/{producer.slug}",
        logo=image_read(producer.logo, alt=producer.name, base_url=base) if producer.logo is not None else None,
        revision=producer.revision)


def _tags(raw: Sequence[str]) -> list[str]:
    seen: dict[str, str] = {}
    for tag in raw:
        name = " ".join(tag.split())
        if name and name.casefold() not in seen:
            seen[name.casefold()] = name
    return list(seen.values())


class CatalogueService:
    """Products, variants, categories, images and stock.

    ``base_url`` makes the absolute URLs of :class:`ProductRead` and events; ``currency`` is the
    market's (``settings.market_currency``): new and updated variants are priced in it.
    """

    def __init__(self, db: AsyncSession, *, base_url: str = "", currency: str = "EUR", vat_rates: str = "") -> None:
        self.db = db
        self.base_url = base_url.rstrip("/")
        self.currency = currency
        # The tax classes a product may name: those of ``settings.cart_vat_rates`` (read from the
        # kernel's Settings, not the cart package). None configured: only the default class ("").
        self.tax_classes = vat_classes(vat_rates)

    def _tax_class(self, value: str) -> str:
        """A VAT class the shop has a rate for (lower-cased), or "" for the default class. A class
        without a rate would be listed as for sale and then refused at every "Add to cart", so it is
        refused here, where the person who typed it can fix it."""
        name = value.strip().lower()
        if not name or name in self.tax_classes:
            return name
        if not re.fullmatch(r"[a-z][a-z0-9_-]{0,31}", name):
            problem = f"{value.strip()[:32]!r} is not a tax class name (a short lower-case word)."
        else:
            problem = f"The shop has no VAT rate for the tax class {name[:32]!r}."
        allowed = (f"Choose one of {', '.join(self.tax_classes)}, or leave it empty for the default class."
                   if self.tax_classes else "No VAT rates are set (ROSE_ASH_CART_VAT_RATES), so only the "
                   "default class (empty) can be chosen.")
        raise InputProblems({"tax_class": f"{problem} {allowed}"})

    # Reading ---------------------------------------------------------------------------------

    async def get(self, product_id: UUID) -> Product | None:
        """The product with its producer (and members), variants, images and categories."""
        stmt = with_relations(select(Product).where(Product.id == product_id))
        return (await self.db.execute(stmt.execution_options(populate_existing=True))).scalar_one_or_none()

    async def by_slug(self, slug: str) -> Product | None:
        stmt = with_relations(select(Product).where(Product.slug == slug))
        return (await self.db.execute(stmt.execution_options(populate_existing=True))).scalar_one_or_none()

    async def resolve_public(self, slug: str) -> Product | str | None:
        """The active product at ``slug``; its current slug (str) if ``slug`` is an old one (301)."""
        product = await self.by_slug(slug)
        if product is not None:
            return product if product.status == ACTIVE else None
        target = (await self.db.execute(
            select(Product.slug, Product.status).join(ProductSlugRedirect, ProductSlugRedirect.product_id == Product.id)
            .where(ProductSlugRedirect.old_slug == slug))).first()
        if target is None or target.status != ACTIVE:
            return None
        return str(target.slug)

    async def variant_by_sku(self, sku: str) -> Variant | None:
        stmt = select(Variant).where(Variant.sku == sku.strip()).options(
            selectinload(Variant.product).selectinload(Product.producer).selectinload(Producer.member_links))
        return (await self.db.execute(stmt)).scalar_one_or_none()

    async def availability(self, variant_ids: Sequence[UUID]) -> dict[UUID, int]:
        """``{variant_id: available}`` (on hand - allocated - reservations, never below 0)."""
        return await availability(self.db, variant_ids)

    async def stock_levels(self, product: Product) -> dict[UUID, list[StockLevel]]:
        """Each variant's stock rows (with their location), fresh from the database."""
        ids = [v.id for v in product.variants]
        if not ids:
            return {}
        rows = (await self.db.execute(
            select(StockLevel).where(StockLevel.variant_id.in_(ids)).options(selectinload(StockLevel.location))
            .execution_options(populate_existing=True))).scalars().all()
        found: dict[UUID, list[StockLevel]] = {i: [] for i in ids}
        for row in rows:
            found[row.variant_id].append(row)
        for levels in found.values():
            levels.sort(key=lambda level: level.location.name)
        return found

    async def locations(self) -> list[StockLocation]:
        return list((await self.db.execute(select(StockLocation).order_by(StockLocation.name))).scalars().all())

    def url_for(self, product: Product) -> str:
        return f"{self.base_url}/market/{product.slug}"

    async def read(self, product: Product) -> ProductRead:
        """``product`` (loaded by :meth:`get`) as other domains and views see it, with availability."""
        return (await self.reads([product]))[0]

    async def reads(self, products: Sequence[Product]) -> list[ProductRead]:
        available = await self.availability([v.id for p in products for v in p.variants])
        return [self._to_read(p, available) for p in products]

    def _to_read(self, product: Product, available: dict[UUID, int]) -> ProductRead:
        base = self.base_url
        return ProductRead(
            id=product.id, title=product.title, slug=product.slug, url=self.url_for(product), status=product.status,
            featured=product.featured, description_md=product.description_md,
            description_html=product.description_html, tags=list(product.tags or []),
            published_at=product.published_at, created_at=product.created_at, updated_at=product.updated_at,
            revision=product.revision, producer=producer_read(product.producer, base_url=base),
            categories=[CategoryRead(id=c.id, name=c.name, slug=c.slug, parent_id=c.parent_id,
                                     url=f"{base}/market/category/{c.slug}") for c in product.categories],
            # a product that is not public has no public images: its owners see them at /market/admin/media/
            images=[image_read(i.media, image_id=i.id, alt=i.alt, base_url=base, private=product.status != ACTIVE)
                    for i in product.images],
            variants=[self.variant_read(v, available.get(v.id, 0)) for v in product.variants],
            source_url=product.source_url)

    @staticmethod
    def variant_read(variant: Variant, available: int) -> VariantRead:
        return VariantRead(
            id=variant.id, product_id=variant.product_id, sku=variant.sku,
            options={str(k): str(v) for k, v in (variant.options or {}).items()}, label=variant.label,
            price_minor=variant.price_minor, currency=variant.currency, compare_at_minor=variant.compare_at_minor,
            weight_grams=variant.weight_grams, barcode=variant.barcode,
            low_stock_threshold=variant.low_stock_threshold, available=available)

    async def get_public(self, product_id: UUID) -> ProductRead | None:
        """The active product ``product_id`` (None if it is not public or does not exist)."""
        product = await self.get(product_id)
        if product is None or product.status != ACTIVE:
            return None
        return await self.read(product)

    async def admin_list(self, user: User, *, status: str = "", q: str = "", limit: int = 500) -> list[Product]:
        """The products ``user`` may manage: all for staff, their producers' for a producer."""
        stmt = select(Product)
        if not is_staff(user):
            stmt = stmt.where(Product.producer_id.in_(
                select(ProducerMember.producer_id).where(ProducerMember.user_id == user.id)))
        if status in STATUSES:
            stmt = stmt.where(Product.status == status)
        if q.strip():
            like = f"%{q.strip().lower()}%"
            stmt = stmt.where(or_(func.lower(Product.title).like(like), Product.slug.like(like),
                                  Product.id.in_(select(Variant.product_id).where(func.lower(Variant.sku).like(like)))))
        stmt = stmt.order_by(Product.updated_at.desc(), Product.id.desc()).limit(limit)
        return list((await self.db.execute(with_relations(stmt))).scalars().all())

    async def low_stock(self, user: User | None = None, *, limit: int = 500) -> list[LowStockLine]:
        """Variants of draft and active products at or under their low-stock threshold (0: out of
        stock), fewest first; a producer sees theirs, staff (or ``user`` None) everyone's."""
        avail = available_expr(Variant.id).label("available")
        stmt = (select(Variant.id, Variant.product_id, Product.title, Product.producer_id, Variant.sku,
                       Variant.options, Variant.low_stock_threshold, avail)
                .join(Product, Product.id == Variant.product_id)
                .where(Product.status != ARCHIVED, available_expr(Variant.id) <= Variant.low_stock_threshold)
                .order_by(avail, Product.title, Variant.sku).limit(limit))
        if user is not None and not is_staff(user):
            stmt = stmt.where(Product.producer_id.in_(
                select(ProducerMember.producer_id).where(ProducerMember.user_id == user.id)))
        lines = []
        for row in await self.db.execute(stmt):
            label = " / ".join(str(v) for v in (row.options or {}).values()) or row.sku
            lines.append(LowStockLine(variant_id=row.id, product_id=row.product_id, product_title=row.title,
                                      producer_id=row.producer_id, sku=row.sku, label=label,
                                      available=int(row.available), low_stock_threshold=row.low_stock_threshold))
        return lines

    async def categories(self) -> list[Category]:
        return list((await self.db.execute(select(Category).order_by(Category.sort_order, Category.name))).scalars())

    async def category_by_slug(self, slug: str) -> Category | None:
        return (await self.db.execute(select(Category).where(Category.slug == slug))).scalar_one_or_none()

    async def create_category(self, name: str, *, slug: str = "", parent_id: UUID | None = None,
                              description: str = "") -> Category:
        """A new category (staff). 422 for an empty or over-long name, a taken or malformed slug."""
        name = " ".join(name.split())
        if not name or len(name) > 120:
            raise InputProblems({"name": "Give the category a name of 1 to 120 characters."})
        slug = slugify(slug or name, "category")
        if not SLUG_RE.match(slug):
            raise InputProblems({"slug": "Use lowercase letters, digits and hyphens."})
        if await self.category_by_slug(slug) is not None:
            raise InputProblems({"slug": f"“{slug}” is already a category."})
        if parent_id is not None and await self.db.get(Category, parent_id) is None:
            raise InputProblems({"parent": "No such parent category."})
        category = Category(name=name, slug=slug, parent_id=parent_id, description=description.strip())
        self.db.add(category)
        await self.db.flush()
        await self._purge({keys.PRODUCTS})  # the index lists categories
        return category

    # Slugs and SKUs --------------------------------------------------------------------------

    async def suggest_slug(self, base: str, *, exclude: UUID | None = None) -> str:
        """``base`` if free, else the first free ``base-2``, ``base-3`` ..."""
        base = base[:180].strip("-") or "product"
        taken = set((await self.db.execute(
            select(Product.slug).where(or_(Product.slug == base, Product.slug.like(f"{base}-%")),
                                       *([Product.id != exclude] if exclude else [])))).scalars().all())
        if base not in taken and base not in RESERVED_SLUGS:
            return base
        n = 2
        while f"{base}-{n}" in taken:
            n += 1
        return f"{base}-{n}"

    async def suggest_sku(self, base: str, *, also_taken: set[str] | None = None) -> str:
        base = base[:58].strip("-") or "SKU"
        taken = set((await self.db.execute(
            select(Variant.sku).where(or_(Variant.sku == base, Variant.sku.like(f"{base}-%"))))).scalars().all())
        taken |= also_taken or set()
        n = 2
        while f"{base}-{n}" in taken:
            n += 1
        return f"{base}-{n}"

    async def _slug_for(self, data: ProductInput, product: Product | None, title: str) -> str:
        exclude = product.id if product is not None else None
        typed = data.slug.strip()
        if not typed:
            base = slugify(title, "product")
            if product is not None and product.slug == base:
                return base
            return await self.suggest_slug(base, exclude=exclude)
        slug = slugify(typed, "")
        if not SLUG_RE.match(slug) or slug != typed.lower():
            example = slug or "my-product"
            raise InputProblems({"slug": f"Use lowercase letters, digits and hyphens (for example “{example}”)."})
        if slug in RESERVED_SLUGS:
            suggestion = await self.suggest_slug(slug, exclude=exclude)
            raise SlugTaken({"slug": f"“{slug}” is reserved for the market's own pages. Try “{suggestion}”."},
                            suggestion)
        owner = (await self.db.execute(select(Product.id).where(Product.slug == slug))).scalar_one_or_none()
        if owner is not None and owner != exclude:
            suggestion = await self.suggest_slug(slug, exclude=exclude)
            raise SlugTaken({"slug": f"“{slug}” is already used by another product. Try “{suggestion}”."}, suggestion)
        return slug

    # Validation ------------------------------------------------------------------------------

    def _check_variant(self, i: int, v: VariantInput, errors: dict[str, str]) -> None:
        field = f"variants.{i}"
        sku = v.sku.strip()
        if not sku:
            errors[f"{field}.sku"] = "Give every variant a SKU."
        elif not SKU_RE.match(sku):
            errors[f"{field}.sku"] = (f"SKU “{sku[:70]}”: use up to 64 letters, digits and . _ / - "
                                      "(starting with a letter or digit).")
        for name, value, top in (("price", v.price_minor, MAX_PRICE_MINOR),
                                 ("compare_at", v.compare_at_minor, MAX_PRICE_MINOR),
                                 ("weight_grams", v.weight_grams, 100_000_000),
                                 ("low_stock_threshold", v.low_stock_threshold, MAX_STOCK)):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                errors[f"{field}.{name}"] = "Use a whole number."
            elif value < 0:
                errors[f"{field}.{name}"] = "Cannot be negative."
            elif value > top:
                errors[f"{field}.{name}"] = f"Too large (at most {top:,})."
        if v.currency is not None:
            code = v.currency.strip()
            if not is_currency(code):
                errors[f"{field}.currency"] = f"“{code[:10]}” is not an ISO 4217 currency code (e.g. EUR, GBP, USD)."
            elif code != self.currency:
                errors[f"{field}.currency"] = (f"This market sells in {self.currency}; give the price in "
                                               f"{self.currency}, not {code}.")
        if len(v.options) > MAX_OPTIONS:
            errors[f"{field}.options"] = f"Use {MAX_OPTIONS} options at most (size, colour, ...)."
        for opt_name, opt_value in v.options.items():
            if not str(opt_name).strip() or not str(opt_value).strip():
                errors[f"{field}.options"] = "Every option needs a name and a value (size: M)."
            elif len(str(opt_name)) > MAX_OPTION_CHARS or len(str(opt_value)) > MAX_OPTION_CHARS:
                errors[f"{field}.options"] = f"Option names and values are {MAX_OPTION_CHARS} characters at most."
        if len(v.barcode) > 64:
            errors[f"{field}.barcode"] = "Use 64 characters at most."

    async def _validate(self, data: ProductInput, product: Product | None) -> tuple[str, str]:
        errors: dict[str, str] = {}
        title = " ".join(data.title.split())
        if not title:
            errors["title"] = "Give the product a title."
        elif len(title) > MAX_TITLE:
            errors["title"] = f"Use {MAX_TITLE} characters at most."
        if data.status not in STATUSES:
            errors["status"] = "Choose draft, active or archived."
        if len(data.description_md) > MAX_DESCRIPTION_CHARS:
            errors["description_md"] = f"The description is too long ({MAX_DESCRIPTION_CHARS:,} characters at most)."
        tags = _tags(data.tags)
        if len(tags) > MAX_TAGS:
            errors["tags"] = f"Use {MAX_TAGS} tags at most."
        elif any(len(t) > MAX_TAG_CHARS for t in tags):
            errors["tags"] = f"Tags are {MAX_TAG_CHARS} characters at most."
        if len(data.source_url) > 2048 or (data.source_url and not data.source_url.startswith(("http://", "https://"))):
            errors["source_url"] = "Use an http(s) URL of 2,048 characters at most."
        if not data.variants:
            errors["variants"] = "Add at least one variant (a SKU and a price)."
        elif len(data.variants) > MAX_VARIANTS:
            errors["variants"] = f"Use {MAX_VARIANTS} variants at most."
        own_ids = {v.id for v in product.variants} if product is not None else set()
        skus: dict[str, int] = {}
        combos: dict[str, int] = {}
        for i, v in enumerate(data.variants):
            self._check_variant(i, v, errors)
            if v.id is not None and v.id not in own_ids:
                errors[f"variants.{i}.id"] = "That variant is not one of this product's."
            sku = v.sku.strip()
            if sku and sku.casefold() in skus:
                errors[f"variants.{i}.sku"] = f"SKU “{sku}” is listed twice: every variant needs its own."
            skus.setdefault(sku.casefold(), i)
            combo = options_key({str(k): str(val) for k, val in v.options.items()})
            if combo in combos:
                shown = ", ".join(f"{k}: {val}" for k, val in v.options.items()) or "no options"
                errors[f"variants.{i}.options"] = (f"Variants {combos[combo] + 1} and {i + 1} have the same options "
                                                   f"({shown}): each variant needs a different combination.")
            combos.setdefault(combo, i)
        if data.category_ids:
            found = set((await self.db.execute(
                select(Category.id).where(Category.id.in_(data.category_ids)))).scalars().all())
            if found != set(data.category_ids):
                errors["categories"] = "Choose categories from the list."
        if errors:
            raise InputProblems(errors, 422)
        # SKUs taken by variants that are not this product's (or are, but another of its rows).
        wanted = {v.sku.strip(): (i, v.id) for i, v in enumerate(data.variants)}
        rows = (await self.db.execute(select(Variant.sku, Variant.id).where(Variant.sku.in_(list(wanted))))).all()
        new_sku = {v.id: v.sku.strip() for v in data.variants if v.id is not None}
        taken: dict[str, str] = {}
        first_suggestion = ""
        for sku, variant_id in sorted(rows, key=lambda r: wanted[r[0]][0]):
            i, own_id = wanted[sku]
            if variant_id == own_id or (variant_id in own_ids and new_sku.get(variant_id) != sku):
                continue  # the same variant, or one of this product's handing its SKU on (renamed, removed)
            suggestion = await self.suggest_sku(sku, also_taken=set(wanted))
            first_suggestion = first_suggestion or suggestion
            taken[f"variants.{i}.sku"] = f"SKU “{sku}” is already used by another variant. Try “{suggestion}”."
        if taken:
            raise SkuTaken(taken, first_suggestion)
        slug = await self._slug_for(data, product, title)
        return title, slug

    # Writing ---------------------------------------------------------------------------------

    async def _producer_for(self, editor: User | None, data: ProductInput, product: Product | None) -> Producer:
        from domains.market.services.producers import ProducerService

        producers = ProducerService(self.db, base_url=self.base_url)
        if data.producer_id is not None:
            producer = await producers.get(data.producer_id)
            if producer is None or (editor is not None and not can_manage_producer(editor, producer)):
                raise InputProblems({"producer": "Choose one of your producers."}, 422)
            return producer
        if product is not None:
            return product.producer
        if editor is None:
            raise InputProblems({"producer": "Say which producer sells this product."}, 422)
        return await producers.own(editor)

    async def save(self, editor: User | None, data: ProductInput, *, product: Product | None = None,
                   now: datetime | None = None) -> Product:
        """Create (``product`` None) or update a product with its variants; returns it reloaded.

        ``editor`` None is the system (CLI, jobs): no ownership check. Otherwise a product the
        editor may not manage is a 404 and a producer they do not belong to is refused. Variants
        are matched by ``VariantInput.id``; the product's variants left out are removed (refused
        while any of their stock is allocated). Nothing is written when anything is refused.
        """
        now = now or utcnow()
        if editor is not None and not editor.can_sell:
            raise InputProblems({"form": "Only producers may list goods on the market. Ask an administrator."}, 403)
        if product is not None and editor is not None:
            check_can_manage(editor, product)
        producer = await self._producer_for(editor, data, product)
        title, slug = await self._validate(data, product)
        # Checked before anything is written ("nothing is written when anything is refused").
        tax_class = self._tax_class(data.tax_class) if data.tax_class is not None else None
        was_public = product is not None and product.status == ACTIVE
        before_keys = self._keys(product) if product is not None else set()
        created = product is None
        if product is None:
            product = Product(title=title, slug=slug, producer_id=producer.id, status=DRAFT, revision=0, tags=[])
            product.producer = producer
            product.variants = []
            product.images = []
            product.category_links = []
            self.db.add(product)
            await self.db.flush()
        else:
            await self._set_slug(product, slug)
            if product.producer_id != producer.id:
                product.producer_id = producer.id
                product.producer = producer
        product.title = title
        product.featured = data.featured
        product.tags = _tags(data.tags)
        product.source_url = data.source_url.strip()
        if tax_class is not None:
            product.tax_class = tax_class
        self._set_description(product, data.description_md)
        await self._set_categories(product, data.category_ids)
        await self._sync_variants(product, data.variants)
        if data.status == ACTIVE and product.published_at is None:
            product.published_at = (data.published_at or now).astimezone(UTC)
        elif data.published_at is not None:
            product.published_at = data.published_at.astimezone(UTC)
        product.status = data.status
        product.revision += 1
        try:
            async with self.db.begin_nested():
                await self.db.flush()
        except IntegrityError as exc:  # a SKU or slug taken between our check and our write
            raise InputProblems({"form": "Someone else just took one of these SKUs or this slug. "
                                         "Check them and save again."}, 409) from exc
        saved = await self.get(product.id)
        assert saved is not None
        await self.changed(saved, was_public=was_public and not created, before_keys=before_keys)
        return saved

    def _set_description(self, product: Product, source: str) -> None:
        key = render_key(source)
        if product.description_md == source and product.description_key == key:
            return
        product.description_md = source
        product.description_html = render_markdown(source)
        product.description_key = key

    async def _set_slug(self, product: Product, slug: str) -> None:
        """A new slug; the old one answers 301 if the product was ever public."""
        old = product.slug
        if old == slug:
            return
        await self.db.execute(delete(ProductSlugRedirect).where(ProductSlugRedirect.old_slug == slug))
        if product.published_at is not None:
            await self.db.execute(delete(ProductSlugRedirect).where(ProductSlugRedirect.old_slug == old))
            self.db.add(ProductSlugRedirect(old_slug=old, product_id=product.id))
        product.slug = slug

    async def _set_categories(self, product: Product, category_ids: Sequence[UUID]) -> None:
        wanted = list(dict.fromkeys(category_ids))
        if [link.category_id for link in product.category_links] == wanted:
            return
        product.category_links.clear()
        await self.db.flush()
        if wanted:
            rows = await self.db.execute(select(Category).where(Category.id.in_(wanted)))
            found = {c.id: c for c in rows.scalars()}
            for cid in wanted:
                product.category_links.append(ProductCategory(category_id=cid, category=found[cid]))

    async def _sync_variants(self, product: Product, rows: Sequence[VariantInput]) -> None:
        keep = {v.id for v in rows if v.id is not None}
        gone = [v for v in product.variants if v.id not in keep]
        if gone:
            allocated = (await self.db.execute(
                select(Variant.sku).join(StockLevel, StockLevel.variant_id == Variant.id)
                .where(Variant.id.in_([v.id for v in gone]), StockLevel.allocated > 0))).scalars().first()
            if allocated is not None:
                raise InputProblems({"variants": f"Variant {allocated} has stock allocated to orders: it cannot be "
                                                 "removed until they are fulfilled or cancelled."}, 409)
            for dropped in gone:
                product.variants.remove(dropped)
            await self.db.flush()
        existing = {v.id: v for v in product.variants}
        # SKUs and option combinations may move between this product's variants in one save
        # (swap M and L): park the kept rows on unique placeholders first so no intermediate
        # state breaks the unique constraints.
        if existing:
            for parked in existing.values():
                parked.sku = f"~{parked.id.hex[:40]}"
                parked.options_key = f"~{parked.id.hex}"
            await self.db.flush()
        ordered: list[Variant] = []
        for position, row in enumerate(rows):
            variant = existing.get(row.id) if row.id is not None else None
            if variant is None:
                variant = Variant(product_id=product.id, currency=self.currency, price_minor=0)
                variant.stock_levels = []
            options = {" ".join(str(k).split()): " ".join(str(v).split()) for k, v in row.options.items()}
            variant.sku = row.sku.strip()
            variant.options = options
            variant.options_key = options_key(options)
            variant.position = position
            variant.price_minor = row.price_minor
            variant.currency = self.currency
            variant.compare_at_minor = row.compare_at_minor
            variant.weight_grams = row.weight_grams
            variant.barcode = row.barcode.strip()
            variant.low_stock_threshold = row.low_stock_threshold
            ordered.append(variant)
        for variant in ordered:
            if variant not in product.variants:
                product.variants.append(variant)

    async def set_status(self, editor: User | None, product: Product, status: str) -> Product:
        """Move a product to draft, active or archived (archive: it leaves every public page)."""
        if status not in STATUSES:
            raise InputProblems({"status": "Choose draft, active or archived."})
        if editor is not None:
            check_can_manage(editor, product)
        if status == product.status:
            return product
        if status == ACTIVE and not product.variants:
            raise InputProblems({"status": "Add a variant before publishing."})
        was_public = product.status == ACTIVE
        before = self._keys(product)
        product.status = status
        if status == ACTIVE and product.published_at is None:
            product.published_at = utcnow()
        product.revision += 1
        await self.db.flush()
        await self.changed(product, was_public=was_public, before_keys=before)
        return product

    async def archive(self, editor: User | None, product: Product) -> Product:
        return await self.set_status(editor, product, ARCHIVED)

    async def delete(self, editor: User | None, product: Product) -> None:
        """Delete a product that never sold (archive it otherwise); 409 while stock is allocated."""
        if editor is not None:
            check_can_manage(editor, product)
        allocated = (await self.db.execute(
            select(func.coalesce(func.sum(StockLevel.allocated), 0)).join(Variant, Variant.id == StockLevel.variant_id)
            .where(Variant.product_id == product.id))).scalar_one()
        if allocated:
            raise InputProblems({"form": "Some of its stock is allocated to orders: archive it instead."}, 409)
        if product.status == ACTIVE:
            await self._purge(self._keys(product), hard=True)
            await self._event(product, "deleted")
        await self.db.delete(product)
        await self.db.flush()

    # Images ----------------------------------------------------------------------------------

    async def add_image(self, editor: User | None, product: Product, media: Media, *, alt: str = "") -> ProductImage:
        """Put ``media`` on ``product`` after its other images."""
        if editor is not None:
            check_can_manage(editor, product)
        if len(product.images) >= MAX_IMAGES:
            raise InputProblems({"image": f"A product has {MAX_IMAGES} images at most: remove one first."})
        if len(alt) > 500:
            raise InputProblems({"alt": "Use 500 characters at most."})
        image = ProductImage(product_id=product.id, media_id=media.id, alt=alt.strip(),
                             position=max((i.position for i in product.images), default=-1) + 1)
        image.media = media
        product.images.append(image)
        await self._touched(product)
        return image

    async def remove_image(self, editor: User | None, product: Product, image_id: UUID) -> None:
        if editor is not None:
            check_can_manage(editor, product)
        image = next((i for i in product.images if i.id == image_id), None)
        if image is None:
            raise InputProblems({"image": "That image is not on this product."}, 404)
        product.images.remove(image)
        await self._touched(product)

    async def arrange_images(self, editor: User | None, product: Product, order: Sequence[UUID],
                             alts: dict[UUID, str] | None = None) -> None:
        """Put the images in ``order`` (every image of the product, once) and set alt texts."""
        if editor is not None:
            check_can_manage(editor, product)
        by_id = {i.id: i for i in product.images}
        if sorted(order, key=str) != sorted(by_id, key=str):
            raise InputProblems({"images": "List every image of this product once."})
        for key, alt in (alts or {}).items():
            if key not in by_id:
                raise InputProblems({"images": "That image is not on this product."})
            if len(alt) > 500:
                raise InputProblems({"images": "Alt texts are 500 characters at most."})
        for position, image_id in enumerate(order):
            by_id[image_id].position = position
            if alts and image_id in alts:
                by_id[image_id].alt = alts[image_id].strip()
        product.images.sort(key=lambda i: i.position)
        await self._touched(product)

    # Stock -----------------------------------------------------------------------------------

    async def adjust_stock(self, editor: User | None, adjust: StockAdjust) -> int:
        """Set or change a SKU's ``on_hand`` at a location (conditional UPDATE); returns the new value.

        A SKU the editor may not manage is reported as unknown (404). ``location`` None is the
        default location; a named one must exist unless staff or the system is asking.
        """
        variant = await self.variant_by_sku(adjust.sku)
        if variant is None or (editor is not None and not _may(editor, variant.product)):  # loaded with it
            raise InputProblems({"sku": f"No variant has SKU “{adjust.sku.strip()[:70]}”."}, 404)
        if adjust.location is None or not adjust.location.strip():
            location = await default_location(self.db)
        else:
            may_create = editor is None or is_staff(editor)
            found = await location_named(self.db, adjust.location, create=may_create)
            if found is None:
                named = adjust.location.strip()[:120]
                raise InputProblems({"location": f"No stock location is called “{named}”."}, 422)
            location = found
        return await self.change_stock(editor, variant, location.id, set_to=adjust.set, add=adjust.add)

    async def change_stock(self, editor: User | None, variant: Variant, location_id: UUID, *,
                           set_to: int | None = None, add: int | None = None, product: Product | None = None) -> int:
        """``variant`` at ``location_id``: see :meth:`adjust_stock`. ``product`` is the variant's, if
        the caller has it loaded (by :meth:`get`); otherwise it is read."""
        if product is None or product.id != variant.product_id:
            product = await self.get(variant.product_id)
        if product is None or (editor is not None and not _may(editor, product)):
            raise InputProblems({"sku": "No such variant."}, 404)
        for value in (set_to, add):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise StockRefused({"quantity": "Stock is counted in whole units."})
        on_hand = await change_on_hand(self.db, variant.id, location_id, set_to=set_to, add=add)
        revision = (await self.db.execute(
            update(Product).where(Product.id == product.id).values(revision=Product.revision + 1)
            .returning(Product.revision).execution_options(synchronize_session=False))).scalar_one()
        set_committed_value(product, "revision", revision)  # what the row holds now, without a second write
        if product.status == ACTIVE:
            await self._purge(self._keys(product))
            await self._event(product, "updated")
        return on_hand

    # Purges and events -----------------------------------------------------------------------

    @staticmethod
    def _keys(product: Product) -> set[SurrogateKey]:
        return keys.showing(product.id, product.producer_id, [c.slug for c in product.categories])

    async def _touched(self, product: Product) -> None:
        """A change to what shows with the product (images): bump, purge and tell if public."""
        product.revision += 1
        await self.db.flush()
        if product.status == ACTIVE:
            await self._purge(self._keys(product))
            await self._event(product, "updated")

    async def changed(self, product: Product, *, was_public: bool,
                      before_keys: set[SurrogateKey] | None = None) -> None:
        """Purge what showed (or now shows) ``product`` and tell subscribers, in this transaction."""
        is_public = product.status == ACTIVE
        if not (was_public or is_public):
            return
        # Hard when it stops being public: the edge must not serve its page or images (/media/ carries
        # the product's key) even once more while revalidating.
        await self._purge(set(before_keys or ()) | self._keys(product), hard=was_public and not is_public)
        kind: ProductEventKind = "updated" if was_public and is_public else "created" if is_public else "deleted"
        await self._event(product, kind)

    async def _purge(self, surrogate_keys: set[SurrogateKey], *, hard: bool = False) -> None:
        await emit_purge(self.db, surrogate_keys, hard=hard)

    async def _event(self, product: Product, kind: ProductEventKind) -> None:
        await events.emit_product_event(self.db, ProductEvent(
            product_id=product.id, kind=kind, slug=product.slug, revision=product.revision, url=self.url_for(product)))

    def price(self, amount_minor: int) -> str:
        return format_minor(amount_minor, self.currency)


def _may(editor: User, product: Product) -> bool:
    from domains.market.guards import can_manage

    return can_manage(editor, product)


def vat_classes(vat_rates: str) -> tuple[str, ...]:
    """The class names of a ``ROSE_ASH_CART_VAT_RATES`` value (``standard=20,reduced=5`` →
    ``("standard", "reduced")``). The cart checks the whole value when the app starts
    (domains/cart/slots.py), so only the names are read here."""
    names = (item.partition("=")[0].strip().lower() for item in vat_rates.split(","))
    return tuple(dict.fromkeys(name for name in names if name))
