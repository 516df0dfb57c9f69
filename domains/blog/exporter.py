"""Our posts, pages, tags and authors as a Ghost JSON export, so a co-op can always leave.

The file has Ghost's documented shape (https://docs.ghost.org/migration/custom): ``{"db":
[{"meta", "data"}]}`` with ``posts`` (rendered ``html``), ``posts_meta``, ``tags``, ``posts_tags``,
``users`` (with ``roles``) and ``posts_authors``. Ids are stable across instances (Ghost ids
we imported, else our own; users by a digest of their email), so export → import → export gives
the same data. Markdown sources are not part of Ghost's format; the rendered HTML is exported.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from domains.account.models import User
from domains.blog.models import Post, Tag
from domains.blog.renderer import plain_text
from domains.blog.services import with_relations

GHOST_VERSION = "6.0.0"


def _date(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value is not None else None


def user_export_id(user: User) -> str:
    """A 24-hex id (Ghost's ObjectId shape) that is the same on every instance holding this email."""
    return hashlib.sha256(user.email.lower().encode()).hexdigest()[:24]


def _post_id(post: Post) -> str:
    return post.ghost_id or str(post.id)


def _tag_id(tag: Tag) -> str:
    return tag.ghost_id or str(tag.id)


async def export_ghost(db: AsyncSession, *, now: datetime | None = None) -> dict[str, Any]:
    posts = list((await db.execute(with_relations(select(Post).order_by(Post.created_at, Post.id)))).scalars())
    tags: dict[str, Tag] = {}
    users: dict[str, User] = {}
    data: dict[str, list[dict[str, Any]]] = {k: [] for k in (
        "posts", "posts_meta", "tags", "posts_tags", "users", "posts_authors")}
    for post in posts:
        pid = _post_id(post)
        html = post.body_html
        data["posts"].append({
            "id": pid, "uuid": post.ghost_uuid or str(post.id), "title": post.title, "slug": post.slug,
            "html": html, "plaintext": plain_text(html), "comment_id": post.comment_id or pid,
            "feature_image": post.feature_image or None, "featured": post.featured, "type": post.type,
            "status": post.status, "visibility": post.visibility,
            "created_at": _date(post.created_at), "updated_at": _date(post.ghost_updated_at or post.updated_at),
            "published_at": _date(post.published_at), "custom_excerpt": post.custom_excerpt or None,
            "codeinjection_head": None, "codeinjection_foot": None, "canonical_url": post.canonical_url or None,
        })
        data["posts_meta"].append({
            "id": f"{pid}-meta", "post_id": pid,
            **{name: getattr(post, name) or None for name in (
                "feature_image_alt", "feature_image_caption", "meta_title", "meta_description", "og_image",
                "og_title", "og_description", "twitter_image", "twitter_title", "twitter_description")},
            "email_subject": None,
        })
        for order, tag in enumerate(post.tags):
            tags.setdefault(_tag_id(tag), tag)
            data["posts_tags"].append({"id": f"{pid}-{_tag_id(tag)}", "post_id": pid, "tag_id": _tag_id(tag),
                                       "sort_order": order})
        for order, author in enumerate(post.authors):
            uid = user_export_id(author)
            users.setdefault(uid, author)
            data["posts_authors"].append({"id": f"{pid}-{uid}", "post_id": pid, "author_id": uid,
                                          "sort_order": order})
    data["tags"] = [{"id": tid, "name": t.name, "slug": t.slug, "description": t.description or None,
                     "visibility": t.visibility} for tid, t in sorted(tags.items())]
    data["users"] = [{"id": uid, "name": u.name, "slug": u.username, "email": u.email, "bio": u.bio or None,
                      "profile_image": None, "website": None, "status": "active",
                      "roles": ["Administrator" if u.is_admin else "Author"]} for uid, u in sorted(users.items())]
    exported_on = int((now or datetime.now(UTC)).timestamp() * 1000)
    return {"db": [{"meta": {"exported_on": exported_on, "version": GHOST_VERSION}, "data": data}]}
