"""Blog contracts: editor input, what other domains read, events, and Ghost's wire shapes.

Ghost's export and webhook Structs ignore unknown fields (msgspec's default), so newer Ghost
versions with more columns still decode; types are loose where Ghost's are (ids may be ints in
old files, dates epoch ms or ``"YYYY-MM-DD HH:MM:SS"`` strings).
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import msgspec
from advanced_alchemy.utils.text import slugify as slugify_text

MAX_TITLE = 255
MAX_SLUG = 191
MAX_BODY_CHARS = 200_000
MAX_EXCERPT = 2_000
MAX_TAGS = 20
PER_PAGE = 10
# Slugs that /blog/<slug> cannot take because the blog uses the path itself.
RESERVED_SLUGS = frozenset({"admin", "tag", "author", "feed.atom", "feed.rss", "page", "preview", "embed"})

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,189}[a-z0-9])?$")
_NOT_WORD = re.compile(r"[\W_]+")

PostAction = Literal["save", "publish", "schedule", "unpublish", "preview"]
PostEventAction = Literal["published", "updated", "unpublished", "deleted"]


def slugify(text: str, fallback: str = "untitled") -> str:
    """Lowercase ASCII words joined by ``-`` (accents folded), at most 191 characters.

    advanced-alchemy's slugify folds and joins; first every mark that is not a letter or digit
    (an underscore, an apostrophe, "&", a dash of any kind) becomes a space, so it separates words
    ("rock&roll" -> "rock-roll") rather than vanishing ("rockroll"), and no "_" reaches a slug.
    """
    words = _NOT_WORD.sub(" ", unicodedata.normalize("NFKC", text))  # composed: "é" is one letter
    return slugify_text(words)[:MAX_SLUG].strip("-") or fallback


class _PostFields(msgspec.Struct, kw_only=True):
    """The post's fields as the editor holds them (all strings, as typed)."""

    type: str = "post"
    title: str = ""
    slug: str = ""
    markdown: str = ""
    custom_excerpt: str = ""
    tags: str = ""  # comma-separated tag names, first = primary
    authors: str = ""  # comma-separated usernames, first = primary; empty = the editor
    feature_image: str = ""
    feature_image_alt: str = ""
    feature_image_caption: str = ""
    published_at: str = ""  # "YYYY-MM-DDTHH:MM" in UTC, for scheduling
    meta_title: str = ""
    meta_description: str = ""
    canonical_url: str = ""
    og_title: str = ""
    og_description: str = ""
    og_image: str = ""
    twitter_title: str = ""
    twitter_description: str = ""
    twitter_image: str = ""


TEXT_FIELDS = _PostFields.__struct_fields__


class PostInput(_PostFields, kw_only=True):
    """What ``BlogService.save``/``autosave`` take: the editor's text fields and ``featured``."""

    featured: bool = False

    def tag_names(self) -> list[str]:
        seen: dict[str, str] = {}
        for raw in self.tags.split(","):
            name = " ".join(raw.split())
            if name and name.lower() not in seen:
                seen[name.lower()] = name
        return list(seen.values())

    def author_names(self) -> list[str]:
        names: list[str] = []
        for raw in self.authors.replace("@", "").split(","):
            name = raw.strip().lower()
            if name and name not in names:
                names.append(name)
        return names


EDITOR_ACTIONS: tuple[PostAction, ...] = ("save", "publish", "schedule", "unpublish", "preview")


class EditorForm(_PostFields, kw_only=True):
    """The editor form as submitted (``parse_form``): the post's fields, the button pressed, and
    the id of the draft an autosave already created."""

    featured: str = ""  # a checkbox: on when sent with any non-empty value
    action: str = "save"  # a PostAction, or "convert" (Ghost HTML -> Markdown, for review)
    post_id: str = ""

    def post_input(self) -> PostInput:
        values = {name: getattr(self, name) for name in TEXT_FIELDS}
        values["type"] = self.type or "post"
        return PostInput(**values, featured=bool(self.featured))

    def post_action(self) -> PostAction:
        """The button pressed, as the service knows it; anything else (``convert``) saves."""
        for action in EDITOR_ACTIONS:
            if self.action == action:
                return action
        return "save"


class PreviewForm(msgspec.Struct, kw_only=True):
    markdown: str = ""


class NavigationForm(msgspec.Struct, kw_only=True):
    """Both menus' rows as parallel lists (one label, URL and position input per row)."""

    primary_label: list[str] = []
    primary_url: list[str] = []
    primary_position: list[str] = []
    secondary_label: list[str] = []
    secondary_url: list[str] = []
    secondary_position: list[str] = []

    def rows(self, menu: Literal["primary", "secondary"]) -> tuple[list[str], list[str], list[str]]:
        """``(labels, urls, positions)`` of one menu."""
        if menu == "primary":
            return self.primary_label, self.primary_url, self.primary_position
        return self.secondary_label, self.secondary_url, self.secondary_position


class ImportForm(msgspec.Struct, kw_only=True):
    """The Ghost import form's text fields (the uploaded file is read from the form itself)."""

    dry_run: str = ""  # a checkbox: on when sent with any non-empty value
    ghost_url: str = ""


class TagRead(msgspec.Struct, kw_only=True):
    id: UUID
    name: str
    slug: str
    url: str


class AuthorRead(msgspec.Struct, kw_only=True):
    id: UUID
    username: str
    name: str
    url: str


class PostRead(msgspec.Struct, kw_only=True):
    """A post or page as other domains (ActivityPub, search, the exporter) see it."""

    id: UUID
    type: str
    title: str
    slug: str
    url: str  # absolute, on settings.base_url
    status: str
    visibility: str  # "public", or Ghost's members/paid/tiers: then federate a teaser, not ``html``
    html: str  # sanitised: Markdown rendering or Ghost legacy HTML
    markdown: str
    excerpt: str
    feature_image: str
    feature_image_alt: str
    published_at: datetime | None
    created_at: datetime
    updated_at: datetime
    revision: int
    tags: list[TagRead]  # public tags only, primary first
    authors: list[AuthorRead]  # primary first
    meta_title: str
    meta_description: str
    canonical_url: str
    ghost_id: str | None
    ghost_uuid: str | None


class PostEvent(msgspec.Struct, frozen=True, kw_only=True):
    """The payload of every ``blog.post.*`` subscriber job (see domains/blog/events.py)."""

    post_id: UUID
    action: PostEventAction
    type: str
    slug: str
    revision: int
    url: str


class PublishScheduled(msgspec.Struct, frozen=True, kw_only=True):
    post_id: UUID
    # The published_at this job was queued for; a rescheduled post leaves the old job a no-op.
    scheduled_for: datetime


class NavLink(msgspec.Struct, kw_only=True):
    label: str
    url: str


class NavigationRead(msgspec.Struct, kw_only=True):
    primary: list[NavLink]
    secondary: list[NavLink]
    revision: str  # changes whenever either menu is saved


# --- Ghost export (https://docs.ghost.org/migration/custom) -------------------------------------

GhostId = str | int
GhostDate = str | int | float | None


class GhostMetaFields(msgspec.Struct, kw_only=True):
    """SEO and image fields: on the post row in Ghost 1.x-4.x files, in posts_meta in newer ones."""

    meta_title: str | None = None
    meta_description: str | None = None
    og_image: str | None = None
    og_title: str | None = None
    og_description: str | None = None
    twitter_image: str | None = None
    twitter_title: str | None = None
    twitter_description: str | None = None
    feature_image_alt: str | None = None
    feature_image_caption: str | None = None


class GhostPost(GhostMetaFields, kw_only=True):
    id: GhostId
    title: str | None = None
    slug: str | None = None
    uuid: str | None = None
    html: str | None = None
    lexical: str | None = None
    mobiledoc: str | None = None
    plaintext: str | None = None
    comment_id: str | None = None
    feature_image: str | None = None
    featured: bool | int | None = False
    type: str | None = None
    page: bool | int | None = None  # very old files: page 0/1 instead of type
    author_id: GhostId | None = None  # very old files: one author on the post row, no posts_authors
    status: str | None = "draft"
    visibility: str | None = "public"
    created_at: GhostDate = None
    updated_at: GhostDate = None
    published_at: GhostDate = None
    custom_excerpt: str | None = None
    canonical_url: str | None = None


class GhostPostMeta(GhostMetaFields, kw_only=True):
    post_id: GhostId


class GhostTag(msgspec.Struct, kw_only=True):
    id: GhostId
    name: str
    slug: str | None = None
    description: str | None = None
    visibility: str | None = "public"


class GhostPostTag(msgspec.Struct, kw_only=True):
    post_id: GhostId
    tag_id: GhostId
    sort_order: int | None = 0


class GhostUser(msgspec.Struct, kw_only=True):
    id: GhostId
    name: str | None = None
    slug: str | None = None
    email: str | None = None
    bio: str | None = None
    website: str | None = None
    profile_image: str | None = None
    roles: list[Any] | None = None


class GhostPostAuthor(msgspec.Struct, kw_only=True):
    post_id: GhostId
    author_id: GhostId
    sort_order: int | None = 0


class GhostData(msgspec.Struct, kw_only=True):
    posts: list[GhostPost]
    posts_meta: list[GhostPostMeta] = msgspec.field(default_factory=list)
    tags: list[GhostTag] = msgspec.field(default_factory=list)
    posts_tags: list[GhostPostTag] = msgspec.field(default_factory=list)
    users: list[GhostUser] = msgspec.field(default_factory=list)
    posts_authors: list[GhostPostAuthor] = msgspec.field(default_factory=list)


class GhostMeta(msgspec.Struct, kw_only=True):
    exported_on: int | float | str | None = None
    version: str | None = None


class GhostDb(msgspec.Struct, kw_only=True):
    meta: GhostMeta = msgspec.field(default_factory=GhostMeta)
    data: GhostData


class GhostWrapped(msgspec.Struct, kw_only=True):
    db: list[GhostDb]


class ImportReport(msgspec.Struct, kw_only=True):
    """What an import did (or, with ``dry_run``, would do)."""

    dry_run: bool
    ghost_version: str | None = None
    posts_created: int = 0
    posts_updated: int = 0
    posts_unchanged: int = 0
    pages_created: int = 0
    pages_updated: int = 0
    pages_unchanged: int = 0
    tags_created: int = 0
    tags_updated: int = 0
    authors_matched: int = 0
    authors_created: int = 0
    skipped: list[str] = msgspec.field(default_factory=list)
    conflicts: list[str] = msgspec.field(default_factory=list)
    members: list[str] = msgspec.field(default_factory=list)  # newsletters and members (account's report)

    def lines(self) -> list[str]:
        verb = "would be" if self.dry_run else "were"
        out = [
            f"posts: {self.posts_created} created, {self.posts_updated} updated, "
            f"{self.posts_unchanged} unchanged",
            f"pages: {self.pages_created} created, {self.pages_updated} updated, "
            f"{self.pages_unchanged} unchanged",
            f"tags: {self.tags_created} created, {self.tags_updated} updated",
            f"authors: {self.authors_matched} matched by email, {self.authors_created} created (locked)",
        ]
        out += self.members
        out += [f"conflict: {c}" for c in self.conflicts]
        out += [f"skipped: {s}" for s in self.skipped]
        out.append(f"(dry run: nothing {verb} written)" if self.dry_run else "import committed")
        return out


# --- Ghost webhooks ---------------------------------------------------------------------------


class GhostWebhookPost(GhostMetaFields, kw_only=True):
    """A post as Ghost's webhook body carries it (the Admin API's post shape)."""

    id: str | None = None
    uuid: str | None = None
    title: str | None = None
    slug: str | None = None
    html: str | None = None
    comment_id: str | None = None
    feature_image: str | None = None
    feature_image_alt: str | None = None
    feature_image_caption: str | None = None
    featured: bool | None = False
    type: str | None = None
    status: str | None = None
    visibility: str | None = "public"
    created_at: str | None = None
    updated_at: str | None = None
    published_at: str | None = None
    custom_excerpt: str | None = None
    canonical_url: str | None = None
    twitter_description: str | None = None
    tags: list[dict[str, Any]] | None = None
    authors: list[dict[str, Any]] | None = None


class GhostWebhookChange(msgspec.Struct, kw_only=True):
    """``current`` is empty for a deletion; ``previous`` holds the changed fields' old values."""

    current: dict[str, Any] = msgspec.field(default_factory=dict)
    previous: dict[str, Any] = msgspec.field(default_factory=dict)


class GhostWebhookBody(msgspec.Struct, kw_only=True):
    post: GhostWebhookChange | None = None
    page: GhostWebhookChange | None = None
