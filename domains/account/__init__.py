"""The account domain: members, sessions, profiles and personal access tokens."""

from litestar import Router

from domains.account.admin import AdminUsersController, AuditLogController
from domains.account.api import api_current_user
from domains.account.controllers import AccountController, AuthController, profile

router = Router(
    path="/",
    route_handlers=[AuthController, AccountController, AdminUsersController, AuditLogController, profile,
                    api_current_user],
)

__all__ = ["router"]
