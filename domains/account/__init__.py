"""The account domain: members, sessions, profiles and personal access tokens."""

from litestar import Router

from app import access
from domains.account import fragments  # noqa: F401  (registers the account fragments)
from domains.account.admin import AdminUsersController, AuditLogController
from domains.account.api import api_current_user
from domains.account.controllers import AccountController, AuthController, profile

router = Router(
    path="/",
    opt=access.session(),
    route_handlers=[
        Router(path="/", opt=access.public(), route_handlers=[AuthController, profile]),
        AccountController,
        Router(path="/", opt=access.admin(owner="user"), route_handlers=[AdminUsersController]),
        Router(path="/", opt=access.admin(), route_handlers=[AuditLogController]),
        Router(path="/", opt=access.token("api"), route_handlers=[api_current_user]),
    ],
)

__all__ = ["router"]
