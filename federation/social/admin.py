"""The admins' moderation pages (``/social/admin/...``): the instance's domain blocks and the
reports queue. Admins only: anonymous 401 (HTML: to the sign-in page), other members 403. Every
action is a form POST answered by a 303 (PRG); a form with bad input is shown again with its
message and a 422.
"""

from __future__ import annotations

from uuid import UUID

from litestar import Controller, get, post
from litestar.params import Parameter
from litestar.plugins.htmx import HTMXRequest
from litestar.response import Redirect, Template

from app.forms import parse_form, see_other
from app.responses import PRIVATE
from app.security import requires_admin
from federation.activitypub.moderation import DomainBlocks, ModerationError
from federation.social.deps import ADMIN
from federation.social.schemas import DomainBlockForm
from federation.social.services import REPORT_STATES, ModerationQueue


async def _domains_page(domain_blocks: DomainBlocks, values: dict[str, str] | None = None,
                        errors: dict[str, str] | None = None, status: int = 200) -> Template:
    return Template("social/admin_domain_blocks.html", status_code=status, context={
        "blocks": await domain_blocks.all(), "values": values or {}, "errors": errors or {}})


class ModerationAdminController(Controller):
    """Admins only: anonymous 401 (HTML: to the sign-in page), other members 403."""

    path = "/social/admin"
    guards = [requires_admin]
    cache_control = PRIVATE
    dependencies = ADMIN

    # --- domain blocks ------------------------------------------------------------------

    @get("/domain-blocks", name="social:admin-domain-blocks")
    async def domain_blocks_page(self, domain_blocks: DomainBlocks) -> Template:
        return await _domains_page(domain_blocks)

    @post("/domain-blocks", status_code=303)
    async def add_domain_block(self, request: HTMXRequest, domain_blocks: DomainBlocks) -> Template | Redirect:
        form = await parse_form(request, DomainBlockForm)
        values = {"domain": form.domain, "reason": form.reason, "severity": form.severity}
        try:
            result = await domain_blocks.add(form.domain, form.reason, form.severity)
        except ModerationError as exc:
            return await _domains_page(domain_blocks, values, {exc.field: str(exc)}, exc.status)
        return see_other("/social/admin/domain-blocks", request, result.summary())

    @post("/domain-blocks/{bid:uuid}/delete", status_code=303)
    async def remove_domain_block(self, bid: UUID, request: HTMXRequest, queue: ModerationQueue) -> Redirect:
        block = await queue.lift_domain_block(bid)
        return see_other("/social/admin/domain-blocks", request,
                         f"Lifted the limit on {block.domain}." if block.severity == "limit" else
                         f"Unblocked {block.domain}. Follows ended by the block are not restored.")

    # --- reports ------------------------------------------------------------------------

    @get("/reports", name="social:admin-reports")
    async def reports(self, queue: ModerationQueue,
                      show: str = Parameter(query="state", default="open")) -> Template:
        page = await queue.reports(show)
        return Template("social/admin_reports.html", context={
            "reports": page.reports, "actors": page.actors, "objects": page.objects, "resolvers": page.resolvers,
            "state": page.state, "states": REPORT_STATES})

    @post("/reports/{rid:uuid}/resolve", status_code=303)
    async def resolve(self, rid: UUID, request: HTMXRequest, queue: ModerationQueue) -> Redirect:
        await queue.resolve(rid, request.user)
        return see_other("/social/admin/reports", request, "Report resolved.")

    @post("/reports/{rid:uuid}/reopen", status_code=303)
    async def reopen(self, rid: UUID, request: HTMXRequest, queue: ModerationQueue) -> Redirect:
        await queue.resolve(rid, request.user, resolved=False)
        return see_other("/social/admin/reports?state=resolved", request, "Report reopened.")
