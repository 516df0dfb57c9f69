"""The blog's surrogate keys, built here only: the pages and fragments that show posts are tagged
with them and every change to a post purges them (design/fragments.md §7).

A post and a page of the same id are different keys (``post:<id>``, ``page:<id>``): whatever
shows one item is tagged with :func:`item`, which picks by the row's type, so the purge that
:func:`showing` lists on an edit always contains it.
"""

from __future__ import annotations

from typing import Final
from uuid import UUID

from domains.blog.models import PAGE, Post
from fragments.purge import SurrogateKey

__all__ = ["PAGES", "POSTS", "author", "item", "listing", "own_page", "page", "post", "showing", "tag"]

POSTS: Final = SurrogateKey("posts")  # every list of posts: index, feeds, latest, sitemap
PAGES: Final = SurrogateKey("pages")  # the sitemap's list of pages


def post(post_id: UUID | str) -> SurrogateKey:
    return SurrogateKey(f"post:{post_id}")


def page(page_id: UUID | str) -> SurrogateKey:
    return SurrogateKey(f"page:{page_id}")


def tag(slug: str) -> SurrogateKey:
    return SurrogateKey(f"tag:{slug}")


def author(username: str) -> SurrogateKey:
    return SurrogateKey(f"author:{username}")


def item(row: Post) -> SurrogateKey:
    """The key of one post or page, by its type."""
    return page(row.id) if row.type == PAGE else post(row.id)


def listing(post_type: str) -> SurrogateKey:
    """The key of the lists that show items of ``post_type``."""
    return PAGES if post_type == PAGE else POSTS


def own_page(row: Post) -> set[SurrogateKey]:
    """The keys of the item's own page: the item, its public tags and its authors."""
    return {item(row), *(tag(t.slug) for t in row.public_tags), *(author(a.username) for a in row.authors)}


def showing(row: Post) -> set[SurrogateKey]:
    """The keys of everything that shows ``row``: what a change to it purges."""
    return own_page(row) | {listing(row.type)}
