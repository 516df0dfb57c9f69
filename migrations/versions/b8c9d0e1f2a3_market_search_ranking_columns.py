"""market search: each search document carries its product's ``active`` and ``published``

Search ranks and filters by them on every matching row; copied onto the document (by the flush
listener in domains/market/search.py) a search reads one table and never joins the products
(issue 16's search benchmark). A partial index over the active documents by (published,
product_id) answers the no-words listings (category, producer) as a bounded index scan. Existing
documents are filled from their products.

Revision ID: b8c9d0e1f2a3
Revises: a7b8c9d0e1f2
Create Date: 2026-12-07 05:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from advanced_alchemy.types import GUID, DateTimeUTC
from alembic import op

revision = "b8c9d0e1f2a3"
down_revision = "a7b8c9d0e1f2"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER TABLE ADD/DROP COLUMN on both databases: a batch table rebuild on SQLite would drop
    # the FTS5 triggers that live on this table.
    op.add_column("market_search_document",
                  sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("market_search_document", sa.Column("published", DateTimeUTC(timezone=True), nullable=True))
    bind = op.get_bind()
    product = sa.table("market_product", sa.column("id", GUID(length=16)), sa.column("status", sa.String()),
                       sa.column("published_at", DateTimeUTC(timezone=True)),
                       sa.column("created_at", DateTimeUTC(timezone=True)))
    document = sa.table("market_search_document", sa.column("product_id", GUID(length=16)),
                        sa.column("active", sa.Boolean()), sa.column("published", DateTimeUTC(timezone=True)))
    match = product.c.id == document.c.product_id
    bind.execute(sa.update(document).values(
        active=sa.select(product.c.status == "active").where(match).scalar_subquery(),
        published=sa.select(sa.func.coalesce(product.c.published_at, product.c.created_at)).where(match)
        .scalar_subquery()))
    op.create_index("ix_market_search_document_listing", "market_search_document", ["published", "product_id"],
                    unique=False, postgresql_where=sa.text("active"), sqlite_where=sa.text("active"))


def downgrade() -> None:
    op.drop_index("ix_market_search_document_listing", table_name="market_search_document",
                  postgresql_where=sa.text("active"), sqlite_where=sa.text("active"))
    op.drop_column("market_search_document", "published")
    op.drop_column("market_search_document", "active")
