"""The social hub under ``/social/``: timelines, compose, follows, notifications, likes and boosts;
members' blocks and reports, and the admins' domain blocks and reports queue."""

from litestar import Router

from app import access
from federation.social.admin import ModerationAdminController
from federation.social.controllers import router as hub_router
from federation.social.moderation import MemberModerationController

router = Router(path="/", opt=access.session(), route_handlers=[
    hub_router, MemberModerationController,
    Router(path="/", opt=access.admin(owner="moderation"), route_handlers=[ModerationAdminController]),
])

__all__ = ["router"]
