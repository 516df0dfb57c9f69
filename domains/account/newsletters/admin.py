"""Administrators' newsletter pages (``/account/admin/newsletters``): lists, subscribers (search,
paging, CSV import with a per-row report, CSV export, removal). Declared admin-only where mounted."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.exceptions import NotFoundException
from litestar.params import Parameter
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from app.forms import InputProblems, confirm_page, done, form_data, form_page, parse_form, see_other
from app.responses import PRIVATE
from domains.account.models import User
from domains.account.newsletters import keys
from domains.account.newsletters.models import NewsletterList
from domains.account.newsletters.schemas import ListForm
from domains.account.newsletters.services import NewsletterService
from fragments.purge import emit_purge

MAX_CSV_BYTES = 10 * 1024 * 1024
BASE = "/account/admin/newsletters"


def _values(lst: NewsletterList | None) -> dict[str, Any]:
    if lst is None:
        return {"visibility": "public"}
    return {"name": lst.name, "slug": lst.slug, "description": lst.description, "sender_name": lst.sender_name,
            "visibility": lst.visibility, "subscribe_on_signup": lst.subscribe_on_signup}


class AdminNewslettersController(Controller):
    path = BASE
    cache_control = PRIVATE

    async def _list(self, db_session: AsyncSession, list_id: UUID) -> NewsletterList:
        lst = await NewsletterService(db_session).get_list(list_id)
        if lst is None:
            raise NotFoundException("There is no such list.")
        return lst

    @get("/", name="account:admin-newsletters")
    async def index(self, db_session: AsyncSession) -> Template:
        service = NewsletterService(db_session)
        return Template("account/admin/newsletters.html", context={
            "lists": await service.lists(), "counts": await service.counts(), "values": _values(None), "errors": {}})

    @post("/", status_code=303)
    async def create(self, request: Request[User, Any, Any], db_session: AsyncSession) -> Template | Redirect:
        form = await parse_form(request, ListForm)
        service = NewsletterService(db_session)
        try:
            lst = await service.save_list(form)
        except InputProblems as exc:
            return form_page("account/admin/newsletters.html", {
                "lists": await service.lists(), "counts": await service.counts(),
                "values": {**_values(None), **{k: getattr(form, k) for k in ("name", "slug", "description",
                                                                              "sender_name", "visibility")}},
            }, exc.errors, exc.status)
        await emit_purge(db_session, [keys.list_key(lst.slug)])
        return see_other(f"{BASE}/{lst.id}", request, f"Created the list {lst.name}.")

    @get("/{list_id:uuid}")
    async def edit(self, db_session: AsyncSession, list_id: UUID) -> Template:
        lst = await self._list(db_session, list_id)
        return Template("account/admin/newsletters_edit.html", context={"list": lst, "values": _values(lst),
                                                                        "errors": {}})

    @post("/{list_id:uuid}", status_code=303)
    async def save(self, request: Request[User, Any, Any], db_session: AsyncSession,
                   list_id: UUID) -> Template | Redirect:
        lst = await self._list(db_session, list_id)
        old_slug = lst.slug
        form = await parse_form(request, ListForm)
        try:
            await NewsletterService(db_session).save_list(form, lst)
        except InputProblems as exc:
            await db_session.rollback()
            lst = await self._list(db_session, list_id)
            return form_page("account/admin/newsletters_edit.html", {"list": lst, "values": {
                k: getattr(form, k) for k in ("name", "slug", "description", "sender_name", "visibility")}},
                exc.errors, exc.status)
        await emit_purge(db_session, [keys.list_key(old_slug), keys.list_key(lst.slug)])
        return see_other(f"{BASE}/{lst.id}", request, "Saved.")

    @get("/{list_id:uuid}/delete")
    async def delete_confirm(self, db_session: AsyncSession, list_id: UUID) -> Template:
        lst = await self._list(db_session, list_id)
        return confirm_page(question=f"Delete the list “{lst.name}”?", action=f"{BASE}/{lst.id}/delete",
                            cancel=f"{BASE}/{lst.id}",
                            detail="Its subscribers and its issues' records go with it. This cannot be undone.")

    @post("/{list_id:uuid}/delete", status_code=303)
    async def delete(self, request: Request[User, Any, Any], db_session: AsyncSession, list_id: UUID) -> Response[None]:
        lst = await self._list(db_session, list_id)
        await emit_purge(db_session, [keys.list_key(lst.slug)])
        await NewsletterService(db_session).delete_list(lst)
        return done(BASE, request, f"Deleted the list {lst.name}.")

    @get("/{list_id:uuid}/subscribers")
    async def subscribers(self, db_session: AsyncSession, list_id: UUID, q: str = "",
                          page: Annotated[int, Parameter(ge=1, le=1_000_000)] = 1) -> Template:
        lst = await self._list(db_session, list_id)
        service = NewsletterService(db_session)
        rows, total = await service.subscribers(lst, q[:200], page)
        pages = service.pages(total)
        if page > pages:
            raise NotFoundException("No such page.")
        return Template("account/admin/newsletters_subscribers.html", context={
            "list": lst, "rows": rows, "total": total, "q": q, "page": page, "pages": pages, "report": None})

    @post("/{list_id:uuid}/subscribers/import", status_code=200)
    async def import_csv(self, request: Request[User, Any, Any], db_session: AsyncSession, list_id: UUID) -> Template:
        """A per-row report (added, already there, duplicate, malformed); valid rows are kept."""
        lst = await self._list(db_session, list_id)
        data = await form_data(request)
        text = data.get("csv") if isinstance(data.get("csv"), str) else ""
        upload = data.get("file")
        if isinstance(upload, UploadFile) and upload.filename:
            raw = await upload.read(MAX_CSV_BYTES + 1)
            if len(raw) > MAX_CSV_BYTES:
                return await self._import_error(db_session, lst, "The file is larger than 10 MB.", 413)
            try:
                text = raw.decode("utf-8-sig")
            except UnicodeDecodeError:
                return await self._import_error(db_session, lst, "The file is not UTF-8 text.", 422)
        if not (text or "").strip():
            return await self._import_error(db_session, lst, "Choose a CSV file or paste rows of email,name.", 422)
        try:
            report = await NewsletterService(db_session).import_csv(lst, str(text).replace("\x00", ""))
        except InputProblems as exc:
            return await self._import_error(db_session, lst, next(iter(exc.errors.values())), exc.status)
        rows, total = await NewsletterService(db_session).subscribers(lst)
        return Template("account/admin/newsletters_subscribers.html", context={
            "list": lst, "rows": rows, "total": total, "q": "", "page": 1,
            "pages": NewsletterService.pages(total), "report": report})

    @staticmethod
    async def _import_error(db_session: AsyncSession, lst: NewsletterList, message: str, status: int) -> Template:
        """The page as it was (the list's subscribers, unchanged) with why nothing was imported."""
        service = NewsletterService(db_session)
        rows, total = await service.subscribers(lst)
        return Template("account/admin/newsletters_subscribers.html", status_code=status, context={
            "list": lst, "rows": rows, "total": total, "q": "", "page": 1, "pages": service.pages(total),
            "report": None, "import_error": message})

    @get("/{list_id:uuid}/subscribers.csv")
    async def export_csv(self, db_session: AsyncSession, list_id: UUID) -> Response[str]:
        lst = await self._list(db_session, list_id)
        body = await NewsletterService(db_session).export_csv(lst)
        return Response(body, media_type="text/csv", headers={
            "Content-Disposition": f'attachment; filename="{lst.slug}-subscribers.csv"'})

    @post("/{list_id:uuid}/subscribers/{sub_id:uuid}/remove", status_code=303)
    async def remove(self, request: Request[User, Any, Any], db_session: AsyncSession, list_id: UUID,
                     sub_id: UUID) -> Response[None]:
        lst = await self._list(db_session, list_id)
        if not await NewsletterService(db_session).remove_subscriber(lst, sub_id):
            raise NotFoundException("No such subscriber.")
        return done(f"{BASE}/{lst.id}/subscribers", request, "Removed.")
