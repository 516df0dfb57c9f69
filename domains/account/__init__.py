"""The account domain: members, sessions, profiles and personal access tokens.

``domains.account.models.User`` is the one model other domains may read directly (the shared
read model, ARCHITECTURE.md "Layers"): posts, repositories and grants point at it, and it is what
``request.user`` holds. Everything else of account is reached through its services and schemas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.kit import Domain, NavEntry

if TYPE_CHECKING:
    import click
    from litestar.types import ControllerRouterHandler


def _routes() -> list[ControllerRouterHandler]:
    from litestar import Router

    from app import access
    from domains.account.admin import AdminHomeController, AdminUsersController, AuditLogController
    from domains.account.api import api_current_user
    from domains.account.controllers import AccountController, AuthController, profile
    from domains.account.mail_admin import MailAdminController

    return [Router(
        path="/",
        opt=access.session(),
        route_handlers=[
            Router(path="/", opt=access.public(), route_handlers=[AuthController, profile]),
            AccountController,
            AdminHomeController,  # members reach it; anybody but an administrator gets 404 there
            MailAdminController,  # the same: 404 to anybody but an administrator
            Router(path="/", opt=access.admin(owner="user"), route_handlers=[AdminUsersController]),
            Router(path="/", opt=access.admin(), route_handlers=[AuditLogController]),
            Router(path="/", opt=access.token("api"), route_handlers=[api_current_user]),
        ],
    )]


def _cli() -> list[click.Command]:
    from domains.account.cli import tokens_group, users_group

    return [users_group, tokens_group]


domain = Domain(
    name="account",
    routes=_routes,
    cli=_cli,
    models=("domains.account.models",),
    setup=("domains.account.fragments", "domains.account.mailflows"),
    admin=(NavEntry("/account/admin/users", "Members", 10), NavEntry("/account/admin/audit", "Audit log", 11),
           NavEntry("/account/admin/mail", "Mail", 12)),
)

__all__ = ["domain"]
