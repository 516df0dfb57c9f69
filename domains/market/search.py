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
scoring every match of a common word was most of a search's time (7,000 matches of "apple": a
bitmap heap scan rechecking each vector, three weight tests per row, 20-40 ms), so a query with
words ranks a bounded window, the same on both engines: its :data:`RANK_WINDOW` newest matches
(after every filter), best first, newest first within a score; paging runs through that window.
Fewer matches than that (every fixture in the tests) are all ranked. On PostgreSQL the window is
found by walking the newest-first partial index ``ix_market_search_document_listing`` and
testing each document, which for a common word stops after a few hundred rows; only if that walk
(bounded at :data:`WALK` documents per window place) comes back short does the GIN index find
every match (a rare word: few). A walk that came back short is remembered for that question (the
tsquery and the category/producer filters, :class:`_ShortWalks`, per process, a few minutes): the
next time it goes to the GIN index at once, without reading the walk's rows first (issue 16's
two-word queries match 1-3 % of the documents, so their walks always came back short, and cost
more than the index lookup after them). Both ways pick the same window, so the hint changes what
a search costs, never what it answers. The tsquery and the window are literals in the SQL, so
PostgreSQL plans each query for its own word (a prepared statement's generic plan would pick one
plan for every word). Everything that ranks and orders is on the search document itself
(``active``, ``published`` are copied there from the product, search_models.py), so this reads
one table and never joins the products; only the page's ids leave the database, and the caller
loads those (with their availability) alone. PostgreSQL scores a word per field with a
weight-restricted ``tsquery`` (``'word':*A``), no per-row vector copies. The per-variant filters
(price range, in stock) pick the window's candidates, so availability is computed for about a
window of rows; a listing without words (category, producer) tests them on its rows in order
and, on PostgreSQL, stops once the page is full (an ordered subquery behind ``OFFSET 0``). No
total count is ever taken.

Untrusted ``q``: at most :data:`MAX_QUERY` characters are read; only word characters reach the
engines (FTS5 gets each word double-quoted, PostgreSQL gets ``to_tsquery`` terms built from
``[a-z0-9_]``-style words it cannot misparse), so quotes, ``*``, ``NEAR(`` or ``:`` are just text.
"""

from __future__ import annotations

import base64
import re
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final, Protocol, cast
from uuid import UUID

import msgspec
from sqlalchemy import (
    ColumnElement,
    FromClause,
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
    "MAX_QUERY", "PAGE_SIZE", "RANK_WINDOW", "BadCursor", "MarketSearch", "SearchFilters", "SearchPage", "fold",
    "terms",
]

MAX_QUERY: Final = 200  # characters of q that are read; the rest is ignored
MAX_TERMS: Final = 8  # words of q that are searched for
PAGE_SIZE: Final = 24
# Matches a query with words ranks: its newest this many (module docstring, "What a search costs").
RANK_WINDOW: Final = 240
# Documents the newest-first walk reads per window place before it falls back to the GIN index.
WALK: Final = 12
# How long (seconds) a short walk is remembered before the walk is tried again (the catalogue may
# have grown more matches for the word since), and how many questions are remembered.
SHORT_WALK_TTL: Final = 300.0
SHORT_WALKS: Final = 1024
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
    """How one database matches and ranks, for ``n`` words bound as parameters (``params(words)``).

    ``matching(n, docs)`` is the condition that a row of ``docs`` (the search document table or
    an alias of it) holds every word; ``scored(n)`` selects the search documents with their score
    (higher = better) as a column expression, for rows the caller picks. Both depend only on the
    number of words, so each statement is built once and its SQL text is the same for every query
    of that length (compiled once by SQLAlchemy, prepared once per connection)."""

    def matching(self, n_words: int, docs: FromClause) -> ColumnElement[bool]: ...

    def scored(self, n_words: int) -> tuple[Select[Any], ColumnElement[int]]: ...

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


_SIMPLE: Final = "'simple'::regconfig"


@lru_cache(maxsize=MAX_TERMS)
def _pg_scored(n_words: int) -> tuple[Select[Any], ColumnElement[int]]:
    doc = SearchDocument.__table__.c
    score: ColumnElement[int] = literal(0, Integer())
    for i in range(n_words):
        for _field, weight_letter, weight in FIELD_WEIGHTS:
            in_field = doc.document.op("@@")(
                func.to_tsquery(literal_column(_SIMPLE), bindparam(f"t{i}{weight_letter}", type_=Text())))
            score = score + case((in_field, weight), else_=0)
    return select(SearchDocument.__table__), score


class PostgresEngine:
    """``tsvector @@ tsquery`` on the generated, GIN-indexed ``document`` column; the score from
    weight-restricted queries (a word's lexemes of one weight, i.e. in one field: ``'w':*A``),
    which test the row's vector as it is (``ts_filter`` would copy it per field and word)."""

    def matching(self, n_words: int, docs: FromClause) -> ColumnElement[bool]:
        # The query is written into the SQL as a quoted literal (``literal_execute``), not sent as a
        # parameter: the plan depends on how many documents it matches (a rare word: the GIN
        # index; a common one: walk the newest-first index until the window is full, which is far
        # cheaper than reading thousands of matches), and a parameter would let PostgreSQL settle,
        # after five runs of the prepared statement, on one generic plan for every word: the
        # bitmap scan of every match, 160 ms for a word that is in every document.
        query = func.to_tsquery(literal_column(_SIMPLE), bindparam("tq", type_=Text(), literal_execute=True))
        return cast("ColumnElement[bool]", docs.c.document.op("@@")(query))

    def scored(self, n_words: int) -> tuple[Select[Any], ColumnElement[int]]:
        return _pg_scored(n_words)

    def params(self, words: Sequence[str]) -> dict[str, str]:
        last = len(words) - 1
        params = {"tq": " & ".join(_pg_term(w, i == last) for i, w in enumerate(words))}
        for i, word in enumerate(words):
            for _field, weight_letter, _weight in FIELD_WEIGHTS:
                params[f"t{i}{weight_letter}"] = _pg_term(word, i == last, weight_letter)
        return params


@lru_cache(maxsize=MAX_TERMS)
def _sqlite_scored(n_words: int) -> tuple[Select[Any], ColumnElement[int]]:
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

    def matching(self, n_words: int, docs: FromClause) -> ColumnElement[bool]:
        hits = text(f"SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH :match")  # noqa: S608
        return docs.c.id.in_(hits.columns(literal_column("rowid")))

    def scored(self, n_words: int) -> tuple[Select[Any], ColumnElement[int]]:
        return _sqlite_scored(n_words)

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


def _cheap_filters(stmt: Select[Any], product_id: ColumnElement[Any], category: bool, producer: bool) -> Select[Any]:
    """Category (or a child of it) and producer, by slug (bound parameters ``category``, ``producer``)."""
    from domains.market.models import Category, Producer, Product, ProductCategory

    if category:
        slug = bindparam("category", type_=Text())
        parent = select(Category.id).where(Category.slug == slug).scalar_subquery()
        stmt = stmt.where(product_id.in_(
            select(ProductCategory.product_id).join(Category, Category.id == ProductCategory.category_id)
            .where(or_(Category.slug == slug, Category.parent_id == parent))))
    if producer:
        stmt = stmt.where(product_id.in_(
            select(Product.id).join(Producer, Producer.id == Product.producer_id)
            .where(Producer.slug == bindparam("producer", type_=Text()))))
    return stmt


@lru_cache(maxsize=64)
def _listing_shape(category: bool, producer: bool) -> Select[Any]:
    """No words (a category or producer listing): the public documents, newest first, score 0."""
    doc = SearchDocument.__table__.c
    stmt = select(doc.product_id.label("id"), doc.published.label("published"),
                  literal(0, Integer()).label("score")).where(doc.active)
    return _cheap_filters(stmt, doc.product_id, category, producer)


Narrow = Callable[[Select[Any], FromClause], Select[Any]]


def _newest(select_: Select[Any], docs: FromClause) -> Select[Any]:
    return select_.order_by(docs.c.published.desc(), docs.c.product_id.desc())


def _candidates(engine: Engine, n_words: int, window: int, narrow: Narrow,
                gin_only: bool = False) -> tuple[Select[Any], ColumnElement[Any] | None]:
    """The ids of the ``window`` newest public documents holding every word and passing ``narrow``
    (the filters). SQLite: one statement (FTS5 finds every match; SQLite orders them).

    PostgreSQL, where the plan decides the cost: first walk the newest-first index over at most
    :data:`WALK` x ``window`` documents, testing each; a common word fills the window within a
    few hundred rows and the walk stops there. Only if the walk comes back short (a rare word, or
    none in the newest documents) does the second branch run (a one-time filter on the walk's
    count): every match through the GIN index, fenced with ``OFFSET 0`` so the planner cannot turn
    it into an unbounded walk of the whole table for a word that matches nothing, then the newest
    ``window`` of them. Either way the same ids: the walk covers the newest documents in order, so
    when it finds ``window`` matches they are the newest matches.

    Also returns how many the walk found (a scalar subquery over it, PostgreSQL only), which the
    caller selects so that a short walk is remembered; ``gin_only``: no walk, the GIN branch
    alone (a question whose walk was short lately: :class:`_ShortWalks`), and no count."""
    table = SearchDocument.__table__
    limit: ColumnElement[Any] = literal_column(str(int(window)))  # literal: with a parameter a generic plan guesses it
    if not isinstance(engine, PostgresEngine):
        docs = table.alias("candidate")
        picked = narrow(select(docs.c.id).where(docs.c.active, engine.matching(n_words, docs)), docs)
        return _newest(picked, docs).limit(limit), None
    every = table.alias("every")
    matches = narrow(select(every.c.id, every.c.product_id, every.c.published)
                     .where(every.c.active, engine.matching(n_words, every)), every)
    fenced = matches.offset(literal_column("0")).subquery("every_match")
    if gin_only:
        return _newest(select(fenced.c.id), fenced).limit(limit), None
    scope = table.alias("scope")
    newest = _newest(select(scope.c.id, scope.c.product_id, scope.c.published, scope.c.document)
                     .where(scope.c.active), scope).limit(literal_column(str(int(window) * WALK))).subquery("newest")
    walked = _newest(narrow(select(newest.c.id, newest.c.product_id, newest.c.published)
                            .where(engine.matching(n_words, newest)), newest), newest).limit(limit)
    walk = walked.cte("walked").prefix_with("MATERIALIZED")
    found = select(func.count()).select_from(walk).scalar_subquery()
    rest = _newest(select(fenced.c.id).where(found < limit), fenced).limit(limit)
    return select(walk.c.id).union_all(rest), found  # type: ignore[return-value]


def _windowed(engine: Engine, n_words: int, category: bool, producer: bool, window: int,
              variant: Callable[[Any], ColumnElement[bool]] | None = None, gin_only: bool = False) -> Select[Any]:
    """(id, published, score[, walked]) of the ranking window: the ``window`` newest public
    documents that hold every word and pass every filter (the candidates, :func:`_candidates`),
    each with its score. Only these are scored and sorted, not every match of a common word.
    ``walked`` (PostgreSQL's walk, not ``gin_only``): how many the newest-first walk found."""

    def narrow(picked: Select[Any], docs: FromClause) -> Select[Any]:
        picked = _cheap_filters(picked, docs.c.product_id, category, producer)
        return picked.where(variant(docs.c.product_id)) if variant is not None else picked

    picked, found = _candidates(engine, n_words, window, narrow, gin_only)
    base, score = engine.scored(n_words)
    doc = SearchDocument.__table__.c
    columns = [doc.product_id.label("id"), doc.published.label("published"),
               func.cast(score, Integer()).label("score")]
    if found is not None:
        columns.append(found.label("walked"))
    return base.with_only_columns(*columns).where(doc.id.in_(picked))


@lru_cache(maxsize=128)
def _windowed_shape(engine: type[Engine], n_words: int, category: bool, producer: bool, window: int,
                    gin_only: bool = False) -> Select[Any]:
    # Built once per shape (building it costs more CPU than PostgreSQL spends running it); the
    # words, category and producer are bound parameters.
    return _windowed(engine(), n_words, category, producer, window, gin_only=gin_only)


class _ShortWalks:
    """The PostgreSQL questions (tsquery, category, producer) whose newest-first walk came back
    short lately: their next search goes straight to the GIN index (module docstring). Bounded
    (the least recently used forgotten first) and each entry forgotten after ``ttl`` seconds, so a
    word that has since become common is walked again. Only what a search costs depends on it."""

    def __init__(self, size: int = SHORT_WALKS, ttl: float = SHORT_WALK_TTL) -> None:
        self.size, self.ttl = size, ttl
        self._until: OrderedDict[tuple[str, str, str], float] = OrderedDict()

    def __contains__(self, key: tuple[str, str, str]) -> bool:
        until = self._until.get(key)
        if until is None:
            return False
        if until < time.monotonic():
            del self._until[key]
            return False
        self._until.move_to_end(key)
        return True

    def add(self, key: tuple[str, str, str]) -> None:
        self._until[key] = time.monotonic() + self.ttl
        self._until.move_to_end(key)
        while len(self._until) > self.size:
            self._until.popitem(last=False)

    def clear(self) -> None:
        self._until.clear()


short_walks = _ShortWalks()


@lru_cache(maxsize=256)
def _first_page(shape: Select[Any], size: int) -> Select[Any]:
    """A first page (no cursor, no per-variant filter) of a cached shape, best first: built once per
    shape (keyed by identity) and page size. SQLAlchemy memoizes a statement's cache key on the
    statement object, so a statement made afresh for each search had its key computed by walking
    the whole tree on every request (about a tenth of a search page's CPU in the app); this one's
    is computed once. The words, category and producer stay bound parameters."""
    inner = shape.subquery("ranked")
    columns = [inner.c.id, inner.c.published, inner.c.score, *(c for c in inner.c if c.key == "walked")]
    return (select(*columns)
            .order_by(inner.c.score.desc(), inner.c.published.desc(), inner.c.id.desc()).limit(size + 1))


class MarketSearch:
    """The one search interface: ``search(filters, cursor=…)`` and ``reindex(products)``.

    ``window`` (:data:`RANK_WINDOW`) bounds how many matches a query with words ranks: see the
    module docstring."""

    def __init__(self, session: AsyncSession, *, page_size: int = PAGE_SIZE, window: int = RANK_WINDOW) -> None:
        self.session = session
        self.engine = engine_for(session)
        self.page_size = page_size
        self.window = max(1, window)

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
        per_variant = filters.min_price is not None or filters.max_price is not None or filters.in_stock
        category, producer = bool(filters.category), bool(filters.producer)
        question = (params.get("tq", ""), filters.category, filters.producer)  # PostgreSQL's, for short_walks
        if words and per_variant:
            # The per-variant filters pick the window's candidates (availability is computed for
            # the rows the newest-first walk reaches, about a window of them).
            shape = _windowed(self.engine, len(words), category, producer, self.window,
                              lambda product_id: self._variant_filter(filters, product_id))
        elif words:
            gin_only = isinstance(self.engine, PostgresEngine) and question in short_walks
            shape = _windowed_shape(type(self.engine), len(words), category, producer, self.window, gin_only)
        else:
            shape = _listing_shape(category, producer)
        if after is None and not per_variant:  # the shape is one of the cached ones
            rows = list((await self.session.execute(_first_page(shape, size), params)).all())
            if rows and len(rows[0]) > 3 and rows[0].walked < self.window:
                short_walks.add(question)  # next time, the GIN index at once
            return self._page(rows, size, words)
        inner = shape.subquery("ranked")
        stmt = select(inner.c.id, inner.c.published, inner.c.score)
        if after is not None:
            when = datetime.fromisoformat(after.published) if after.published else None
            last = UUID(after.id)
            score = literal(after.score, Integer())
            tie = inner.c.id < last if when is None else or_(
                inner.c.published < when, and_(inner.c.published == when, inner.c.id < last))
            stmt = stmt.where(or_(inner.c.score < score, and_(inner.c.score == score, tie)))
        order = (inner.c.score.desc(), inner.c.published.desc(), inner.c.id.desc())
        if words or not per_variant:
            stmt = stmt.order_by(*order).limit(size + 1)
        else:
            # A listing (no words) with per-variant filters: walk it in order and test the filter
            # on the ordered rows until the page is full: availability (a subquery per variant) is
            # computed for about a page of rows, not for every product. ``OFFSET 0`` keeps the
            # ordered subquery whole (PostgreSQL neither flattens it nor pushes the filter under
            # its sort, and reads its order as the outer ORDER BY's); it skips nothing.
            ranked = stmt.order_by(*order).offset(literal_column("0")).subquery("matched")
            variant = self._variant_filter(filters, ranked.c.id)
            stmt = (select(ranked.c.id, ranked.c.published, ranked.c.score).where(variant)
                    .order_by(ranked.c.score.desc(), ranked.c.published.desc(), ranked.c.id.desc())
                    .limit(size + 1))
        return self._page(list((await self.session.execute(stmt, params)).all()), size, words)

    @staticmethod
    def _page(rows: list[Any], size: int, words: Sequence[str]) -> SearchPage:
        """The page from ``size + 1`` rows (one more than shown: whether there is a next page)."""
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



