"""Blog post rules: writing, publishing and scheduling posts, slugs and redirects, tags.

Every change that readers can see writes, in the same transaction, an ``edge.purge`` job for
its surrogate keys (``post:<id>``/``page:<id>``, ``posts``/``pages``, ``tag:<slug>``,
``author:<username>``) and a :class:`~domains.blog.schemas.PostEvent` job for every subscriber
(domains/blog/events.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from sqlalchemy import Select, and_, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from app import audit
from app.forms import InputProblems
from app.fsm import TransitionLost, transition
from domains.account import hooks
from domains.account.models import User
from domains.account.services import AccountService
from domains.blog import events, keys
from domains.blog.guards import check_can_edit, is_post_author
from domains.blog.jobs import PUBLISH_SCHEDULED, publish_scheduled
from domains.blog.models import (
    DRAFT,
    INTERNAL_TAG,
    POST,
    POST_TYPES,
    PUBLIC_TAG,
    PUBLISHED,
    SCHEDULED,
    Post,
    PostAuthor,
    PostTag,
    SlugRedirect,
    Tag,
)
from domains.blog.renderer import excerpt_of, render_key, render_markdown
from domains.blog.schemas import (
    MAX_BODY_CHARS,
    MAX_EXCERPT,
    MAX_TAGS,
    MAX_TITLE,
    PER_PAGE,
    RESERVED_SLUGS,
    SLUG_RE,
    AuthorRead,
    PostAction,
    PostEvent,
    PostEventAction,
    PostInput,
    PostRead,
    PublishScheduled,
    TagRead,
    slugify,
)
from fragments.purge import SurrogateKey, emit_purge

__all__ = ["PUBLISH_SCHEDULED", "BlogService", "SlugTaken", "post_keys", "url_problem", "with_relations"]

URL_FIELDS = ("feature_image", "canonical_url", "og_image", "twitter_image")
LIMITS = {"meta_title": 300, "meta_description": 500, "og_title": 300, "og_description": 500,
          "twitter_title": 300, "twitter_description": 500, "feature_image_alt": 1000,
          "feature_image_caption": 2000}


class SlugTaken(InputProblems):
    """The slug belongs to another post; ``suggestion`` is the next free one."""

    def __init__(self, errors: dict[str, str], suggestion: str) -> None:
        super().__init__(errors, 422)
        self.suggestion = suggestion


def utcnow() -> datetime:
    return datetime.now(UTC)


def url_problem(value: str) -> str | None:
    """Site-relative paths and http(s) URLs only (no ``javascript:``/``data:``)."""
    if not value:
        return None
    if len(value) > 2048:
        return "Use 2,048 characters at most."
    if value.startswith("/") and not value.startswith("//"):
        return None
    parts = urlsplit(value)
    if parts.scheme in {"http", "https"} and parts.netloc:
        return None
    return "Use an http(s) URL or a path starting with /."


def parse_when(value: str) -> datetime | None:
    """``YYYY-MM-DDTHH:MM[:SS]`` (UTC, as the form's datetime-local field sends it)."""
    value = value.strip()
    if not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).replace(microsecond=0)


def with_relations(stmt: Select[Any]) -> Select[Any]:
    return stmt.options(
        selectinload(Post.tag_links).selectinload(PostTag.tag),
        selectinload(Post.author_links).selectinload(PostAuthor.author),
    )


def post_keys(post: Post) -> set[SurrogateKey]:
    """The surrogate keys of everything that shows ``post``."""
    return keys.showing(post)


@hooks.on_user_saved
async def purge_author_pages(session: AsyncSession, user: User) -> None:
    """A member's name and bio show on their author page and on every post of theirs, all tagged
    ``author:<username>``, so a profile change purges it (in the transaction that saves it).
    A member who is no author and has written nothing (every new member) has no such page."""
    if user.can_author or await session.scalar(
            select(PostAuthor.post_id).where(PostAuthor.author_id == user.id).limit(1)) is not None:
        await emit_purge(session, [keys.author(user.username)])


class BlogService:
    """Posts and pages. ``base_url`` makes the absolute URLs in :class:`PostRead` and events."""

    def __init__(self, db: AsyncSession, *, base_url: str = "") -> None:
        self.db = db
        self.base_url = base_url.rstrip("/")

    # Reading ---------------------------------------------------------------------------------

    async def get(self, post_id: UUID) -> Post | None:
        result = await self.db.execute(with_relations(select(Post).where(Post.id == post_id)))
        return result.scalar_one_or_none()

    async def by_slug(self, slug: str) -> Post | None:
        result = await self.db.execute(with_relations(select(Post).where(Post.slug == slug)))
        return result.scalar_one_or_none()

    async def resolve_public(self, slug: str) -> Post | str | None:
        """The published post or page at ``slug``; its current slug if ``slug`` is an old one."""
        post = await self.by_slug(slug)
        if post is not None:
            return post if post.status == PUBLISHED else None
        target = (await self.db.execute(
            select(Post.slug, Post.status).join(SlugRedirect, SlugRedirect.post_id == Post.id)
            .where(SlugRedirect.old_slug == slug)
        )).first()
        if target is None or target.status != PUBLISHED:
            return None
        return str(target.slug)

    def _public(self, post_type: str = POST) -> Select[Any]:
        return select(Post).where(Post.type == post_type, Post.status == PUBLISHED)

    async def list_public(self, *, page: int = 1, per_page: int = PER_PAGE, tag: Tag | None = None,
                          author: User | None = None, post_type: str = POST) -> tuple[list[Post], int]:
        stmt = self._public(post_type)
        if tag is not None:
            stmt = stmt.where(Post.id.in_(select(PostTag.post_id).where(PostTag.tag_id == tag.id)))
        if author is not None:
            stmt = stmt.where(Post.id.in_(select(PostAuthor.post_id).where(PostAuthor.author_id == author.id)))
        total = int((await self.db.execute(select(func.count()).select_from(stmt.subquery()))).scalar_one())
        stmt = stmt.order_by(Post.published_at.desc(), Post.id.desc()).limit(per_page).offset((page - 1) * per_page)
        posts = list((await self.db.execute(with_relations(stmt))).scalars().all())
        return posts, total

    async def neighbours(self, post: Post) -> tuple[Post | None, Post | None]:
        """The published posts just before (older) and after (newer) ``post``, in the index's
        order (``published_at``, then id, so posts published in the same second still chain)."""
        if post.type != POST or post.status != PUBLISHED or post.published_at is None:
            return None, None
        at, pid = post.published_at, post.id
        older = self._public().where(or_(Post.published_at < at, and_(Post.published_at == at, Post.id < pid)))
        newer = self._public().where(or_(Post.published_at > at, and_(Post.published_at == at, Post.id > pid)))
        before = (await self.db.execute(
            older.order_by(Post.published_at.desc(), Post.id.desc()).limit(1))).scalar_one_or_none()
        after = (await self.db.execute(
            newer.order_by(Post.published_at.asc(), Post.id.asc()).limit(1))).scalar_one_or_none()
        return before, after

    async def more_in_tag(self, post: Post, limit: int = 3) -> tuple[Tag | None, list[Post]]:
        """Up to ``limit`` other published posts with ``post``'s primary tag, newest first."""
        tag = post.primary_tag
        if tag is None or post.type != POST:
            return None, []
        stmt = (self._public().where(Post.id != post.id,
                                     Post.id.in_(select(PostTag.post_id).where(PostTag.tag_id == tag.id)))
                .order_by(Post.published_at.desc(), Post.id.desc()).limit(limit))
        return tag, list((await self.db.execute(with_relations(stmt))).scalars().all())

    async def tag_names(self, limit: int = 500) -> list[str]:
        """Every tag's name (internal ``#`` ones too): the editor's tag suggestions."""
        stmt = select(Tag.name).order_by(func.lower(Tag.name)).limit(limit)
        return list((await self.db.execute(stmt)).scalars().all())

    async def latest(self, limit: int = 5) -> list[Post]:
        posts, _ = await self.list_public(per_page=limit)
        return posts

    async def all_public(self) -> list[Post]:
        """Every published post and page (for the sitemap)."""
        stmt = select(Post).where(Post.status == PUBLISHED).order_by(Post.type, Post.published_at.desc())
        return list((await self.db.execute(stmt)).scalars().all())

    @staticmethod
    def _published_tag_ids() -> Select[Any]:
        return select(PostTag.tag_id).join(Post, Post.id == PostTag.post_id).where(Post.status == PUBLISHED)

    async def public_tag(self, slug: str) -> Tag | None:
        """The tag at ``slug`` if readers may know it: public and on at least one published post.

        A tag whose posts are all drafts or scheduled would name unpublished work, so it answers
        exactly as an absent tag does (404 on its page and feed, left out of the sitemap).
        """
        tag = (await self.db.execute(
            select(Tag).where(Tag.slug == slug, Tag.visibility == PUBLIC_TAG, Tag.id.in_(self._published_tag_ids()))
        )).scalar_one_or_none()
        return tag

    async def public_tags(self) -> list[Tag]:
        stmt = select(Tag).where(Tag.visibility == PUBLIC_TAG, Tag.id.in_(self._published_tag_ids())).order_by(Tag.name)
        return list((await self.db.execute(stmt)).scalars().all())

    async def author(self, username: str) -> User | None:
        user = await AccountService(self.db).by_username(username)
        return user if user is not None and user.is_active else None

    async def public_authors(self) -> list[User]:
        used = select(PostAuthor.author_id).join(Post, Post.id == PostAuthor.post_id).where(Post.status == PUBLISHED)
        ids = (await self.db.execute(used.distinct())).scalars().all()
        authors = await AccountService(self.db).by_ids(ids, active_only=True)
        return sorted(authors.values(), key=lambda user: user.username)

    async def admin_list(self, *, status: str = "", post_type: str = "", q: str = "", tag: str = "",
                         author: User | None = None, limit: int = 200) -> list[Post]:
        """The editor's list; with ``author``, only the posts they are an author of."""
        stmt = select(Post)
        if author is not None:
            stmt = stmt.where(Post.id.in_(select(PostAuthor.post_id).where(PostAuthor.author_id == author.id)))
        if status in (DRAFT, SCHEDULED, PUBLISHED):
            stmt = stmt.where(Post.status == status)
        if post_type in POST_TYPES:
            stmt = stmt.where(Post.type == post_type)
        if q.strip():
            like = f"%{q.strip().lower()}%"
            stmt = stmt.where(or_(func.lower(Post.title).like(like), Post.slug.like(like)))
        if tag.strip():
            stmt = stmt.where(Post.id.in_(
                select(PostTag.post_id).join(Tag, Tag.id == PostTag.tag_id).where(Tag.slug == tag.strip())))
        stmt = stmt.order_by(Post.updated_at.desc()).limit(limit)
        return list((await self.db.execute(with_relations(stmt))).scalars().all())

    def url_for(self, post: Post) -> str:
        return f"{self.base_url}/blog/{post.slug}"

    def to_read(self, post: Post) -> PostRead:
        return PostRead(
            id=post.id, type=post.type, title=post.title, slug=post.slug, url=self.url_for(post),
            status=post.status, visibility=post.visibility, html=post.body_html, markdown=post.markdown,
            excerpt=post.excerpt,
            feature_image=post.feature_image, feature_image_alt=post.feature_image_alt,
            published_at=post.published_at, created_at=post.created_at, updated_at=post.updated_at,
            revision=post.revision,
            tags=[TagRead(id=t.id, name=t.name, slug=t.slug, url=f"{self.base_url}/blog/tag/{t.slug}")
                  for t in post.public_tags],
            authors=[AuthorRead(id=a.id, username=a.username, name=a.name,
                                url=f"{self.base_url}/blog/author/{a.username}") for a in post.authors],
            meta_title=post.meta_title, meta_description=post.meta_description,
            canonical_url=post.canonical_url, ghost_id=post.ghost_id, ghost_uuid=post.ghost_uuid,
        )

    async def get_published(self, post_id: UUID) -> PostRead | None:
        """The public post or page ``post_id`` (None if it is not published or doesn't exist)."""
        post = await self.get(post_id)
        if post is None or post.status != PUBLISHED:
            return None
        return self.to_read(post)

    # Slugs -----------------------------------------------------------------------------------

    async def slug_owner(self, slug: str) -> UUID | None:
        owner = (await self.db.execute(select(Post.id).where(Post.slug == slug))).scalar_one_or_none()
        return owner

    async def suggest_slug(self, base: str, *, exclude: UUID | None = None) -> str:
        """``base`` if free, else the first free ``base-2``, ``base-3`` ..."""
        base = base[:180].strip("-") or "untitled"
        taken = set((await self.db.execute(
            select(Post.slug).where(or_(Post.slug == base, Post.slug.like(f"{base}-%")),
                                    *([Post.id != exclude] if exclude else []))
        )).scalars().all())
        if base not in taken and base not in RESERVED_SLUGS:
            return base
        n = 2
        while f"{base}-{n}" in taken:
            n += 1
        return f"{base}-{n}"

    async def _set_slug(self, post: Post, slug: str) -> None:
        """Give ``post`` a new slug, keeping the old one as a redirect if it was ever public."""
        old = post.slug
        if old == slug:
            return
        await self.db.execute(delete(SlugRedirect).where(SlugRedirect.old_slug == slug))
        if old and post.published_at is not None:
            await self.db.execute(delete(SlugRedirect).where(SlugRedirect.old_slug == old))
            self.db.add(SlugRedirect(old_slug=old, post_id=post.id))
        post.slug = slug

    # Tags and authors ------------------------------------------------------------------------

    async def tags_named(self, names: Sequence[str]) -> list[Tag]:
        """The tags called ``names`` (created as needed); ``#name`` tags are internal."""
        tags: list[Tag] = []
        for name in names:
            internal = name.startswith("#")
            slug = ("hash-" + slugify(name[1:], "tag")) if internal else slugify(name, "tag")
            tag = (await self.db.execute(select(Tag).where(Tag.slug == slug))).scalar_one_or_none()
            if tag is None:
                tag = Tag(name=name[:191], slug=slug, visibility=INTERNAL_TAG if internal else PUBLIC_TAG)
                self.db.add(tag)
                await self.db.flush()
            if tag not in tags:
                tags.append(tag)
        return tags

    async def set_tags(self, post: Post, tags: Sequence[Tag]) -> None:
        current = [link.tag_id for link in post.tag_links]
        if current == [t.id for t in tags]:
            return
        post.tag_links.clear()
        await self.db.flush()
        for i, tag in enumerate(tags):
            post.tag_links.append(PostTag(tag_id=tag.id, tag=tag, sort_order=i))

    async def set_authors(self, post: Post, authors: Sequence[User]) -> None:
        current = [link.author_id for link in post.author_links]
        if current == [a.id for a in authors]:
            return
        post.author_links.clear()
        await self.db.flush()
        for i, author in enumerate(authors):
            post.author_links.append(PostAuthor(author_id=author.id, author=author, sort_order=i))

    # Writing ---------------------------------------------------------------------------------

    async def _authors(self, editor: User, data: PostInput, post: Post | None) -> list[User]:
        """The post's authors after this save (Ghost's roles).

        An empty field keeps the current authors (a new post: the writer). Only editors and
        administrators may change the list: an author may not publish under someone else's name
        or take their own name off a post (403). Every named author must be a member with a blog
        role, or already an author of this post (400 otherwise). Nothing is written on refusal.
        """
        current = post.authors if post is not None and post.author_links else [editor]
        names = data.author_names()
        if not names or names == [a.username for a in current]:
            return list(current)
        if not editor.can_edit_all_posts:
            raise InputProblems({"authors": "Only editors and administrators choose a post's authors: "
                                            "leave the authors as they are."}, 403)
        kept = {a.username: a for a in current}
        accounts = AccountService(self.db)
        authors: list[User] = []
        for name in names:
            user = kept.get(name) or await accounts.by_username(name)
            if user is None or (name not in kept and not user.can_author):
                raise InputProblems({"authors": f"@{name} is not an author on this site: name members "
                                                f"who have the author or editor role."}, 400)
            authors.append(user)
        return authors

    async def _validate(self, editor: User, data: PostInput, action: PostAction,
                        post: Post | None, now: datetime) -> tuple[str, datetime | None, list[User]]:
        errors: dict[str, str] = {}
        title = data.title.strip()
        if not title:
            errors["title"] = "Give it a title."
        elif len(title) > MAX_TITLE:
            errors["title"] = f"Use {MAX_TITLE} characters at most."
        if data.type not in POST_TYPES:
            errors["type"] = "Choose post or page."
        if len(data.markdown) > MAX_BODY_CHARS:
            errors["markdown"] = (f"The body is too long ({len(data.markdown):,} characters; "
                                  f"{MAX_BODY_CHARS:,} at most).")
        if len(data.custom_excerpt) > MAX_EXCERPT:
            errors["custom_excerpt"] = f"Use {MAX_EXCERPT:,} characters at most."
        for name, limit in LIMITS.items():
            if len(getattr(data, name)) > limit:
                errors[name] = f"Use {limit:,} characters at most."
        for name in URL_FIELDS:
            if problem := url_problem(getattr(data, name).strip()):
                errors[name] = problem
        if len(data.tag_names()) > MAX_TAGS:
            errors["tags"] = f"Use {MAX_TAGS} tags at most."
        when: datetime | None = None
        try:
            when = parse_when(data.published_at)
        except ValueError:
            errors["published_at"] = "Use a date and time like 2030-01-31T09:00 (UTC)."
        if action == "schedule" and "published_at" not in errors:
            if when is None:
                errors["published_at"] = "Choose when to publish."
            elif when <= now:
                errors["published_at"] = "Choose a time in the future to schedule, or publish now."
        authors = await self._authors(editor, data, post)
        exclude = post.id if post else None
        if not data.slug.strip():
            # No slug typed: the title's, made unique (as Ghost does); a typed clash is the author's call.
            base = slugify(title) if title else ""
            slug = (post.slug if post is not None and post.slug == base else
                    await self.suggest_slug(base, exclude=exclude)) if base else ""
        else:
            slug = slugify(data.slug.strip(), "")
        if data.slug.strip() and not SLUG_RE.match(slug):
            errors["slug"] = "Use lowercase letters, digits and hyphens."
        elif slug in RESERVED_SLUGS:
            suggestion = await self.suggest_slug(slug, exclude=exclude)
            raise SlugTaken({**errors, "slug": f"“{slug}” is reserved. Try “{suggestion}”."}, suggestion)
        elif slug:
            owner = await self.slug_owner(slug)
            if owner is not None and (post is None or owner != post.id):
                suggestion = await self.suggest_slug(slug, exclude=exclude)
                raise SlugTaken({**errors, "slug": f"“{slug}” is already used by another post. "
                                                   f"Try “{suggestion}”."}, suggestion)
        if errors:
            raise InputProblems(errors, 422)
        return slug, when, authors

    async def save(self, editor: User, data: PostInput, action: PostAction = "save", *,
                   post: Post | None = None, now: datetime | None = None, autosaved: bool = False) -> Post:
        """Create (``post`` None) or update a post and move it through draft/scheduled/published.

        ``save`` keeps the status (a new post is a draft; a published post is updated live),
        ``publish`` publishes now (or at a past ``published_at``), ``schedule`` queues the
        publish job for ``published_at``, ``unpublish`` returns it to draft. Raises
        :class:`InputProblems` (422; 403 when ``editor`` may not choose authors; 400 for an
        author who is not one) or :class:`SlugTaken` and then writes nothing; someone else's post
        that ``editor`` may not edit is a 404 (NotFoundException), as if it did not exist.
        """
        now = now or utcnow()
        if not editor.can_author:
            raise InputProblems({"form": "Only authors may write on the blog. Ask an administrator."}, 403)
        if post is not None:
            check_can_edit(editor, post)  # not theirs: 404, as if it did not exist
        staff_edit = post is not None and not is_post_author(editor, post)
        before_authors = [a.username for a in post.authors] if post is not None else []
        owner = post.primary_author if post is not None else None  # whose post it was
        slug, when, authors = await self._validate(editor, data, action, post, now)
        before_keys: set[SurrogateKey] = set()
        was_public = False
        if post is None:
            post = Post(type=data.type, title=data.title.strip(), slug=slug, status=DRAFT, revision=0)
            post.tag_links = []
            post.author_links = []
            self.db.add(post)
        else:
            was_public = post.status == PUBLISHED
            before_keys = post_keys(post) if was_public else set()
            post.type = data.type
            await self._set_slug(post, slug)
        post.title = data.title.strip()
        for name in ("custom_excerpt", "feature_image", "feature_image_alt", "feature_image_caption",
                     "meta_title", "meta_description", "canonical_url", "og_title", "og_description",
                     "og_image", "twitter_title", "twitter_description", "twitter_image"):
            setattr(post, name, getattr(data, name).strip())
        post.featured = data.featured
        self.set_markdown(post, data.markdown)
        await self.set_tags(post, await self.tags_named(data.tag_names()))
        await self.set_authors(post, authors)
        from_status, to_status = post.status, _STATUS_AFTER.get(action, post.status)
        if action == "publish":
            post.published_at = when if when is not None and when <= now else now.replace(microsecond=0)
        elif action == "schedule" or (action != "unpublish" and when is not None and post.status != SCHEDULED):
            post.published_at = when
        post.revision += 1
        await self.db.flush()
        if to_status != from_status:
            try:
                await transition(self.db, Post, post.id, from_=from_status, to=to_status)
            except TransitionLost as exc:
                raise InputProblems({"form": "Someone else changed this post's status meanwhile. "
                                             "Reload it and try again."}, 409) from exc
        if action == "schedule" and when is not None:
            await publish_scheduled.enqueue(self.db, PublishScheduled(post_id=post.id, scheduled_for=when),
                                            run_at=when)
        await self.changed(post, was_public=was_public, before_keys=before_keys)
        after_authors = [a.username for a in authors]
        if staff_edit and not (autosaved and await self._last_audit_is(editor, post, "blog.post.autosave")):
            # A run of autosaves (every few seconds while typing) is one entry, not hundreds.
            await self._audit(editor, post, "blog.post.autosave" if autosaved else f"blog.post.{action}",
                              f"status {post.status}", owner)
        if after_authors != before_authors and any(a.id != editor.id for a in authors):
            await self._audit(editor, post, "blog.post.authors",
                              f"{', '.join(before_authors) or '(new post)'} → {', '.join(after_authors)}", owner)
        return post

    async def _last_audit_is(self, actor: User, post: Post, action: str) -> bool:
        """Is ``actor``'s newest audit entry about ``post`` an ``action`` one?"""
        last = (await self.db.execute(
            select(audit.AuditEntry.action)
            .where(audit.AuditEntry.actor_id == actor.id, audit.AuditEntry.target == _audit_target(post))
            .order_by(audit.AuditEntry.created_at.desc(), audit.AuditEntry.id.desc()).limit(1)
        )).scalar_one_or_none()
        return last == action

    async def _audit(self, actor: User, post: Post, action: str, detail: str, owner: User | None = None) -> None:
        """Staff actions on posts that are not (only) their own go to the audit log (app/audit.py)."""
        owner = owner or post.primary_author
        await audit.record(self.db, actor, action, _audit_target(post), f"“{post.title}” ({post.slug}): {detail}",
                           subject_id=owner.id if owner is not None else None)

    def set_markdown(self, post: Post, source: str) -> None:
        """Store the Markdown source and its rendering (re-rendered only if source or renderer changed)."""
        key = render_key(source)
        if post.markdown == source and post.html_key == key:
            return
        post.markdown = source
        post.html = render_markdown(source)
        post.html_key = key
        if source.strip():
            post.legacy_html = None  # the first Markdown edit replaces imported HTML
        post.plaintext_excerpt = excerpt_of(post.body_html)

    async def autosave(self, editor: User, data: PostInput, *, post: Post | None = None) -> Post:
        """Save a draft as the author types (never a live post: that needs Update)."""
        if post is not None and post.status != DRAFT:
            raise InputProblems({"form": "Not autosaved: a published or scheduled post changes when you "
                                         "press Update."}, 409)
        if post is None and not data.title.strip():
            data.title = "Untitled"
        try:
            return await self.save(editor, data, "save", post=post, autosaved=True)
        except SlugTaken as exc:
            data.slug = exc.suggestion
            return await self.save(editor, data, "save", post=post, autosaved=True)

    async def delete(self, post: Post, *, actor: User | None = None) -> None:
        """Delete ``post``; with ``actor`` (a person, not a sync), only if they may edit it."""
        if actor is not None:
            check_can_edit(actor, post)
            if not is_post_author(actor, post):
                await self._audit(actor, post, "blog.post.delete", f"was {post.status}")
        if post.status == PUBLISHED:
            await self._purge(post_keys(post))
            await self._event(post, "deleted")
        await self.db.delete(post)
        await self.db.flush()

    async def publish_due(self, post_id: UUID, scheduled_for: datetime) -> bool:
        """The scheduled-publish job: publish if the post is still scheduled for that time."""
        post = await self.get(post_id)
        if post is None or post.status != SCHEDULED or post.published_at is None:
            return False
        if abs((post.published_at - scheduled_for).total_seconds()) >= 1:
            return False  # rescheduled since: a newer job will publish it
        try:
            await transition(self.db, Post, post.id, from_=SCHEDULED, to=PUBLISHED)
        except TransitionLost:
            return False  # unpublished or published by an editor since it was read
        post.revision += 1
        await self.db.flush()
        await self.changed(post, was_public=False)
        return True

    async def changed(self, post: Post, *, was_public: bool,
                      before_keys: set[SurrogateKey] | None = None) -> None:
        """Purge what showed (or now shows) ``post`` and tell subscribers, in this transaction."""
        is_public = post.status == PUBLISHED
        if not (was_public or is_public):
            return
        await self._purge(set(before_keys or ()) | post_keys(post))
        action: PostEventAction = ("updated" if was_public and is_public
                                   else "published" if is_public else "unpublished")
        await self._event(post, action)

    async def _purge(self, keys: set[SurrogateKey]) -> None:
        await emit_purge(self.db, keys)

    async def _event(self, post: Post, action: PostEventAction) -> None:
        await events.emit_post_event(self.db, PostEvent(
            post_id=post.id, action=action, type=post.type, slug=post.slug, revision=post.revision,
            url=self.url_for(post)))


# The status each editor action moves a post to ("save" keeps it).
_STATUS_AFTER: dict[str, str] = {"publish": PUBLISHED, "schedule": SCHEDULED, "unpublish": DRAFT}


def _audit_target(post: Post) -> str:
    return f"blog post {post.id}"  # stable across title and slug changes
