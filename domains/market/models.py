"""Market tables: producers, categories, products and their variants, images, stock (design/domains.md §2).

A product is what a visitor browses; a :class:`Variant` (one SKU, one set of option values such as
``{"size": "M", "colour": "red"}``) is what is bought, priced and stocked. Stock is a row per
variant and :class:`StockLocation` (``on_hand``, ``allocated``); the database refuses a row where
``allocated`` exceeds ``on_hand`` or either is negative, so no code path can oversell past it.
What a visitor may buy is ``on_hand - allocated - Σ unexpired reservations``:
:func:`domains.market.services.stock.available_expr` is the one expression for it.

Prices are integers in the currency's minor unit (``app/money.py``), in the market's currency
(``ROSE_ASH_MARKET_CURRENCY``) stored on each variant, so a later change of the setting never
silently re-prices existing goods.

Images are content-addressed files (:class:`Media`, keyed by SHA-256 of the original upload) so
the same photo uploaded twice is stored once, and a :class:`ProductImage` puts one on a product
at a position with its alt text.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final
from uuid import UUID

from advanced_alchemy.base import UUIDv7AuditBase
from advanced_alchemy.types import DateTimeUTC, JsonB
from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from domains.account.models import User

__all__ = [
    "ACTIVE", "ARCHIVED", "DRAFT", "STATUSES",
    "Category", "Media", "Producer", "ProducerMember", "Product", "ProductCategory", "ProductImage",
    "ProductSlugRedirect", "StockLevel", "StockLocation", "Variant",
]

DRAFT: Final = "draft"
ACTIVE: Final = "active"
ARCHIVED: Final = "archived"
STATUSES: Final = (DRAFT, ACTIVE, ARCHIVED)


class Media(UUIDv7AuditBase):
    """An uploaded image, stored once per content (``DATA_DIR/media/<sha256>-<width>.<ext>``).

    ``sha256`` is the digest of the bytes as uploaded (so a re-upload finds the row); the files
    are re-encoded copies at each of ``widths`` (EXIF and every other metadata block dropped).
    """

    __tablename__ = "market_media"

    sha256: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    format: Mapped[str] = mapped_column(String(8))  # "jpeg", "png" or "webp": also the file extension
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    byte_size: Mapped[int] = mapped_column(Integer)
    widths: Mapped[list[int]] = mapped_column(JsonB, default=list)  # the resized copies, ascending
    uploaded_by_id: Mapped[UUID | None] = mapped_column(
        ForeignKey("account_user.id", ondelete="SET NULL"), default=None, index=True)


class Producer(UUIDv7AuditBase):
    """A producer (a farm, a bakery, a maker): the seller of its products.

    Members of it (:class:`ProducerMember`, each holding the ``producer`` role) edit its profile
    and its products; nobody else but staff sees its drafts.
    """

    __tablename__ = "market_producer"

    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(191), unique=True, index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    location: Mapped[str] = mapped_column(String(200), default="")
    contact: Mapped[str] = mapped_column(String(300), default="")
    logo_id: Mapped[UUID | None] = mapped_column(ForeignKey("market_media.id", ondelete="SET NULL"), default=None)
    # Bumped on every saved change; part of public ETag seeds.
    revision: Mapped[int] = mapped_column(Integer, default=1)

    logo: Mapped[Media | None] = relationship(lazy="raise")
    member_links: Mapped[list[ProducerMember]] = relationship(
        back_populates="producer", cascade="all, delete-orphan", lazy="raise", order_by="ProducerMember.created_at")

    @property
    def members(self) -> list[User]:
        return [link.user for link in self.member_links]


class ProducerMember(UUIDv7AuditBase):
    __tablename__ = "market_producer_member"
    __table_args__ = (UniqueConstraint("producer_id", "user_id", name="uq_market_producer_member"),)

    producer_id: Mapped[UUID] = mapped_column(ForeignKey("market_producer.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[UUID] = mapped_column(ForeignKey("account_user.id", ondelete="CASCADE"), index=True)

    producer: Mapped[Producer] = relationship(back_populates="member_links", lazy="raise")
    user: Mapped[User] = relationship(lazy="raise")


class Category(UUIDv7AuditBase):
    """A browsing category; ``parent_id`` nests it (Vegetables > Roots)."""

    __tablename__ = "market_category"

    name: Mapped[str] = mapped_column(String(120))
    slug: Mapped[str] = mapped_column(String(191), unique=True, index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    parent_id: Mapped[UUID | None] = mapped_column(
        ForeignKey("market_category.id", ondelete="SET NULL"), default=None, index=True)
    sort_order: Mapped[int] = mapped_column(Integer, default=0)


class Product(UUIDv7AuditBase):
    __tablename__ = "market_product"
    __table_args__ = (
        Index("ix_market_product_listing", "status", "published_at"),
        CheckConstraint("status IN ('draft', 'active', 'archived')", name="status_known"),
    )

    title: Mapped[str] = mapped_column(String(255))
    slug: Mapped[str] = mapped_column(String(191), unique=True, index=True)
    producer_id: Mapped[UUID] = mapped_column(ForeignKey("market_producer.id", ondelete="RESTRICT"), index=True)
    status: Mapped[str] = mapped_column(String(16), default=DRAFT)
    featured: Mapped[bool] = mapped_column(Boolean, default=False)
    published_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None, index=True)
    # Markdown is the source of truth; the HTML is its sanitised rendering (app/markdown.py),
    # re-rendered when the source or the renderer version (``description_key``) changes.
    description_md: Mapped[str] = mapped_column(Text, default="")
    description_html: Mapped[str] = mapped_column(Text, default="")
    description_key: Mapped[str] = mapped_column(String(80), default="")
    tags: Mapped[list[str]] = mapped_column(JsonB, default=list)
    # Where an imported listing came from (marketimport), so a re-import updates instead of duplicating.
    source_url: Mapped[str] = mapped_column(String(2048), default="")
    # Bumped on every saved change (product, variants, images or stock); part of public ETag seeds.
    revision: Mapped[int] = mapped_column(Integer, default=1)
    # The VAT class the cart taxes it at (a name in ROSE_ASH_CART_VAT_RATES: "standard", "reduced",
    # ...); empty: the default class (ROSE_ASH_CART_VAT_DEFAULT). The cart reads it through offers().
    tax_class: Mapped[str] = mapped_column(String(32), default="", server_default="")

    producer: Mapped[Producer] = relationship(lazy="raise")
    variants: Mapped[list[Variant]] = relationship(
        back_populates="product", cascade="all, delete-orphan", lazy="raise", order_by="Variant.position")
    images: Mapped[list[ProductImage]] = relationship(
        back_populates="product", cascade="all, delete-orphan", lazy="raise", order_by="ProductImage.position")
    category_links: Mapped[list[ProductCategory]] = relationship(
        back_populates="product", cascade="all, delete-orphan", lazy="raise")

    @property
    def categories(self) -> list[Category]:
        return sorted((link.category for link in self.category_links), key=lambda c: (c.sort_order, c.name))

    @property
    def is_public(self) -> bool:
        return self.status == ACTIVE


class ProductCategory(UUIDv7AuditBase):
    __tablename__ = "market_product_category"
    __table_args__ = (UniqueConstraint("product_id", "category_id", name="uq_market_product_category"),)

    product_id: Mapped[UUID] = mapped_column(ForeignKey("market_product.id", ondelete="CASCADE"), index=True)
    category_id: Mapped[UUID] = mapped_column(ForeignKey("market_category.id", ondelete="CASCADE"), index=True)

    product: Mapped[Product] = relationship(back_populates="category_links", lazy="raise")
    category: Mapped[Category] = relationship(lazy="raise")


class ProductSlugRedirect(UUIDv7AuditBase):
    """A slug a product used to have: ``/market/<old>`` answers 301 to the current one."""

    __tablename__ = "market_slug_redirect"

    old_slug: Mapped[str] = mapped_column(String(191), unique=True, index=True)
    product_id: Mapped[UUID] = mapped_column(ForeignKey("market_product.id", ondelete="CASCADE"), index=True)


class ProductImage(UUIDv7AuditBase):
    """One image on a product, at ``position`` (0 first: the card's and the feed's image)."""

    __tablename__ = "market_product_image"

    product_id: Mapped[UUID] = mapped_column(ForeignKey("market_product.id", ondelete="CASCADE"), index=True)
    media_id: Mapped[UUID] = mapped_column(ForeignKey("market_media.id", ondelete="RESTRICT"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    alt: Mapped[str] = mapped_column(String(500), default="")

    product: Mapped[Product] = relationship(back_populates="images", lazy="raise")
    media: Mapped[Media] = relationship(lazy="raise")


class Variant(UUIDv7AuditBase):
    """One purchasable unit: a SKU with its option values, price and stock.

    ``options_key`` is the option values in one canonical spelling (keys and values case-folded,
    sorted): unique per product, so "Size: M, Colour: red" cannot be listed twice, whatever the
    order or case it was typed in.
    """

    __tablename__ = "market_variant"
    __table_args__ = (
        UniqueConstraint("product_id", "options_key", name="uq_market_variant_options"),
        CheckConstraint("price_minor >= 0", name="price_nonneg"),
        CheckConstraint("compare_at_minor IS NULL OR compare_at_minor >= 0", name="compare_at_nonneg"),
        CheckConstraint("weight_grams IS NULL OR weight_grams >= 0", name="weight_nonneg"),
        CheckConstraint("low_stock_threshold >= 0", name="threshold_nonneg"),
    )

    product_id: Mapped[UUID] = mapped_column(ForeignKey("market_product.id", ondelete="CASCADE"), index=True)
    sku: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    options: Mapped[dict[str, Any]] = mapped_column(JsonB, default=dict)
    options_key: Mapped[str] = mapped_column(String(500), default="")
    position: Mapped[int] = mapped_column(Integer, default=0)
    price_minor: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    compare_at_minor: Mapped[int | None] = mapped_column(Integer, default=None)
    weight_grams: Mapped[int | None] = mapped_column(Integer, default=None)
    barcode: Mapped[str] = mapped_column(String(64), default="")
    low_stock_threshold: Mapped[int] = mapped_column(Integer, default=0)

    product: Mapped[Product] = relationship(back_populates="variants", lazy="raise")
    stock_levels: Mapped[list[StockLevel]] = relationship(
        back_populates="variant", cascade="all, delete-orphan", lazy="raise")

    @property
    def label(self) -> str:
        """The option values for people: ``M / red`` (or the SKU when it has none)."""
        return " / ".join(str(v) for v in self.options.values()) or self.sku


class StockLocation(UUIDv7AuditBase):
    """Where stock is kept (a farm shop, the co-op's store room)."""

    __tablename__ = "market_stock_location"

    name: Mapped[str] = mapped_column(String(120), unique=True)


class StockLevel(UUIDv7AuditBase):
    """A variant's stock at one location (Saleor's ``Stock``, Oscar's ``StockRecord``).

    Changed only by conditional UPDATEs (domains/market/services/stock.py); the CHECKs are the
    last line: whatever races, the database never holds negative stock or more allocated than held.
    """

    __tablename__ = "market_stock_level"
    __table_args__ = (
        UniqueConstraint("variant_id", "location_id", name="uq_market_stock_level"),
        CheckConstraint("on_hand >= 0", name="on_hand_nonneg"),
        CheckConstraint("allocated >= 0", name="allocated_nonneg"),
        CheckConstraint("allocated <= on_hand", name="allocated_le_on_hand"),
    )

    variant_id: Mapped[UUID] = mapped_column(ForeignKey("market_variant.id", ondelete="CASCADE"), index=True)
    location_id: Mapped[UUID] = mapped_column(ForeignKey("market_stock_location.id", ondelete="CASCADE"), index=True)
    on_hand: Mapped[int] = mapped_column(Integer, default=0)
    allocated: Mapped[int] = mapped_column(Integer, default=0)

    variant: Mapped[Variant] = relationship(back_populates="stock_levels", lazy="raise")
    location: Mapped[StockLocation] = relationship(lazy="raise")
