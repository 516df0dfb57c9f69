"""Blog fragments: the latest posts (also embeddable), a post card (design/fragments.md §4) and, on a
member's dashboard, their drafts (``me.dashboard-drafts``, personal)."""

from __future__ import annotations

from typing import Any

from app.caching import CachePolicy
from domains.blog import keys
from domains.blog.models import Post
from domains.blog.services import BlogService
from fragments.registry import FragmentContext, FragmentData, fragment
from fragments.site import use_saved_navigation


def card(post: Post) -> dict[str, Any]:
    """What a post card shows (plain data: fragment templates never touch the ORM)."""
    tag = post.primary_tag
    author = post.primary_author
    return {
        "id": str(post.id), "title": post.title, "slug": post.slug, "excerpt": post.excerpt,
        "feature_image": post.feature_image, "feature_image_alt": post.feature_image_alt,
        "published_at": post.published_at,
        "tag": {"name": tag.name, "slug": tag.slug} if tag else None,
        "author": {"username": author.username, "name": author.name} if author else None,
    }


def seed_of(posts: list[Post], extra: str = "") -> str:
    return extra + ";" + ",".join(f"{p.id}:{p.revision}:{p.updated_at.isoformat()}" for p in posts)


@fragment("blog.latest", title="Latest posts", embed="blog-latest", params={"limit": "5"})
async def latest(ctx: FragmentContext) -> FragmentData:
    """The newest posts from the blog, linked to the full articles."""
    limit = ctx.int_param("limit", 5, maximum=20)
    posts = await BlogService(ctx.db).latest(limit)
    return FragmentData({"posts": [card(p) for p in posts]}, keys=(keys.POSTS,), seed=seed_of(posts, str(limit)))


@fragment("blog.post-card", title="Post card", params={"slug": "hello-world"})
async def post_card(ctx: FragmentContext) -> FragmentData:
    """One published post as a card (``?slug=``)."""
    slug = ctx.params.get("slug", "")
    found = await BlogService(ctx.db).resolve_public(slug) if slug else None
    post = found if isinstance(found, Post) else None
    # A page's card is tagged page:<id>, the key its edits purge; a slug that shows nothing yet
    # may become a post or a page, and publishing either purges its list's key.
    tags = (keys.item(post),) if post else (keys.POSTS, keys.PAGES)
    return FragmentData({"post": card(post) if post else None}, keys=tags,
                        seed=seed_of([post] if post else [], slug))


DASHBOARD_DRAFTS = 5


@fragment("me.dashboard-drafts", policy=CachePolicy.PERSONAL, title="Your drafts",
          template="fragments/me/dashboard-drafts.html", inline_timeout=1.0)
async def my_drafts(ctx: FragmentContext) -> FragmentData:
    """The signed-in author's unpublished posts and pages, last edited first (nothing for members
    who may not write: they have no drafts and no editor to open them in)."""
    from domains.blog.models import DRAFT

    user = ctx.user
    if user is None or not user.can_author:
        return FragmentData({"user": user, "show": False})
    drafts = await BlogService(ctx.db).admin_list(status=DRAFT, author=user, limit=DASHBOARD_DRAFTS)
    rows = [{"id": str(p.id), "title": p.title or "(untitled)", "updated_at": p.updated_at} for p in drafts]
    return FragmentData({"user": user, "show": True, "drafts": rows})


async def nav_links(ctx: FragmentContext) -> tuple[tuple[tuple[str, str], ...], str]:
    """The saved primary navigation as ``((href, label), ...)`` and its revision (the ETag seed).

    For the site's ``nav`` fragment (fragments/site.py), so the navigation editor feeds it::

        links, revision = await nav_links(ctx)
        return FragmentData({"links": links}, keys=(site_keys.NAV,), seed=revision)
    """
    from domains.blog.services import NavigationService

    current = await NavigationService(ctx.db).current()
    return tuple((link.url, link.label) for link in current.primary), current.revision


# The navigation editor's saved menu is the site's ``nav`` (fragments/site.py).
use_saved_navigation(nav_links)
