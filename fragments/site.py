"""Site-level fragments: the navigation, the home page's parts, and the personal holes.

Domains add their own in ``domains/<area>/fragments.py`` with the same decorator.
"""

from __future__ import annotations

from advanced_alchemy.filters import LimitOffset, OrderBy

from fragments.caching import CachePolicy
from fragments.keys import NAV, SITE
from fragments.registry import FragmentContext, FragmentData, fragment

# Bump when the links change; becomes the saved navigation's revision once it is editable.
NAV_REVISION = "2"
NAV_LINKS: tuple[tuple[str, str], ...] = (
    ("/blog/", "Blog"),
    ("/market/", "Market"),
    ("/events/", "Events"),
    ("/social/", "Social"),
    ("/forge/", "Forge"),
)


@fragment("nav", title="Site navigation")
async def nav(ctx: FragmentContext) -> FragmentData:
    """The site's main navigation: the navigation editor's saved menu when the blog is installed."""
    try:
        from domains.blog.fragments import nav_links
    except ImportError:
        return FragmentData({"links": NAV_LINKS}, keys=(NAV,), seed=NAV_REVISION)
    links, revision = await nav_links(ctx)
    return FragmentData({"links": links}, keys=(NAV,), seed=f"{NAV_REVISION}.{revision}")


@fragment("site.welcome", title="Welcome")
async def welcome(ctx: FragmentContext) -> FragmentData:
    """The home page's introduction."""
    return FragmentData({}, keys=(SITE,), seed="1")


@fragment("site.sections", title="Sections")
async def sections(ctx: FragmentContext) -> FragmentData:
    """Cards for each part of the site."""
    return FragmentData({"links": NAV_LINKS}, keys=(SITE,), seed=NAV_REVISION)


@fragment("account.new-members", title="Newest members", embed="members", params={"limit": "5"})
async def new_members(ctx: FragmentContext) -> FragmentData:
    """The newest members of the co-op, linked to their profiles."""
    from domains.account.keys import MEMBERS
    from domains.account.models import User
    from domains.account.services import AccountService

    limit = ctx.int_param("limit", 5, maximum=20)
    service = AccountService(ctx.db)
    users, total = await service.get_many_and_count(
        OrderBy(field_name="created_at", sort_order="desc"), LimitOffset(limit=limit, offset=0),
        User.is_active.is_(True), count_with_window_function=True,
    )
    members = [{"username": u.username, "name": u.name} for u in users]
    seed = f"{total}:" + ",".join(f"{u.id}:{u.updated_at.isoformat()}" for u in users)
    return FragmentData({"members": members, "total": total}, keys=(MEMBERS,), seed=seed)


@fragment("me.account-menu", policy=CachePolicy.PERSONAL, title="Account menu")
async def account_menu(ctx: FragmentContext) -> FragmentData:
    """Who is signed in, with sign-out; sign-in and sign-up links for everyone else."""
    user = ctx.user
    return FragmentData({"user": user})


@fragment("me.cart-badge", policy=CachePolicy.PERSONAL, title="Cart badge")
async def cart_badge(ctx: FragmentContext) -> FragmentData:
    """The cart link with its item count (the cart domain replaces this with the real count)."""
    return FragmentData({"count": None, "user": ctx.user is not None})
