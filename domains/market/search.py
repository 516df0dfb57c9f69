"""Product search: one service (:class:`MarketSearch`), two engines (PostgreSQL FTS, SQLite FTS5).

Both engines index the same folded text (search_models.py) and are asked the same question: every
word of the query, the last one as a prefix (so results follow as one types), in any field.
Ranking weighs a title match above a tag match above a description match: each query word scores
its field's weight (4, 2, 1) in every field it occurs in (``FIELD_WEIGHTS``), computed by each
engine from its own index; ties go to the newer product, then the larger id, so the order is total
and both engines rank and page the same fixture alike.

Paging is keyset (``cursor``: the last row's score, published time and id), never OFFSET, so a
deep page costs what the first does. Filters: category, producer, price range (any variant
within it), in stock only (the catalogue's availability expression).

Untrusted ``q``: at most :data:`MAX_QUERY` characters are read; only word characters reach the
engines (FTS5 gets each word double-quoted, PostgreSQL gets ``to_tsquery`` terms built from
``[a-z0-9_]``-style words it cannot misparse), so quotes, ``*``, ``NEAR(`` or ``:`` are just text.
"""

from __future__ import annotations

import base64
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Protocol, cast
from uuid import UUID

import msgspec
from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    and_,
    case,
    delete,
    event,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.sql.selectable import Subquery

from domains.market.search_models import FTS_TABLE, SearchDocument

if TYPE_CHECKING:
    from sqlalchemy import Table

__all__ = [
    "MAX_QUERY", "PAGE_SIZE", "BadCursor", "MarketSearch", "SearchFilters", "SearchPage", "fold", "terms",
]

MAX_QUERY: Final = 200  # characters of q that are read; the rest is ignored
MAX_TERMS: Final = 8  # words of q that are searched for
PAGE_SIZE: Final = 24
_WORD = re.compile(r"\w+", re.UNICODE)


def fold(value: str) -> str:
    """Lower case without diacritics: what both engines index and what queries are matched with."""
    decomposed = unicodedata.normalize("NFKD", value)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def terms(q: str) -> list[str]:
    """The query's words, folded, at most :data:`MAX_TERMS` (FTS operators and quotes drop out)."""
    words = _WORD.findall(fold(q[:MAX_QUERY]))
    # ``_`` is a word character in Python but a separator for both tokenizers: split on it too.
    out = [part for word in words for part in word.split("_") if part]
    return out[:MAX_TERMS]


class BadCursor(ValueError):
    """A ``cursor`` parameter that this service did not make."""


class SearchFilters(msgspec.Struct, frozen=True, kw_only=True):
    """What a search asks for (also a market page's saved filter)."""

    q: str = ""
    category: str = ""  # a category slug
    producer: str = ""  # a producer slug
    min_price: int | None = None  # minor units, inclusive
    max_price: int | None = None
    in_stock: bool = False


_MAX_SCORE = 2**31


class _Cursor(msgspec.Struct, frozen=True, array_like=True):
    score: int
    published: str
    id: str


@dataclass(frozen=True)
class SearchPage:
    """One page of results: product ids in rank order, and the next page's cursor (None at the end)."""

    ids: list[UUID]
    next_cursor: str | None
    terms: list[str]


def encode_cursor(score: int, published: datetime | None, product_id: UUID) -> str:
    raw = msgspec.json.encode(_Cursor(score, published.isoformat() if published else "", str(product_id)))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(value: str) -> _Cursor:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        cursor = msgspec.json.decode(raw, type=_Cursor)
        UUID(cursor.id)
        # A score is a sum of small per-term weights: anything outside 0..2^31 was not made here and
        # would overflow the database's integer comparison.
        if not 0 <= cursor.score <= _MAX_SCORE:
            raise ValueError("score out of range")
        # Published times are stored timezone-aware; a naive one cannot be compared with them (500).
        if cursor.published and datetime.fromisoformat(cursor.published).utcoffset() is None:
            raise ValueError("naive published time")
    except (ValueError, OverflowError, msgspec.DecodeError) as exc:
        raise BadCursor("That page link is not valid: start the search again.") from exc
    return cursor


class Engine(Protocol):
    """How one database matches and ranks: a subquery of (product_id, score), score higher = better."""

    def matches(self, words: Sequence[str]) -> Subquery: ...


# Ranking, the same on both engines by construction: for every query word and field, the field's
# weight when the word occurs there (title 4, tags 2, description 1). The scores are small integers,
# so they compare exactly in a cursor and no engine's length normalisation (ts_rank's, bm25's)
# can order the same fixture differently on the other database.
FIELD_WEIGHTS: Final = (("title", "a", 4), ("tags", "b", 2), ("body", "c", 1))


def _pg_term(word: str, last: bool) -> str:
    # Each word is word characters only (terms()): quoted for to_tsquery, a prefix when it is the
    # word being typed.
    return f"'{word}'" + (":*" if last else "")


class PostgresEngine:
    """``tsvector @@ tsquery`` on the generated, GIN-indexed ``document`` column; the score from
    ``ts_filter`` (the lexemes of one weight, i.e. one field)."""

    def matches(self, words: Sequence[str]) -> Subquery:
        doc = SearchDocument.__table__.c
        simple: ColumnElement[Any] = literal_column("'simple'::regconfig")
        terms_ = [_pg_term(w, i == len(words) - 1) for i, w in enumerate(words)]
        query = func.to_tsquery(simple, " & ".join(terms_))
        score: ColumnElement[Any] = literal(0, Integer())
        for term in terms_:
            for _field, weight_letter, weight in FIELD_WEIGHTS:
                in_field = func.ts_filter(doc.document, literal_column(f"'{{{weight_letter}}}'::\"char\"[]")) \
                    .op("@@")(func.to_tsquery(simple, term))
                score = score + case((in_field, weight), else_=0)
        return (select(doc.product_id.label("product_id"), score.label("score"))
                .where(doc.document.op("@@")(query)).subquery("matched"))


class SqliteEngine:
    """FTS5 ``MATCH`` on the external-content table; the score from one column-filtered MATCH per
    word and field."""

    def matches(self, words: Sequence[str]) -> Subquery:
        # Every word double-quoted (an FTS5 string; terms() leaves no " in a word), the last one a
        # prefix query; juxtaposition is AND. Column filters ("title : ...") give the per-field hits.
        quoted = [f'"{w}"' + ("*" if i == len(words) - 1 else "") for i, w in enumerate(words)]
        params: dict[str, str] = {"match": " ".join(quoted)}
        parts: list[str] = []
        for i, term in enumerate(quoted):
            for field_name, _letter, weight in FIELD_WEIGHTS:
                name = f"m{i}{field_name}"
                params[name] = f"{field_name} : {term}"
                parts.append(f"{weight} * (rowid IN (SELECT rowid FROM {FTS_TABLE} "  # noqa: S608
                             f"WHERE {FTS_TABLE} MATCH :{name}))")
        # Only constants and bound parameter names are in the SQL text; the words are bound values.
        fts = text(f"SELECT rowid AS rowid, {' + '.join(parts)} AS score "  # noqa: S608
                   f"FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH :match").bindparams(**params)
        hits = fts.columns(literal_column("rowid"), literal_column("score")).subquery("fts")
        doc = SearchDocument.__table__.c
        return (select(doc.product_id.label("product_id"), hits.c.score.label("score"))
                .join(hits, hits.c.rowid == doc.id).subquery("matched"))


def engine_for(session: AsyncSession) -> Engine:
    return PostgresEngine() if session.bind.dialect.name == "postgresql" else SqliteEngine()


class MarketSearch:
    """The one search interface: ``search(filters, cursor=…)`` and ``reindex(products)``."""

    def __init__(self, session: AsyncSession, *, page_size: int = PAGE_SIZE) -> None:
        self.session = session
        self.engine = engine_for(session)
        self.page_size = page_size

    def _query(self, filters: SearchFilters, words: Sequence[str]) -> Select[Any]:
        from domains.market.models import ACTIVE, Category, Producer, Product, ProductCategory, Variant
        from domains.market.services.stock import available_expr

        published = func.coalesce(Product.published_at, Product.created_at)
        if words:
            matched = self.engine.matches(words)
            score: ColumnElement[Any] = func.cast(matched.c.score, Integer())
            stmt = select(Product.id.label("id"), published.label("published"), score.label("score")) \
                .join(matched, matched.c.product_id == Product.id)
        else:
            stmt = select(Product.id.label("id"), published.label("published"),
                          literal(0, Integer()).label("score"))
        stmt = stmt.where(Product.status == ACTIVE)
        if filters.category:
            parent = select(Category.id).where(Category.slug == filters.category).scalar_subquery()
            stmt = stmt.where(Product.id.in_(
                select(ProductCategory.product_id).join(Category, Category.id == ProductCategory.category_id)
                .where(or_(Category.slug == filters.category, Category.parent_id == parent))))
        if filters.producer:
            stmt = stmt.where(Product.producer_id.in_(select(Producer.id).where(Producer.slug == filters.producer)))
        if filters.min_price is not None or filters.max_price is not None or filters.in_stock:
            variant = select(Variant.id).where(Variant.product_id == Product.id)
            if filters.min_price is not None:
                variant = variant.where(Variant.price_minor >= filters.min_price)
            if filters.max_price is not None:
                variant = variant.where(Variant.price_minor <= filters.max_price)
            if filters.in_stock:
                variant = variant.where(available_expr(Variant.id) > 0)
            stmt = stmt.where(variant.exists())
        return stmt

    async def search(self, filters: SearchFilters, *, cursor: str = "", limit: int | None = None) -> SearchPage:
        """One page of active products matching ``filters``, best first. ``BadCursor`` for a forged cursor."""
        size = max(1, min(limit or self.page_size, 100))
        words = terms(filters.q)
        inner = self._query(filters, words).subquery("ranked")
        stmt = select(inner.c.id, inner.c.published, inner.c.score)
        if cursor:
            after = decode_cursor(cursor)
            when = datetime.fromisoformat(after.published) if after.published else None
            last = UUID(after.id)
            score = literal(after.score, Integer())
            tie = inner.c.id < last if when is None else or_(
                inner.c.published < when, and_(inner.c.published == when, inner.c.id < last))
            stmt = stmt.where(or_(inner.c.score < score, and_(inner.c.score == score, tie)))
        stmt = stmt.order_by(inner.c.score.desc(), inner.c.published.desc(), inner.c.id.desc()).limit(size + 1)
        rows = list((await self.session.execute(stmt)).all())
        more = len(rows) > size
        rows = rows[:size]
        next_cursor = encode_cursor(int(rows[-1].score), rows[-1].published, rows[-1].id) if more and rows else None
        return SearchPage(ids=[r.id for r in rows], next_cursor=next_cursor, terms=list(words))

    async def reindex(self, product_ids: Iterable[UUID]) -> None:
        """Rewrite the documents of ``product_ids`` from the product rows (deleted products drop out)."""
        from domains.market.models import Product

        ids = list(set(product_ids))
        if not ids:
            return
        rows = (await self.session.execute(
            select(Product.id, Product.title, Product.tags, Product.description_md).where(Product.id.in_(ids)))).all()
        await self.session.execute(delete(SearchDocument).where(SearchDocument.product_id.in_(ids)))
        docs = [document_of(r.id, r.title, r.tags, r.description_md) for r in rows]
        if docs:
            await self.session.execute(insert(SearchDocument), docs)


def document_of(product_id: UUID, title: str, tags: Iterable[str] | None, description: str) -> dict[str, Any]:
    return {"product_id": product_id, "title": fold(title or ""), "tags": fold(" ".join(tags or ())),
            "body": fold(description or "")}


# -- keeping the index in step -----------------------------------------------------------------------
# Every write to a product (the admin, the API, the CSV and URL imports, the CLI) goes through the
# ORM, so a flush listener is the one place that sees them all: it rewrites the changed products'
# documents on the same connection, inside the same transaction, so the index never disagrees with
# a committed catalogue.
_SEARCHED = ("title", "tags", "description_md")


@event.listens_for(Session, "after_flush")
def _reindex_flushed(session: Session, _context: Any) -> None:
    from sqlalchemy import inspect as sa_inspect

    from domains.market.models import Product

    changed: dict[UUID, dict[str, Any]] = {}
    gone: set[UUID] = set()
    for obj in session.new:
        if isinstance(obj, Product):
            changed[obj.id] = document_of(obj.id, obj.title, obj.tags, obj.description_md)
    for obj in session.dirty:
        if isinstance(obj, Product):
            state = sa_inspect(obj)
            if any(state.attrs[name].history.has_changes() for name in _SEARCHED):
                changed[obj.id] = document_of(obj.id, obj.title, obj.tags, obj.description_md)
    for obj in session.deleted:
        if isinstance(obj, Product):
            gone.add(obj.id)
    if not changed and not gone:
        return
    connection = session.connection()
    table = cast("Table", SearchDocument.__table__)
    connection.execute(delete(table).where(table.c.product_id.in_([*changed, *gone])))
    if changed:
        connection.execute(insert(table), list(changed.values()))



