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

What a search costs (issue 16's benchmark: 50,000 products, a common word matches thousands):
everything that ranks and orders is on the search document itself (``active``, ``published``
are copied there from the product, search_models.py), so matching, scoring and the top-N sort
read one table through its index and never join the products; only the page's ids leave the
database, and the caller loads those (with their availability) alone. PostgreSQL scores a word
per field with a weight-restricted ``tsquery`` (``'word':*A``), no per-row vector copies. The
per-variant filters (price range, in stock) run on the ranked matches in order and, on
PostgreSQL, stop once the page is full (a ranked subquery behind ``OFFSET 0``), so availability
is computed for the rows the page needs, not for every match (SQLite sorts again after the
filter, so it tests every match: same answer, more work). No total count is ever taken.

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
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final, Protocol, cast
from uuid import UUID

import msgspec
from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    Text,
    and_,
    bindparam,
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
    """How one database matches and ranks. ``matches(n)`` is the statement for ``n`` words: the
    search documents matching every word (more may be joined in) and their score (higher =
    better), the words themselves bound parameters that ``params(words)`` gives. The statement
    depends only on the number of words, so it is built once and its SQL text is the same for
    every query of that length (compiled once by SQLAlchemy, prepared once per connection)."""

    def matches(self, n_words: int) -> tuple[Select[Any], ColumnElement[int]]: ...

    def params(self, words: Sequence[str]) -> dict[str, str]: ...


# Ranking, the same on both engines by construction: for every query word and field, the field's
# weight when the word occurs there (title 4, tags 2, description 1). The scores are small integers,
# so they compare exactly in a cursor and no engine's length normalisation (ts_rank's, bm25's)
# can order the same fixture differently on the other database.
FIELD_WEIGHTS: Final = (("title", "a", 4), ("tags", "b", 2), ("body", "c", 1))


def _pg_term(word: str, last: bool, weight_letter: str = "") -> str:
    # Each word is word characters only (terms()): quoted for to_tsquery, a prefix when it is the
    # word being typed, restricted to one weight (one field) when ``weight_letter`` is given
    # (``'hon':*A``: a lexeme starting with "hon" at a title position).
    return f"'{word}'" + (":*" if last else (":" if weight_letter else "")) + weight_letter.upper()


@lru_cache(maxsize=MAX_TERMS)
def _pg_matches(n_words: int) -> tuple[Select[Any], ColumnElement[int]]:
    doc = SearchDocument.__table__.c
    simple: ColumnElement[Any] = literal_column("'simple'::regconfig")
    score: ColumnElement[int] = literal(0, Integer())
    for i in range(n_words):
        for _field, weight_letter, weight in FIELD_WEIGHTS:
            in_field = doc.document.op("@@")(func.to_tsquery(simple, bindparam(f"t{i}{weight_letter}", type_=Text())))
            score = score + case((in_field, weight), else_=0)
    query = func.to_tsquery(simple, bindparam("tq", type_=Text()))
    return select(SearchDocument.__table__).where(doc.document.op("@@")(query)), score


class PostgresEngine:
    """``tsvector @@ tsquery`` on the generated, GIN-indexed ``document`` column; the score from
    weight-restricted queries (a word's lexemes of one weight, i.e. in one field: ``'w':*A``),
    which test the row's vector as it is (``ts_filter`` would copy it per field and word)."""

    def matches(self, n_words: int) -> tuple[Select[Any], ColumnElement[int]]:
        return _pg_matches(n_words)

    def params(self, words: Sequence[str]) -> dict[str, str]:
        last = len(words) - 1
        params = {"tq": " & ".join(_pg_term(w, i == last) for i, w in enumerate(words))}
        for i, word in enumerate(words):
            for _field, weight_letter, _weight in FIELD_WEIGHTS:
                params[f"t{i}{weight_letter}"] = _pg_term(word, i == last, weight_letter)
        return params


@lru_cache(maxsize=MAX_TERMS)
def _sqlite_matches(n_words: int) -> tuple[Select[Any], ColumnElement[int]]:
    parts: list[str] = []
    for i in range(n_words):
        for field_name, _letter, weight in FIELD_WEIGHTS:
            parts.append(f"{weight} * (rowid IN (SELECT rowid FROM {FTS_TABLE} "  # noqa: S608
                         f"WHERE {FTS_TABLE} MATCH :m{i}{field_name}))")
    # Only constants and bound parameter names are in the SQL text; the words are bound values.
    fts = text(f"SELECT rowid AS rowid, {' + '.join(parts)} AS score "  # noqa: S608
               f"FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH :match")
    hits = fts.columns(literal_column("rowid"), literal_column("score")).subquery("fts")
    table = SearchDocument.__table__
    return select(table).join(hits, hits.c.rowid == table.c.id), cast("ColumnElement[int]", hits.c.score)


class SqliteEngine:
    """FTS5 ``MATCH`` on the external-content table; the score from one column-filtered MATCH per
    word and field (each an uncorrelated ``IN``: SQLite runs it once per search, not per row)."""

    def matches(self, n_words: int) -> tuple[Select[Any], ColumnElement[int]]:
        return _sqlite_matches(n_words)

    def params(self, words: Sequence[str]) -> dict[str, str]:
        # Every word double-quoted (an FTS5 string; terms() leaves no " in a word), the last one a
        # prefix query; juxtaposition is AND. Column filters ("title : ...") give the per-field hits.
        quoted = [f'"{w}"' + ("*" if i == len(words) - 1 else "") for i, w in enumerate(words)]
        params = {"match": " ".join(quoted)}
        for i, term in enumerate(quoted):
            for field_name, _letter, _weight in FIELD_WEIGHTS:
                params[f"m{i}{field_name}"] = f"{field_name} : {term}"
        return params


def engine_for(session: AsyncSession) -> Engine:
    return PostgresEngine() if session.bind.dialect.name == "postgresql" else SqliteEngine()


@lru_cache(maxsize=64)
def _ranked_shape(engine: type[Engine], n_words: int, category: bool, producer: bool) -> Select[Any]:
    from domains.market.models import Category, Producer, Product, ProductCategory

    table = SearchDocument.__table__
    doc = table.c
    if n_words:
        base, score = engine().matches(n_words)
    else:
        base, score = select(table), literal(0, Integer())
    stmt = base.with_only_columns(doc.product_id.label("id"), doc.published.label("published"),
                                  func.cast(score, Integer()).label("score")).where(doc.active)
    if category:
        slug = bindparam("category", type_=Text())
        parent = select(Category.id).where(Category.slug == slug).scalar_subquery()
        stmt = stmt.where(doc.product_id.in_(
            select(ProductCategory.product_id).join(Category, Category.id == ProductCategory.category_id)
            .where(or_(Category.slug == slug, Category.parent_id == parent))))
    if producer:
        stmt = stmt.where(doc.product_id.in_(
            select(Product.id).join(Producer, Producer.id == Product.producer_id)
            .where(Producer.slug == bindparam("producer", type_=Text()))))
    return stmt


class MarketSearch:
    """The one search interface: ``search(filters, cursor=…)`` and ``reindex(products)``."""

    def __init__(self, session: AsyncSession, *, page_size: int = PAGE_SIZE) -> None:
        self.session = session
        self.engine = engine_for(session)
        self.page_size = page_size

    def _ranked(self, filters: SearchFilters, n_words: int) -> Select[Any]:
        """(id, published, score) of the public products matching the words and the cheap filters
        (category, producer): one pass over the search documents, no product rows read. Built once
        per shape (``_ranked_shape``); the words, category and producer are bound parameters."""
        return _ranked_shape(type(self.engine), n_words, bool(filters.category), bool(filters.producer))

    @staticmethod
    def _variant_filter(filters: SearchFilters, product_id: Any) -> ColumnElement[bool]:
        """Some variant of the product within the price range and (``in_stock``) available: the
        catalogue's one availability rule (services/stock.py), reservations included."""
        from domains.market.models import Variant
        from domains.market.services.stock import available_expr

        variant = select(Variant.id).where(Variant.product_id == product_id)
        if filters.min_price is not None:
            variant = variant.where(Variant.price_minor >= filters.min_price)
        if filters.max_price is not None:
            variant = variant.where(Variant.price_minor <= filters.max_price)
        if filters.in_stock:
            variant = variant.where(available_expr(Variant.id) > 0)
        return variant.exists()

    async def search(self, filters: SearchFilters, *, cursor: str = "", limit: int | None = None) -> SearchPage:
        """One page of active products matching ``filters``, best first. ``BadCursor`` for a forged cursor."""
        size = max(1, min(limit or self.page_size, 100))
        words = terms(filters.q)
        after = decode_cursor(cursor) if cursor else None
        params: dict[str, Any] = self.engine.params(words) if words else {}
        if filters.category:
            params["category"] = filters.category
        if filters.producer:
            params["producer"] = filters.producer
        inner = self._ranked(filters, len(words)).subquery("ranked")
        stmt = select(inner.c.id, inner.c.published, inner.c.score)
        if after is not None:
            when = datetime.fromisoformat(after.published) if after.published else None
            last = UUID(after.id)
            score = literal(after.score, Integer())
            tie = inner.c.id < last if when is None else or_(
                inner.c.published < when, and_(inner.c.published == when, inner.c.id < last))
            stmt = stmt.where(or_(inner.c.score < score, and_(inner.c.score == score, tie)))
        order = (inner.c.score.desc(), inner.c.published.desc(), inner.c.id.desc())
        if filters.min_price is None and filters.max_price is None and not filters.in_stock:
            stmt = stmt.order_by(*order).limit(size + 1)
        else:
            # Rank every match first (a sort of small rows), then test the per-variant filter on
            # the ranked rows in order until the page is full: availability (a subquery per
            # variant) is computed for about a page of rows, not for every match. ``OFFSET 0``
            # keeps the ranked subquery whole (PostgreSQL neither flattens it nor pushes the
            # filter under its sort, and reads its order as the outer ORDER BY's); it skips nothing.
            ranked = stmt.order_by(*order).offset(literal_column("0")).subquery("matched")
            variant = self._variant_filter(filters, ranked.c.id)
            stmt = (select(ranked.c.id, ranked.c.published, ranked.c.score).where(variant)
                    .order_by(ranked.c.score.desc(), ranked.c.published.desc(), ranked.c.id.desc())
                    .limit(size + 1))
        rows = list((await self.session.execute(stmt, params)).all())
        more = len(rows) > size
        rows = rows[:size]
        next_cursor = encode_cursor(int(rows[-1].score), rows[-1].published, rows[-1].id) if more and rows else None
        return SearchPage(ids=[r.id for r in rows], next_cursor=next_cursor, terms=list(words))

    async def reindex(self, product_ids: Iterable[UUID]) -> None:
        """Rewrite the documents of ``product_ids`` from the product rows (deleted products drop out)."""
        from domains.market.models import ACTIVE, Product

        ids = list(set(product_ids))
        if not ids:
            return
        rows = (await self.session.execute(
            select(Product.id, Product.title, Product.tags, Product.description_md, Product.status,
                   Product.published_at, Product.created_at).where(Product.id.in_(ids)))).all()
        await self.session.execute(delete(SearchDocument).where(SearchDocument.product_id.in_(ids)))
        docs = [document_of(r.id, r.title, r.tags, r.description_md, active=r.status == ACTIVE,
                            published=r.published_at or r.created_at) for r in rows]
        if docs:
            await self.session.execute(insert(SearchDocument), docs)


def document_of(product_id: UUID, title: str, tags: Iterable[str] | None, description: str, *,
                active: bool, published: datetime | None) -> dict[str, Any]:
    """A search document's row: the folded text, and whether the product is public (``status`` is
    active) and its ranking time (``published_at``, else ``created_at``), which search orders by."""
    return {"product_id": product_id, "title": fold(title or ""), "tags": fold(" ".join(tags or ())),
            "body": fold(description or ""), "active": active, "published": published}


def _document_of_product(product: Any) -> dict[str, Any]:
    from domains.market.models import ACTIVE

    return document_of(product.id, product.title, product.tags, product.description_md,
                       active=product.status == ACTIVE, published=product.published_at or product.created_at)


# -- keeping the index in step -----------------------------------------------------------------------
# Every write to a product (the admin, the API, the URL import, the CLI, the CSV import's updates)
# goes through the ORM, so a flush listener is the one place that sees them all (the CSV import's
# bulk INSERT of new products writes their documents itself, with document_of): it rewrites the changed products'
# documents on the same connection, inside the same transaction, so the index never disagrees with
# a committed catalogue. Status and published time are copied into the document too (search ranks
# and filters by them there), so a change to either rewrites it as well.
_SEARCHED = ("title", "tags", "description_md", "status", "published_at", "created_at")


@event.listens_for(Session, "after_flush")
def _reindex_flushed(session: Session, _context: Any) -> None:
    from sqlalchemy import inspect as sa_inspect

    from domains.market.models import Product

    changed: dict[UUID, dict[str, Any]] = {}
    gone: set[UUID] = set()
    for obj in session.new:
        if isinstance(obj, Product):
            changed[obj.id] = _document_of_product(obj)
    for obj in session.dirty:
        if isinstance(obj, Product):
            state = sa_inspect(obj)
            if any(state.attrs[name].history.has_changes() for name in _SEARCHED):
                changed[obj.id] = _document_of_product(obj)
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



