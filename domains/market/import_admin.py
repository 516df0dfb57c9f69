"""The import pages under ``/market/admin/import`` (producers and staff): listing import from a URL
with a review form, and CSV bulk import with its progress and report.

Every action is a real form: the URL form answers with the review form (200) or the reason it
was refused (422); saving answers 303 to the product, or 422 with the form and what to fix, and
writes nothing then. The CSV upload answers 303 to the import's page, whose progress bar updates
through htmx polling (``hx-trigger="every 1s"``) and, without JavaScript, through a plain reload.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

from litestar import Controller, MediaType, Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.exceptions import NotFoundException
from litestar.response import File, Template
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from uuid_utils.compat import uuid7  # the ORM's id scheme (advanced-alchemy's UUIDv7 primary keys)

from app.forms import InputProblems, form_data, is_htmx, see_other
from app.responses import PRIVATE
from app.safe_http import SafeClient
from app.settings import Settings
from domains.account.models import User
from domains.market.csv_import import (
    HEADER,
    MAX_UPLOAD_BYTES,
    REPORT_FIELDS,
    CsvImportJob,
    CsvProgress,
    CsvRefused,
    read_report,
    report_path,
    store_upload,
    template_csv,
)
from domains.market.import_models import CsvImport
from domains.market.importer import ImportRefused, Proposal, fetch_image, fetch_proposal
from domains.market.jobs import csv_import_job

__all__ = ["import_handlers", "save_proposal"]

MAX_FORM_VARIANTS = 100


def _options_text(options: dict[str, str]) -> str:
    return "; ".join(f"{k}={v}" for k, v in options.items())


def _money_text(amount: int | None, currency: str) -> str:
    from app.money import CURRENCY_EXPONENTS

    if amount is None:
        return ""
    exp = CURRENCY_EXPONENTS.get(currency, 2)
    whole, frac = divmod(amount, 10 ** exp)
    return f"{whole}.{frac:0{exp}d}" if exp else str(whole)


def proposal_values(proposal: Proposal, currency: str) -> dict[str, Any]:
    """The review form's values from a proposal (what the producer then edits)."""
    warnings = list(proposal.warnings)
    variants = []
    for v in proposal.variants:
        price = _money_text(v.price, currency) if v.currency in ("", currency) else ""
        if v.currency and v.currency != currency:
            warnings.append(f"{v.sku or 'A variant'} is priced in {v.currency} on that page; the market sells in "
                            f"{currency}: enter its price.")
        variants.append({"sku": v.sku, "options": _options_text(v.options), "price": price,
                         "compare_at": _money_text(v.compare_at, currency) if v.currency == currency else "",
                         "barcode": v.gtin, "stock": ""})
    if not variants:
        variants.append({"sku": "", "options": "", "price": "", "compare_at": "", "barcode": "", "stock": ""})
    return {"source_url": proposal.source_url, "title": proposal.title, "description": proposal.description,
            "brand": proposal.brand, "images": list(proposal.images), "chosen_images": list(proposal.images),
            "variants": variants, "status": "draft", "warnings": warnings, "found_in": proposal.found_in}


def _form_values(data: dict[str, Any]) -> dict[str, Any]:
    """The review form as submitted, in the shape :func:`proposal_values` makes."""
    def one(name: str) -> str:
        value = data.get(name, "")
        return str(value[0] if isinstance(value, list) else value).strip()

    def many(name: str) -> list[str]:
        value = data.get(name, [])
        return [str(v) for v in (value if isinstance(value, list) else [value]) if str(v).strip()]

    try:
        count = min(int(one("variant_count") or "0"), MAX_FORM_VARIANTS)
    except ValueError:
        count = 0
    variants = [{name: one(f"v{i}_{name}") for name in ("sku", "options", "price", "compare_at", "barcode", "stock")}
                for i in range(count)]
    variants = [v for v in variants if any(v.values())]
    return {"source_url": one("source_url"), "title": one("title"), "description": one("description"),
            "brand": one("brand"), "images": many("offered_images")[:20], "chosen_images": many("images")[:20],
            "variants": variants, "status": one("status") or "draft", "warnings": [], "found_in": one("found_in")}


def _parse_options(text: str) -> dict[str, str]:
    options: dict[str, str] = {}
    for part in re.split(r"[;\n]", text):
        if not part.strip():
            continue
        name, eq, value = part.partition("=")
        if not eq or not name.strip() or not value.strip():
            raise ValueError(part.strip())
        options[" ".join(name.split())] = " ".join(value.split())
    return options


async def save_proposal(session: AsyncSession, settings: Settings, client: SafeClient, editor: User | None,
                        owner: User, values: dict[str, Any]) -> Any:
    """Save a reviewed draft: fetch and store its chosen images, then the product, its variants
    and stock, in the caller's transaction. :class:`InputProblems` (nothing saved) when refused.

    ``editor`` None is the system (the CLI); ``owner`` is whose producer the product joins. A
    product of that producer imported earlier from the same URL is updated, not duplicated.
    """
    from app.money import parse_major
    from domains.market.models import Product
    from domains.market.schemas import ProductInput, StockAdjust, VariantInput
    from domains.market.services import CatalogueService, MediaService, ProducerService

    currency = settings.market_currency
    errors: dict[str, str] = {}
    variants: list[VariantInput] = []
    stock: dict[str, int] = {}
    for i, row in enumerate(values["variants"]):
        label = row["sku"] or f"variant {i + 1}"
        try:
            options = _parse_options(row["options"])
        except ValueError as exc:
            errors[f"v{i}_options"] = f"{label}: write options as name=value; name=value (not “{str(exc)[:40]}”)."
            continue
        try:
            price = parse_major(row["price"], currency)
        except ValueError:
            errors[f"v{i}_price"] = f"{label}: enter a price like 12.50 in {currency}."
            continue
        compare_at = None
        if row["compare_at"]:
            try:
                compare_at = parse_major(row["compare_at"], currency)
            except ValueError:
                errors[f"v{i}_compare_at"] = f"{label}: the compare-at price must look like 12.50."
                continue
        if row["stock"]:
            if not row["stock"].isdigit():
                errors[f"v{i}_stock"] = f"{label}: stock is a whole number, 0 or more."
                continue
            stock[row["sku"]] = int(row["stock"])
        variants.append(VariantInput(sku=row["sku"], price_minor=price, options=options, compare_at_minor=compare_at,
                                     barcode=row["barcode"][:64]))
    if not values["variants"]:
        errors["variants"] = "A product needs at least one variant with a SKU and a price."
    if errors:
        raise InputProblems(errors)
    producer = await ProducerService(session, base_url=settings.base_url).own(owner)
    existing = None
    if values["source_url"]:
        existing = (await session.scalars(select(Product).where(
            Product.source_url == values["source_url"], Product.producer_id == producer.id).limit(1))).first()
    catalogue = CatalogueService(session, base_url=settings.base_url, currency=currency,
                                 vat_rates=settings.cart_vat_rates)
    if existing is not None:
        existing = await catalogue.get(existing.id)
    if existing is not None:
        by_sku = {v.sku: v.id for v in existing.variants}
        for v in variants:
            v.id = by_sku.get(v.sku)
    # Images first: a photo that cannot be fetched or is not an image stops the save before
    # anything is written (the person unticks it and saves again).
    fetched: list[tuple[str, bytes, str]] = []
    for url in values["chosen_images"]:
        try:
            body, ctype = await fetch_image(client, url)
        except ImportRefused as exc:
            raise InputProblems({"images": f"{exc} Untick it to save without it."}) from None
        fetched.append((url, body, ctype))
    media_service = MediaService(session, settings.data_dir)
    stored = []
    for url, body, ctype in fetched:
        try:
            stored.append(await media_service.store(body, filename=url.rsplit("/", 1)[-1].split("?")[0],
                                                    content_type=ctype, uploaded_by=owner.id))
        except InputProblems as exc:
            raise InputProblems({"images": f"{url}: {'; '.join(exc.errors.values())} Untick it to save without it."},
                                exc.status) from None
    tags = [values["brand"]] if values["brand"] else []
    data = ProductInput(title=values["title"], variants=variants, description_md=values["description"],
                        status=values["status"] if values["status"] in ("draft", "active") else "draft",
                        tags=tags, producer_id=producer.id, source_url=values["source_url"])
    if existing is not None:
        data.slug = existing.slug
        data.category_ids = [link.category_id for link in existing.category_links]
    product = await catalogue.save(editor, data, product=existing)
    have = {image.media_id for image in product.images}
    for media in stored:
        if media.id not in have:
            have.add(media.id)
            await catalogue.add_image(editor, product, media, alt=values["title"][:200])
    for sku, on_hand in stock.items():
        await catalogue.adjust_stock(editor, StockAdjust(sku=sku, set=on_hand))
    return await catalogue.get(product.id)


def _review(values: dict[str, Any], errors: dict[str, str], status: int) -> Template:
    return Template("market/admin/import_review.html", context={"values": values, "errors": errors},
                    status_code=status)


async def _chunks(upload: UploadFile) -> AsyncIterator[bytes]:
    while chunk := await upload.read(1 << 20):
        yield chunk


class MarketImportController(Controller):
    # Producers and staff: declared where the market mounts it (domains/market/__init__.py).
    path = "/market/admin/import"
    cache_control = PRIVATE

    async def _runs(self, db_session: AsyncSession, user: User) -> list[CsvImport]:
        return list((await db_session.scalars(select(CsvImport).where(CsvImport.owner_id == user.id)
                                              .order_by(CsvImport.created_at.desc()).limit(10))).all())

    @get("/", name="market:import")
    async def index(self, request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings) -> Template:
        return Template("market/admin/import.html", context={
            "errors": {}, "url": "", "runs": await self._runs(db_session, request.user), "header": ",".join(HEADER),
            "currency": settings.market_currency})

    @get("/template.csv", name="market:import-template", media_type="text/csv")
    async def template(self, settings: Settings) -> Response[str]:
        return Response(template_csv(settings.market_currency), media_type="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="market-import-template.csv"'})

    @post("/url", status_code=200)
    async def from_url(self, request: Request[User, Any, Any], db_session: AsyncSession,
                       settings: Settings) -> Template:
        data = await form_data(request)
        url = str(data.get("url", "")).strip()
        try:
            async with SafeClient(allow_private=settings.federation_allow_private_addresses) as client:
                proposal = await fetch_proposal(client, url)
        except ImportRefused as exc:
            return Template("market/admin/import.html", status_code=422, context={
                "errors": {"url": f"{exc} Nothing was saved."}, "url": url[:2000],
                "runs": await self._runs(db_session, request.user), "header": ",".join(HEADER),
                "currency": settings.market_currency})
        return _review(proposal_values(proposal, settings.market_currency), {}, 200)

    @post("/save", status_code=303)
    async def save(self, request: Request[User, Any, Any], db_session: AsyncSession,
                   settings: Settings) -> Response[Any]:
        values = _form_values(await form_data(request))
        try:
            async with SafeClient(allow_private=settings.federation_allow_private_addresses) as client, \
                    db_session.begin_nested():
                product = await save_proposal(db_session, settings, client, request.user, request.user, values)
        except InputProblems as exc:
            return _review(values, exc.errors, exc.status if exc.status in (409, 413, 422) else 422)
        return see_other(f"/market/admin/products/{product.id}", request, "Imported. Check it and publish it.")

    @post("/csv", status_code=303, request_max_body_size=MAX_UPLOAD_BYTES + 64 * 1024)
    async def upload_csv(self, request: Request[User, Any, Any], db_session: AsyncSession,
                         settings: Settings) -> Response[Any]:
        upload = (await request.form()).get("file")
        import_id = uuid7()
        problem = ""
        if not isinstance(upload, UploadFile) or not upload.filename:
            problem = "Choose a CSV file to upload."
        else:
            try:
                await store_upload(settings.data_dir, import_id, _chunks(upload))
            except CsvRefused as exc:
                problem = str(exc)
        if problem:
            return Template("market/admin/import.html", status_code=422, context={
                "errors": {"file": problem}, "url": "", "runs": await self._runs(db_session, request.user),
                "header": ",".join(HEADER), "currency": settings.market_currency})
        assert isinstance(upload, UploadFile)
        db_session.add(CsvImport(id=import_id, owner_id=request.user.id, filename=upload.filename[:255]))
        await db_session.flush()
        await csv_import_job.enqueue(db_session, CsvImportJob(import_id=import_id))
        return see_other(f"/market/admin/import/csv/{import_id}", request, "Uploaded: the import has started.")

    async def _run(self, request: Request[User, Any, Any], db_session: AsyncSession, import_id: UUID) -> CsvImport:
        run = await db_session.get(CsvImport, import_id)
        if run is None or (run.owner_id != request.user.id and not request.user.is_admin):
            raise NotFoundException("No such import.")  # someone else's: as if absent
        return run

    @get("/csv/{import_id:uuid}", name="market:csv-import")
    async def csv_page(self, request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings,
                       import_id: UUID) -> Template:
        run = await self._run(request, db_session, import_id)
        skipped = read_report(settings.data_dir, import_id, outcome="skipped", limit=500) if run.finished else []
        return Template("market/admin/import_csv.html", context={"run": run, "skipped": skipped})

    @get("/csv/{import_id:uuid}/progress", name="market:csv-progress")
    async def csv_progress(self, request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings,
                           import_id: UUID) -> Response[Any]:
        run = await self._run(request, db_session, import_id)
        accept = request.headers.get("accept", "")
        if "application/json" in accept and not is_htmx(request):
            return Response(CsvProgress.of(run), media_type=MediaType.JSON, headers={"Cache-Control": "no-store"})
        skipped = read_report(settings.data_dir, import_id, outcome="skipped", limit=500) if run.finished else []
        return Template("market/admin/_import_progress.html", context={"run": run, "skipped": skipped},
                        headers={"Cache-Control": "no-store"})

    @get("/csv/{import_id:uuid}/report.csv", name="market:csv-report")
    async def csv_report(self, request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings,
                         import_id: UUID) -> Response[Any]:
        run = await self._run(request, db_session, import_id)
        path = report_path(settings.data_dir, run.id)
        name = f'attachment; filename="import-{run.id}-report.csv"'
        if not path.exists():  # not started yet: the report so far is its header
            return Response(",".join(REPORT_FIELDS) + "\r\n", media_type="text/csv",
                            headers={"Content-Disposition": name, "Cache-Control": "no-store"})
        return File(path=path, filename=f"import-{run.id}-report.csv", media_type="text/csv",
                    headers={"Cache-Control": "no-store"})


import_handlers = [MarketImportController]
