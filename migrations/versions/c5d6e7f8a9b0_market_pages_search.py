"""market pages and product search: market_page, market_page_item, market_search_document (+ FTS)

The search document's ``document`` column is a generated, GIN-indexed ``tsvector`` on PostgreSQL
(title A, tags B, description C) and a constant on SQLite, where an FTS5 external-content table
``market_search_fts`` with three triggers indexes the same columns (domains/market/search_models.py).
Existing products are indexed at the end of the upgrade.

Revision ID: c5d6e7f8a9b0
Revises: 34b430557501
Create Date: 2026-12-07 02:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from advanced_alchemy.types import GUID, DateTimeUTC
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "c5d6e7f8a9b0"
down_revision = "34b430557501"
branch_labels = None
depends_on = None

PG_VECTOR = ("setweight(to_tsvector('simple'::regconfig, title), 'A') || "
             "setweight(to_tsvector('simple'::regconfig, tags), 'B') || "
             "setweight(to_tsvector('simple'::regconfig, body), 'C')")
SQLITE_FTS = (
    "CREATE VIRTUAL TABLE market_search_fts USING fts5(title, tags, body, content='market_search_document', "
    "content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER market_search_fts_ai AFTER INSERT ON market_search_document BEGIN "
    "INSERT INTO market_search_fts(rowid, title, tags, body) VALUES (new.id, new.title, new.tags, new.body); END",
    "CREATE TRIGGER market_search_fts_ad AFTER DELETE ON market_search_document BEGIN "
    "INSERT INTO market_search_fts(market_search_fts, rowid, title, tags, body) "
    "VALUES ('delete', old.id, old.title, old.tags, old.body); END",
    "CREATE TRIGGER market_search_fts_au AFTER UPDATE ON market_search_document BEGIN "
    "INSERT INTO market_search_fts(market_search_fts, rowid, title, tags, body) "
    "VALUES ('delete', old.id, old.title, old.tags, old.body); "
    "INSERT INTO market_search_fts(rowid, title, tags, body) VALUES (new.id, new.title, new.tags, new.body); END",
)


def _audit() -> list[sa.Column[object]]:
    return [sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
            sa.Column("created_at", DateTimeUTC(timezone=True), nullable=False),
            sa.Column("updated_at", DateTimeUTC(timezone=True), nullable=False)]


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_table(
        "market_page",
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("slug", sa.String(length=191), nullable=False),
        sa.Column("intro_md", sa.Text(), nullable=False),
        sa.Column("intro_html", sa.Text(), nullable=False),
        sa.Column("starts_on", sa.Date(), nullable=True),
        sa.Column("ends_on", sa.Date(), nullable=True),
        sa.Column("place", sa.String(length=200), nullable=False),
        sa.Column("published", sa.Boolean(), nullable=False),
        sa.Column("mode", sa.String(length=8), nullable=False),
        sa.Column("filter_q", sa.String(length=200), nullable=False),
        sa.Column("filter_category", sa.String(length=191), nullable=False),
        sa.Column("filter_producer", sa.String(length=191), nullable=False),
        sa.Column("filter_in_stock", sa.Boolean(), nullable=False),
        sa.Column("filter_limit", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        *_audit(),
        sa.CheckConstraint("mode IN ('list', 'filter')", name=op.f("ck_market_page_mode_known")),
        sa.CheckConstraint("ends_on IS NULL OR starts_on IS NULL OR ends_on >= starts_on",
                           name=op.f("ck_market_page_dates_ordered")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_market_page")),
    )
    with op.batch_alter_table("market_page", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_market_page_slug"), ["slug"], unique=True)
        batch_op.create_index(batch_op.f("ix_market_page_published"), ["published"], unique=False)

    op.create_table(
        "market_page_item",
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("page_id", GUID(length=16), nullable=False),
        sa.Column("product_id", GUID(length=16), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        *_audit(),
        sa.ForeignKeyConstraint(["page_id"], ["market_page.id"], name=op.f("fk_market_page_item_page_id_market_page"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["product_id"], ["market_product.id"],
                                name=op.f("fk_market_page_item_product_id_market_product"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_market_page_item")),
        sa.UniqueConstraint("page_id", "product_id", name="uq_market_page_item"),
    )
    with op.batch_alter_table("market_page_item", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_market_page_item_page_id"), ["page_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_market_page_item_product_id"), ["product_id"], unique=False)

    vector_type = postgresql.TSVECTOR() if dialect == "postgresql" else sa.Text()
    op.create_table(
        "market_search_document",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), sa.Identity(start=1, increment=1),
                  nullable=False),
        sa.Column("product_id", GUID(length=16), nullable=False),
        sa.Column("title", sa.Text(), server_default="", nullable=False),
        sa.Column("tags", sa.Text(), server_default="", nullable=False),
        sa.Column("body", sa.Text(), server_default="", nullable=False),
        sa.Column("document", vector_type, sa.Computed(PG_VECTOR if dialect == "postgresql" else "NULL",
                                                       persisted=True), nullable=True),
        sa.ForeignKeyConstraint(["product_id"], ["market_product.id"],
                                name=op.f("fk_market_search_document_product_id_market_product"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_market_search_document")),
        sa.UniqueConstraint("product_id", name=op.f("uq_market_search_document_product_id")),
    )
    # GIN on PostgreSQL; on SQLite a plain index over the constant column, as the models declare it.
    op.create_index("ix_market_search_document_document", "market_search_document", ["document"], unique=False,
                    postgresql_using="gin")
    if dialect != "postgresql":
        for statement in SQLITE_FTS:
            op.execute(statement)
    # Index the products that exist already (folded as domains.market.search.fold does: NFKD without
    # combining marks, case-folded).
    _index_existing()


def _index_existing() -> None:
    import json
    import unicodedata

    def fold(value: str) -> str:
        decomposed = unicodedata.normalize("NFKD", value)
        return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()

    bind = op.get_bind()
    product = sa.table("market_product", sa.column("id", GUID(length=16)), sa.column("title", sa.String()),
                       sa.column("tags", sa.Text()), sa.column("description_md", sa.Text()))
    document = sa.table("market_search_document", sa.column("product_id", GUID(length=16)),
                        sa.column("title", sa.Text()), sa.column("tags", sa.Text()), sa.column("body", sa.Text()))
    rows = bind.execute(sa.select(product.c.id, product.c.title, product.c.tags, product.c.description_md)).all()
    docs = []
    for row in rows:
        tags = row.tags if isinstance(row.tags, list) else json.loads(row.tags or "[]")
        docs.append({"product_id": row.id, "title": fold(row.title or ""), "tags": fold(" ".join(tags)),
                     "body": fold(row.description_md or "")})
    if docs:
        bind.execute(sa.insert(document), docs)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS market_search_fts")
    op.drop_table("market_search_document")
    op.drop_table("market_page_item")
    op.drop_table("market_page")
