"""Administration of members: list, grant or remove roles, suspend or restore; the audit log."""

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
from app.forms import InputProblems, form_data, see_other
from app.responses import PRIVATE
from app.security import requires_admin
from domains.account.models import User
from domains.account.services import AccountService


class AdminUsersController(Controller):
    path = "/account/admin/users"
    guards = [requires_admin]
    cache_control = PRIVATE

    @get("/", name="account:admin-users")
    async def index(self, db_session: AsyncSession, q: str = "") -> Template:
        users = await AccountService(db_session).search(q)
        return Template("account/admin_users.html", context={"users": users, "q": q})

    @post("/{user_id:uuid}/roles", status_code=303)
    async def set_roles(self, request: Request[User, Any, Any], db_session: AsyncSession,
                        user_id: UUID) -> Redirect:
        service = AccountService(db_session)
        member = await service.get_one_or_none(id=user_id)
        if member is None:
            raise NotFoundException("No such member.")
        data = await form_data(request)
        try:
            await service.set_flags(request.user, member, is_admin="is_admin" in data,
                                    is_active="is_active" in data, is_author="is_author" in data,
                                    is_editor="is_editor" in data)
        except InputProblems as exc:
            return see_other("/account/admin/users", request, str(exc.errors.get("form", exc)), "error")
        return see_other("/account/admin/users", request, f"Saved @{member.username}.")


class AuditLogController(Controller):
    """Every administrator action on another member's data, newest first (app/audit.py)."""

    path = "/account/admin/audit"
    guards = [requires_admin]
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
