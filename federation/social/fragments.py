"""The social hub's panel on a member's dashboard (``me.dashboard-notifications``, personal): how
many notifications they have not read yet, counted as the hub counts them (less those from
accounts hidden from them), linked to the notifications page that marks them read."""

from __future__ import annotations

from app.caching import CachePolicy
from federation.activitypub.moderation import limited_unfollowed
from federation.activitypub.urls import Urls
from federation.social.services import Notifications
from fragments.registry import FragmentContext, FragmentData, fragment

__all__ = ["my_unread_notifications"]


@fragment("me.dashboard-notifications", policy=CachePolicy.PERSONAL, title="Your notifications",
          template="fragments/me/dashboard-notifications.html", inline_timeout=1.0)
async def my_unread_notifications(ctx: FragmentContext) -> FragmentData:
    """The number of the signed-in member's unread notifications (reading them is the hub's job)."""
    user = ctx.user
    if user is None:
        return FragmentData({"user": None})
    urls = Urls(ctx.settings.base_url)
    me_uri = urls.user(user.username)
    unread = await Notifications(ctx.db, urls).unread(user, me_uri, await limited_unfollowed(ctx.db, me_uri))
    return FragmentData({"user": user, "unread": unread})
