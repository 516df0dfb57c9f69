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
    from domains.account.controllers import AccountController, AuthController, profile
    from domains.account.mail_admin import MailAdminController
    from domains.account.newsletters.admin import AdminNewslettersController
    from domains.account.newsletters.controllers import (
        CampaignController,
        MemberNewslettersController,
        SubscribeController,
        UnsubscribeController,
        list_page,
    )

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
            # GET /api/v1/user (Gitea's shape, integer id) is forge's: forge/gitea/routes.py.
            # Newsletters (domains/account/newsletters): the list page is public and cacheable; the
            # unsubscribe link is a machine route (its signed token is the credential).
            Router(path="/", opt=access.public(), route_handlers=[list_page, SubscribeController]),
            Router(path="/", opt=access.machine(), route_handlers=[UnsubscribeController]),
            MemberNewslettersController,
            Router(path="/", opt=access.session(role="author"), route_handlers=[CampaignController]),
            Router(path="/", opt=access.admin(), route_handlers=[AdminNewslettersController]),
        ],
    )]


def _cli() -> list[click.Command]:
    from domains.account.cli import tokens_group, users_group

    return [users_group, tokens_group]


domain = Domain(
    name="account",
    routes=_routes,
    cli=_cli,
    models=("domains.account.models", "domains.account.newsletters.models"),
    setup=("domains.account.fragments", "domains.account.mailflows", "domains.account.newsletters.jobs",
           "domains.account.newsletters.signup"),
    # RFC 8058 one-click unsubscribe: mail clients POST with no cookie; the signed token authenticates.
    machine_routes=(r"^/newsletters/unsubscribe/",),
    public_get_routes=(r"^/newsletters/[a-z0-9-]+$",),
    admin=(NavEntry("/account/admin/users", "Members", 10), NavEntry("/account/admin/audit", "Audit log", 11),
           NavEntry("/account/admin/mail", "Mail", 12), NavEntry("/account/admin/newsletters", "Newsletters", 13),
           NavEntry("/account/newsletters/campaigns", "Newsletter issues", 14)),
)

__all__ = ["domain"]
