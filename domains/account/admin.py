"""Administration of members: list, grant or remove the admin role, suspend or restore."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, Request, get, post
from litestar.datastructures import CacheControlHeader
from litestar.exceptions import NotFoundException
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from app.forms import form_data, see_other
from app.security import requires_admin
from domains.account.models import User
from domains.account.services import AccountService, InputProblems


class AdminUsersController(Controller):
    path = "/account/admin/users"
    guards = [requires_admin]
    cache_control = CacheControlHeader(private=True, no_store=True)

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
                                    is_active="is_active" in data, is_author="is_author" in data)
        except InputProblems as exc:
            return see_other("/account/admin/users", request, str(exc.errors.get("form", exc)), "error")
        return see_other("/account/admin/users", request, f"Saved @{member.username}.")
