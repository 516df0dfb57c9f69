"""Ghost JSON export → posts, pages, tags and authors, in one transaction (design/domains.md §1).

The file is decoded with msgspec Structs that ignore unknown tables and columns, then checked
whole before anything is written: a malformed or partial export raises
:class:`GhostImportError` with a clear message and nothing is imported. Rows are upserted by
Ghost id, then by slug, and only changed columns are written, so importing the same file
twice gives the same rows (the second run reports everything unchanged).

Bodies: Ghost's rendered ``html`` is sanitised (wider allowlist for Ghost cards) and kept as
``legacy_html`` with ``__GHOST_URL__`` replaced by the old site's origin. A post with only
``lexical``/``mobiledoc`` is skipped and reported, never guessed. Authors are matched to members
by email; unmatched ones are created locked (no usable password) with the author role.
Imports purge the edge but emit no post events: moving a site is not news to federate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar.exceptions import ClientException
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.forms import InputProblems
from app.jobs import enqueue
from app.json_input import decode_json
from domains.account.models import User
from domains.account.newsletters.services import ghost_members, import_ghost_members
from domains.account.schemas import email_problem
from domains.account.services import AccountService
from domains.blog.models import DRAFT, INTERNAL_TAG, PAGE, POST, PUBLIC_TAG, PUBLISHED, SCHEDULED, Post, Tag
from domains.blog.renderer import excerpt_of, sanitise_legacy_html
from domains.blog.schemas import (
    MAX_SLUG,
    GhostData,
    GhostDb,
    GhostPost,
    GhostTag,
    GhostUser,
    GhostWrapped,
    ImportReport,
    PublishScheduled,
    slugify,
)
from domains.blog.services import PUBLISH_SCHEDULED, BlogService, post_keys, with_relations
from fragments.purge import SurrogateKey, emit_purge

__all__ = ["GhostImportError", "decode_export", "import_ghost", "parse_ghost_date"]

MAX_EXPORT_BYTES = 200 * 1024 * 1024
GHOST_STATUSES = {"published": PUBLISHED, "draft": DRAFT, "scheduled": SCHEDULED}


class GhostImportError(Exception):
    """The export cannot be imported as a whole; nothing was written."""


def parse_ghost_date(value: Any, what: str) -> datetime | None:
    """Epoch milliseconds, ``"YYYY-MM-DD HH:MM:SS"`` (UTC) or ISO 8601, as Ghost files contain."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise GhostImportError(f"{what}: {value!r} is not a date")
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value / 1000, tz=UTC).replace(microsecond=0)
        except (OverflowError, OSError, ValueError):
            raise GhostImportError(f"{what}: {value!r} is not a date") from None
    text = str(value).strip()
    if text.isdigit():
        return parse_ghost_date(int(text), what)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise GhostImportError(f"{what}: {text!r} is not a date (epoch ms or YYYY-MM-DD HH:MM:SS)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).replace(microsecond=0)


def decode_export(raw: bytes) -> tuple[GhostData, str | None]:
    """The ``data`` of a wrapped (``{"db":[{"meta","data"}]}``) or unwrapped export, and its version."""
    if len(raw) > MAX_EXPORT_BYTES:
        raise GhostImportError("The export is larger than 200 MB.")
    try:  # the kernel decoder: deep nesting, bad UTF-8 and NULs are a message, not a 500
        obj = decode_json(raw, max_bytes=MAX_EXPORT_BYTES)
    except ClientException as exc:
        raise GhostImportError(f"{exc.detail} Is the file a complete Ghost export?") from None
    if not isinstance(obj, dict):
        raise GhostImportError("Not a Ghost export: the file should be a JSON object.")
    try:
        if "db" in obj:
            wrapped = msgspec.convert(obj, GhostWrapped)
            if not wrapped.db:
                raise GhostImportError("Not a Ghost export: \"db\" is empty.")
            db = wrapped.db[0]
        elif "data" in obj:
            db = msgspec.convert(obj, GhostDb)
        else:
            raise GhostImportError('Not a Ghost export: expected {"db": [{"meta": …, "data": …}]} '
                                   'or {"meta": …, "data": …}.')
    except msgspec.ValidationError as exc:
        raise GhostImportError(f"Malformed Ghost export: {exc}") from None
    return db.data, db.meta.version


def _text(value: str | None) -> str:
    return (value or "").strip()


@dataclass
class _PostPlan:
    src: GhostPost
    ghost_id: str
    values: dict[str, Any]
    tag_ids: list[str] = field(default_factory=list)
    author_ids: list[str] = field(default_factory=list)


def _check(data: GhostData) -> None:
    """Structural checks that make an export unusable as a whole."""
    for table, rows in (("posts", data.posts), ("tags", data.tags), ("users", data.users)):
        ids = [str(r.id) for r in rows]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise GhostImportError(f"Malformed Ghost export: {table} has duplicate ids {', '.join(dupes[:5])}.")
    for i, post in enumerate(data.posts):
        if not _text(post.title) and not _text(post.slug):
            raise GhostImportError(f"Partial Ghost export: posts[{i}] (id {post.id}) has neither title nor slug.")


def _post_values(post: GhostPost, meta: dict[str, Any], ghost_url: str, report: ImportReport) -> dict[str, Any] | None:
    gid = str(post.id)
    title = _text(post.title) or _text(post.slug)
    post_type = PAGE if (post.type == "page" or post.page in (True, 1)) else POST
    status_raw = _text(post.status) or "draft"
    status = GHOST_STATUSES.get(status_raw)
    if status is None:
        report.skipped.append(f"{post_type} “{title}” (id {gid}): status {status_raw!r} is not imported")
        return None
    if post.html is None and (post.lexical or post.mobiledoc):
        report.skipped.append(f"{post_type} “{title}” (id {gid}): only lexical/mobiledoc, no html — "
                              "fetch its html through the Admin API")
        return None
    html = sanitise_legacy_html(post.html or "", ghost_url=ghost_url)
    published_at = parse_ghost_date(post.published_at, f"posts id {gid} published_at")
    updated_at = parse_ghost_date(post.updated_at, f"posts id {gid} updated_at")
    created_at = parse_ghost_date(post.created_at, f"posts id {gid} created_at")
    if status == SCHEDULED and published_at is None:
        report.skipped.append(f"{post_type} “{title}” (id {gid}): scheduled without a date")
        return None

    def pick(name: str) -> str:
        value = meta.get(name)
        if value is None:
            value = getattr(post, name, None)
        text = _text(value if isinstance(value, str) else None)
        return text.replace("__GHOST_URL__", ghost_url.rstrip("/"))

    return {
        "type": post_type, "title": title[:255], "status": status, "visibility": _text(post.visibility) or "public",
        "featured": bool(post.featured), "legacy_html": html, "markdown": "", "html": "", "html_key": "",
        "plaintext_excerpt": excerpt_of(html), "custom_excerpt": _text(post.custom_excerpt)[:2000],
        "feature_image": _text(post.feature_image).replace("__GHOST_URL__", ghost_url.rstrip("/"))[:2048],
        "feature_image_alt": pick("feature_image_alt")[:1000], "feature_image_caption": pick("feature_image_caption"),
        "published_at": published_at, "meta_title": pick("meta_title")[:300],
        "meta_description": pick("meta_description")[:500], "canonical_url": _text(post.canonical_url)[:2048],
        "og_image": pick("og_image")[:2048], "og_title": pick("og_title")[:300],
        "og_description": pick("og_description")[:500], "twitter_image": pick("twitter_image")[:2048],
        "twitter_title": pick("twitter_title")[:300], "twitter_description": pick("twitter_description")[:500],
        "ghost_id": gid, "ghost_uuid": _text(post.uuid) or None, "comment_id": _text(post.comment_id) or None,
        "ghost_updated_at": updated_at,
        **({"created_at": created_at} if created_at is not None else {}),
    }


def _tag_values(tag: GhostTag) -> dict[str, Any]:
    name = " ".join(tag.name.split())[:191] or "tag"
    internal = name.startswith("#") or tag.visibility == "internal"
    slug = _text(tag.slug) or (("hash-" + slugify(name[1:], "tag")) if name.startswith("#") else slugify(name, "tag"))
    return {"name": name, "slug": slug[:MAX_SLUG], "description": _text(tag.description),
            "visibility": INTERNAL_TAG if internal else PUBLIC_TAG, "ghost_id": str(tag.id)}


async def import_ghost(db: AsyncSession, raw: bytes, *, dry_run: bool = False, ghost_url: str = "",
                       base_url: str = "") -> ImportReport:
    """Import ``raw`` (a Ghost JSON export) in ``db``'s transaction; report what was (or would be) done.

    Raises :class:`GhostImportError` before writing anything if the export is malformed or
    partial. The caller commits (or, on any error, rolls back) the one transaction.
    """
    data, version = decode_export(raw)
    _check(data)
    try:  # checked before anything is written, like the rest of the file
        members_data = ghost_members(raw) if b'"members"' in raw or b'"newsletters"' in raw else None
    except InputProblems as exc:
        raise GhostImportError(str(exc.errors.get("members", exc))) from None
    report = ImportReport(dry_run=dry_run, ghost_version=version)
    meta_by_post = {str(m.post_id): {k: v for k, v in msgspec.structs.asdict(m).items() if v is not None}
                    for m in data.posts_meta}

    plans: list[_PostPlan] = []
    for post in data.posts:
        values = _post_values(post, meta_by_post.get(str(post.id), {}), ghost_url, report)
        if values is not None:
            plans.append(_PostPlan(src=post, ghost_id=str(post.id), values=values))
    by_gid = {p.ghost_id: p for p in plans}
    imported_gids = {str(p.id) for p in data.posts}

    tags_by_gid = {str(t.id): t for t in data.tags}
    users_by_gid = {str(u.id): u for u in data.users}
    for rel in sorted(data.posts_tags, key=lambda r: (str(r.post_id), r.sort_order or 0)):
        pid, tid = str(rel.post_id), str(rel.tag_id)
        if tid not in tags_by_gid or pid not in imported_gids:
            report.skipped.append(f"posts_tags: post {pid} → tag {tid} refers to a row not in the file")
        elif pid in by_gid and tid not in by_gid[pid].tag_ids:
            by_gid[pid].tag_ids.append(tid)
    for arel in sorted(data.posts_authors, key=lambda r: (str(r.post_id), r.sort_order or 0)):
        pid, uid = str(arel.post_id), str(arel.author_id)
        if uid not in users_by_gid or pid not in imported_gids:
            report.skipped.append(f"posts_authors: post {pid} → user {uid} refers to a row not in the file")
        elif pid in by_gid and uid not in by_gid[pid].author_ids:
            by_gid[pid].author_ids.append(uid)

    for plan in plans:  # very old files: the author is on the post row
        if not plan.author_ids and plan.src.author_id is not None and str(plan.src.author_id) in users_by_gid:
            plan.author_ids.append(str(plan.src.author_id))
    # Authors: only users who wrote something we import, matched to members by email.
    wanted_users = [users_by_gid[uid] for uid in dict.fromkeys(u for p in plans for u in p.author_ids)]
    authors = await _import_authors(db, wanted_users, report, dry_run)
    tags = await _import_tags(db, [tags_by_gid[t] for t in dict.fromkeys(t for p in plans for t in p.tag_ids)],
                              report, dry_run)

    service = BlogService(db, base_url=base_url)
    purge: set[SurrogateKey] = set()
    for plan in plans:
        await _import_post(db, service, plan, tags, authors, report, dry_run, purge)
    if not dry_run:
        await db.flush()
        await emit_purge(db, purge)
    if members_data is not None:
        # Ghost's newsletters and members become the account domain's lists and subscribers,
        # through its service (the blog never writes account tables), in this same transaction.
        members = await import_ghost_members(db, members_data, dry_run=dry_run)
        report.members = members.lines()
    return report


async def _import_authors(db: AsyncSession, users: list[GhostUser], report: ImportReport,
                          dry_run: bool) -> dict[str, User]:
    accounts = AccountService(db)
    found: dict[str, User] = {}
    for user in users:
        email = _text(user.email).lower()
        if not email or email_problem(email):
            report.skipped.append(f"user {user.id} ({user.name or user.slug}): no usable email, not linked as author")
            continue
        member = await accounts.by_email(email)
        if member is not None:
            report.authors_matched += 1
            if not dry_run and not member.is_author:
                await accounts.set_author(member, True)
        else:
            report.authors_created += 1
            if dry_run:
                continue
            try:
                member = await accounts.create_imported_author(
                    username=_text(user.slug) or email.split("@")[0], email=email,
                    display_name=_text(user.name), bio=_text(user.bio))
            except InputProblems as exc:
                report.skipped.append(f"user {user.id}: {exc}")
                continue
        if member is not None:
            found[str(user.id)] = member
    return found


async def _import_tags(db: AsyncSession, rows: list[GhostTag], report: ImportReport,
                       dry_run: bool) -> dict[str, Tag]:
    found: dict[str, Tag] = {}
    for row in rows:
        values = _tag_values(row)
        tag = (await db.execute(select(Tag).where(Tag.ghost_id == values["ghost_id"]))).scalar_one_or_none()
        if tag is None:
            tag = (await db.execute(select(Tag).where(Tag.slug == values["slug"]))).scalar_one_or_none()
            if tag is not None and tag.ghost_id not in (None, values["ghost_id"]):
                report.conflicts.append(f"tag slug {values['slug']!r} belongs to another Ghost tag; reused")
                values.pop("ghost_id")
        if tag is None:
            report.tags_created += 1
            if dry_run:
                continue
            tag = Tag(**values)
            db.add(tag)
            await db.flush()
        elif _would_change(tag, values):
            report.tags_updated += 1
            if not dry_run:
                _assign(tag, values)
        found[str(row.id)] = tag
    return found


def _assign(obj: Any, values: dict[str, Any]) -> bool:
    """Set only the attributes that differ (so an identical re-import writes nothing)."""
    changed = False
    for name, value in values.items():
        if getattr(obj, name) != value:
            setattr(obj, name, value)
            changed = True
    return changed


async def _import_post(db: AsyncSession, service: BlogService, plan: _PostPlan, tags: dict[str, Tag],
                       authors: dict[str, User], report: ImportReport, dry_run: bool, purge: set[SurrogateKey]) -> None:
    values = dict(plan.values)
    kind = values["type"]
    post = (await db.execute(with_relations(select(Post).where(Post.ghost_id == plan.ghost_id)))).scalar_one_or_none()
    slug = slugify(_text(plan.src.slug) or values["title"])
    if post is None:
        same_slug = await service.by_slug(slug)
        if same_slug is not None and same_slug.ghost_id in (None, plan.ghost_id):
            post = same_slug  # adopt the post we already have under that slug
        elif same_slug is not None:
            new_slug = await service.suggest_slug(slug)
            report.conflicts.append(f"slug {slug!r} belongs to another post; imported as {new_slug!r}")
            slug = new_slug
    else:
        owner = await service.slug_owner(slug)
        if owner is not None and owner != post.id:
            report.conflicts.append(f"slug {slug!r} belongs to another post; kept {post.slug!r}")
            slug = post.slug
    values["slug"] = slug
    created = post is None
    if created:
        setattr(report, f"{kind}s_created", getattr(report, f"{kind}s_created") + 1)
        if dry_run:
            return
        post = Post(revision=1, **values)
        post.tag_links = []
        post.author_links = []
        db.add(post)
        await db.flush()
        was_public, before = False, set()
    else:
        assert post is not None
        was_public = post.status == PUBLISHED
        before = post_keys(post) if was_public else set()
        slug_value = values.pop("slug")
        changed = _would_change(post, values) or slug_value != post.slug
        changed |= [link.tag_id for link in post.tag_links] != [tags[t].id for t in plan.tag_ids if t in tags]
        changed |= [link.author_id for link in post.author_links] != [authors[a].id for a in plan.author_ids
                                                                       if a in authors]
        if not changed:
            setattr(report, f"{kind}s_unchanged", getattr(report, f"{kind}s_unchanged") + 1)
            return
        setattr(report, f"{kind}s_updated", getattr(report, f"{kind}s_updated") + 1)
        if dry_run:
            return
        await service._set_slug(post, slug_value)
        _assign(post, values)
        post.revision += 1
    await service.set_tags(post, [tags[t] for t in plan.tag_ids if t in tags])
    await service.set_authors(post, [authors[a] for a in plan.author_ids if a in authors])
    await db.flush()
    if post.status == SCHEDULED and post.published_at is not None:
        await enqueue(db, PUBLISH_SCHEDULED, PublishScheduled(post_id=post.id, scheduled_for=post.published_at),
                      run_at=post.published_at)
    if was_public or post.status == PUBLISHED:
        purge.update(before | post_keys(post))


def _would_change(obj: Any, values: dict[str, Any]) -> bool:
    return any(getattr(obj, name) != value for name, value in values.items())
