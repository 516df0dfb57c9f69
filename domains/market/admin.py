"""Producers' and staff's pages under ``/market/admin/``: products with variants, images and stock,
producer profiles, the low-stock list; staff add categories and stock locations.

Every action is a real ``<form method=post>`` (CSRF): 303 to the page that shows the result, or
422 with the form, what was typed and a message per field; the request's transaction rolls
back on a 422, so nothing partial is written. A producer reaching another producer's product or
profile gets 404 (domains/market/guards.py).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.exceptions import NotFoundException
from litestar.response import Template

from app import access
from app.forms import InputProblems, confirm_page, done, form_data, see_other
from app.money import format_minor, minor_exponent
from app.responses import PRIVATE
from domains.account.models import User
from domains.market.deps import dependencies
from domains.market.forms import VariantRow, option_columns, parse_product_form
from domains.market.guards import check_can_manage, check_producer, is_staff
from domains.market.models import STATUSES, Product
from domains.market.schemas import MAX_IMAGE_BYTES, MAX_OPTIONS, ProducerInput
from domains.market.services import (
    CatalogueService,
    MediaService,
    ProducerService,
    SkuTaken,
    SlugTaken,
    default_location,
    location_named,
)

__all__ = ["admin_handlers", "staff_handlers"]

# Uploads up to twice the image limit reach the handler, so a too-large image gets the form back
# with a clear message; larger bodies are refused by Litestar (413) before they are read.
UPLOAD_BODY_LIMIT = 2 * MAX_IMAGE_BYTES + 64 * 1024
PRODUCER_FIELDS = ("name", "slug", "description", "location", "contact")


def _money(amount: int | None, currency: str) -> str:
    """Minor units as the form shows them (``450`` → ``4.50``)."""
    if amount is None:
        return ""
    exp = minor_exponent(currency)
    whole, frac = divmod(amount, 10 ** exp)
    return f"{whole}.{frac:0{exp}d}" if exp else str(whole)


def _rows(product: Product | None) -> tuple[list[str], list[VariantRow]]:
    """The form's option names and variant rows for a saved product (one blank row for a new one)."""
    if product is None:
        return ["size", "", ""], [VariantRow()]
    names: list[str] = []
    for variant in product.variants:
        for name in variant.options:
            if name not in names:
                names.append(name)
    names = option_columns(names)
    rows = []
    for v in product.variants:
        row = VariantRow(id=str(v.id), sku=v.sku, price=_money(v.price_minor, v.currency),
                         compare_at=_money(v.compare_at_minor, v.currency),
                         weight="" if v.weight_grams is None else str(v.weight_grams), barcode=v.barcode,
                         threshold=str(v.low_stock_threshold))
        for j, name in enumerate(names):
            if name:
                row[f"o{j}"] = str(v.options.get(name, ""))
        rows.append(row)
    return names, rows


def _values(product: Product | None) -> dict[str, Any]:
    if product is None:
        return {"title": "", "slug": "", "description_md": "", "status": "draft", "featured": False, "tags": "",
                "categories": [], "tax_class": ""}
    return {"title": product.title, "slug": product.slug, "description_md": product.description_md,
            "status": product.status, "featured": product.featured, "tags": ", ".join(product.tags or []),
            "categories": [str(c.id) for c in product.categories], "tax_class": product.tax_class}


async def _editor(catalogue: CatalogueService, product: Product | None, *, values: dict[str, Any] | None = None,
                  option_names: list[str] | None = None, rows: list[VariantRow] | None = None,
                  errors: dict[str, str] | None = None, status: int = 200, image_errors: dict[str, str] | None = None,
                  stock_errors: dict[str, str] | None = None, suggestion: str = "") -> Template:
    names, saved_rows = _rows(product)
    stock: dict[UUID, Any] = {}
    available: dict[UUID, int] = {}
    if product is not None:
        stock = await catalogue.stock_levels(product)
        available = await catalogue.availability([v.id for v in product.variants])
    return Template("market/admin/edit.html", status_code=status, context={
        "product": product, "values": values if values is not None else _values(product),
        "option_names": option_names if option_names is not None else names,
        "rows": rows if rows is not None else saved_rows, "errors": errors or {},
        "image_errors": image_errors or {}, "stock_errors": stock_errors or {}, "suggestion": suggestion,
        "categories": await catalogue.categories(), "locations": await catalogue.locations(),
        "stock": stock, "available": available, "statuses": STATUSES, "currency": catalogue.currency,
        "tax_classes": catalogue.tax_classes,
        "action": f"/market/admin/products/{product.id}" if product is not None else "/market/admin/products",
        "price": lambda amount, currency: format_minor(amount, currency),
    })


class MarketAdminController(Controller):
    # Producers (their own) and administrators (all): declared where the market mounts it.
    path = "/market/admin"
    dependencies = dependencies
    cache_control = PRIVATE

    @get("/", name="market:admin")
    async def index(self, request: Request[User, Any, Any], catalogue: CatalogueService, status: str = "",
                    q: str = "") -> Template:
        products = await catalogue.admin_list(request.user, status=status, q=q)
        return Template("market/admin/list.html", context={
            "products": await catalogue.reads(products), "filters": {"status": status, "q": q},
            "statuses": STATUSES, "staff": is_staff(request.user)})

    @get("/new", name="market:new")
    async def new(self, catalogue: CatalogueService) -> Template:
        return await _editor(catalogue, None)

    @get("/products/{product_id:uuid}", name="market:edit")
    async def edit(self, request: Request[User, Any, Any], catalogue: CatalogueService, product_id: UUID) -> Template:
        product = check_can_manage(request.user, await catalogue.get(product_id))
        return await _editor(catalogue, product)

    @post("/products", status_code=303)
    async def create(self, request: Request[User, Any, Any], catalogue: CatalogueService) -> Response[Any]:
        return await self._save(request, catalogue, None)

    @post("/products/{product_id:uuid}", status_code=303)
    async def update(self, request: Request[User, Any, Any], catalogue: CatalogueService,
                     product_id: UUID) -> Response[Any]:
        product = check_can_manage(request.user, await catalogue.get(product_id))
        return await self._save(request, catalogue, product)

    async def _save(self, request: Request[User, Any, Any], catalogue: CatalogueService,
                    product: Product | None) -> Response[Any]:
        data = await form_data(request)
        values, rows, problems = parse_product_form(data, catalogue.currency)
        names = option_columns(" ".join(str(data.get(f"option_{j}", "")).split()) for j in range(MAX_OPTIONS))
        shown = {"title": values.title, "slug": values.slug, "description_md": values.description_md,
                 "status": values.status, "featured": values.featured, "tags": ", ".join(values.tags),
                 "categories": [str(c) for c in values.category_ids], "tax_class": values.tax_class or ""}
        if data.get("action") == "add_variant":  # the no-JS "add a variant" button: one more row, nothing saved
            return await _editor(catalogue, product, values=shown, option_names=names, rows=[*rows, VariantRow()])
        if problems:
            return await _editor(catalogue, product, values=shown, option_names=names, rows=rows, errors=problems,
                                 status=422)
        try:
            saved = await catalogue.save(request.user, values, product=product)
        except (SlugTaken, SkuTaken) as exc:
            return await _editor(catalogue, product, values=shown, option_names=names, rows=rows, errors=exc.errors,
                                 status=422, suggestion=exc.suggestion)
        except InputProblems as exc:
            return await _editor(catalogue, product, values=shown, option_names=names, rows=rows, errors=exc.errors,
                                 status=exc.status)
        return see_other(f"/market/admin/products/{saved.id}", request,
                         "Saved." if product is not None else "Product created.")

    @get("/products/{product_id:uuid}/archive")
    async def archive_confirm(self, request: Request[User, Any, Any], catalogue: CatalogueService,
                              product_id: UUID) -> Template:
        product = check_can_manage(request.user, await catalogue.get(product_id))
        return confirm_page(question=f"Archive “{product.title}”?", button="Archive",
                            detail="It leaves the market's pages, search and feeds; its orders and history stay.",
                            action=f"/market/admin/products/{product.id}/archive",
                            cancel=f"/market/admin/products/{product.id}")

    @post("/products/{product_id:uuid}/archive", status_code=303)
    async def archive(self, request: Request[User, Any, Any], catalogue: CatalogueService,
                      product_id: UUID) -> Response[None]:
        product = check_can_manage(request.user, await catalogue.get(product_id))
        await catalogue.archive(request.user, product)
        return done(f"/market/admin/products/{product.id}", request, f"Archived “{product.title}”.")

    # Images --------------------------------------------------------------------------------------

    @post("/products/{product_id:uuid}/images", status_code=303, request_max_body_size=UPLOAD_BODY_LIMIT)
    async def upload_image(self, request: Request[User, Any, Any], catalogue: CatalogueService, media: MediaService,
                           product_id: UUID) -> Response[Any]:
        product = check_can_manage(request.user, await catalogue.get(product_id))
        form = await request.form()
        upload = form.get("image")
        alt = str(form.get("alt") or "")
        if not isinstance(upload, UploadFile) or not upload.filename:
            return await _editor(catalogue, product, image_errors={"image": "Choose an image to upload."}, status=422)
        raw = await upload.read()
        try:
            stored = await media.store(raw, filename=upload.filename, content_type=upload.content_type or "",
                                       uploaded_by=request.user.id)
            await catalogue.add_image(request.user, product, stored, alt=alt)
        except InputProblems as exc:
            return await _editor(catalogue, product, image_errors=exc.errors, status=exc.status)
        return see_other(f"/market/admin/products/{product.id}#images", request, "Image added.")

    @post("/products/{product_id:uuid}/images/arrange", status_code=303)
    async def arrange_images(self, request: Request[User, Any, Any], catalogue: CatalogueService,
                             product_id: UUID) -> Response[Any]:
        """Order by the numbers typed (ties keep the current order) and save the alt texts."""
        product = check_can_manage(request.user, await catalogue.get(product_id))
        data = await form_data(request)
        ranked: list[tuple[float, int, UUID]] = []
        alts: dict[UUID, str] = {}
        for i, image in enumerate(product.images):
            raw = str(data.get(f"position_{image.id}", "") or "").strip()
            try:
                position = float(raw) if raw else float(i + 1)
            except ValueError:
                return await _editor(catalogue, product, status=422,
                                     image_errors={"images": f"“{raw[:20]}” is not a position: use numbers."})
            ranked.append((position, i, image.id))
            if f"alt_{image.id}" in data:
                alts[image.id] = str(data[f"alt_{image.id}"] or "")
        try:
            await catalogue.arrange_images(request.user, product, [image_id for *_, image_id in sorted(ranked)], alts)
        except InputProblems as exc:
            return await _editor(catalogue, product, image_errors=exc.errors, status=exc.status)
        return see_other(f"/market/admin/products/{product.id}#images", request, "Images saved.")

    @post("/products/{product_id:uuid}/images/{image_id:uuid}/delete", status_code=303)
    async def remove_image(self, request: Request[User, Any, Any], catalogue: CatalogueService, product_id: UUID,
                           image_id: UUID) -> Response[Any]:
        product = check_can_manage(request.user, await catalogue.get(product_id))
        if all(image.id != image_id for image in product.images):
            raise NotFoundException("No such image.")
        await catalogue.remove_image(request.user, product, image_id)
        return done(f"/market/admin/products/{product.id}#images", request, "Image removed.")

    # Stock ---------------------------------------------------------------------------------------

    @post("/products/{product_id:uuid}/stock", status_code=303)
    async def stock(self, request: Request[User, Any, Any], catalogue: CatalogueService,
                    product_id: UUID) -> Response[Any]:
        """Set on-hand figures: only fields changed from what the page showed are applied (each a
        conditional UPDATE), all in this request's transaction: one refusal writes none of them."""
        product = check_can_manage(request.user, await catalogue.get(product_id))
        data = await form_data(request)
        errors: dict[str, str] = {}
        locations = {str(loc.id): loc.id for loc in await catalogue.locations()}
        variants = {str(v.id): v for v in product.variants}
        wanted: list[tuple[Any, str, int]] = []  # (variant, location id or "default", quantity)
        for key, raw in data.items():
            if not key.startswith("s_"):
                continue
            variant_key, _, location_key = key[2:].partition("_")
            variant = variants.get(variant_key)
            if variant is None or (location_key != "default" and location_key not in locations):
                continue
            text = str(raw).strip()
            before = str(data.get(f"was_{variant_key}_{location_key}", "")).strip()
            if text == before:
                continue
            if not text.isdigit() or not text.isascii():
                errors[f"stock.{variant.sku}"] = f"{variant.sku}: “{text[:20]}” is not a whole number of 0 or more."
                continue
            wanted.append((variant, location_key, int(text)))
        new_location = " ".join(str(data.get("new_location", "") or "").split())
        extra = await location_named(catalogue.db, new_location) if new_location else None
        if new_location and extra is None:
            errors["new_location"] = f"No stock location is called “{new_location[:120]}”."
        if errors:
            return await _editor(catalogue, product, stock_errors=errors, status=422)
        try:
            for variant, location_key, quantity in wanted:
                location_id = (await default_location(catalogue.db)).id if location_key == "default" \
                    else locations[location_key]
                await catalogue.change_stock(request.user, variant, location_id, set_to=quantity, product=product)
            if extra is not None:  # a row of 0 at the new location for each variant, to fill in next
                for variant in product.variants:
                    await catalogue.change_stock(request.user, variant, extra.id, add=0, product=product)
        except InputProblems as exc:  # StockRefused too: the request rolls back, nothing is kept
            return await _editor(catalogue, await catalogue.get(product.id), stock_errors=exc.errors,
                                 status=exc.status)
        return see_other(f"/market/admin/products/{product.id}#stock", request,
                         "Stock saved." if wanted or extra is not None else "No stock changed.")

    @get("/low-stock", name="market:low-stock")
    async def low_stock(self, request: Request[User, Any, Any], catalogue: CatalogueService) -> Template:
        return Template("market/admin/low_stock.html", context={"lines": await catalogue.low_stock(request.user)})

    # Producers -----------------------------------------------------------------------------------

    @get("/producers", name="market:producers")
    async def producers_list(self, request: Request[User, Any, Any], producers: ProducerService) -> Template:
        return Template("market/admin/producers.html", context={
            "producers": await producers.for_user(request.user), "errors": {}, "values": {}})

    @post("/producers", status_code=303)
    async def producer_create(self, request: Request[User, Any, Any], producers: ProducerService) -> Response[Any]:
        data = await form_data(request)
        values = ProducerInput(name=str(data.get("name", "") or ""), slug=str(data.get("slug", "") or ""))
        try:
            made = await producers.save(request.user, values)
        except InputProblems as exc:
            return Template("market/admin/producers.html", status_code=exc.status, context={
                "producers": await producers.for_user(request.user), "errors": exc.errors,
                "values": {"name": values.name, "slug": values.slug}})
        return see_other(f"/market/admin/producers/{made.id}", request, "Producer created.")

    @get("/producers/{producer_id:uuid}", opt=access.session(role="producer", owner="producer"))
    async def producer_edit(self, request: Request[User, Any, Any], producers: ProducerService,
                            producer_id: UUID) -> Template:
        producer = check_producer(request.user, await producers.get(producer_id))
        return Template("market/admin/producer.html", context={
            "producer": producer, "read": producers.read(producer), "values": _producer_values(producer),
            "errors": {}})

    @post("/producers/{producer_id:uuid}", status_code=303, opt=access.session(role="producer", owner="producer"))
    async def producer_save(self, request: Request[User, Any, Any], producers: ProducerService,
                            producer_id: UUID) -> Response[Any]:
        producer = check_producer(request.user, await producers.get(producer_id))
        data = await form_data(request)
        values = {name: str(data.get(name, "") or "") for name in PRODUCER_FIELDS}
        try:
            await producers.save(request.user, ProducerInput(**values), producer=producer)
        except InputProblems as exc:
            fresh = await producers.get(producer_id)
            assert fresh is not None
            return Template("market/admin/producer.html", status_code=exc.status, context={
                "producer": fresh, "read": producers.read(fresh), "values": values, "errors": exc.errors})
        return see_other(f"/market/admin/producers/{producer_id}", request, "Profile saved.")

    @post("/producers/{producer_id:uuid}/logo", status_code=303, request_max_body_size=UPLOAD_BODY_LIMIT,
          opt=access.session(role="producer", owner="producer"))
    async def producer_logo(self, request: Request[User, Any, Any], producers: ProducerService, media: MediaService,
                            producer_id: UUID) -> Response[Any]:
        producer = check_producer(request.user, await producers.get(producer_id))
        form = await request.form()
        upload = form.get("logo")
        problem: dict[str, str] = {}
        if form.get("remove"):
            await producers.set_logo(request.user, producer, None)
            return see_other(f"/market/admin/producers/{producer_id}", request, "Logo removed.")
        if not isinstance(upload, UploadFile) or not upload.filename:
            problem = {"logo": "Choose an image to upload."}
        else:
            try:
                stored = await media.store(await upload.read(), filename=upload.filename,
                                           content_type=upload.content_type or "", uploaded_by=request.user.id)
                await producers.set_logo(request.user, producer, stored)
            except InputProblems as exc:
                problem = {"logo": exc.errors.get("image", str(exc))}
        if problem:
            return Template("market/admin/producer.html", status_code=422, context={
                "producer": producer, "read": producers.read(producer), "values": _producer_values(producer),
                "errors": problem})
        return see_other(f"/market/admin/producers/{producer_id}", request, "Logo saved.")


def _producer_values(producer: Any) -> dict[str, str]:
    return {name: getattr(producer, name) for name in PRODUCER_FIELDS}


class MarketStaffController(Controller):
    """Site-wide market settings: administrators only (categories, stock locations)."""

    path = "/market/admin"
    dependencies = dependencies
    cache_control = PRIVATE

    @get("/categories", name="market:categories")
    async def categories(self, catalogue: CatalogueService) -> Template:
        return Template("market/admin/categories.html", context={
            "categories": await catalogue.categories(), "locations": await catalogue.locations(), "errors": {},
            "values": {}})

    @post("/categories", status_code=303)
    async def category_create(self, request: Request[User, Any, Any], catalogue: CatalogueService) -> Response[Any]:
        data = await form_data(request)
        values = {name: str(data.get(name, "") or "") for name in ("name", "slug", "parent")}
        parent: UUID | None = None
        try:
            parent = UUID(values["parent"]) if values["parent"] else None
            await catalogue.create_category(values["name"], slug=values["slug"], parent_id=parent)
        except (InputProblems, ValueError) as exc:
            errors = exc.errors if isinstance(exc, InputProblems) else {"parent": "Choose a parent from the list."}
            return Template("market/admin/categories.html", status_code=422, context={
                "categories": await catalogue.categories(), "locations": await catalogue.locations(),
                "errors": errors, "values": values})
        return see_other("/market/admin/categories", request, "Category added.")

    @post("/producers/{producer_id:uuid}/members", status_code=303)
    async def producer_member_add(self, request: Request[User, Any, Any], producers: ProducerService,
                                  producer_id: UUID) -> Response[Any]:
        """Staff add a member (by username) to a producer: how a producer an administrator made
        gets the people who sell as it (they also need the producer role, granted on the account
        admin's roles form)."""
        producer = await producers.get(producer_id)
        if producer is None:
            raise NotFoundException()
        username = str((await form_data(request)).get("username", "") or "")
        try:
            added = await producers.add_member_named(producer, username)
        except InputProblems as exc:
            return Template("market/admin/producer.html", status_code=exc.status, context={
                "producer": producer, "read": producers.read(producer),
                "values": {**_producer_values(producer), "username": username}, "errors": exc.errors})
        return see_other(f"/market/admin/producers/{producer_id}", request, f"@{added.username} added.")

    @post("/locations", status_code=303)
    async def location_create(self, request: Request[User, Any, Any], catalogue: CatalogueService) -> Response[Any]:
        data = await form_data(request)
        name = " ".join(str(data.get("location", "") or "").split())
        if not name or len(name) > 120:
            return Template("market/admin/categories.html", status_code=422, context={
                "categories": await catalogue.categories(), "locations": await catalogue.locations(),
                "errors": {"location": "Give the location a name of 1 to 120 characters."}, "values": {}})
        await location_named(catalogue.db, name, create=True)
        return see_other("/market/admin/categories", request, "Stock location added.")


admin_handlers = [MarketAdminController]
staff_handlers = [MarketStaffController]
