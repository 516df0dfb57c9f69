"""Market pages: curated, public pages of products (a Saturday market, a seasonal box, a stall's range).

A page shows either a hand-picked, ordered list of products (:class:`MarketPageItem` rows) or a
saved filter (``filter_*``: the same filters as the search, e.g. one category, in stock only),
under a Markdown intro, with an optional date range and place. Only ``published`` pages are
public; a product that is not active is left out of a page's list (it looks absent everywhere).
"""

from __future__ import annotations

from datetime import date
from typing import Final
from uuid import UUID

from advanced_alchemy.base import UUIDv7AuditBase
from sqlalchemy import Boolean, CheckConstraint, Date, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

__all__ = ["FILTER", "HAND_PICKED", "MODES", "MarketPage", "MarketPageItem"]

HAND_PICKED: Final = "list"
FILTER: Final = "filter"
MODES: Final = (HAND_PICKED, FILTER)


class MarketPage(UUIDv7AuditBase):
    __tablename__ = "market_page"
    __table_args__ = (
        CheckConstraint("mode IN ('list', 'filter')", name="mode_known"),
        CheckConstraint("ends_on IS NULL OR starts_on IS NULL OR ends_on >= starts_on", name="dates_ordered"),
    )

    title: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(191), unique=True, index=True)
    intro_md: Mapped[str] = mapped_column(Text, default="")
    intro_html: Mapped[str] = mapped_column(Text, default="")
    starts_on: Mapped[date | None] = mapped_column(Date, default=None)
    ends_on: Mapped[date | None] = mapped_column(Date, default=None)
    place: Mapped[str] = mapped_column(String(200), default="")
    published: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    mode: Mapped[str] = mapped_column(String(8), default=HAND_PICKED)
    # The saved filter (mode "filter"): the search's filters, by slug, so a renamed category id
    # never matters and the page shows what /market/search would.
    filter_q: Mapped[str] = mapped_column(String(200), default="")
    filter_category: Mapped[str] = mapped_column(String(191), default="")
    filter_producer: Mapped[str] = mapped_column(String(191), default="")
    filter_in_stock: Mapped[bool] = mapped_column(Boolean, default=False)
    filter_limit: Mapped[int] = mapped_column(Integer, default=24)
    # Bumped on every save: the ETag seed of the page and its fragment.
    revision: Mapped[int] = mapped_column(Integer, default=1)

    items: Mapped[list[MarketPageItem]] = relationship(
        back_populates="page", cascade="all, delete-orphan", lazy="raise", order_by="MarketPageItem.position")


class MarketPageItem(UUIDv7AuditBase):
    """One hand-picked product on a page, at ``position`` (0 first)."""

    __tablename__ = "market_page_item"
    __table_args__ = (UniqueConstraint("page_id", "product_id", name="uq_market_page_item"),)

    page_id: Mapped[UUID] = mapped_column(ForeignKey("market_page.id", ondelete="CASCADE"), index=True)
    product_id: Mapped[UUID] = mapped_column(ForeignKey("market_product.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)

    page: Mapped[MarketPage] = relationship(back_populates="items", lazy="raise")
