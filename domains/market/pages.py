"""Market pages: the service (rules, purges) and the staff admin (``/market/admin/pages/``).

A save validates everything first (title, slug unique and not taken, dates in order, every listed
product slug known, the filter's category known) and writes nothing when any of it is wrong: the
form comes back with 422 and every problem named. Every change writes its ``edge.purge`` job in the
same transaction: the page's own key and the pages list (design/fragments.md §7). A product shown
on a page carries its own key onto the page, so a product or stock change purges the page too.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any, Final
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import Provide
from litestar.exceptions import NotFoundException
from litestar.response import Template
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from app.forms import InputProblems, confirm_page, done, parse_form, see_other
from app.markdown import render_markdown
from app.responses import PRIVATE
from domains.account.models import User
from domains.market import keys
from domains.market.models import ACTIVE, Category, Producer, Product
from domains.market.page_models import FILTER, HAND_PICKED, MarketPage, MarketPageItem
from domains.market.schemas import slugify
from domains.market.search import MarketSearch, SearchFilters
from fragments.purge import emit_purge

__all__ = ["MarketPageService", "PageForm", "admin_handlers", "page_view", "when_of"]

MAX_ITEMS: Final = 60
MAX_INTRO: Final = 20_000
PAGE_SLUG_RE: Final = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,118}[a-z0-9])?$")


class PageForm(msgspec.Struct, kw_only=True):
    """The market page form as typed (every field a string; checked by :meth:`MarketPageService.save`)."""

    title: str = ""
    slug: str = ""
    intro: str = ""
    starts_on: str = ""
    ends_on: str = ""
    place: str = ""
    mode: str = HAND_PICKED
    products: str = ""
    filter_q: str = ""
    filter_category: str = ""
    filter_producer: str = ""
    filter_in_stock: str = ""
    filter_limit: str = "24"
    published: str = ""


class SlugTaken(InputProblems):
    pass


def when_of(page: MarketPage) -> str:
    """``Sat 12 December 2026`` or ``12-19 December 2026`` (an en dash) ('' without dates)."""
    start, end = page.starts_on, page.ends_on
    if start is None and end is None:
        return ""
    if start is None or end is None or start == end:
        one = start or end
        assert one is not None
        return ("until " if start is None else "") + one.strftime("%a %d %B %Y")
    if (start.year, start.month) == (end.year, end.month):
        return f"{start.day}\u2013{end.strftime('%d %B %Y')}"
    return f"{start.strftime('%d %B %Y')} \u2013 {end.strftime('%d %B %Y')}"


def page_view(page: MarketPage) -> dict[str, Any]:
    """What public templates and fragments show of a page (plain data)."""
    from app.markdown import plain_text

    summary = plain_text(page.intro_html)
    return {"id": str(page.id), "title": page.title, "slug": page.slug, "when": when_of(page), "place": page.place,
            "intro_html": page.intro_html, "summary": summary[:200] + ("…" if len(summary) > 200 else ""),
            "revision": page.revision}


def filters_of(page: MarketPage) -> SearchFilters:
    return SearchFilters(q=page.filter_q, category=page.filter_category, producer=page.filter_producer,
                         in_stock=page.filter_in_stock)


class MarketPageService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -- reading ---------------------------------------------------------------------------------
    async def list_public(self) -> list[MarketPage]:
        stmt = (select(MarketPage).where(MarketPage.published.is_(True))
                .order_by(MarketPage.starts_on.desc().nulls_last(), MarketPage.created_at.desc()))
        return list((await self.session.execute(stmt)).scalars())

    async def get_public(self, slug: str) -> MarketPage | None:
        page = await self.get(slug)
        return page if page is not None and page.published else None

    async def get(self, slug: str) -> MarketPage | None:
        stmt = select(MarketPage).where(MarketPage.slug == slug).options(selectinload(MarketPage.items))
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def admin_list(self) -> tuple[list[MarketPage], dict[UUID, int]]:
        pages = list((await self.session.execute(select(MarketPage).order_by(MarketPage.created_at.desc()))).scalars())
        counts = dict((await self.session.execute(
            select(MarketPageItem.page_id, func.count()).group_by(MarketPageItem.page_id))).tuples().all())
        return pages, counts

    async def product_ids(self, page: MarketPage) -> list[UUID]:
        """The active products the page shows, in its order (hand-picked) or the filter's rank."""
        if page.mode == FILTER:
            found = await MarketSearch(self.session).search(filters_of(page), limit=page.filter_limit)
            return found.ids
        wanted = [item.product_id for item in page.items]
        if not wanted:
            return []
        active = set((await self.session.execute(
            select(Product.id).where(Product.id.in_(wanted), Product.status == ACTIVE))).scalars())
        return [pid for pid in wanted if pid in active]

    async def product_slugs(self, page: MarketPage) -> list[str]:
        ids = [item.product_id for item in page.items]
        if not ids:
            return []
        slugs = dict((await self.session.execute(select(Product.id, Product.slug).where(Product.id.in_(ids))))
                     .tuples().all())
        return [slugs[i] for i in ids if i in slugs]

    # -- writing ---------------------------------------------------------------------------------
    async def save(self, form: PageForm, *, page: MarketPage | None = None) -> MarketPage:
        """Create or update a page from the form; InputProblems (nothing written) when anything is wrong."""
        errors: dict[str, str] = {}
        title = " ".join(form.title.split())
        if not title:
            errors["title"] = "Give the page a title."
        elif len(title) > 200:
            errors["title"] = "At most 200 characters."
        slug = form.slug.strip().lower() or slugify(title, "market")
        if slug == "new":  # /market/admin/pages/new is the form
            errors["slug"] = "“new” is reserved: choose another slug."
        elif not PAGE_SLUG_RE.match(slug):
            errors["slug"] = "Use lower-case letters, digits and hyphens (at most 120), not starting or ending with -."
        if len(form.intro) > MAX_INTRO:
            errors["intro"] = f"At most {MAX_INTRO:,} characters."
        starts = _date(form.starts_on, "starts_on", errors)
        ends = _date(form.ends_on, "ends_on", errors)
        if starts and ends and ends < starts:
            errors["ends_on"] = "The end date is before the start date."
        place = " ".join(form.place.split())
        if len(place) > 200:
            errors["place"] = "At most 200 characters."
        mode = form.mode if form.mode in (HAND_PICKED, FILTER) else ""
        if not mode:
            errors["mode"] = "Choose hand-picked products or a saved filter."
        product_ids = await self._listed(form.products, errors) if mode == HAND_PICKED else []
        try:
            limit = int(form.filter_limit or "24")
            if not 1 <= limit <= MAX_ITEMS:
                raise ValueError
        except ValueError:
            errors["filter_limit"] = f"A whole number from 1 to {MAX_ITEMS}."
            limit = 24
        category = form.filter_category.strip()
        if category and not await self._exists(Category.slug, category):
            errors["filter_category"] = "There is no such category."
        producer = form.filter_producer.strip().lower()
        if producer and not await self._exists(Producer.slug, producer):
            errors["filter_producer"] = "There is no producer with that slug."
        if "slug" not in errors:
            owner = (await self.session.execute(select(MarketPage.id).where(MarketPage.slug == slug))).scalar()
            if owner is not None and (page is None or owner != page.id):
                errors["slug"] = f"Another market page uses “{slug}”."
                raise SlugTaken({**errors}, status=422)
        if errors:
            raise InputProblems(errors)
        if page is None:
            page = MarketPage(title=title, slug=slug)
            self.session.add(page)
            await self.session.flush()
            existing: list[MarketPageItem] = []
        else:
            page.revision += 1
            existing = list(page.items)
        page.title, page.slug, page.place, page.mode = title, slug, place, mode
        page.intro_md, page.intro_html = form.intro, render_markdown(form.intro)
        page.starts_on, page.ends_on = starts, ends
        page.filter_q, page.filter_category, page.filter_producer = form.filter_q.strip()[:200], category, producer
        page.filter_in_stock, page.filter_limit = bool(form.filter_in_stock), limit
        page.published = bool(form.published)
        if existing:
            await self.session.execute(delete(MarketPageItem).where(MarketPageItem.page_id == page.id))
            self.session.expire(page, ["items"])
        self.session.add_all(MarketPageItem(page_id=page.id, product_id=pid, position=i)
                             for i, pid in enumerate(product_ids))
        await self.session.flush()
        await emit_purge(self.session, keys.market_page_showing(page.id))
        return page

    async def delete(self, page: MarketPage) -> None:
        await self.session.delete(page)
        await self.session.flush()
        await emit_purge(self.session, keys.market_page_showing(page.id))

    async def _exists(self, column: Any, value: str) -> bool:
        return (await self.session.execute(select(column).where(column == value).limit(1))).first() is not None

    async def _listed(self, raw: str, errors: dict[str, str]) -> list[UUID]:
        slugs: list[str] = []
        for line in raw.replace(",", "\n").splitlines():
            slug = line.strip().strip("/").removeprefix("market/").lower()
            if slug and slug not in slugs:
                slugs.append(slug)
        if len(slugs) > MAX_ITEMS:
            errors["products"] = f"At most {MAX_ITEMS} products on one page."
            return []
        if not slugs:
            return []
        found = dict((await self.session.execute(select(Product.slug, Product.id).where(Product.slug.in_(slugs))))
                     .tuples().all())
        unknown = [s for s in slugs if s not in found]
        if unknown:
            errors["products"] = "No product has the slug " + ", ".join(f"“{s}”" for s in unknown[:5]) + \
                (f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else "") + "."
            return []
        return [found[s] for s in slugs]


def _date(raw: str, name: str, errors: dict[str, str]) -> date | None:
    if not raw.strip():
        return None
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        errors[name] = "A date as YYYY-MM-DD."
        return None


# -- the staff admin -------------------------------------------------------------------------------

def provide_pages(db_session: AsyncSession) -> MarketPageService:
    return MarketPageService(db_session)


def _values(page: MarketPage | None, slugs: list[str] | None = None) -> dict[str, Any]:
    if page is None:
        return {"mode": HAND_PICKED, "filter_limit": "24"}
    return {"title": page.title, "slug": page.slug, "intro": page.intro_md, "place": page.place,
            "starts_on": page.starts_on.isoformat() if page.starts_on else "",
            "ends_on": page.ends_on.isoformat() if page.ends_on else "", "mode": page.mode,
            "products": "\n".join(slugs or []), "filter_q": page.filter_q, "filter_category": page.filter_category,
            "filter_producer": page.filter_producer, "filter_in_stock": page.filter_in_stock,
            "filter_limit": str(page.filter_limit), "published": page.published}


class MarketPagesAdmin(Controller):
    """Staff (administrators) curate the market pages; declared admin-only where the market mounts it."""

    path = "/market/admin/pages"
    dependencies = {"pages": Provide(provide_pages, sync_to_thread=False)}
    cache_control = PRIVATE

    async def _form(self, pages: MarketPageService, page: MarketPage | None, values: dict[str, Any],
                    errors: dict[str, str] | None = None, status: int = 200) -> Template:
        categories = list((await pages.session.execute(
            select(Category).order_by(Category.sort_order, Category.name))).scalars())
        action = f"/market/admin/pages/{page.slug}" if page else "/market/admin/pages/"
        return Template("market/admin/page_edit.html", status_code=status, context={
            "page": page, "values": values, "errors": errors or {}, "action": action, "categories": categories})

    @get("/", name="market:admin-pages")
    async def index(self, pages: MarketPageService) -> Template:
        rows, counts = await pages.admin_list()
        return Template("market/admin/pages_list.html", context={"pages": rows, "counts": counts, "when": when_of})

    @get("/new", name="market:admin-page-new")
    async def new(self, pages: MarketPageService) -> Template:
        return await self._form(pages, None, _values(None))

    @post("/", status_code=303)
    async def create(self, request: Request[User, Any, Any], pages: MarketPageService) -> Response[Any]:
        form = await parse_form(request, PageForm)
        try:
            page = await pages.save(form)
        except InputProblems as exc:
            return await self._form(pages, None, _shown(form, exc), exc.errors, status=exc.status)
        return see_other(f"/market/admin/pages/{page.slug}", request, "Market page saved.")

    @get("/{slug:str}", name="market:admin-page")
    async def edit(self, pages: MarketPageService, slug: str) -> Template:
        page = await _found(pages, slug)
        return await self._form(pages, page, _values(page, await pages.product_slugs(page)))

    @post("/{slug:str}", status_code=303)
    async def update(self, request: Request[User, Any, Any], pages: MarketPageService, slug: str) -> Response[Any]:
        page = await _found(pages, slug)
        form = await parse_form(request, PageForm)
        try:
            saved = await pages.save(form, page=page)
        except InputProblems as exc:  # raised before anything changed: the page is as it was
            return await self._form(pages, page, _shown(form, exc), exc.errors, status=exc.status)
        return see_other(f"/market/admin/pages/{saved.slug}", request, "Market page saved.")

    @get("/{slug:str}/delete")
    async def delete_confirm(self, pages: MarketPageService, slug: str) -> Template:
        page = await _found(pages, slug)
        return confirm_page(question=f"Delete the market page “{page.title}”?",
                            detail="The page goes; its products stay in the market.",
                            action=f"/market/admin/pages/{page.slug}/delete", cancel=f"/market/admin/pages/{page.slug}")

    @post("/{slug:str}/delete", status_code=303)
    async def delete(self, request: Request[User, Any, Any], pages: MarketPageService, slug: str) -> Response[None]:
        page = await _found(pages, slug)
        await pages.delete(page)
        return done("/market/admin/pages/", request, f"Deleted “{page.title}”.")


async def _found(pages: MarketPageService, slug: str) -> MarketPage:
    page = await pages.get(slug)
    if page is None:
        raise NotFoundException("No such market page.")
    return page


def _shown(form: PageForm, exc: InputProblems) -> dict[str, Any]:
    values: dict[str, Any] = msgspec.structs.asdict(form)
    values["filter_in_stock"] = bool(form.filter_in_stock)
    values["published"] = bool(form.published)
    if isinstance(exc, SlugTaken):
        values["suggested_slug"] = f"{(form.slug or slugify(form.title, 'market')).strip()}-2"
    return values


admin_handlers = [MarketPagesAdmin]
