"""Blog guards: authors write their own posts; editors and administrators every post (Ghost's
Author/Editor roles); only administrators change site settings.

The roles themselves are declared where the blog mounts its routers (``access.session(role=
"author")``, ``access.admin()``) and checked by the app-wide guard; here is what needs the post.
"""

from __future__ import annotations

from litestar.exceptions import NotFoundException

from domains.account.models import User
from domains.blog.models import Post


def is_post_author(user: User, post: Post) -> bool:
    return any(link.author_id == user.id for link in post.author_links)


def can_edit(user: User, post: Post) -> bool:
    """Editors and administrators edit everything; authors edit the posts they are an author of."""
    return user.can_edit_all_posts or (user.can_author and is_post_author(user, post))


def check_can_edit(user: User, post: Post | None) -> Post:
    if post is None or not can_edit(user, post):
        raise NotFoundException("No such post.")  # not yours: you need not know it exists
    return post
