"""Social hub pages. Every action is a real form POST answered by a 303 (PRG); htmx enhances the
like/boost and follow buttons into in-place swaps of the part of the page they belong to.
Handlers parse the form, call a service (:mod:`federation.social.services`) and render.

Account pages: ``/social/accounts/<user>@<host>`` shows any actor, local or remote (``<host>`` is
the actor's own host, with its port if it has one). ``/social/accounts?q=<handle or profile URL>``
is the lookup box: it resolves the input (WebFinger for handles) and answers 303 to that page, or
shows the page itself for an actor whose name can't stand in a path; an unknown actor's name
elsewhere in the hub links to ``?q=<actor URI>``. Bad input is 422, an account that doesn't exist
404, a server that can't be reached (or answers nonsense) 502, each as the lookup page with a
message.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, Response, Router, get, post
from litestar.exceptions import NotFoundException
from litestar.plugins.flash import flash
from litestar.plugins.htmx import ClientRedirect, HTMXRequest, HTMXTemplate
from litestar.response import Redirect, Template

from app import access
from app.forms import confirm_page, done, parse_form, safe_next, see_other
from app.responses import PRIVATE
from app.safe_http import FetchError
from app.security import requires_user
from federation.activitypub.hashtags import normalize
from federation.activitypub.models import Actor
from federation.activitypub.outbox import VISIBILITIES, OutboxError
from federation.social import when
from federation.social.deps import HUB
from federation.social.paging import EPOCH, cut, page_link, parse_cursor
from federation.social.schemas import (
    ActorForm,
    ComposeForm,
    FollowForm,
    LockedForm,
    NextForm,
    Relation,
    account_path,
)
from federation.social.services import (
    AccountProblem,
    Accounts,
    Notifications,
    Relations,
    Timelines,
    parse_account_path,
    parse_lookup,
)
from federation.social.services.discovery import Discovery
from federation.social.services.relations import Which
from federation.social.services.timelines import NoteAction, Tab

TAG_PAGE = 20  # posts a tag page shows at once


def _failed(request: HTMXRequest, destination: str, message: str) -> Response[Any]:
    """A failed action: a flash message on the page it came from. For htmx, a full navigation
    (a followed 303 would be swapped into the part of the page the button replaces)."""
    if request.htmx:
        flash(request, message, category="error")
        redirect = ClientRedirect(redirect_to=destination)
        redirect.status_code = 200  # not the handler's 303: the browser would follow it
        return redirect
    return see_other(destination, request, message, "error")


def _relation_partial(rel: Relation, destination: str, message: str) -> HTMXTemplate:
    return HTMXTemplate(template_name="social/_relation.html",
                        context={"rel": rel, "next": destination, "message": message})


def _lookup_problem(q: str, problem: AccountProblem) -> Template:
    return Template("social/lookup.html", context={"lookup_q": q, "problem": problem.message},
                    status_code=problem.status)


class SocialController(Controller):
    path = "/social"
    guards = [requires_user]
    cache_control = PRIVATE
    dependencies = HUB

    # --- timelines and notes ----------------------------------------------------------------

    async def _timeline(self, request: HTMXRequest, timelines: Timelines, tab: Tab, before: str | None) -> Template:
        cursor = parse_cursor(before)
        page = await timelines.page(request.user, tab, cursor)
        return Template("social/timeline.html", context={
            "tab": tab, "notes": page.notes, "me": page.me, "unread": page.unread,
            "reply_to": request.query_params.get("reply_to", ""), "visibilities": VISIBILITIES,
            "next": request.url.path, "paged": cursor is not None, "older": page_link(request.url.path, page.older),
            "suggestions": page.suggestions})

    @get("/", name="social:home")
    async def home(self, request: HTMXRequest, timelines: Timelines, before: str | None = None) -> Template:
        return await self._timeline(request, timelines, "home", before)

    @get("/local")
    async def local(self, request: HTMXRequest, timelines: Timelines, before: str | None = None) -> Template:
        return await self._timeline(request, timelines, "local", before)

    @get("/federated")
    async def federated(self, request: HTMXRequest, timelines: Timelines, before: str | None = None) -> Template:
        return await self._timeline(request, timelines, "federated", before)

    @get("/tags/{tag:str}", name="social:tag")
    async def tag(self, tag: str, request: HTMXRequest, discovery: Discovery, before: str | None = None) -> Template:
        """Public posts, local and received, carrying ``#tag`` (Mastodon's tag timeline, as a page);
        a hashtag in a post links here (schemas.link_hashtags). Not a tag: an empty page, 200."""
        cursor = parse_cursor(before)
        me, found = await discovery.tagged(request.user, tag, cursor, size=TAG_PAGE + 1)
        notes, token = cut(found, TAG_PAGE, lambda n: (n.obj.published or EPOCH, n.obj.id))
        return Template("social/tag.html", context={
            "tag": normalize(tag), "notes": notes, "me": me, "next": request.url.path, "paged": cursor is not None,
            "older": page_link(request.url.path, token)})

    @get("/notes/{oid:uuid}")
    async def note(self, oid: UUID, request: HTMXRequest, timelines: Timelines) -> Template:
        page = await timelines.note(request.user, oid)
        return Template("social/note.html", context={"note": page.note, "replies": page.replies, "me": page.me,
                                                     "visibilities": VISIBILITIES, "next": request.url.path})

    @post("/compose", status_code=303)
    async def compose(self, request: HTMXRequest, timelines: Timelines) -> Redirect:
        form = await parse_form(request, ComposeForm)
        destination = safe_next(form.next, "/social/")
        try:
            await timelines.compose(request.user, form)
        except (OutboxError, FetchError) as exc:
            return see_other(destination, request, str(exc), "error")
        return see_other(destination, request, "Posted.")

    async def _act(self, request: HTMXRequest, timelines: Timelines, oid: UUID, action: NoteAction) -> Response[Any]:
        form = await parse_form(request, NextForm)
        destination = safe_next(form.next, "/social/")
        try:
            me, obj = await timelines.act(request.user, oid, action)
        except (OutboxError, FetchError) as exc:
            return _failed(request, destination, str(exc))
        if request.htmx and action != "delete_note":
            return HTMXTemplate(template_name="social/_note_actions.html",
                                context={"n": await timelines.view(me, obj), "next": destination})
        if action == "delete_note":  # after hx-confirm or the confirmation page: one message, then the page
            return done(destination, request, "Post deleted.")
        return see_other(destination, request)

    @post("/notes/{oid:uuid}/like", status_code=303)
    async def like(self, oid: UUID, request: HTMXRequest, timelines: Timelines) -> Response[Any]:
        return await self._act(request, timelines, oid, "like")

    @post("/notes/{oid:uuid}/unlike", status_code=303)
    async def unlike(self, oid: UUID, request: HTMXRequest, timelines: Timelines) -> Response[Any]:
        return await self._act(request, timelines, oid, "unlike")

    @post("/notes/{oid:uuid}/boost", status_code=303)
    async def boost(self, oid: UUID, request: HTMXRequest, timelines: Timelines) -> Response[Any]:
        return await self._act(request, timelines, oid, "boost")

    @post("/notes/{oid:uuid}/unboost", status_code=303)
    async def unboost(self, oid: UUID, request: HTMXRequest, timelines: Timelines) -> Response[Any]:
        return await self._act(request, timelines, oid, "unboost")

    @get("/notes/{oid:uuid}/delete", opt=access.session(owner="note"))
    async def delete_confirm(self, oid: UUID, request: HTMXRequest, timelines: Timelines,
                             next: str = "") -> Template:
        """Without JavaScript the Delete button opens this page; with it, ``hx-confirm`` asks."""
        page = await timelines.note(request.user, oid)
        if not page.note.mine:
            raise NotFoundException()  # exactly what a missing post answers
        return confirm_page(question="Delete this post?", detail="It is removed here and a deletion is sent to "
                            "every server it reached.", action=f"/social/notes/{oid}/delete",
                            cancel=f"/social/notes/{oid}", values={"next": safe_next(next, "/social/")},
                            quote=page.note.obj.name if page.note.obj.type == "Article" else page.note.excerpt)

    @post("/notes/{oid:uuid}/delete", status_code=303, opt=access.session(owner="note"))
    async def delete(self, oid: UUID, request: HTMXRequest, timelines: Timelines) -> Response[Any]:
        return await self._act(request, timelines, oid, "delete_note")

    # --- follows ----------------------------------------------------------------------------

    @post("/follow", status_code=303)
    async def follow(self, request: HTMXRequest, relations: Relations) -> Response[Any]:
        """Follow by handle or actor URI; back to ``next`` (the account page's button) or the
        Following page. htmx gets the account page's follow box back."""
        form = await parse_form(request, FollowForm)
        handle = form.handle.strip()
        destination = safe_next(form.next, "/social/following")
        try:
            done = await relations.follow(request.user, handle)
        except (OutboxError, FetchError) as exc:
            return _failed(request, destination, f"Couldn't follow {handle}: {exc}")
        if request.htmx and done.target is not None:
            return _relation_partial(await relations.relation(done.me, done.target), destination, done.message)
        return see_other(destination, request, done.message)

    @post("/unfollow", status_code=303)
    async def unfollow(self, request: HTMXRequest, relations: Relations) -> Response[Any]:
        """Unfollow, or withdraw a follow request; back to ``next`` or the Following page."""
        form = await parse_form(request, ActorForm)
        destination = safe_next(form.next, "/social/following")
        done = await relations.unfollow(request.user, form.actor)
        if request.htmx and done.target is not None:
            return _relation_partial(await relations.relation(done.me, done.target), destination, done.message)
        return see_other(destination, request, done.message)

    async def _follow_page(self, request: HTMXRequest, relations: Relations, which: Which,
                           before: str | None) -> Template:
        cursor = parse_cursor(before)
        page = await relations.page(request.user, which, cursor)
        return Template("social/follows.html", context={
            "which": which, "items": page.entries, "me": page.me, "paged": cursor is not None,
            "older": page_link(request.url.path, page.older)})

    @get("/following")
    async def following(self, request: HTMXRequest, relations: Relations, before: str | None = None) -> Template:
        return await self._follow_page(request, relations, "following", before)

    @get("/followers")
    async def followers(self, request: HTMXRequest, relations: Relations, before: str | None = None) -> Template:
        return await self._follow_page(request, relations, "followers", before)

    @post("/followers/{fid:uuid}/{decision:str}", status_code=303)
    async def answer(self, fid: UUID, decision: str, request: HTMXRequest, relations: Relations) -> Redirect:
        if decision not in ("approve", "reject"):
            raise NotFoundException()
        try:
            await relations.answer(request.user, fid, accept=decision == "approve")
        except (OutboxError, FetchError) as exc:
            return see_other("/social/followers", request, f"Couldn't answer that request: {exc}", "error")
        return see_other("/social/followers", request,
                         "Follower approved." if decision == "approve" else "Follow request rejected.")

    @post("/settings/locked", status_code=303)
    async def locked(self, request: HTMXRequest, relations: Relations) -> Redirect:
        form = await parse_form(request, LockedForm)
        await relations.set_locked(request.user, form.on)
        return see_other("/social/followers", request, "Saved.")

    @get("/notifications")
    async def notifications(self, request: HTMXRequest, notifications: Notifications,
                            before: str | None = None) -> Template:
        cursor = parse_cursor(before)
        page = await notifications.page(request.user, cursor)
        return Template("social/notifications.html", context={
            "items": page.entries, "paged": cursor is not None, "older": page_link(request.url.path, page.older),
            "when": when})

    # --- accounts ---------------------------------------------------------------------------

    @get("/accounts", name="social:lookup")
    async def lookup(self, request: HTMXRequest, accounts: Accounts, q: str = "",
                     before: str | None = None) -> Template | Redirect:
        """The lookup box: a handle or profile URL opens that account's page."""
        if not q.strip():
            return Template("social/lookup.html", context={"lookup_q": "", "problem": ""})
        try:
            target, notice = await accounts.resolve(request.user, parse_lookup(q))
        except AccountProblem as problem:
            return _lookup_problem(q, problem)
        path = account_path(target.uri, target)
        if not path.startswith("/social/accounts?"):
            return Redirect(path, status_code=303)
        return await self._account_page(request, accounts, target, notice, before)

    @get("/accounts/{acct:str}", name="social:account")
    async def account(self, acct: str, request: HTMXRequest, accounts: Accounts,
                      before: str | None = None) -> Template:
        """Any account, local or remote, by ``user@host``."""
        try:
            target, notice = await accounts.resolve(request.user, parse_account_path(acct))
            return await self._account_page(request, accounts, target, notice, before)
        except AccountProblem as problem:
            return _lookup_problem(acct, problem)

    async def _account_page(self, request: HTMXRequest, accounts: Accounts, target: Actor, notice: str,
                            before: str | None) -> Template:
        cursor = parse_cursor(before)
        here = account_path(target.uri, target)
        page = await accounts.page(request.user, target, cursor)
        return Template("social/account.html", context={
            "target": target, "rel": page.relation, "bio": page.bio, "counts": page.counts,
            "entries": page.entries, "notice": notice, "problem": page.problem, "next": here, "me": page.me,
            "avatar": target.icon_url, "lookup_q": "", "paged": cursor is not None,
            "older": page_link(here, page.older), "newest": here})


router = Router(path="/", route_handlers=[SocialController])
