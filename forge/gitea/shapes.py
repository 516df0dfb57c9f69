"""Gitea's JSON objects as msgspec Structs, and the builders that fill them (issue 19 item 2).

Field names and types follow Gitea 1.22's swagger (``templates/swagger/v1_json.tmpl``:
definitions ``User``, ``Repository``, ``Permission``, ``Commit``, ``CommitStatus``...). Ids are
the integers of :mod:`forge.gitea_ids`; timestamps are RFC 3339 with whole seconds in UTC
(Gitea marshals ``time.Time`` that way: ``2024-01-01T00:00:00Z``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.settings import Settings
from domains.account.models import User
from forge.gitea_ids import gitea_ids
from forge.mirror_models import ForgeMirror
from forge.models import ForgeRepo
from forge.services import Permission, RepoService, at_least

EPOCH = "1970-01-01T00:00:00Z"


def ts(value: datetime | None) -> str:
    """RFC 3339, whole seconds, UTC (Gitea's zero time stands in for "never")."""
    if value is None:
        return EPOCH
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class UserJSON(msgspec.Struct, kw_only=True):
    """Gitea ``User``."""

    id: int
    login: str
    login_name: str
    source_id: int
    full_name: str
    email: str
    avatar_url: str
    html_url: str
    language: str
    is_admin: bool
    last_login: str
    created: str
    restricted: bool
    active: bool
    prohibit_login: bool
    location: str
    website: str
    description: str
    visibility: str
    followers_count: int
    following_count: int
    starred_repos_count: int
    username: str


class PermissionJSON(msgspec.Struct, kw_only=True):
    admin: bool
    push: bool
    pull: bool


class RepositoryJSON(msgspec.Struct, kw_only=True):
    """Gitea ``Repository`` (every field a typed client decodes; features we lack are false/0/"")."""

    id: int
    owner: UserJSON
    name: str
    full_name: str
    description: str
    empty: bool
    private: bool
    fork: bool
    template: bool
    parent: None
    mirror: bool
    size: int
    language: str
    languages_url: str
    html_url: str
    url: str
    link: str
    ssh_url: str
    clone_url: str
    original_url: str
    website: str
    stars_count: int
    forks_count: int
    watchers_count: int
    open_issues_count: int
    open_pr_counter: int
    release_counter: int
    default_branch: str
    archived: bool
    created_at: str
    updated_at: str
    archived_at: str
    permissions: PermissionJSON
    has_issues: bool
    has_wiki: bool
    has_pull_requests: bool
    has_projects: bool
    has_releases: bool
    has_packages: bool
    has_actions: bool
    ignore_whitespace_conflicts: bool
    allow_merge_commits: bool
    allow_rebase: bool
    allow_rebase_explicit: bool
    allow_squash_merge: bool
    allow_rebase_update: bool
    default_delete_branch_after_merge: bool
    default_merge_style: str
    default_allow_maintainer_edit: bool
    avatar_url: str
    internal: bool
    mirror_interval: str
    mirror_updated: str
    repo_transfer: None
    topics: list[str]
    object_format_name: str


def _email_for(user: User, viewer: User | None, base_url: str) -> str:
    """The address only its owner and admins see; others get Gitea's no-reply form."""
    if viewer is not None and (viewer.id == user.id or viewer.is_admin):
        return user.email
    host = base_url.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0] or "localhost"
    return f"{user.username}@noreply.{host}"


async def users_json(db: AsyncSession, base_url: str, users: list[User],
                     viewer: User | None = None) -> list[UserJSON]:
    ids = await gitea_ids(db, "user", [u.id for u in users])
    return [UserJSON(
        id=ids[u.id], login=u.username, login_name="", source_id=0, full_name=u.display_name or "",
        email=_email_for(u, viewer, base_url), avatar_url="", html_url=f"{base_url}/forge/{u.username}",
        language="", is_admin=u.is_admin if viewer is not None and viewer.is_admin else False,
        last_login=EPOCH, created=ts(u.created_at), restricted=False, active=u.is_active, prohibit_login=False,
        location="", website="", description=u.bio or "", visibility="public", followers_count=0,
        following_count=0, starred_repos_count=0, username=u.username,
    ) for u in users]


async def user_json(db: AsyncSession, base_url: str, user: User, viewer: User | None = None) -> UserJSON:
    return (await users_json(db, base_url, [user], viewer))[0]


def _duration(seconds: int) -> str:
    """Go's ``time.Duration.String()`` for whole seconds (Gitea's ``mirror_interval``: "8h0m0s")."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def _size_kib(path: Path) -> int:
    """Repository size in KiB as Gitea reports it (the object store on disk)."""
    total = 0
    objects = path / "objects"
    if objects.is_dir():
        for entry in objects.rglob("*"):
            try:
                if entry.is_file():
                    total += entry.stat().st_size
            except OSError:
                continue
    return total // 1024


async def repo_json(service: RepoService, settings: Settings, repo: ForgeRepo, permission: Permission,
                    *, owner: User | None = None, viewer: User | None = None) -> RepositoryJSON:
    db = service.db
    owner = owner or await db.get(User, repo.owner_id)
    assert owner is not None  # owner_id is a foreign key with ON DELETE CASCADE
    ids = await gitea_ids(db, "repo", [repo.id])
    pull = (await db.execute(
        select(ForgeMirror).where(ForgeMirror.repo_id == repo.id, ForgeMirror.direction == "pull")
    )).scalars().first()
    full_name = f"{owner.username}/{repo.name}"
    html = f"{settings.base_url}/forge/{full_name}"
    empty = not await service.refs(repo, "refs/heads/")
    return RepositoryJSON(
        id=ids[repo.id], owner=await user_json(db, settings.base_url, owner, viewer), name=repo.name,
        full_name=full_name,
        description=repo.description, empty=empty, private=repo.is_private, fork=False, template=False,
        parent=None, mirror=pull is not None, size=_size_kib(service.store.locate(repo.id)), language="",
        languages_url=f"{settings.base_url}/api/v1/repos/{full_name}/languages", html_url=html,
        url=f"{settings.base_url}/api/v1/repos/{full_name}", link="", ssh_url="", clone_url=f"{html}.git",
        original_url=pull.remote_url if pull is not None else "", website="", stars_count=0, forks_count=0,
        watchers_count=0, open_issues_count=0, open_pr_counter=0, release_counter=0,
        default_branch=repo.default_branch, archived=repo.is_archived, created_at=ts(repo.created_at),
        updated_at=ts(repo.updated_at), archived_at=ts(repo.updated_at) if repo.is_archived else EPOCH,
        permissions=PermissionJSON(admin=at_least(permission, "admin"), push=at_least(permission, "write"),
                                   pull=at_least(permission, "read")),
        has_issues=False, has_wiki=False, has_pull_requests=False, has_projects=False, has_releases=False,
        has_packages=False, has_actions=False, ignore_whitespace_conflicts=False, allow_merge_commits=False,
        allow_rebase=False, allow_rebase_explicit=False, allow_squash_merge=False, allow_rebase_update=False,
        default_delete_branch_after_merge=False, default_merge_style="merge",
        default_allow_maintainer_edit=False,
        avatar_url="", internal=False,
        mirror_interval=_duration(pull.interval_seconds) if pull is not None else "",
        mirror_updated=ts(pull.last_sync_at) if pull is not None else EPOCH, repo_transfer=None,
        topics=repo.topics.split(), object_format_name="sha1",
    )
