"""The social hub under ``/social/``: timelines, compose, follows, notifications, likes and boosts;
members' blocks and reports, and the admins' domain blocks and reports queue."""

from litestar import Router

from federation.social.controllers import router as hub_router
from federation.social.moderation import MemberModerationController, ModerationAdminController

router = Router(path="/", route_handlers=[hub_router, MemberModerationController, ModerationAdminController])

__all__ = ["router"]
