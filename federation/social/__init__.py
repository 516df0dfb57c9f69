"""The social hub under ``/social/``: timelines, compose, follows, notifications, likes and boosts;
members' blocks and reports, and the admins' domain blocks and reports queue."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.kit import Domain, NavEntry

if TYPE_CHECKING:
    from litestar.types import ControllerRouterHandler

__all__ = ["domain"]


def _routes() -> list[ControllerRouterHandler]:
    from litestar import Router

    from app import access
    from federation.social.admin import ModerationAdminController
    from federation.social.controllers import router as hub_router
    from federation.social.moderation import MemberModerationController

    return [Router(path="/", opt=access.session(), route_handlers=[
        hub_router, MemberModerationController,
        Router(path="/", opt=access.admin(owner="moderation"), route_handlers=[ModerationAdminController]),
    ])]


domain = Domain(name="social", routes=_routes, nav=(NavEntry("/social/", "Social", 40),),
                setup=("federation.social.fragments",),  # the dashboard's notifications panel
                admin=(NavEntry("/social/admin/domain-blocks", "Federation: domain blocks", 40),
                       NavEntry("/social/admin/reports", "Federation: reports", 41)))
