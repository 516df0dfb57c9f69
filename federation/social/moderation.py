"""Moderation pages of the social hub.

Members (``/social/...``): block and unblock accounts, list their blocks, report a note or an
account. Admins (``/social/admin/...``): the instance's domain blocks and the reports queue.
Every action is a form POST answered by a 303 (PRG); a form with bad input is shown again with
its message and a 422.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, Request, get, post
from litestar.exceptions import NotFoundException
from litestar.params import Parameter
from litestar.response import Redirect, Template
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.forms import form_data, safe_next, see_other
from app.responses import PRIVATE
from app.security import requires_admin, requires_user
from app.settings import Settings
from domains.account.models import User
from federation.activitypub.core import Federation
from federation.activitypub.models import Actor, APObject, Block, DomainBlock, Report
from federation.activitypub.moderation import (
    MAX_COMMENT,
    DomainBlocks,
    Moderation,
    ModerationError,
    resolve_report,
    visible_note,
)
from federation.activitypub.outbox import OutboxError
from federation.activitypub.safe_fetch import FetchError
from federation.activitypub.urls import Urls
from federation.social.controllers import actors_by_uri

REPORT_STATES = ("open", "resolved", "all")


async def _known_actor(fed: Federation, uri: str) -> Actor:
    """An account we already know (a note's author, a follower...), else 404: an arbitrary URI
    from a form is never fetched (a handle is looked up with WebFinger instead)."""
    local = await fed.local_actor(uri) if fed.urls.is_local(uri) else None
    found = local or await fed.session.scalar(select(Actor).where(Actor.uri == uri, Actor.local.is_(False)))
    if found is None:
        raise NotFoundException("No such account.")
    return found


class MemberModerationController(Controller):
    path = "/social"
    guards = [requires_user]
    cache_control = PRIVATE

    # --- blocks -------------------------------------------------------------------------

    @get("/blocks", name="social:blocks")
    async def blocks(self, request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings) -> Template:
        async with Federation(db_session, settings) as fed:
            me = await fed.local_actor_for_user(request.user)
            rows = list((await db_session.scalars(select(Block).where(Block.actor == me.uri).order_by(
                Block.created_at.desc()))).all())
            actors = await actors_by_uri(db_session, {b.target for b in rows})
        return Template("social/blocks.html", context={"items": [(b, actors.get(b.target)) for b in rows]})

    @post("/block", status_code=303)
    async def block(self, request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings) -> Redirect:
        """Block by ``actor`` (an actor URI, as on a note or profile) or ``handle`` (user@host)."""
        data = await form_data(request)
        destination = safe_next(str(data.get("next", "")), "/social/blocks")
        uri, handle = str(data.get("actor", "")).strip(), str(data.get("handle", "")).strip()
        if not uri and not handle:
            return see_other(destination, request, "Say whom to block: a handle like user@example.org.", "error")
        async with Federation(db_session, settings) as fed:
            async def work() -> Actor:
                me = await fed.local_actor_for_user(request.user)
                target = await _known_actor(fed, uri) if uri else await fed.webfinger(handle)
                await Moderation(fed).block(me, target)
                return target

            try:  # the account may need fetching first: settle orders that before the writes
                target = await fed.settle(work, keep=[request.user])
            except (ModerationError, OutboxError, FetchError) as exc:
                return see_other(destination, request, f"Couldn't block {handle or uri}: {exc}", "error")
        return see_other(destination, request, f"Blocked {target.handle}.")

    @post("/unblock", status_code=303)
    async def unblock(self, request: Request[User, Any, Any], db_session: AsyncSession,
                      settings: Settings) -> Redirect:
        data = await form_data(request)
        destination = safe_next(str(data.get("next", "")), "/social/blocks")
        async with Federation(db_session, settings) as fed:
            me = await fed.local_actor_for_user(request.user)
            target = await db_session.scalar(select(Actor).where(Actor.uri == str(data.get("actor", ""))))
            if target is None or not await Moderation(fed).unblock(me, target):
                return see_other(destination, request, "You weren't blocking that account.", "error")
        return see_other(destination, request, f"Unblocked {target.handle}.")

    # --- reports ------------------------------------------------------------------------

    async def _subject(self, fed: Federation, me: Actor, note: str, actor: str) -> tuple[Actor, APObject | None]:
        """What is reported: a note the member may see (and its author), or an account."""
        if note:
            try:
                oid = UUID(note)
            except ValueError:
                raise NotFoundException() from None
            obj = await visible_note(fed.session, oid, me)
            if obj is None:
                raise NotFoundException()
            return await _known_actor(fed, obj.attributed_to), obj
        if actor:
            return await _known_actor(fed, actor), None
        raise NotFoundException("Say what to report.")

    def _form(self, target: Actor, obj: APObject | None, values: dict[str, Any],
              errors: dict[str, str] | None = None, status: int = 200) -> Template:
        return Template("social/report.html", status_code=status, context={
            "target": target, "note": obj, "values": values, "errors": errors or {}, "max_comment": MAX_COMMENT})

    @get("/reports/new", name="social:report")
    async def report_form(self, request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings,
                          note: str = "", actor: str = "") -> Template:
        async with Federation(db_session, settings) as fed:
            me = await fed.local_actor_for_user(request.user)
            target, obj = await self._subject(fed, me, note, actor)
        values = {"next": safe_next(request.query_params.get("next"), "/social/")}
        return self._form(target, obj, values)

    @post("/reports", status_code=303)
    async def report(self, request: Request[User, Any, Any], db_session: AsyncSession,
                     settings: Settings) -> Template | Redirect:
        data = await form_data(request)
        comment, forward = str(data.get("comment", "")), str(data.get("forward", "")) in ("on", "1")
        destination = safe_next(str(data.get("next", "")), "/social/")
        values = {"comment": comment, "forward": forward, "next": destination}
        async with Federation(db_session, settings) as fed:
            me = await fed.local_actor_for_user(request.user)
            target, obj = await self._subject(fed, me, str(data.get("note", "")), str(data.get("actor", "")))
            try:
                await Moderation(fed).report(me, target, [obj] if obj is not None else [], comment, forward=forward)
            except ModerationError as exc:
                return self._form(target, obj, values, {exc.field: str(exc)}, exc.status)
        forwarded = " and to its server" if forward and not target.local else ""
        return see_other(destination, request, f"Thanks: your report about {target.handle} went to the "
                                                  f"moderators{forwarded}.")


class ModerationAdminController(Controller):
    """Admins only: anonymous 401 (HTML: to the sign-in page), other members 403."""

    path = "/social/admin"
    guards = [requires_admin]
    cache_control = PRIVATE

    # --- domain blocks ------------------------------------------------------------------

    async def _domains_page(self, db_session: AsyncSession, settings: Settings, values: dict[str, str] | None = None,
                            errors: dict[str, str] | None = None, status: int = 200) -> Template:
        blocks = await DomainBlocks(db_session, Urls(settings.base_url).host).all()
        return Template("social/admin_domain_blocks.html", status_code=status, context={
            "blocks": blocks, "values": values or {}, "errors": errors or {}})

    @get("/domain-blocks", name="social:admin-domain-blocks")
    async def domain_blocks(self, db_session: AsyncSession, settings: Settings) -> Template:
        return await self._domains_page(db_session, settings)

    @post("/domain-blocks", status_code=303)
    async def add_domain_block(self, request: Request[User, Any, Any], db_session: AsyncSession,
                               settings: Settings) -> Template | Redirect:
        data = await form_data(request)
        values = {"domain": str(data.get("domain", "")), "reason": str(data.get("reason", "")),
                  "severity": str(data.get("severity", "suspend"))}
        service = DomainBlocks(db_session, Urls(settings.base_url).host)
        try:
            result = await service.add(values["domain"], values["reason"], values["severity"])
        except ModerationError as exc:
            return await self._domains_page(db_session, settings, values, {exc.field: str(exc)}, exc.status)
        return see_other("/social/admin/domain-blocks", request, result.summary())

    @post("/domain-blocks/{bid:uuid}/delete", status_code=303)
    async def remove_domain_block(self, bid: UUID, request: Request[User, Any, Any],
                                  db_session: AsyncSession) -> Redirect:
        block = await db_session.get(DomainBlock, bid)
        if block is None:
            raise NotFoundException("No such domain block.")
        await db_session.delete(block)
        return see_other("/social/admin/domain-blocks", request,
                         f"Lifted the limit on {block.domain}." if block.severity == "limit" else
                         f"Unblocked {block.domain}. Follows ended by the block are not restored.")

    # --- reports ------------------------------------------------------------------------

    @get("/reports", name="social:admin-reports")
    async def reports(self, db_session: AsyncSession,
                      show: str = Parameter(query="state", default="open")) -> Template:
        state = show
        if state not in REPORT_STATES:
            state = "open"
        query = select(Report).order_by(Report.created_at.desc()).limit(200)
        if state != "all":
            query = query.where(Report.state == state)
        rows = list((await db_session.scalars(query)).all())
        actors = await actors_by_uri(db_session, {r.target for r in rows} | {r.reporter for r in rows})
        object_ids = {i for r in rows for i in r.object_ids}
        objects = {o.ap_id: o for o in (await db_session.scalars(select(APObject).where(
            APObject.ap_id.in_(object_ids)))).all()} if object_ids else {}
        resolvers = {u.id: u for u in (await db_session.scalars(select(User).where(
            User.id.in_({r.resolved_by_id for r in rows if r.resolved_by_id})))).all()}
        return Template("social/admin_reports.html", context={
            "reports": rows, "actors": actors, "objects": objects, "resolvers": resolvers, "state": state,
            "states": REPORT_STATES})

    async def _report(self, db_session: AsyncSession, rid: UUID) -> Report:
        report = await db_session.get(Report, rid)
        if report is None:
            raise NotFoundException("No such report.")
        return report

    @post("/reports/{rid:uuid}/resolve", status_code=303)
    async def resolve(self, rid: UUID, request: Request[User, Any, Any], db_session: AsyncSession) -> Redirect:
        await resolve_report(db_session, await self._report(db_session, rid), request.user.id)
        return see_other("/social/admin/reports", request, "Report resolved.")

    @post("/reports/{rid:uuid}/reopen", status_code=303)
    async def reopen(self, rid: UUID, request: Request[User, Any, Any], db_session: AsyncSession) -> Redirect:
        await resolve_report(db_session, await self._report(db_session, rid), request.user.id, resolved=False)
        return see_other("/social/admin/reports?state=resolved", request, "Report reopened.")
