"""Account JSON API (Gitea-shaped where Gitea has the endpoint). Token authentication only."""

from __future__ import annotations

from typing import Any

from litestar import Request, get

from domains.account.models import User
from domains.account.schemas import GiteaUser


@get("/api/v1/user", name="api:user")
async def api_current_user(request: Request[User, Any, Any]) -> GiteaUser:
    """The authenticated user (Gitea ``GET /api/v1/user``); the email is shown only to its owner."""
    user = request.user
    return GiteaUser(id=user.id, login=user.username, username=user.username, full_name=user.display_name,
                     email=user.email, description=user.bio, is_admin=user.is_admin, active=user.is_active,
                     created=user.created_at)
