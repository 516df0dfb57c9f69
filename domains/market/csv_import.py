"""Bulk import of products from CSV, one row per variant, as a durable job (issue 16 item 7).

The header is fixed and documented (:data:`HEADER`; the template at
``/market/admin/import/template.csv`` has it with example rows):

``product_slug``  the product the row's variant belongs to (rows with the same slug are one
                  product); a new slug creates the product, an existing one of this producer adds
                  to or updates it
``title``         the product's title: required on the first row of a new product
``description``   Markdown (rendered and sanitised like every description)
``sku``           required, unique across the market: an existing SKU of this producer is
                  **updated** (price, compare-at, options, stock), a new one **created**
``options``       ``name=value`` pairs separated by ``;`` (``size=M;colour=red``); empty for a
                  product with one variant
``price``         the price as people write it, in major units (``12.50``, ``1500`` for JPY)
``currency``      empty or the market's currency (``ROSE_ASH_MARKET_CURRENCY``)
``compare_at``    an optional "was" price, like ``price``
``stock``         on hand at the default location (a whole number; empty keeps what is there)
``category``      an existing category's slug (optional)
``tags``          ``;``-separated (optional)
``status``        ``draft`` (default), ``active`` or ``archived``

A file with another header is refused at upload, before anything is stored. The upload is stored
in ``DATA_DIR/market/imports/`` and a :data:`CSV_IMPORT` job reads it as a stream, in chunks of
:data:`CHUNK` rows, one transaction per chunk that writes the chunk's products, variants and
stock **and** the import's progress: a worker that dies mid-file resumes after the last committed
chunk, and no row is applied twice. Bad rows are skipped with their reason; good rows are kept.
Each row gets one line in the report file (``<id>.report.csv``: row, sku, outcome, reason),
written before its chunk commits and cut back to the committed count on resume.

Rows are applied in bulk: one query each for the chunk's SKUs, slugs and option combinations;
updates of existing products and variants through the ORM (the search index follows every
product flush); new products, their search documents, variants and stock as one bulk write per
table (a binary ``COPY`` on PostgreSQL, an executemany INSERT on SQLite: :func:`bulk_insert`).
Each chunk writes one product-event job per subscriber for all its products (a
``ProductEvents`` batch, domains/market/events.py) and one purge (a second, hard one for
products that stopped being public), not one per row.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import AsyncIterator, Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any, Final, cast
from uuid import UUID

import anyio.to_thread
import msgspec
from sqlalchemy import Table, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload
from uuid_utils.compat import uuid7  # the ORM's id scheme (advanced-alchemy's UUIDv7 primary keys)

from app.csvsafe import csv_row
from domains.market.import_models import DONE, FAILED, QUEUED, RUNNING, CsvImport

__all__ = [
    "CHUNK",
    "CSV_IMPORT",
    "HEADER",
    "CsvImport",
    "CsvProgress",
    "CsvRefused",
    "check_header",
    "import_dir",
    "run_import",
    "store_upload",
    "template_csv",
]

log = logging.getLogger("rose_ash.market.csv")

HEADER: Final = ("product_slug", "title", "description", "sku", "options", "price", "currency", "compare_at",
                 "stock", "category", "tags", "status")
CSV_IMPORT: Final = "market.csv-import"
CHUNK = 500  # rows per transaction (read at call time, so tests can make it small)
MAX_UPLOAD_BYTES = 64 * 1024 * 1024
MAX_FIELD = 100_000  # characters in one cell (a long description)
REPORT_FIELDS = ("row", "sku", "outcome", "reason")


class CsvProgress(msgspec.Struct, kw_only=True):
    """The progress endpoint's JSON (``Accept: application/json``)."""

    id: UUID
    state: str
    total_rows: int
    processed_rows: int
    created: int
    updated: int
    skipped: int
    percent: int
    error: str

    @classmethod
    def of(cls, run: CsvImport) -> CsvProgress:
        return cls(id=run.id, state=run.state, total_rows=run.total_rows, processed_rows=run.processed_rows,
                   created=run.created_count, updated=run.updated_count, skipped=run.skipped_count,
                   percent=run.percent, error=run.error)


class CsvImportJob(msgspec.Struct, frozen=True, kw_only=True):
    import_id: UUID


class CsvRefused(Exception):
    """The file cannot be imported at all (wrong header, not UTF-8 text); nothing was stored."""


# --- the file ---------------------------------------------------------------------------------

def template_csv(currency: str = "EUR") -> str:
    """The downloadable template: the header and rows showing each column in use."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADER)
    writer.writerow(["apple-juice", "Apple juice", "Cold-pressed from **our own** apples.", "JUICE-75", "size=75cl",
                     "4.50", currency, "", "24", "", "juice;drinks", "active"])
    writer.writerow(["apple-juice", "", "", "JUICE-3L", "size=3 litre", "15.00", currency, "18.00", "6", "", "",
                     "active"])
    writer.writerow(["oat-loaf", "Oat loaf", "", "LOAF-OAT", "", "3.20", "", "", "", "", "bread", "draft"])
    return out.getvalue()


def import_dir(data_dir: Path) -> Path:
    return data_dir / "market" / "imports"


def upload_path(data_dir: Path, import_id: UUID) -> Path:
    return import_dir(data_dir) / f"{import_id}.csv"


def report_path(data_dir: Path, import_id: UUID) -> Path:
    return import_dir(data_dir) / f"{import_id}.report.csv"


def check_header(first_bytes: bytes) -> None:
    """Refuse a file whose first record is not exactly :data:`HEADER` (a BOM is allowed)."""
    try:
        text = first_bytes.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if exc.start < len(first_bytes) - 4:  # not just a character cut at the end of the sample
            raise CsvRefused("The file is not UTF-8 text. Save it from your spreadsheet as “CSV UTF-8”.") from None
        text = first_bytes[: exc.start].decode("utf-8-sig")
    line = text.splitlines()[0] if text.strip() else ""
    try:
        header = next(csv.reader([line]), [])
    except csv.Error:
        header = []
    found = tuple(h.strip().lower() for h in header)
    if found != HEADER:
        shown = ",".join(header)[:200] or "nothing"
        raise CsvRefused(f"The first line must be the header {','.join(HEADER)} (download the template); "
                         f"this file starts with {shown}. Nothing was imported.")


async def store_upload(data_dir: Path, import_id: UUID, chunks: AsyncIterator[bytes]) -> int:
    """Write the upload to ``DATA_DIR/market/imports/<id>.csv`` (checking its header first);
    returns its size. ``chunks`` is an async iterator of bytes. Refused: nothing is left behind."""
    target = upload_path(data_dir, import_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    size = 0
    checked = False
    head = b""
    try:
        with partial.open("wb") as out:
            async for chunk in chunks:
                size += len(chunk)
                if size > MAX_UPLOAD_BYTES:
                    raise CsvRefused(f"The file is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB. Split it.")
                if not checked:
                    head += chunk
                    if b"\n" in head or len(head) > 8192:
                        check_header(head[:8192])
                        checked = True
                out.write(chunk)
        if not checked:
            check_header(head)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return size


@contextmanager
def _field_limit() -> Iterator[None]:
    """Python's csv refuses cells over ``field_size_limit()`` (131,072 by default) with csv.Error.
    While this file's reader parses, the limit is MAX_FIELD + 1: a longer cell fails fast (without
    buffering it) and becomes that row's skip reason. The process-wide limit is put back after
    each record, so other CSV readers keep theirs."""
    old = csv.field_size_limit(MAX_FIELD + 1)
    try:
        yield
    finally:
        csv.field_size_limit(old)


def _records(path: Path) -> Generator[Record]:
    """The upload's records after the header; a record csv cannot parse is a :class:`BadRow`
    (skipped with its reason) instead of an error that stops the whole import."""
    with path.open("r", encoding="utf-8-sig", newline="", errors="replace") as f:
        reader = csv.reader(f)
        try:
            with _field_limit():
                next(reader, None)  # the header, checked at upload
        except csv.Error:
            pass
        while True:
            try:
                with _field_limit():
                    record = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:  # the reader has consumed the bad line: it goes on after it
                yield BadRow(f"a field is longer than {MAX_FIELD} characters" if "field limit" in str(exc)
                             else f"it is not valid CSV ({exc})")
                continue
            yield record


def count_rows(path: Path) -> int:
    """Blocking (up to MAX_UPLOAD_BYTES of parsing): call it in a worker thread."""
    return sum(1 for _ in _records(path))


def _take(records: Iterator[Record], n: int) -> list[Record]:
    return list(islice(records, n))


# --- one row ----------------------------------------------------------------------------------

@dataclass
class Row:
    number: int  # 2 for the first data row (the header is line 1), as a spreadsheet shows it
    product_slug: str
    title: str
    description: str
    sku: str
    options: dict[str, str]
    price: int
    compare_at: int | None
    stock: int | None
    category: str
    tags: list[str]
    status: str


class BadRow(ValueError):
    pass


Record = list[str] | BadRow  # a parsed CSV record, or why it could not be parsed


def _options(text: str) -> dict[str, str]:
    options: dict[str, str] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        name, eq, value = part.partition("=")
        name, value = " ".join(name.split()), " ".join(value.split())
        if not eq or not name or not value:
            raise BadRow(f"options must be name=value pairs separated by ; (got “{part.strip()[:60]}”)")
        if name.casefold() in {k.casefold() for k in options}:
            raise BadRow(f"the option “{name[:40]}” is given twice")
        if len(name) > 60 or len(value) > 100:
            raise BadRow("an option name or value is too long")
        options[name] = value
    return options


def parse_row(number: int, record: list[str], currency: str) -> Row:
    """One record as a :class:`Row`, or :class:`BadRow` with the reason for the report."""
    from app.money import parse_major
    from domains.market.schemas import (
        MAX_OPTIONS,
        MAX_PRICE_MINOR,
        MAX_STOCK,
        MAX_TITLE,
        RESERVED_SLUGS,
        SKU_RE,
        SLUG_RE,
    )

    if len(record) != len(HEADER):
        raise BadRow(f"it has {len(record)} fields, not {len(HEADER)}")
    if any(len(cell) > MAX_FIELD for cell in record):
        raise BadRow(f"a field is longer than {MAX_FIELD} characters")
    if any("\x00" in cell for cell in record):
        raise BadRow("it contains a NUL character")
    values = dict(zip(HEADER, (cell.strip() for cell in record), strict=True))
    slug = values["product_slug"].lower()
    if not SLUG_RE.match(slug) or slug in RESERVED_SLUGS:
        raise BadRow(f"product_slug “{slug[:60]}” must be lowercase letters, digits and hyphens"
                     + (" (and not a reserved word)" if slug in RESERVED_SLUGS else ""))
    sku = values["sku"]
    if not SKU_RE.match(sku):
        raise BadRow("sku is required: letters, digits, . _ / - (at most 64)" if not sku
                     else f"sku “{sku[:70]}” may hold only letters, digits and . _ / - (at most 64)")
    given = values["currency"].upper()
    if given and given != currency:
        raise BadRow(f"currency {given[:10]} is not the market's currency ({currency})")

    def money(name: str) -> int | None:
        text = values[name]
        if not text:
            return None
        try:
            amount = parse_major(text, currency)
        except ValueError:
            raise BadRow(f"{name} “{text[:30]}” is not an amount like 12.50 (no currency sign, no minus)") from None
        if amount > MAX_PRICE_MINOR:
            raise BadRow(f"{name} {text[:30]} is too large")
        return amount

    price = money("price")
    if price is None:
        raise BadRow("price is required")
    stock: int | None = None
    if values["stock"]:
        text = values["stock"]
        if not text.isdigit() or not text.isascii():
            raise BadRow(f"stock “{text[:30]}” must be a whole number, 0 or more")
        stock = int(text)
        if stock > MAX_STOCK:
            raise BadRow("stock is too large")
    status = values["status"].lower() or "draft"
    if status not in ("draft", "active", "archived"):
        raise BadRow(f"status “{status[:20]}” must be draft, active or archived")
    options = _options(values["options"])
    if len(options) > MAX_OPTIONS:
        raise BadRow(f"at most {MAX_OPTIONS} options per variant")
    title = " ".join(values["title"].split())
    if len(title) > MAX_TITLE:
        raise BadRow(f"title is longer than {MAX_TITLE} characters")
    tags = list(dict.fromkeys(t for t in (" ".join(t.split()) for t in values["tags"].split(";")) if t))
    return Row(number=number, product_slug=slug, title=title, description=values["description"], sku=sku,
               options=options, price=price, compare_at=money("compare_at"), stock=stock,
               category=values["category"].lower(), tags=tags, status=status)


# --- applying a chunk -------------------------------------------------------------------------

@dataclass
class ChunkResult:
    created: int = 0
    updated: int = 0
    skipped: int = 0
    lines: list[tuple[int, str, str, str]] = field(default_factory=list)

    def note(self, number: int, sku: str, outcome: str, reason: str = "") -> None:
        self.lines.append((number, sku, outcome, reason))
        if outcome == "created":
            self.created += 1
        elif outcome == "updated":
            self.updated += 1
        else:
            self.skipped += 1


@dataclass
class ImportContext:
    owner_id: UUID
    producer_id: UUID
    is_staff: bool
    currency: str
    base_url: str
    location_id: UUID
    categories: dict[str, UUID]  # slug -> category id


def _table(model: Any) -> Table:
    """A model's table, for Core bulk INSERTs (no ORM bookkeeping per row)."""
    return cast(Table, model.__table__)


async def bulk_insert(session: AsyncSession, model: Any, rows: list[dict[str, Any]]) -> None:
    """INSERT ``rows`` (dicts with the same keys) into ``model``'s table in this transaction.

    On PostgreSQL through asyncpg, a binary ``COPY`` on the session's connection (the same
    transaction): the server neither parses nor plans a statement of thousands of parameters, and
    the values go through the columns' own bind processors, so they are what an INSERT would
    send. Python-side column defaults (``created_at``, ...) are filled in as an INSERT would.
    Elsewhere (SQLite) one executemany INSERT.
    """
    if not rows:
        return
    from sqlalchemy import insert
    from sqlalchemy.sql import sqltypes

    table = _table(model)
    conn = await session.connection()
    dialect = conn.dialect
    if dialect.name != "postgresql" or dialect.driver != "asyncpg":
        await session.execute(insert(table), rows)
        return
    await session.flush()  # what the ORM holds goes first, as the INSERT's autoflush would do
    given = list(rows[0])
    defaulted = [c for c in table.columns if c.key not in rows[0] and c.default is not None and not c.computed]
    columns = [table.c[k] for k in given] + defaulted
    # asyncpg's binary codecs take UUIDs, aware datetimes, str, int and bool as they are (the GUID and
    # UTC types' bind processors only turn UUIDs into text for it to parse back); JSON is serialised.
    processors = [c.type.dialect_impl(dialect).bind_processor(dialect)
                  if isinstance(c.type.dialect_impl(dialect), sqltypes.JSON) else None for c in columns]
    makers = [cast(Any, c.default) for c in defaulted]
    records: list[tuple[Any, ...]] = []
    for row in rows:
        values = [row[k] for k in given]
        values += [d.arg(None) if d.is_callable else d.arg for d in makers]
        records.append(tuple(v if f is None or v is None else f(v)
                             for f, v in zip(processors, values, strict=True)))
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    await driver.copy_records_to_table(table.name, columns=[c.name for c in columns], records=records,
                                       schema_name=table.schema)


@dataclass
class NewProduct:
    """A product this chunk creates: written with one bulk INSERT per table, not through the ORM
    (its per-object bookkeeping cost more than the database did)."""

    id: UUID
    slug: str
    title: str
    status: str
    producer_id: UUID
    description_md: str
    tags: list[str]
    published_at: datetime | None
    category_ids: list[UUID] = field(default_factory=list)
    revision: int = 1


async def apply_chunk(session: AsyncSession, ctx: ImportContext,
                      numbered: Sequence[tuple[int, Record]]) -> ChunkResult:
    """Apply one chunk of records in ``session``'s transaction (the caller commits).

    Existing products and variants (updates by SKU) change through the ORM; new ones are bulk
    INSERTs, with their search documents written beside them (the search index's flush listener
    sees only ORM objects). Purges and product events are those the catalogue writes.
    """
    from app.markdown import render_key, render_markdown
    from domains.market import events, keys
    from domains.market.models import ACTIVE, Product, ProductCategory, StockLevel, Variant
    from domains.market.schemas import ProductEvent, options_key
    from domains.market.search import document_of
    from domains.market.search_models import SearchDocument
    from fragments.purge import emit_purge

    result = ChunkResult()
    if session.get_bind().dialect.name == "postgresql":
        # The chunk's lookups (SKUs and slugs IN the chunk's) are prepared statements that the server
        # would plan once, generically, while the tables were still small (a sequential scan), and keep
        # as they grow: every chunk then scans every row written before it. Plan them per execution.
        await session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
    rows: list[Row] = []
    for number, record in numbered:
        if isinstance(record, BadRow):
            result.note(number, "", "skipped", str(record))
            continue
        try:
            rows.append(parse_row(number, record, ctx.currency))
        except BadRow as exc:
            result.note(number, record[3].strip()[:64] if len(record) > 3 else "", "skipped", str(exc))
    skus = {r.sku for r in rows}
    slugs = {r.product_slug for r in rows}
    existing_variants = {v.sku: v for v in (await session.scalars(
        select(Variant).where(Variant.sku.in_(skus)).options(
            selectinload(Variant.product).selectinload(Product.category_links),
            selectinload(Variant.stock_levels)))).all()} if skus else {}
    products: dict[str, Product | NewProduct] = {p.slug: p for p in (await session.scalars(
        select(Product).where(Product.slug.in_(slugs)).options(selectinload(Product.category_links)))).all()} \
        if slugs else {}
    for known in existing_variants.values():
        products.setdefault(known.product.slug, known.product)
    product_ids = [p.id for p in products.values()]
    taken_options: dict[UUID, dict[str, str]] = {}  # product id -> options_key -> sku
    positions: dict[UUID, int] = {}
    if product_ids:
        for pid, okey, sku, position in (await session.execute(
                select(Variant.product_id, Variant.options_key, Variant.sku, Variant.position)
                .where(Variant.product_id.in_(product_ids)))).all():
            taken_options.setdefault(pid, {})[okey] = sku
            positions[pid] = max(positions.get(pid, -1), position)
    now = datetime.now(UTC)
    created: dict[UUID, NewProduct] = {}
    new_variants: list[dict[str, Any]] = []
    new_levels: list[dict[str, Any]] = []
    new_variant_skus: set[str] = set()
    touched: dict[UUID, tuple[Product | NewProduct, bool]] = {}  # product id -> (product, was public before)

    for row in rows:
        variant = existing_variants.get(row.sku)
        product = products.get(row.product_slug)
        if variant is not None:
            owner = variant.product
            if owner.producer_id != ctx.producer_id and not ctx.is_staff:
                result.note(row.number, row.sku, "skipped", f"SKU {row.sku} is already taken")
                continue
            if owner.slug != row.product_slug:
                result.note(row.number, row.sku, "skipped",
                            f"SKU {row.sku} is a variant of “{owner.slug}”, not “{row.product_slug}”")
                continue
            product = owner
        elif row.sku in new_variant_skus:
            result.note(row.number, row.sku, "skipped", f"SKU {row.sku} is already a row earlier in this file")
            continue
        elif product is not None and product.producer_id != ctx.producer_id and not ctx.is_staff:
            result.note(row.number, row.sku, "skipped", f"the product slug “{row.product_slug}” is already taken: "
                                                        f"choose another, e.g. {row.product_slug}-2")
            continue
        if row.category and row.category not in ctx.categories:
            result.note(row.number, row.sku, "skipped", f"there is no category “{row.category[:60]}”")
            continue
        okey = options_key(row.options)
        if product is None:
            if not row.title:
                result.note(row.number, row.sku, "skipped", "title is required for a new product")
                continue
            product = NewProduct(id=uuid7(), slug=row.product_slug, title=row.title, status=row.status,
                                 producer_id=ctx.producer_id, description_md=row.description, tags=row.tags,
                                 published_at=now if row.status == ACTIVE else None)
            products[row.product_slug] = product
            created[product.id] = product
            taken_options[product.id] = {}
            positions[product.id] = -1
        # options must stay unique per product (another SKU may hold them already)
        holder = taken_options.setdefault(product.id, {}).get(okey)
        if holder is not None and holder != row.sku:
            result.note(row.number, row.sku, "skipped",
                        f"its options ({'; '.join(f'{k}={v}' for k, v in row.options.items()) or 'none'}) repeat "
                        f"those of SKU {holder}")
            continue
        if variant is not None and row.stock is not None:
            level = next((lv for lv in variant.stock_levels if lv.location_id == ctx.location_id), None)
            if level is not None and row.stock < level.allocated:
                result.note(row.number, row.sku, "skipped", f"stock {row.stock} is below what is already allocated "
                                                            f"to orders ({level.allocated})")
                continue
        if product.id not in touched:
            touched[product.id] = (product, product.status == ACTIVE and product.id not in created)
        if row.category:
            category_id = ctx.categories[row.category]
            if isinstance(product, NewProduct):
                if category_id not in product.category_ids:
                    product.category_ids.append(category_id)
            elif all(link.category_id != category_id for link in product.category_links):
                product.category_links.append(ProductCategory(id=uuid7(), category_id=category_id,
                                                              product_id=product.id))
        if isinstance(product, Product):  # product fields given on a row update an existing product
            if row.title and row.title != product.title:
                product.title = row.title
            if row.description and row.description != product.description_md:
                product.description_md = row.description
                product.description_html = render_markdown(row.description)
                product.description_key = render_key(row.description)
            if row.tags and row.tags != product.tags:
                product.tags = row.tags
            if row.title and row.status != product.status:  # a row that names the product may move its status
                product.status = row.status
                if row.status == ACTIVE and product.published_at is None:
                    product.published_at = now
        if variant is None:
            positions[product.id] = positions.get(product.id, -1) + 1
            variant_id = uuid7()
            new_variants.append({
                "id": variant_id, "product_id": product.id, "sku": row.sku, "options": row.options,
                "options_key": okey, "position": positions[product.id], "price_minor": row.price,
                "currency": ctx.currency, "compare_at_minor": row.compare_at, "weight_grams": None, "barcode": "",
                "low_stock_threshold": 0})
            new_levels.append({"id": uuid7(), "variant_id": variant_id, "location_id": ctx.location_id,
                               "on_hand": row.stock or 0, "allocated": 0})
            new_variant_skus.add(row.sku)
            taken_options[product.id][okey] = row.sku
            result.note(row.number, row.sku, "created")
            continue
        if variant.options_key != okey:
            taken_options[product.id].pop(variant.options_key, None)
            taken_options[product.id][okey] = row.sku
        variant.options, variant.options_key = row.options, okey
        variant.price_minor, variant.compare_at_minor = row.price, row.compare_at
        if row.stock is not None:
            level = next((lv for lv in variant.stock_levels if lv.location_id == ctx.location_id), None)
            if level is None:
                variant.stock_levels.append(StockLevel(id=uuid7(), location_id=ctx.location_id, on_hand=row.stock,
                                                       allocated=0))
            else:
                level.on_hand = row.stock
        result.note(row.number, row.sku, "updated")
    for product, _was_public in touched.values():
        if isinstance(product, Product):
            product.revision += 1
    if created:
        new = list(created.values())
        await bulk_insert(session, Product, [{
            "id": p.id, "title": p.title, "slug": p.slug, "producer_id": p.producer_id, "status": p.status,
            "featured": False, "published_at": p.published_at, "description_md": p.description_md,
            "description_html": render_markdown(p.description_md), "description_key": render_key(p.description_md),
            "tags": p.tags, "source_url": "", "revision": 1} for p in new])
        # A draft's time (None) is never ranked: publishing it rewrites its document.
        await bulk_insert(session, SearchDocument, [
            document_of(p.id, p.title, p.tags, p.description_md, active=p.status == ACTIVE,
                        published=p.published_at) for p in new])
        await bulk_insert(session, ProductCategory, [{"id": uuid7(), "product_id": p.id, "category_id": c}
                                                     for p in new for c in p.category_ids])
    await bulk_insert(session, Variant, new_variants)
    await bulk_insert(session, StockLevel, new_levels)
    await session.flush()
    purge: set[Any] = set()
    hidden: set[Any] = set()  # products that stopped being public: purged hard (their pages and images)
    changes: list[ProductEvent] = []
    for product, was_public in touched.values():
        is_public = product.status == ACTIVE
        if not (was_public or is_public):
            continue
        linked = set(product.category_ids) if isinstance(product, NewProduct) else {
            link.category_id for link in product.category_links}
        slugs_of = [slug for slug, cid in ctx.categories.items() if cid in linked]
        (hidden if was_public and not is_public else purge).update(
            keys.showing(product.id, product.producer_id, slugs_of))
        kind: Any = "updated" if was_public and is_public else "created" if is_public else "deleted"
        changes.append(ProductEvent(product_id=product.id, kind=kind, slug=product.slug, revision=product.revision,
                                    url=f"{ctx.base_url.rstrip('/')}/market/{product.slug}"))
    # The catalogue's events and purges, in this chunk's transaction, coalesced: one job per
    # subscriber for the chunk's product events (a ProductEvents batch), one purge job (two when
    # some product stopped being public: that one is hard).
    await events.emit_product_events(session, changes)
    if purge - hidden:
        await emit_purge(session, purge - hidden)
    if hidden:
        await emit_purge(session, hidden, hard=True)
    return result


# --- the job ----------------------------------------------------------------------------------

def _truncate_report(path: Path, keep: int) -> None:
    """Keep the header and the first ``keep`` report lines (a resumed run rewrites the rest)."""
    if not path.exists():
        with path.open("w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerow(REPORT_FIELDS)
        return
    with path.open("r", newline="", encoding="utf-8") as f:
        lines = list(csv.reader(f))[: keep + 1]
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(lines or [REPORT_FIELDS])


async def run_import(sessionmaker: async_sessionmaker[AsyncSession], data_dir: Path, import_id: UUID, *,
                     currency: str, base_url: str) -> CsvImport | None:
    """Run (or resume) import ``import_id`` to the end; returns its final row."""
    from domains.account.models import User
    from domains.market.models import Category
    from domains.market.services import ProducerService, default_location

    async with sessionmaker() as session, session.begin():
        run = await session.get(CsvImport, import_id)
        if run is None or run.finished:
            return run
        owner = await session.get(User, run.owner_id)
        path = upload_path(data_dir, import_id)
        if owner is None or not owner.can_sell or not path.exists():
            run.state, run.error, run.finished_at = FAILED, (
                "The uploaded file is gone." if owner is not None and owner.can_sell and not path.exists()
                else "Only producers may import products."), datetime.now(UTC)
            return run
        producer = await ProducerService(session, base_url=base_url).own(owner)
        location = await default_location(session)
        categories = {slug: cid for slug, cid in (await session.execute(select(Category.slug, Category.id))).all()}
        ctx = ImportContext(owner_id=owner.id, producer_id=producer.id, is_staff=owner.is_admin, currency=currency,
                            base_url=base_url, location_id=location.id, categories=categories)
        if run.state == QUEUED or not run.total_rows:
            run.total_rows = await anyio.to_thread.run_sync(count_rows, path)  # not on the event loop
        run.state = RUNNING
        done_rows = run.processed_rows
    report = report_path(data_dir, import_id)
    _truncate_report(report, done_rows)
    chunk: list[tuple[int, Record]] = []
    number = 1
    records = _records(path)
    try:
        # Parsing happens in a worker thread, a batch at a time: never megabytes on the event loop.
        while batch := await anyio.to_thread.run_sync(_take, records, CHUNK):
            for record in batch:
                number += 1
                if number - 2 < done_rows:
                    continue  # applied by an earlier run of this job
                chunk.append((number, record))
                if len(chunk) >= CHUNK:
                    await _commit_chunk(sessionmaker, ctx, import_id, chunk, report)
                    chunk = []
    finally:
        records.close()
    if chunk:
        await _commit_chunk(sessionmaker, ctx, import_id, chunk, report)
    async with sessionmaker() as session, session.begin():
        run = await session.get(CsvImport, import_id)
        assert run is not None
        run.state, run.finished_at = DONE, datetime.now(UTC)
    return run


async def _commit_chunk(sessionmaker: async_sessionmaker[AsyncSession], ctx: ImportContext, import_id: UUID,
                        chunk: list[tuple[int, Record]], report: Path) -> None:
    async with sessionmaker() as session, session.begin():
        result = await apply_chunk(session, ctx, chunk)
        run = await session.get(CsvImport, import_id, with_for_update=True)
        assert run is not None
        run.processed_rows += len(chunk)
        run.created_count += result.created
        run.updated_count += result.updated
        run.skipped_count += result.skipped
        # The report lines go out before the commit: a crash now leaves extra lines that the
        # resumed run cuts back to ``processed_rows``; never a committed row without its line.
        with report.open("a", newline="", encoding="utf-8") as f:
            # SKUs and reasons quote the uploaded cells: escaped, or the report runs them as formulas.
            csv.writer(f).writerows(csv_row(line) for line in sorted(result.lines))


def read_report(data_dir: Path, import_id: UUID, *, outcome: str = "", limit: int = 1000) -> list[list[str]]:
    """The report's lines (optionally only one outcome), at most ``limit`` of them."""
    path = report_path(data_dir, import_id)
    if not path.exists():
        return []
    found: list[list[str]] = []
    with path.open("r", newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        next(reader, None)
        for line in reader:
            if not outcome or (len(line) > 2 and line[2] == outcome):
                found.append(line)
                if len(found) >= limit:
                    break
    return found
