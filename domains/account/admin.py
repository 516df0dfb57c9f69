"""The admin home (``/admin``); administration of members: list, grant or remove roles, suspend or
restore, resend the address confirmation; the audit log."""

from __future__ import annotations

import math
from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, get, post
from litestar.exceptions import NotFoundException
from litestar.params import Parameter
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from app import audit
from app.forms import InputProblems, parse_form, see_other
from app.responses import PRIVATE
from app.settings import Settings
from domains.account import mailflows
from domains.account.deps import dependencies
from domains.account.guards import check_member
from domains.account.models import User
from domains.account.schemas import RolesForm
from domains.account.services import AccountService


class AdminHomeController(Controller):
    """One place for every administration page (issue 14 item 8): a sidebar built from the installed
    domains' ``admin`` declarations (app/kit.py), so a page is listed exactly when it exists.

    Declared for members (session), not ``access.admin()``: to anybody but an administrator the admin
    home looks absent (404), as private things do, rather than announcing itself with a 403.
    """

    path = "/admin"
    cache_control = PRIVATE

    @get("/", name="admin:home")
    async def home(self, request: Request[User, Any, Any]) -> Template:
        if not request.user.is_admin:
            raise NotFoundException()
        return Template("admin/home.html")


class AdminUsersController(Controller):
    # Administrators only: declared where the router mounts it (app/access.py), checked app-wide.
    path = "/account/admin/users"
    dependencies = dependencies
    cache_control = PRIVATE

    @get("/", name="account:admin-users")
    async def index(self, accounts: AccountService, q: str = "") -> Template:
        users = await accounts.search(q)
        return Template("account/admin_users.html", context={"users": users, "q": q})

    @post("/{user_id:uuid}/roles", status_code=303)
    async def set_roles(self, request: Request[User, Any, Any], accounts: AccountService,
                        user_id: UUID) -> Redirect:
        member = check_member(await accounts.get_one_or_none(id=user_id))
        form = await parse_form(request, RolesForm)
        try:
            await accounts.set_flags(request.user, member, is_admin=form.is_admin is not None,
                                     is_active=form.is_active is not None, is_author=form.is_author is not None,
                                     is_editor=form.is_editor is not None,
                                     is_producer=form.is_producer is not None)
        except InputProblems as exc:
            return see_other("/account/admin/users", request, str(exc.errors.get("form", exc)), "error")
        return see_other("/account/admin/users", request, f"Saved @{member.username}.")

    @post("/{user_id:uuid}/verification", status_code=303)
    async def resend_verification(self, request: Request[User, Any, Any], accounts: AccountService,
                                  settings: Settings, user_id: UUID) -> Redirect:
        """Mail the member a new confirmation link (the older one stops working). Not rate limited:
        administrators are trusted, and the audit log records each one."""
        member = check_member(await accounts.get_one_or_none(id=user_id))
        if member.email_verified_at is not None:
            return see_other("/account/admin/users", request, f"@{member.username}'s address is already confirmed.")
        if not member.is_active:
            return see_other("/account/admin/users", request, f"@{member.username} is suspended.", "error")
        await mailflows.mail_verification(accounts.db, settings.base_url, member)
        await audit.record(accounts.db, request.user, "account.verification-resent", f"@{member.username}",
                           subject_id=member.id)
        return see_other("/account/admin/users", request, f"Sent a confirmation link to @{member.username}.")


class AuditLogController(Controller):
    """Every administrator action on another member's data, newest first (app/audit.py).

    Administrators only, declared where the account router mounts it.
    """

    path = "/account/admin/audit"
    cache_control = PRIVATE

    @get("/", name="account:admin-audit")
    async def index(self, db_session: AsyncSession,
                    page: Annotated[int, Parameter(ge=1, le=1_000_000)] = 1) -> Template:
        entries, total = await audit.page_of(db_session, page)
        pages = max(1, math.ceil(total / audit.PER_PAGE))
        if page > pages:
            raise NotFoundException("No such page.")
        return Template("account/admin_audit.html", context={
            "entries": entries, "total": total, "page": page, "pages": pages,
            "prev": page - 1 if page > 1 else None, "next": page + 1 if page < pages else None,
        })
