"""The search index's table: one document per product, and the engine-specific parts around it.

``market_search_document`` holds each product's searchable text already folded (lower case, no
diacritics: :func:`domains.market.search.fold`), so the two engines index the very same words:

- PostgreSQL: ``document`` is a generated ``tsvector`` (title weight A, tags B, description C,
  the ``simple`` configuration: no stemming and no stop words, so a word matches exactly as it
  does in FTS5) with a GIN index.
- SQLite: ``document`` is a constant generated column, and an FTS5 external-content table
  ``market_search_fts`` over (title, tags, body) is kept in step by three triggers.

Beside the text, each document carries what search ranks and filters by on every row it matches:
``active`` (the product is public) and ``published`` (its published time, else its creation
time: the tie-break after the score). With them a search reads this one table for matching,
scoring, ordering and keyset paging, and never joins ``market_product`` for the thousands of rows
a common word matches; the partial index ``ix_market_search_document_listing`` (active rows by
``published``, ``product_id``) answers the no-words listings (category, producer) as a bounded
index scan. They are written with the text, by the same flush listener (search.py), whenever the
product's status or published time changes (migration f2a3b4c5d6e7 fills them for existing rows).

The DDL below runs for ``metadata.create_all`` (tests) and the migration issues the same
statements (migrations/versions/…_market_pages_search.py), so both schemas are alike.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final
from uuid import UUID

from advanced_alchemy.base import IdentityBase
from advanced_alchemy.types import GUID, DateTimeUTC
from sqlalchemy import DDL, Boolean, Computed, ForeignKey, Index, Text, event, false, text
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ColumnElement

__all__ = ["FTS_TABLE", "PG_VECTOR_SQL", "SQLITE_FTS_DDL", "SearchDocument"]

TABLE: Final = "market_search_document"
FTS_TABLE: Final = "market_search_fts"
# The weighted vector (ts_rank's default weights: A 1.0, B 0.4, C 0.2); ``simple`` matches FTS5's
# unicode61 tokens word for word, which keeps the two engines' answers the same.
PG_VECTOR_SQL: Final = (
    "setweight(to_tsvector('simple'::regconfig, title), 'A') || "
    "setweight(to_tsvector('simple'::regconfig, tags), 'B') || "
    "setweight(to_tsvector('simple'::regconfig, body), 'C')"
)
# Constant DDL (no input reaches it).
SQLITE_FTS_DDL: Final = (
    f"CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5(title, tags, body, content='{TABLE}', content_rowid='id', "
    "tokenize='unicode61 remove_diacritics 2')",
    f"CREATE TRIGGER {FTS_TABLE}_ai AFTER INSERT ON {TABLE} BEGIN "  # noqa: S608
    f"INSERT INTO {FTS_TABLE}(rowid, title, tags, body) VALUES (new.id, new.title, new.tags, new.body); END",
    f"CREATE TRIGGER {FTS_TABLE}_ad AFTER DELETE ON {TABLE} BEGIN "  # noqa: S608
    f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, title, tags, body) "
    "VALUES ('delete', old.id, old.title, old.tags, old.body); END",
    f"CREATE TRIGGER {FTS_TABLE}_au AFTER UPDATE ON {TABLE} BEGIN "  # noqa: S608
    f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, title, tags, body) "
    "VALUES ('delete', old.id, old.title, old.tags, old.body); "
    f"INSERT INTO {FTS_TABLE}(rowid, title, tags, body) VALUES (new.id, new.title, new.tags, new.body); END",
)


class _Vector(ColumnElement[Any]):
    """The generated column's expression: the weighted ``tsvector`` on PostgreSQL, NULL elsewhere."""

    inherit_cache = True


@compiles(_Vector)
def _vector_elsewhere(element: _Vector, compiler: SQLCompiler, **kw: Any) -> str:
    return "NULL"


@compiles(_Vector, "postgresql")
def _vector_postgresql(element: _Vector, compiler: SQLCompiler, **kw: Any) -> str:
    return PG_VECTOR_SQL


class SearchDocument(IdentityBase):
    """What the search engines index for one product (rewritten whenever the product changes)."""

    __tablename__ = TABLE
    # GIN on PostgreSQL; elsewhere a plain index over the constant column (harmless, and the
    # schema stays the same shape on both databases).
    __table_args__ = (
        # A small pending list: every search scans it row by row (migration 1a2b3c4d5e01 says why).
        Index(f"ix_{TABLE}_document", "document", postgresql_using="gin",
              postgresql_with={"gin_pending_list_limit": 64}),
        # The public documents newest first: the no-words listing is a bounded (backward) index scan.
        Index(f"ix_{TABLE}_listing", "published", "product_id", postgresql_where=text("active"),
              sqlite_where=text("active")),
    )

    # ``id`` (IdentityBase) is an integer key, SQLite's rowid: FTS5's external content addresses rows by it.
    product_id: Mapped[UUID] = mapped_column(GUID(length=16), ForeignKey("market_product.id", ondelete="CASCADE"),
                                             unique=True)
    title: Mapped[str] = mapped_column(Text, default="", server_default="")
    tags: Mapped[str] = mapped_column(Text, default="", server_default="")
    body: Mapped[str] = mapped_column(Text, default="", server_default="")
    document: Mapped[Any] = mapped_column(TSVECTOR().with_variant(Text(), "sqlite"),
                                          Computed(_Vector(), persisted=True), nullable=True)
    # Copied from the product (search.document_of): whether it is public, and its ranking time.
    active: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    published: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), nullable=True)


_table = SearchDocument.__table__
for _statement in SQLITE_FTS_DDL:
    event.listen(_table, "after_create", DDL(_statement).execute_if(dialect="sqlite"))  # type: ignore[no-untyped-call]
_drop = DDL(f"DROP TABLE IF EXISTS {FTS_TABLE}")  # type: ignore[no-untyped-call]
event.listen(_table, "before_drop", _drop.execute_if(dialect="sqlite"))
