"""Blog tables: posts and pages, tags, ordered authors, old-slug redirects and navigation.

Field names follow Ghost's (design/domains.md §1) so imports, webhooks and a later exporter map
one to one. Markdown is the source of truth; ``html`` is its rendered, sanitised cache keyed by
``html_key`` (source hash + renderer version). Ghost imports keep their sanitised HTML in
``legacy_html`` until someone edits the post in Markdown.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final
from uuid import UUID

from advanced_alchemy.base import UUIDv7AuditBase
from advanced_alchemy.types import DateTimeUTC, JsonB
from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.fsm import state_machine
from domains.account.models import User

POST: Final = "post"
PAGE: Final = "page"
POST_TYPES: Final = (POST, PAGE)

DRAFT: Final = "draft"
SCHEDULED: Final = "scheduled"
PUBLISHED: Final = "published"
STATUSES: Final = (DRAFT, SCHEDULED, PUBLISHED)

PUBLIC_TAG: Final = "public"
INTERNAL_TAG: Final = "internal"


class Tag(UUIDv7AuditBase):
    """A tag; names starting with ``#`` are internal labels and never shown publicly."""

    __tablename__ = "blog_tag"

    name: Mapped[str] = mapped_column(String(191))
    slug: Mapped[str] = mapped_column(String(191), unique=True, index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    visibility: Mapped[str] = mapped_column(String(16), default=PUBLIC_TAG)
    ghost_id: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)

    @property
    def is_public(self) -> bool:
        return self.visibility == PUBLIC_TAG


class Post(UUIDv7AuditBase):
    __tablename__ = "blog_post"
    __table_args__ = (Index("ix_blog_post_listing", "type", "status", "published_at"),)

    type: Mapped[str] = mapped_column(String(8), default=POST)
    title: Mapped[str] = mapped_column(String(255))
    slug: Mapped[str] = mapped_column(String(191), unique=True, index=True)
    status: Mapped[str] = mapped_column(String(16), default=DRAFT)
    visibility: Mapped[str] = mapped_column(String(16), default="public")
    featured: Mapped[bool] = mapped_column(Boolean, default=False)

    markdown: Mapped[str] = mapped_column(Text, default="")
    html: Mapped[str] = mapped_column(Text, default="")
    html_key: Mapped[str] = mapped_column(String(80), default="")
    legacy_html: Mapped[str | None] = mapped_column(Text, default=None)
    custom_excerpt: Mapped[str] = mapped_column(Text, default="")
    plaintext_excerpt: Mapped[str] = mapped_column(Text, default="")

    feature_image: Mapped[str] = mapped_column(String(2048), default="")
    feature_image_alt: Mapped[str] = mapped_column(String(1000), default="")
    feature_image_caption: Mapped[str] = mapped_column(Text, default="")

    published_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None, index=True)

    meta_title: Mapped[str] = mapped_column(String(300), default="")
    meta_description: Mapped[str] = mapped_column(String(500), default="")
    canonical_url: Mapped[str] = mapped_column(String(2048), default="")
    og_image: Mapped[str] = mapped_column(String(2048), default="")
    og_title: Mapped[str] = mapped_column(String(300), default="")
    og_description: Mapped[str] = mapped_column(String(500), default="")
    twitter_image: Mapped[str] = mapped_column(String(2048), default="")
    twitter_title: Mapped[str] = mapped_column(String(300), default="")
    twitter_description: Mapped[str] = mapped_column(String(500), default="")

    # Ghost identity, kept so re-imports and webhook syncs update instead of duplicating.
    ghost_id: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    ghost_uuid: Mapped[str | None] = mapped_column(String(64), default=None)
    comment_id: Mapped[str | None] = mapped_column(String(64), default=None)
    ghost_updated_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)

    # Bumped on every saved change; part of the public ETag seed.
    revision: Mapped[int] = mapped_column(Integer, default=1)

    tag_links: Mapped[list[PostTag]] = relationship(
        back_populates="post", cascade="all, delete-orphan", lazy="raise", order_by="PostTag.sort_order"
    )
    author_links: Mapped[list[PostAuthor]] = relationship(
        back_populates="post", cascade="all, delete-orphan", lazy="raise", order_by="PostAuthor.sort_order"
    )

    @property
    def is_page(self) -> bool:
        return self.type == PAGE

    @property
    def body_html(self) -> str:
        """What readers see: the Markdown rendering, or the imported Ghost HTML until edited."""
        if self.legacy_html is not None and not self.markdown:
            return self.legacy_html
        return self.html

    @property
    def is_members_only(self) -> bool:
        """Ghost's members/paid/tiers visibility: the public sees a teaser, never the body."""
        return self.visibility != "public"

    @property
    def public_html(self) -> str:
        """The body as anonymous readers (pages, feeds, embeds) may see it."""
        return "" if self.is_members_only else self.body_html

    @property
    def tags(self) -> list[Tag]:
        return [link.tag for link in self.tag_links]

    @property
    def public_tags(self) -> list[Tag]:
        return [t for t in self.tags if t.is_public]

    @property
    def primary_tag(self) -> Tag | None:
        tags = self.public_tags
        return tags[0] if tags else None

    @property
    def authors(self) -> list[User]:
        return [link.author for link in self.author_links]

    @property
    def primary_author(self) -> User | None:
        authors = self.authors
        return authors[0] if authors else None

    @property
    def excerpt(self) -> str:
        return self.custom_excerpt or self.plaintext_excerpt



# Every move between the three statuses is an editor action (publish, schedule, unpublish);
# app.fsm makes each one a conditional UPDATE, so two racing moves cannot both happen.
POST_STATUS = state_machine(Post, "status", {
    DRAFT: {SCHEDULED, PUBLISHED},
    SCHEDULED: {DRAFT, PUBLISHED},
    PUBLISHED: {DRAFT, SCHEDULED},
})

class PostTag(UUIDv7AuditBase):
    __tablename__ = "blog_post_tag"
    __table_args__ = (UniqueConstraint("post_id", "tag_id", name="uq_blog_post_tag"),)

    post_id: Mapped[UUID] = mapped_column(ForeignKey("blog_post.id", ondelete="CASCADE"), index=True)
    tag_id: Mapped[UUID] = mapped_column(ForeignKey("blog_tag.id", ondelete="CASCADE"), index=True)
    sort_order: Mapped[int] = mapped_column(Integer, default=0)

    post: Mapped[Post] = relationship(back_populates="tag_links", lazy="raise")
    tag: Mapped[Tag] = relationship(lazy="raise")


class PostAuthor(UUIDv7AuditBase):
    __tablename__ = "blog_post_author"
    __table_args__ = (UniqueConstraint("post_id", "author_id", name="uq_blog_post_author"),)

    post_id: Mapped[UUID] = mapped_column(ForeignKey("blog_post.id", ondelete="CASCADE"), index=True)
    author_id: Mapped[UUID] = mapped_column(ForeignKey("account_user.id", ondelete="CASCADE"), index=True)
    sort_order: Mapped[int] = mapped_column(Integer, default=0)

    post: Mapped[Post] = relationship(back_populates="author_links", lazy="raise")
    author: Mapped[User] = relationship(lazy="raise")


class SlugRedirect(UUIDv7AuditBase):
    """A slug a post used to have: ``/blog/<old>`` answers 301 to the current one."""

    __tablename__ = "blog_slug_redirect"

    old_slug: Mapped[str] = mapped_column(String(191), unique=True, index=True)
    post_id: Mapped[UUID] = mapped_column(ForeignKey("blog_post.id", ondelete="CASCADE"), index=True)


class Navigation(UUIDv7AuditBase):
    """One ordered menu (``primary`` or ``secondary``), Ghost's ``[{label, url}]`` shape.

    ``revision`` grows on every save and seeds the ``nav`` fragment's ETag.
    """

    __tablename__ = "blog_navigation"

    menu: Mapped[str] = mapped_column(String(32), unique=True)
    links: Mapped[list[dict[str, Any]]] = mapped_column(JsonB, default=list)
    revision: Mapped[int] = mapped_column(Integer, default=1)
