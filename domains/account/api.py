"""Account JSON API (Gitea-shaped where Gitea has the endpoint). Token authentication only."""

from __future__ import annotations

from typing import Any

from litestar import Request, get

from app.security import requires_scope
from domains.account.models import User
from domains.account.schemas import UserRead


@get("/api/v1/user", guards=[requires_scope("api")], name="api:user")
async def api_current_user(request: Request[User, Any, Any]) -> UserRead:
    user = request.user
    return UserRead(id=user.id, username=user.username, display_name=user.display_name, bio=user.bio,
                    is_admin=user.is_admin, created_at=user.created_at)
