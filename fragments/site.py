"""Site-level fragments: the navigation, the home page's parts, and the personal holes.

Domains add their own in ``domains/<area>/fragments.py`` with the same decorator (the newest
members and the account menu are in domains/account/fragments.py).
"""

from __future__ import annotations

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


@fragment("me.cart-badge", policy=CachePolicy.PERSONAL, title="Cart badge")
async def cart_badge(ctx: FragmentContext) -> FragmentData:
    """The cart link with its item count (the cart domain replaces this with the real count)."""
    return FragmentData({"count": None, "user": ctx.user is not None})
