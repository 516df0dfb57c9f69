"""Market contracts: what the services take (``ProductInput``, ``VariantInput``, ``StockAdjust``,
``ProducerInput``), what other domains and views read (``ProductRead``, ``VariantRead``,
``ProducerRead``, ``ImageRead``), the product event payload, and the admin forms.

Prices are integers in minor units (``app/money.py``); a form's "12.50" is converted by the
admin form (:meth:`VariantRow.price_minor`) and an API client sends ``price_minor`` itself.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal
from uuid import UUID

import msgspec

from app.money import format_minor

__all__ = [
    "IMAGE_WIDTHS",
    "MAX_IMAGES",
    "MAX_IMAGE_BYTES",
    "MAX_IMAGE_PIXELS",
    "MAX_OPTIONS",
    "MAX_TAGS",
    "MAX_TITLE",
    "MAX_VARIANTS",
    "RESERVED_SLUGS",
    "SKU_RE",
    "SLUG_RE",
    "CategoryRead",
    "ImageRead",
    "LowStockLine",
    "ProducerInput",
    "ProducerRead",
    "ProductEvent",
    "ProductEventKind",
    "ProductEvents",
    "ProductInput",
    "ProductRead",
    "ProductStatus",
    "StockAdjust",
    "StockLevelRead",
    "VariantInput",
    "VariantRead",
    "options_key",
    "slugify",
]

MAX_TITLE = 255
MAX_DESCRIPTION_CHARS = 100_000
MAX_TAGS = 20
MAX_VARIANTS = 100
MAX_OPTIONS = 5  # option names per variant (size, colour, ...)
MAX_IMAGES = 20
MAX_PRICE_MINOR = 2_000_000_000  # fits a 32-bit INTEGER column with room to spare
MAX_STOCK = 1_000_000_000
MAX_IMAGE_BYTES = 10 * 1024 * 1024
# Pixels an upload may decode to: a 10 MB PNG of one colour can claim 30,000 x 30,000 and would
# need gigabytes to decode (a decompression bomb). 40 megapixels covers every camera we expect.
MAX_IMAGE_PIXELS = 40_000_000
IMAGE_WIDTHS = (320, 640, 1280)  # the resized copies (never wider than the original)

# Slugs /market/<slug> cannot take because the market's own pages use the path.
RESERVED_SLUGS = frozenset({"admin", "api", "category", "producer", "producers", "pages", "search", "embed",
                            "media", "feed.atom", "feed.rss", "new", "cart", "import"})
SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,189}[a-z0-9])?$")
SKU_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$")

ProductStatus = Literal["draft", "active", "archived"]
ProductEventKind = Literal["created", "updated", "deleted"]


def slugify(text: str, fallback: str = "product") -> str:
    """The blog's slug rules (lowercase ASCII words joined by ``-``), through its public schemas."""
    from domains.blog.schemas import slugify as blog_slugify

    return blog_slugify(text, fallback)


def options_key(options: dict[str, str]) -> str:
    """One spelling of a set of option values, for the per-product uniqueness rule: names and
    values case-folded and whitespace-collapsed, sorted by name (``colour=red;size=m``)."""
    def norm(value: str) -> str:
        return " ".join(value.split()).casefold()

    return ";".join(f"{norm(k)}={norm(v)}" for k, v in sorted(options.items(), key=lambda kv: norm(kv[0])))


# --- what the services take -------------------------------------------------------------------

class VariantInput(msgspec.Struct, kw_only=True):
    """One variant as saved: ``id`` names an existing variant of the product (kept, updated);
    without it the variant is new. Variants of the product not listed are removed."""

    sku: str
    price_minor: int
    options: dict[str, str] = {}
    compare_at_minor: int | None = None
    weight_grams: int | None = None
    barcode: str = ""
    low_stock_threshold: int = 0
    # None: the market's currency. Given, it must be that currency (an importer's offer in USD
    # on a EUR market is refused, never silently mis-priced).
    currency: str | None = None
    id: UUID | None = None


class ProductInput(msgspec.Struct, kw_only=True):
    """A product with its variants, as the admin form, the importers and the API hand it over.

    ``slug`` empty: made from the title (made unique). ``status`` active publishes it
    (``published_at`` defaults to now on first activation). ``category_ids`` replace the
    product's categories; ``tags`` its tags. ``producer_id`` None: the editor's own producer.
    """

    title: str
    variants: list[VariantInput]
    slug: str = ""
    description_md: str = ""
    status: ProductStatus = "draft"
    featured: bool = False
    tags: list[str] = []
    category_ids: list[UUID] = []
    producer_id: UUID | None = None
    published_at: datetime | None = None
    source_url: str = ""
    # The VAT class (see Product.tax_class); None keeps the product's class (a form without the field).
    tax_class: str | None = None


class StockAdjust(msgspec.Struct, kw_only=True):
    """Set (``set``) or change (``add``, may be negative) a SKU's ``on_hand`` at a location
    (``location`` None: the default location). Exactly one of ``set``/``add``."""

    sku: str
    set: int | None = None
    add: int | None = None
    location: str | None = None


class ProducerInput(msgspec.Struct, kw_only=True):
    name: str
    slug: str = ""
    description: str = ""
    location: str = ""
    contact: str = ""


# --- what other domains read ------------------------------------------------------------------

class ImageRead(msgspec.Struct, kw_only=True):
    id: UUID  # the ProductImage (or Media for a logo)
    media_id: UUID
    url: str  # the largest copy
    srcset: str  # "…-320.jpeg 320w, …-640.jpeg 640w"
    width: int  # the original's, for layout (aspect ratio)
    height: int
    alt: str
    content_type: str


class CategoryRead(msgspec.Struct, kw_only=True):
    id: UUID
    name: str
    slug: str
    parent_id: UUID | None
    url: str


class ProducerRead(msgspec.Struct, kw_only=True):
    id: UUID
    name: str
    slug: str
    description: str
    location: str
    contact: str
    url: str
    logo: ImageRead | None
    revision: int


class StockLevelRead(msgspec.Struct, kw_only=True):
    location_id: UUID
    location: str
    on_hand: int
    allocated: int


class VariantRead(msgspec.Struct, kw_only=True):
    """A variant as views, the API and the cart see it. ``available`` is what may be bought now
    (``on_hand - allocated - reservations`` over all locations; never below 0)."""

    id: UUID
    product_id: UUID
    sku: str
    options: dict[str, str]
    label: str  # "M / red"
    price_minor: int
    currency: str
    compare_at_minor: int | None
    weight_grams: int | None
    barcode: str
    low_stock_threshold: int
    available: int

    @property
    def price(self) -> str:
        """The price for people: ``€12.50``."""
        return format_minor(self.price_minor, self.currency)

    @property
    def compare_at(self) -> str:
        return format_minor(self.compare_at_minor, self.currency) if self.compare_at_minor is not None else ""

    @property
    def in_stock(self) -> bool:
        return self.available > 0

    @property
    def low_stock(self) -> bool:
        return 0 < self.available <= self.low_stock_threshold


class ProductRead(msgspec.Struct, kw_only=True):
    """A product as views, the API, federation and the cart see it (sanitised HTML only)."""

    id: UUID
    title: str
    slug: str
    url: str  # absolute, on settings.base_url
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
    variants: list[VariantRead]
    source_url: str

    @property
    def price_range(self) -> str:
        """``€4.00`` or ``€4.00 - €9.50`` over the variants ('' without variants)."""
        if not self.variants:
            return ""
        low = min(self.variants, key=lambda v: v.price_minor)
        high = max(self.variants, key=lambda v: v.price_minor)
        return low.price if low.price_minor == high.price_minor else f"{low.price} - {high.price}"

    @property
    def available(self) -> int:
        return sum(v.available for v in self.variants)


class LowStockLine(msgspec.Struct, kw_only=True):
    """A variant at or under its low-stock threshold (``available == 0``: out of stock)."""

    variant_id: UUID
    product_id: UUID
    product_title: str
    producer_id: UUID
    sku: str
    label: str
    available: int
    low_stock_threshold: int


class ProductEvent(msgspec.Struct, frozen=True, kw_only=True):
    """The payload of every ``market.product`` subscriber job (domains/market/events.py).

    ``created``: the product became public (active); ``updated``: it changed while public (its
    variants, prices, images or stock included); ``deleted``: it stopped being public (archived,
    back to draft) or was deleted. Carries ids, not content: re-read through
    ``CatalogueService.get_public``.
    """

    product_id: UUID
    kind: ProductEventKind
    slug: str
    revision: int
    url: str


class ProductEvents(msgspec.Struct, frozen=True, kw_only=True):
    """The payload of a ``market.products`` subscriber job: many products' events at once (a CSV
    import chunk writes one job per subscriber, not one per product), in the order they happened."""

    events: list[ProductEvent]
