"""The editor (authors and administrators): posts, live preview, autosave, navigation, Ghost import.

Every action is a real ``<form method=post>``: without JavaScript it answers 303 (PRG) or 422
with the form; htmx enhances the same forms and gets the editor partial back (design §2).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.exceptions import NotFoundException
from litestar.plugins.htmx import HTMXRequest, HTMXTemplate
from litestar.response import Template
from sqlalchemy.ext.asyncio import AsyncSession

from app import access
from app.forms import InputProblems, confirm_page, done, parse_form, see_other
from app.responses import PRIVATE
from app.settings import Settings
from domains.account.models import User
from domains.blog.deps import dependencies
from domains.blog.exporter import export_ghost
from domains.blog.guards import check_can_edit
from domains.blog.html2md import html_to_markdown
from domains.blog.importer import GhostImportError, import_ghost
from domains.blog.models import DRAFT, POST, POST_TYPES, Post
from domains.blog.renderer import render_markdown
from domains.blog.schemas import (
    MAX_BODY_CHARS,
    TEXT_FIELDS,
    EditorForm,
    ImportForm,
    NavigationForm,
    NavigationRead,
    NavLink,
    PreviewForm,
)
from domains.blog.services import BlogService, NavigationService, SlugTaken

MAX_IMPORT_BYTES = 50 * 1024 * 1024
CONVERTED = ("Converted the Ghost HTML to Markdown. The conversion is lossy: check the preview, then save "
             "to replace the HTML (or leave without saving to keep it).")
MESSAGES = {"save": "Saved.", "publish": "Published.", "schedule": "Scheduled.", "unpublish": "Unpublished: "
            "it is a draft again."}


def _swaps_editor(request: HTMXRequest) -> bool:
    # htmx swaps the editor in place; a boosted submit or a history restore wants the whole page.
    return bool(request.htmx) and not (request.htmx.boosted or request.htmx.history_restore_request)


def _values(post: Post | None, post_type: str = POST) -> dict[str, Any]:
    if post is None:
        return {"type": post_type, "featured": False}
    values: dict[str, Any] = {name: getattr(post, name, "") or "" for name in TEXT_FIELDS}
    values["tags"] = ", ".join(t.name for t in post.tags)
    values["authors"] = ", ".join(a.username for a in post.authors)
    values["published_at"] = post.published_at.strftime("%Y-%m-%dT%H:%M") if post.published_at else ""
    values["featured"] = post.featured
    return values


def _editor_context(post: Post | None, values: dict[str, Any], *, errors: dict[str, str] | None = None,
                    message: str = "", preview: str | None = None) -> dict[str, Any]:
    action = f"/blog/admin/posts/{post.id}" if post is not None else "/blog/admin/posts"
    return {
        "post": post, "values": values, "errors": errors or {}, "action": action, "message": message,
        "preview": preview if preview is not None else (post.body_html if post is not None else ""),
        "max_body": MAX_BODY_CHARS,
    }


async def _editor(request: HTMXRequest, blog: BlogService, context: dict[str, Any], status: int = 200,
                  push_url: str | None = None) -> Template:
    context["tag_suggestions"] = await blog.tag_names()
    if _swaps_editor(request):
        return HTMXTemplate(template_name="blog/admin/_editor.html", context=context, status_code=status,
                            push_url=push_url or False)
    return Template("blog/admin/edit.html", context=context, status_code=status)


class BlogAdminController(Controller):
    # Authors (and editors, administrators): declared where the blog mounts it (app/access.py).
    path = "/blog/admin"
    dependencies = dependencies
    cache_control = PRIVATE

    @get("/", name="blog:admin")
    async def index(self, request: Request[User, Any, Any], blog: BlogService, status: str = "",
                    type: str = "", q: str = "", tag: str = "") -> Template:
        user = request.user
        posts = await blog.admin_list(status=status, post_type=type, q=q, tag=tag,
                                      author=None if user.can_edit_all_posts else user)
        return Template("blog/admin/list.html", context={
            "posts": posts, "filters": {"status": status, "type": type, "q": q, "tag": tag}})

    @get("/new", name="blog:new")
    async def new(self, blog: BlogService, type: str = POST) -> Template:
        post_type = type if type in POST_TYPES else POST
        context = _editor_context(None, _values(None, post_type))
        return Template("blog/admin/edit.html", context={**context, "tag_suggestions": await blog.tag_names()})

    @get("/posts/{post_id:uuid}", name="blog:edit")
    async def edit(self, request: Request[User, Any, Any], blog: BlogService, post_id: UUID) -> Template:
        post = check_can_edit(request.user, await blog.get(post_id))
        context = _editor_context(post, _values(post))
        return Template("blog/admin/edit.html", context={**context, "tag_suggestions": await blog.tag_names()})

    @post("/posts", status_code=303)
    async def create(self, request: HTMXRequest, blog: BlogService) -> Response[Any]:
        form = await parse_form(request, EditorForm)
        post: Post | None = None
        if form.post_id:  # the draft autosave already created
            post = await self._own(request, blog, form.post_id)
        return await self._save(request, blog, post, form)

    @post("/posts/{post_id:uuid}", status_code=303)
    async def update(self, request: HTMXRequest, blog: BlogService, post_id: UUID) -> Response[Any]:
        post = check_can_edit(request.user, await blog.get(post_id))
        return await self._save(request, blog, post, await parse_form(request, EditorForm))

    async def _own(self, request: HTMXRequest, blog: BlogService, raw_id: str) -> Post:
        try:
            post_id = UUID(raw_id)
        except ValueError:
            raise NotFoundException("No such post.") from None
        return check_can_edit(request.user, await blog.get(post_id))

    async def _save(self, request: HTMXRequest, blog: BlogService, post: Post | None,
                    form: EditorForm) -> Response[Any]:
        values, action = form.post_input(), form.post_action()
        shown = {**{name: getattr(values, name) for name in TEXT_FIELDS}, "featured": values.featured}
        if action == "preview":  # the no-JS preview: render, keep what was typed, save nothing
            return await _editor(request, blog, _editor_context(post, shown, preview=render_markdown(values.markdown)))
        if form.action == "convert" and post is not None and post.legacy_html is not None:
            # Ghost HTML → Markdown, shown for review; nothing is saved until the author saves.
            shown["markdown"] = html_to_markdown(post.legacy_html)
            return await _editor(request, blog, _editor_context(post, shown, preview=render_markdown(shown["markdown"]),
                                                    message=CONVERTED))
        try:
            saved = await blog.save(request.user, values, action, post=post)
        except SlugTaken as exc:
            shown["suggested_slug"] = exc.suggestion
            return await _editor(request, blog, _editor_context(post, shown, errors=exc.errors), status=422)
        except InputProblems as exc:
            return await _editor(request, blog, _editor_context(post, shown, errors=exc.errors), status=exc.status)
        where = f"/blog/admin/posts/{saved.id}"
        message = MESSAGES.get(action, "Saved.")
        if _swaps_editor(request):
            fresh = await blog.get(saved.id)
            assert fresh is not None
            return await _editor(request, blog, _editor_context(fresh, _values(fresh), message=message), push_url=where)
        return see_other(where, request, message)

    @get("/posts/{post_id:uuid}/delete")
    async def delete_confirm(self, request: Request[User, Any, Any], blog: BlogService, post_id: UUID) -> Template:
        """Without JavaScript the Delete button opens this page; with it, ``hx-confirm`` asks."""
        post = check_can_edit(request.user, await blog.get(post_id))
        return confirm_page(question=f"Delete “{post.title}”?", detail="The post, its drafts and its history "
                            "are removed for good.", action=f"/blog/admin/posts/{post.id}/delete",
                            cancel=f"/blog/admin/posts/{post.id}")

    @post("/posts/{post_id:uuid}/delete", status_code=303)
    async def delete(self, request: Request[User, Any, Any], blog: BlogService, post_id: UUID) -> Response[None]:
        post = check_can_edit(request.user, await blog.get(post_id))
        await blog.delete(post, actor=request.user)
        return done("/blog/admin/", request, f"Deleted “{post.title}”.")

    @post("/preview", status_code=200)
    async def preview(self, request: Request[User, Any, Any]) -> Template:
        """The live preview: the publishing renderer, applied to what is in the textarea."""
        source = (await parse_form(request, PreviewForm)).markdown
        too_long = len(source) > MAX_BODY_CHARS
        html = "" if too_long else render_markdown(source)
        return Template("blog/admin/_preview.html", context={"html": html, "too_long": too_long})

    @post("/autosave", status_code=200)
    async def autosave(self, request: HTMXRequest, blog: BlogService) -> Template:
        """Draft autosave (htmx): saves drafts only, reports in place, never redirects.

        The first autosave of a new post creates it and answers ``HX-Replace-Url`` with the
        post's own edit address, so a reload (or a crash) reopens the draft instead of an empty
        /blog/admin/new; replacing rather than pushing keeps Back from returning to that form.
        """
        form = await parse_form(request, EditorForm)
        values = form.post_input()
        post = await self._own(request, blog, form.post_id) if form.post_id else None
        if post is None and not (values.title.strip() or values.markdown.strip()):
            return Template("blog/admin/_autosave.html", context={"post": None, "problem": "", "saved_at": None})
        try:
            saved = await blog.autosave(request.user, values, post=post)
        except InputProblems as exc:
            problem = "; ".join(exc.errors.values())
            return Template("blog/admin/_autosave.html", context={"post": post, "problem": problem,
                                                                  "saved_at": None})
        headers = {"HX-Replace-Url": f"/blog/admin/posts/{saved.id}"} if post is None else {}
        return Template("blog/admin/_autosave.html", headers=headers, context={
            "post": saved, "problem": "", "saved_at": datetime.now().astimezone(), "new": post is None})


class BlogSettingsController(Controller):
    """Site-wide blog settings: administrators only."""

    path = "/blog/admin"
    opt = access.admin()
    dependencies = dependencies
    cache_control = PRIVATE

    @get("/navigation", name="blog:navigation")
    async def navigation(self, navigation: NavigationService) -> Template:
        nav = await navigation.current()
        return Template("blog/admin/navigation.html", context={"nav": nav, "errors": {}})

    @post("/navigation", status_code=303)
    async def navigation_save(self, request: Request[User, Any, Any], navigation: NavigationService) -> Response[Any]:
        form = await parse_form(request, NavigationForm)
        menus: dict[str, list[NavLink]] = {}
        for menu in ("primary", "secondary"):
            labels, urls, positions = form.rows(menu)
            rows: list[tuple[float, int, NavLink]] = []
            for i, (label, url) in enumerate(zip(labels, urls, strict=False)):
                if not label.strip() and not url.strip():
                    continue  # an empty row: nothing to add (or the link was cleared)
                try:
                    position = float(positions[i]) if i < len(positions) and positions[i].strip() else i + 1.0
                except ValueError:
                    position = i + 1.0
                rows.append((position, i, NavLink(label=label.strip(), url=url.strip())))
            menus[menu] = [link for _, _, link in sorted(rows, key=lambda r: (r[0], r[1]))]
        try:
            await navigation.save(menus["primary"], menus["secondary"])
        except InputProblems as exc:
            shown = NavigationRead(primary=menus["primary"], secondary=menus["secondary"], revision="")
            return Template("blog/admin/navigation.html", context={"nav": shown, "errors": exc.errors},
                            status_code=exc.status)
        return see_other("/blog/admin/navigation", request, "Navigation saved.")

    @get("/export", name="blog:export")
    async def export(self, db_session: AsyncSession) -> Response[bytes]:
        """Everything as a Ghost JSON export (the same format the importer reads)."""
        data = await export_ghost(db_session)
        stamp = datetime.now().astimezone().strftime("%Y-%m-%d")
        return Response(msgspec.json.encode(data), media_type="application/json", headers={
            "Content-Disposition": f'attachment; filename="rose-ash-blog-{stamp}.ghost.json"'})

    @get("/import", name="blog:import")
    async def import_form(self) -> Template:
        return Template("blog/admin/import.html", context={"report": None, "errors": {}})

    @post("/import", status_code=200, request_max_body_size=MAX_IMPORT_BYTES)
    async def import_upload(self, request: Request[User, Any, Any], db_session: AsyncSession,
                            settings: Settings) -> Template:
        fields = await parse_form(request, ImportForm)
        upload = (await request.form()).get("export")
        dry_run = bool(fields.dry_run)
        ghost_url = fields.ghost_url or settings.ghost_url or ""
        if not isinstance(upload, UploadFile):
            return Template("blog/admin/import.html", status_code=422, context={
                "report": None, "errors": {"export": "Choose a Ghost export (.json) to upload."}})
        raw = await upload.read()
        try:
            report = await import_ghost(db_session, raw, dry_run=dry_run, ghost_url=ghost_url,
                                        base_url=settings.base_url)
        except GhostImportError as exc:
            return Template("blog/admin/import.html", status_code=422, context={
                "report": None, "errors": {"export": str(exc)}})
        return Template("blog/admin/import.html", context={"report": report, "errors": {}})


admin_handlers = [BlogAdminController, BlogSettingsController]
__all__ = ["DRAFT", "admin_handlers"]
