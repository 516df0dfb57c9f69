"""Blog guards: authors write their own posts; editors and administrators every post (Ghost's
Author/Editor roles); only administrators change site settings."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, NotFoundException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from app.security import current_user
from domains.account.models import User
from domains.blog.models import Post


def requires_author(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    user = current_user(connection)
    if user is None:
        raise NotAuthorizedException("Sign in to continue.")
    if not user.can_author:
        raise PermissionDeniedException("Only authors may write on the blog. Ask an administrator.")


def is_post_author(user: User, post: Post) -> bool:
    return any(link.author_id == user.id for link in post.author_links)


def can_edit(user: User, post: Post) -> bool:
    """Editors and administrators edit everything; authors edit the posts they are an author of."""
    return user.can_edit_all_posts or (user.can_author and is_post_author(user, post))


def check_can_edit(user: User, post: Post | None) -> Post:
    if post is None or not can_edit(user, post):
        raise NotFoundException("No such post.")  # not yours: you need not know it exists
    return post
