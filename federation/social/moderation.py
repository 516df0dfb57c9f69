"""Members' moderation pages of the social hub (``/social/...``): block and unblock accounts, list
their blocks, report a note or an account. The admins' side is :mod:`federation.social.admin`.
Every action is a form POST answered by a 303 (PRG); a form with bad input is shown again with
its message and a 422.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Response, get, post
from litestar.plugins.htmx import HTMXRequest
from litestar.response import Redirect, Template

from app.forms import confirm_page, done, parse_form, safe_next, see_other
from app.responses import PRIVATE
from app.safe_http import FetchError
from app.security import requires_user
from federation.activitypub.models import Actor, APObject
from federation.activitypub.moderation import MAX_COMMENT, ModerationError
from federation.activitypub.outbox import OutboxError
from federation.social.deps import MEMBER_MODERATION
from federation.social.schemas import ActorForm, BlockForm, ReportForm
from federation.social.services import MemberModeration


def _report_form(target: Actor, obj: APObject | None, values: dict[str, Any],
                 errors: dict[str, str] | None = None, status: int = 200) -> Template:
    return Template("social/report.html", status_code=status, context={
        "target": target, "note": obj, "values": values, "errors": errors or {}, "max_comment": MAX_COMMENT})


class MemberModerationController(Controller):
    path = "/social"
    guards = [requires_user]
    cache_control = PRIVATE
    dependencies = MEMBER_MODERATION

    # --- blocks -------------------------------------------------------------------------

    @get("/blocks", name="social:blocks")
    async def blocks(self, request: HTMXRequest, moderation: MemberModeration) -> Template:
        return Template("social/blocks.html", context={"items": await moderation.blocks(request.user)})

    @get("/block")
    async def block_confirm(self, actor: str = "", handle: str = "", next: str = "") -> Template:
        """Without JavaScript a Block button opens this page (every value kept); with it, ``hx-confirm`` asks."""
        who = handle.strip() or actor.strip()
        return confirm_page(question=f"Block {who}?" if who else "Block this account?", button="Block",
                            detail="You won't see their posts, and they can no longer follow you or reply to you.",
                            action="/social/block", cancel=safe_next(next, "/social/blocks"),
                            values={k: v for k, v in {"actor": actor, "handle": handle, "next": next}.items() if v})

    @post("/block", status_code=303)
    async def block(self, request: HTMXRequest, moderation: MemberModeration) -> Response[None]:
        """Block by ``actor`` (an actor URI, as on a note or profile) or ``handle`` (user@host)."""
        form = await parse_form(request, BlockForm)
        destination = safe_next(form.next, "/social/blocks")
        uri, handle = form.actor.strip(), form.handle.strip()
        if not uri and not handle:
            return done(destination, request, "Say whom to block: a handle like user@example.org.", "error")
        try:
            target = await moderation.block(request.user, uri, handle)
        except (ModerationError, OutboxError, FetchError) as exc:
            return done(destination, request, f"Couldn't block {handle or uri}: {exc}", "error")
        return done(destination, request, f"Blocked {target.handle}.")

    @post("/unblock", status_code=303)
    async def unblock(self, request: HTMXRequest, moderation: MemberModeration) -> Redirect:
        form = await parse_form(request, ActorForm)
        destination = safe_next(form.next, "/social/blocks")
        target = await moderation.unblock(request.user, form.actor)
        if target is None:
            return see_other(destination, request, "You weren't blocking that account.", "error")
        return see_other(destination, request, f"Unblocked {target.handle}.")

    # --- reports ------------------------------------------------------------------------

    @get("/reports/new", name="social:report")
    async def report_form(self, request: HTMXRequest, moderation: MemberModeration, note: str = "",
                          actor: str = "") -> Template:
        target, obj = await moderation.subject(request.user, note, actor)
        return _report_form(target, obj, {"next": safe_next(request.query_params.get("next"), "/social/")})

    @post("/reports", status_code=303)
    async def report(self, request: HTMXRequest, moderation: MemberModeration) -> Template | Redirect:
        form = await parse_form(request, ReportForm)
        destination = safe_next(form.next, "/social/")
        values = {"comment": form.comment, "forward": form.forwarded, "next": destination}
        target, obj = await moderation.subject(request.user, form.note, form.actor)
        try:
            await moderation.report(request.user, target, obj, form.comment, forward=form.forwarded)
        except ModerationError as exc:
            return _report_form(target, obj, values, {exc.field: str(exc)}, exc.status)
        forwarded = " and to its server" if form.forwarded and not target.local else ""
        return see_other(destination, request, f"Thanks: your report about {target.handle} went to the "
                                                  f"moderators{forwarded}.")
