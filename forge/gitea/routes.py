"""More of Gitea's ``/api/v1`` (issue 19 item 2), in Gitea's shapes (``forge.gitea.shapes``).

``GET /version``, ``GET /settings/api``, ``GET /users/{u}``, ``GET /users/{u}/repos``,
``GET /repos/search``; per repository: ``contents`` (GET file/dir, POST create, PUT update,
DELETE), ``raw``, ``media``, ``branches/{b}``, ``branch_protections``, ``git/refs``,
``git/commits/{sha}``, ``git/trees/{sha}``, ``commits``, ``commits/{ref}/status``,
``commits/{ref}/statuses``, ``statuses/{sha}`` (GET, POST), ``hooks`` (CRUD and ``tests``),
``archive/{ref}.zip|.tar.gz``, ``topics`` (GET, PUT).

Gated exactly as git access is (forge.guards.load_repo: private and absent both 404, a token
must carry ``repo:read``/``repo:write``). Lists page as Gitea does (``?page=&limit=``, capped at
50) with ``X-Total-Count`` and an RFC 8288 ``Link`` header (rel next/prev/first/last). Errors
carry Gitea's ``{"message", "url"}`` (app/errors.py adds them under ``/api/v1``), so whatever Gitea has
and this forge does not serve is Gitea's 404 as well (the router's own "no route" answer).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, urlencode

import msgspec
from litestar import Request, Response, Router, delete, get, patch, post, put
from litestar.exceptions import ClientException
from litestar.response import Stream
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import access
from app.forms import InputProblems
from app.params import PageNumber, PageSize
from app.settings import Settings
from domains.account.models import User
from forge import contents as git
from forge import statuses as status_service
from forge import webhooks
from forge.access import may_see
from forge.browse.gitread import NotFound as BrowseNotFound
from forge.browse.gitread import Reader
from forge.browse.render import INLINE_MAX_BYTES
from forge.catfile import pool_for
from forge.deps import DEPENDENCIES
from forge.gitea.shapes import RepositoryJSON, UserJSON, repo_json, ts, user_json
from forge.gitea_ids import gitea_id, target_of
from forge.gitea_models import ForgeWebhook
from forge.guards import load_repo, request_line, viewer
from forge.models import ForgeCollaborator, ForgeRepo
from forge.queries import user_by_username
from forge.runtime import ForgeRuntime
from forge.services import Permission, RepoService

API = "/api/v1"
R = f"{API}/repos/{{owner:str}}/{{repo:str}}"
DEFAULT_LIMIT = 30
MAX_LIMIT = 50
# What /version answers: tea and the Go SDK parse it with hashicorp/go-version (a SemVer with
# "+build" metadata is accepted and ignored); Renovate reads it with semver.coerce.
VERSION = "1.22.0+rose-ash"
TOPIC = re.compile(r"^[a-z0-9][a-z0-9-.]{0,34}$")  # Gitea models/repo/topic.go validTopic
MAX_TOPICS = 25
RAW_CHUNK = 64 * 1024


class GiteaError(ClientException):
    pass


def fail(status: int, message: str) -> GiteaError:
    return GiteaError(message, status_code=status)


# -- helpers -----------------------------------------------------------------------------------------
async def _repo(request: Request[Any, Any, Any], service: RepoService, owner: str, name: str,
                need: Permission) -> tuple[ForgeRepo, Permission]:
    user, auth = viewer(request)
    return await load_repo(service, owner, name, user, need, auth, audit=request_line(request))


def _writable(repo: ForgeRepo) -> None:
    if repo.is_archived:
        raise fail(423, "This repository is archived: it is read-only.")


def _limit(limit: int) -> int:
    return min(MAX_LIMIT, limit)  # Gitea caps a larger limit rather than refusing it


def paged(request: Request[Any, Any, Any], items: Any, total: int, page: int, limit: int) -> Response[Any]:
    """Gitea's ``X-Total-Count`` and ``Link`` (routers/api/v1/utils SetLinkHeader)."""
    last = max(1, math.ceil(total / limit)) if limit else 1
    params = dict(request.query_params)
    base = f"{request.base_url}".rstrip("/") + request.url.path

    def link(n: int, rel: str) -> str:
        return f'<{base}?{urlencode({**params, "page": n, "limit": limit})}>; rel="{rel}"'

    links = []
    if page < last:
        links += [link(page + 1, "next"), link(last, "last")]
    if page > 1:
        links += [link(1, "first"), link(page - 1, "prev")]
    headers = {"X-Total-Count": str(total), "Access-Control-Expose-Headers": "X-Total-Count, Link"}
    if links:
        headers["Link"] = ",".join(links)
    return Response(items, headers=headers)


def _api_base(settings: Settings, owner: str, repo: ForgeRepo) -> str:
    return f"{settings.base_url}/api/v1/repos/{owner}/{repo.name}"


def _web_base(settings: Settings, owner: str, repo: ForgeRepo) -> str:
    return f"{settings.base_url}/forge/{owner}/{repo.name}"


# -- server ------------------------------------------------------------------------------------------
class ServerVersion(msgspec.Struct):
    version: str


@get(f"{API}/version", name="api:gitea:version")
async def version() -> ServerVersion:
    return ServerVersion(version=VERSION)


class GeneralAPISettings(msgspec.Struct, kw_only=True):
    max_response_items: int
    default_paging_num: int
    default_git_trees_per_page: int
    default_max_blob_size: int


@get(f"{API}/settings/api", name="api:gitea:settings_api")
async def settings_api() -> GeneralAPISettings:
    return GeneralAPISettings(max_response_items=MAX_LIMIT, default_paging_num=DEFAULT_LIMIT,
                              default_git_trees_per_page=1000, default_max_blob_size=git.MAX_BLOB_INLINE)


# -- users and search ---------------------------------------------------------------------------------
@get(f"{API}/user", name="api:user")
async def current_user(request: Request[Any, Any, Any], db_session: AsyncSession, settings: Settings) -> UserJSON:
    """The authenticated user (Gitea ``GET /api/v1/user``, swagger ``User``), with the same integer
    id as ``/users/{name}`` and every other Gitea shape; the email is the real one (it is theirs).

    Here rather than in the account domain: the integer id comes from forge/gitea_ids.py, and the
    account domain may not import forge (tea and py-gitea read this id first)."""
    user = viewer(request)[0]
    if user is None:  # the route class already demands a token with scope "api"; never reached
        raise fail(401, "token is required")
    return await user_json(db_session, settings.base_url, user, user)


@get(f"{API}/users/{{username:str}}", name="api:gitea:user")
async def get_user(request: Request[Any, Any, Any], db_session: AsyncSession, settings: Settings,
                   username: str) -> UserJSON:
    found = await user_by_username(db_session, username)
    if found is None or not found.is_active:
        raise fail(404, "user does not exist")
    return await user_json(db_session, settings.base_url, found, viewer(request)[0])


async def _visible(service: RepoService, user: User | None, auth: Any, repos: list[ForgeRepo]) -> \
        list[tuple[ForgeRepo, Permission]]:
    out = []
    for repo in repos:
        permission = await service.permission(user, repo)
        if may_see(repo.is_private, permission, auth):
            out.append((repo, permission))
    return out


@get(f"{API}/users/{{username:str}}/repos", name="api:gitea:user_repos")
async def list_user_repos(request: Request[Any, Any, Any], db_session: AsyncSession, repo_service: RepoService,
                          settings: Settings, username: str, page: PageNumber = 1,
                          limit: PageSize = DEFAULT_LIMIT) -> Response[Any]:
    owner = await user_by_username(db_session, username)
    if owner is None or not owner.is_active:
        raise fail(404, "user does not exist")
    user, auth = viewer(request)
    repos = list((await db_session.execute(
        select(ForgeRepo).where(ForgeRepo.owner_id == owner.id).order_by(ForgeRepo.lower_name)
    )).scalars().all())
    visible = await _visible(repo_service, user, auth, repos)
    limit = _limit(limit)
    chunk = visible[(page - 1) * limit:page * limit]
    out = [await repo_json(repo_service, settings, r, p, owner=owner, viewer=user) for r, p in chunk]
    return paged(request, out, len(visible), page, limit)


class SearchResults(msgspec.Struct):
    ok: bool
    data: list[RepositoryJSON]


@get(f"{API}/repos/search", name="api:gitea:repo_search")
async def search_repos(request: Request[Any, Any, Any], db_session: AsyncSession, repo_service: RepoService,
                       settings: Settings, q: str = "", uid: int = 0, page: PageNumber = 1,
                       limit: PageSize = DEFAULT_LIMIT, sort: str = "alpha", order: str = "asc",
                       private: bool = True, archived: bool | None = None, mode: str = "") -> Response[Any]:
    """Gitea's repository search: name (and description with ``includeDesc``) contains ``q``."""
    if len(q) > 255 or "\x00" in q:
        raise fail(422, "q is too long")
    user, auth = viewer(request)
    query = select(ForgeRepo)
    if q:
        needle = f"%{q.lower().replace('%', '').replace('_', '')}%"
        include_desc = request.query_params.get("includeDesc", "false").lower() == "true"
        cond = ForgeRepo.lower_name.like(needle)
        query = query.where(or_(cond, func.lower(ForgeRepo.description).like(needle)) if include_desc else cond)
    if uid:
        target = await target_of(db_session, "user", uid)
        if target is None:
            return paged(request, SearchResults(ok=True, data=[]), 0, page, _limit(limit))
        collab = select(ForgeCollaborator.repo_id).where(ForgeCollaborator.user_id == target)
        query = query.where(or_(ForgeRepo.owner_id == target, ForgeRepo.id.in_(collab)))
    if archived is not None:
        query = query.where(ForgeRepo.is_archived.is_(archived))
    if mode == "mirror":
        from forge.mirror_models import ForgeMirror

        query = query.where(ForgeRepo.id.in_(select(ForgeMirror.repo_id).where(ForgeMirror.direction == "pull")))
    column = {"alpha": ForgeRepo.lower_name, "created": ForgeRepo.created_at, "updated": ForgeRepo.updated_at,
              "id": ForgeRepo.created_at}.get(sort, ForgeRepo.lower_name)
    query = query.order_by(column.desc() if order == "desc" else column.asc())
    repos = list((await db_session.execute(query.limit(5000))).scalars().all())
    visible = [(r, p) for r, p in await _visible(repo_service, user, auth, repos) if private or not r.is_private]
    owners = {u.id: u for u in (await db_session.execute(
        select(User).where(User.id.in_({r.owner_id for r, _ in visible})))).scalars().all()}
    visible = [(r, p) for r, p in visible if r.owner_id in owners and owners[r.owner_id].is_active]
    limit = _limit(limit)
    chunk = visible[(page - 1) * limit:page * limit]
    data = [await repo_json(repo_service, settings, r, p, owner=owners[r.owner_id], viewer=user) for r, p in chunk]
    return paged(request, SearchResults(ok=True, data=data), len(visible), page, limit)


# -- topics -----------------------------------------------------------------------------------------
class TopicName(msgspec.Struct):
    topics: list[str]


@get(f"{R}/topics", name="api:gitea:topics")
async def list_topics(request: Request[Any, Any, Any], repo_service: RepoService, owner: str,
                      repo: str) -> TopicName:
    row, _p = await _repo(request, repo_service, owner, repo, "read")
    return TopicName(topics=row.topics.split())


class RepoTopicOptions(msgspec.Struct):
    topics: list[str]


@put(f"{R}/topics", name="api:gitea:put_topics", status_code=204)
async def put_topics(request: Request[Any, Any, Any], repo_service: RepoService, owner: str, repo: str,
                     data: RepoTopicOptions) -> None:
    row, _p = await _repo(request, repo_service, owner, repo, "admin")
    topics = list(dict.fromkeys(t.strip().lower() for t in data.topics if t.strip()))
    invalid = [t for t in topics if not TOPIC.match(t)]
    if invalid or len(topics) > MAX_TOPICS:
        # Gitea: 422 {"message": "invalidTopics", "invalidTopics": [...]}
        raise InputProblems({"topics": f"invalidTopics: {', '.join(invalid) or 'more than 25 topics'}"})
    row.topics = " ".join(topics)
    await repo_service.db.flush()


# -- refs, branches ------------------------------------------------------------------------------------
class GitObject(msgspec.Struct):
    type: str
    sha: str
    url: str


class Reference(msgspec.Struct):
    ref: str
    url: str
    object: GitObject


async def _references(request: Request[Any, Any, Any], repo_service: RepoService, settings: Settings, owner: str,
                      repo: str, prefix: str) -> list[Reference]:
    row, _p = await _repo(request, repo_service, owner, repo, "read")
    base = _api_base(settings, owner, row)
    out = []
    for ref in await repo_service.refs(row, "refs/"):
        if not ref.name.startswith(f"refs/{prefix}".rstrip("/")):
            continue
        kind = "tag" if ref.peeled else "commit"
        url = f"{base}/git/tags/{ref.oid}" if ref.peeled else f"{base}/git/commits/{ref.oid}"
        out.append(Reference(ref=ref.name, url=f"{base}/git/{ref.name}", object=GitObject(kind, ref.oid, url)))
    return out


@get(f"{R}/git/refs", name="api:gitea:refs")
async def list_refs(request: Request[Any, Any, Any], repo_service: RepoService, settings: Settings, owner: str,
                    repo: str) -> list[Reference]:
    return await _references(request, repo_service, settings, owner, repo, "")


@get(f"{R}/git/refs/{{ref:path}}", name="api:gitea:refs_filtered")
async def filter_refs(request: Request[Any, Any, Any], repo_service: RepoService, settings: Settings, owner: str,
                      repo: str, ref: str) -> list[Reference]:
    found = await _references(request, repo_service, settings, owner, repo, ref.strip("/"))
    if not found:
        raise fail(404, "reference does not exist")
    return found


class BranchProtection(msgspec.Struct, kw_only=True):
    """Gitea ``BranchProtection``: what our per-branch rule has (no force push, deletion per rule)."""

    branch_name: str
    rule_name: str
    enable_push: bool
    enable_push_whitelist: bool
    push_whitelist_usernames: list[str]
    enable_merge_whitelist: bool
    enable_status_check: bool
    status_check_contexts: list[str]
    required_approvals: int
    block_on_rejected_reviews: bool
    block_on_outdated_branch: bool
    dismiss_stale_approvals: bool
    require_signed_commits: bool
    protected_file_patterns: str
    unprotected_file_patterns: str
    created_at: str
    updated_at: str


@get(f"{R}/branch_protections", name="api:gitea:branch_protections")
async def list_branch_protections(request: Request[Any, Any, Any], repo_service: RepoService, owner: str,
                                  repo: str) -> list[BranchProtection]:
    row, _p = await _repo(request, repo_service, owner, repo, "admin")
    return [BranchProtection(
        branch_name=rule.pattern, rule_name=rule.pattern, enable_push=True, enable_push_whitelist=False,
        push_whitelist_usernames=[], enable_merge_whitelist=False, enable_status_check=False,
        status_check_contexts=[], required_approvals=0, block_on_rejected_reviews=False,
        block_on_outdated_branch=False, dismiss_stale_approvals=False, require_signed_commits=False,
        protected_file_patterns="", unprotected_file_patterns="", created_at=ts(rule.created_at),
        updated_at=ts(rule.updated_at),
    ) for rule in await repo_service.protections(row)]


@get(f"{R}/branches/{{branch:path}}", name="api:gitea:branch")
async def get_branch(request: Request[Any, Any, Any], repo_service: RepoService, settings: Settings, owner: str,
                     repo: str, branch: str) -> Any:
    from forge.gitea_api import branch_read

    row, permission = await _repo(request, repo_service, owner, repo, "read")
    refs = [r for r in await repo_service.refs(row, "refs/heads/") if r.name == f"refs/heads/{branch.strip('/')}"]
    if not refs:
        raise fail(404, "branch does not exist")
    return (await branch_read(repo_service, settings, row, permission, refs))[0]


# -- commits -----------------------------------------------------------------------------------------
class CommitUser(msgspec.Struct):
    name: str
    email: str
    date: str


class CommitMeta(msgspec.Struct):
    url: str
    sha: str
    created: str


class RepoCommit(msgspec.Struct, kw_only=True):
    url: str
    author: CommitUser
    committer: CommitUser
    message: str
    tree: CommitMeta
    verification: None = None


class CommitAffectedFiles(msgspec.Struct):
    filename: str
    status: str


class CommitJSON(msgspec.Struct, kw_only=True):
    """Gitea ``Commit`` (``author``/``committer`` are forge users when the email matches none: null)."""

    url: str
    sha: str
    created: str
    html_url: str
    commit: RepoCommit
    author: UserJSON | None
    committer: UserJSON | None
    parents: list[CommitMeta]
    files: list[CommitAffectedFiles] | None


_STATUS_NAMES = {"A": "added", "D": "removed", "M": "modified", "T": "modified"}


async def _commit_json(service: RepoService, settings: Settings, owner: str, repo: ForgeRepo, c: git.CommitObject,
                       *, files: bool) -> CommitJSON:
    base = _api_base(settings, owner, repo)
    changed = [CommitAffectedFiles(p, _STATUS_NAMES.get(s[:1], "modified"))
               for s, p in await git.changed_files(service.store, repo.id, c.sha)] if files else None
    return CommitJSON(
        url=f"{base}/git/commits/{c.sha}", sha=c.sha, created=ts(c.committed),
        html_url=f"{_web_base(settings, owner, repo)}/commit/{c.sha}",
        commit=RepoCommit(url=f"{base}/git/commits/{c.sha}",
                          author=CommitUser(c.author_name, c.author_email, ts(c.authored)),
                          committer=CommitUser(c.committer_name, c.committer_email, ts(c.committed)),
                          message=c.message + "\n", tree=CommitMeta(f"{base}/git/trees/{c.tree}", c.tree,
                                                                  ts(c.committed))),
        author=None, committer=None,
        parents=[CommitMeta(f"{base}/git/commits/{p}", p, ts(c.committed)) for p in c.parents], files=changed,
    )


@get(f"{R}/git/commits/{{sha:str}}", name="api:gitea:git_commit")
async def get_git_commit(request: Request[Any, Any, Any], repo_service: RepoService, settings: Settings, owner: str,
                         repo: str, sha: str) -> CommitJSON:
    row, _p = await _repo(request, repo_service, owner, repo, "read")
    oid = await git.resolve(repo_service.store, row.id, sha)
    found = await git.commit_object(repo_service.store, row.id, oid) if oid else None
    if found is None:
        raise fail(404, f"commit does not exist [id: {sha[:80]}]")
    return await _commit_json(repo_service, settings, owner, row, found, files=True)


@get(f"{R}/commits", name="api:gitea:commits")
async def list_commits(request: Request[Any, Any, Any], repo_service: RepoService, settings: Settings, owner: str,
                       repo: str, sha: str = "", path: str = "", page: PageNumber = 1,
                       limit: PageSize = DEFAULT_LIMIT) -> Response[Any]:
    row, _p = await _repo(request, repo_service, owner, repo, "read")
    path = git.clean_path(path)
    if path and (problem := git.path_problem(path)):
        raise fail(422, problem)
    if not await repo_service.refs(row, "refs/heads/"):
        raise fail(409, "Git Repository is empty.")  # Gitea's answer for an empty repository
    start = await git.resolve(repo_service.store, row.id, sha or row.default_branch)
    if start is None:
        raise fail(404, f"sha or branch does not exist [{sha[:80]}]")
    limit = _limit(limit)
    found, total = await git.history(repo_service.store, row.id, start, skip=(page - 1) * limit, limit=limit,
                                     path=path)
    out = [await _commit_json(repo_service, settings, owner, row, c, files=False) for c in found]
    return paged(request, out, total, page, limit)


class GitEntry(msgspec.Struct):
    path: str
    mode: str
    type: str
    size: int
    sha: str
    url: str


class GitTreeResponse(msgspec.Struct, kw_only=True):
    sha: str
    url: str
    tree: list[GitEntry]
    truncated: bool
    page: int
    total_count: int


@get(f"{R}/git/trees/{{sha:str}}", name="api:gitea:git_tree")
async def get_tree(request: Request[Any, Any, Any], repo_service: RepoService, settings: Settings, owner: str,
                   repo: str, sha: str, recursive: bool = False, page: PageNumber = 1,
                   per_page: PageSize = 1000) -> GitTreeResponse:
    row, _p = await _repo(request, repo_service, owner, repo, "read")
    store = repo_service.store
    kind = await git.object_type(store, row.id, sha)
    tree = None
    if kind == "tree":
        tree = sha
    elif (commit := await git.resolve(store, row.id, sha)) is not None:
        entry = await git.entry_at(store, row.id, commit, "")
        tree = entry.sha if entry else None
    if tree is None:
        raise fail(400, f"sha not found [{sha[:80]}]")
    base = _api_base(settings, owner, row)
    entries = await git.list_tree(store, row.id, tree, recursive=recursive)
    per_page = min(per_page, 1000)
    chunk = entries[(page - 1) * per_page:page * per_page]
    return GitTreeResponse(
        sha=tree, url=f"{base}/git/trees/{tree}", page=page, total_count=len(entries),
        truncated=page * per_page < len(entries),
        tree=[GitEntry(e.path, e.mode, e.type, e.size, e.sha,
                       f"{base}/git/{'trees' if e.type == 'tree' else 'blobs'}/{e.sha}") for e in chunk],
    )


# -- statuses ----------------------------------------------------------------------------------------
class CreateStatusOption(msgspec.Struct, kw_only=True):
    state: str = ""
    target_url: str = ""
    description: str = ""
    context: str = ""


@post(f"{R}/statuses/{{sha:str}}", name="api:gitea:create_status", status_code=201)
async def create_status(request: Request[Any, Any, Any], repo_service: RepoService, settings: Settings, owner: str,
                        repo: str, sha: str, data: CreateStatusOption) -> status_service.StatusRead:
    row, _p = await _repo(request, repo_service, owner, repo, "write")
    _writable(row)  # an archived repository is read-only for statuses too
    user = viewer(request)[0]
    if data.state not in status_service.STATUS_STATES:
        raise fail(422, status_service.STATE_MESSAGE)
    commit = await git.resolve(repo_service.store, row.id, sha)
    if commit is None:
        raise fail(404, f"commit does not exist [sha: {sha[:80]}]")
    try:
        created = await status_service.create_status(
            repo_service.db, row.id, commit, user, state=data.state, context=data.context,
            description=data.description, target_url=data.target_url)
    except InputProblems as exc:
        raise fail(422, "; ".join(exc.errors.values())) from None
    api_base = _api_base(settings, owner, row)
    read = (await status_service.reads(repo_service.db, settings.base_url, [created], api_base=api_base))[0]
    repository = await repo_json(repo_service, settings, row, "admin")
    found = await git.commit_object(repo_service.store, row.id, commit)
    payload_commit = webhooks.payload_commit_of(found, repository.html_url) if found is not None else None
    await webhooks.emit(repo_service.db, row.id, "status", webhooks.CommitStatusPayload(
        commit=payload_commit, context=read.context, created_at=read.created_at, description=read.description,
        id=read.id, repository=repository, sender=read.creator, sha=commit, state=read.status,
        target_url=read.target_url, updated_at=read.updated_at))
    return read


async def _statuses_page(request: Request[Any, Any, Any], repo_service: RepoService, settings: Settings, owner: str,
                         repo: str, ref: str, page: int, limit: int) -> Response[Any]:
    row, _p = await _repo(request, repo_service, owner, repo, "read")
    commit = await git.resolve(repo_service.store, row.id, ref)
    if commit is None:
        raise fail(404, f"ref does not exist [{ref[:80]}]")
    every = await status_service.statuses_for(repo_service.db, row.id, commit, base_url=settings.base_url,
                                              api_base=_api_base(settings, owner, row))
    limit = _limit(limit)
    return paged(request, every[(page - 1) * limit:page * limit], len(every), page, limit)


@get(f"{R}/statuses/{{sha:str}}", name="api:gitea:statuses_by_sha")
async def list_statuses(request: Request[Any, Any, Any], repo_service: RepoService, settings: Settings, owner: str,
                        repo: str, sha: str, page: PageNumber = 1, limit: PageSize = DEFAULT_LIMIT) -> Response[Any]:
    return await _statuses_page(request, repo_service, settings, owner, repo, sha, page, limit)


@get(f"{R}/commits/{{ref:str}}/statuses", name="api:gitea:statuses_by_ref")
async def list_statuses_by_ref(request: Request[Any, Any, Any], repo_service: RepoService, settings: Settings,
                               owner: str, repo: str, ref: str, page: PageNumber = 1,
                               limit: PageSize = DEFAULT_LIMIT) -> Response[Any]:
    return await _statuses_page(request, repo_service, settings, owner, repo, ref, page, limit)


class CombinedStatusJSON(msgspec.Struct, kw_only=True):
    state: str
    sha: str
    total_count: int
    statuses: list[status_service.StatusRead]
    repository: RepositoryJSON
    commit_url: str
    url: str


@get(f"{R}/commits/{{ref:str}}/status", name="api:gitea:combined_status")
async def combined(request: Request[Any, Any, Any], repo_service: RepoService, settings: Settings, owner: str,
                   repo: str, ref: str) -> CombinedStatusJSON:
    row, permission = await _repo(request, repo_service, owner, repo, "read")
    commit = await git.resolve(repo_service.store, row.id, ref)
    if commit is None:
        raise fail(404, f"ref does not exist [{ref[:80]}]")
    result = await status_service.combined_status(repo_service.db, row.id, commit, base_url=settings.base_url,
                                                  api_base=_api_base(settings, owner, row))
    return CombinedStatusJSON(state=result.state, sha=result.sha, total_count=result.total_count,
                              statuses=result.statuses,
                              repository=await repo_json(repo_service, settings, row, permission),
                              commit_url=result.commit_url, url=result.url)


# -- contents ----------------------------------------------------------------------------------------
class FileLinks(msgspec.Struct):
    self: str
    git: str
    html: str


class ContentsResponse(msgspec.Struct, kw_only=True):
    name: str
    path: str
    sha: str
    last_commit_sha: str
    type: str
    size: int
    encoding: str | None
    content: str | None
    target: str | None
    url: str
    html_url: str
    git_url: str
    download_url: str | None
    submodule_git_url: str | None
    _links: FileLinks = msgspec.field(name="_links")


async def _contents(service: RepoService, settings: Settings, owner: str, repo: ForgeRepo, commit: str, ref: str,
                    entry: git.Entry, *, with_content: bool, last_commit_sha: str | None = None) -> ContentsResponse:
    base, web = _api_base(settings, owner, repo), _web_base(settings, owner, repo)
    quoted = quote(entry.path)
    self_url = f"{base}/contents/{quoted}?ref={quote(ref)}"
    git_url = f"{base}/git/{'trees' if entry.type == 'tree' else 'blobs'}/{entry.sha}"
    html = f"{web}/src/branch/{quote(ref)}/{quoted}"
    content = encoding = target = None
    if entry.kind in ("file", "symlink") and with_content:
        data = await git.read_blob(service.store, repo.id, entry.sha)
        if data is not None:
            encoding, content = "base64", base64.b64encode(data).decode()
            if entry.kind == "symlink":
                target = data.decode(errors="replace")
    return ContentsResponse(
        name=entry.name, path=entry.path, sha=entry.sha,
        last_commit_sha=last_commit_sha if last_commit_sha is not None else
        await git.last_commit(service.store, repo.id, commit, entry.path) if with_content else "",
        type=entry.kind, size=entry.size, encoding=encoding, content=content, target=target, url=self_url,
        html_url=html, git_url=git_url,
        download_url=f"{web}/raw/branch/{quote(ref)}/{quoted}" if entry.kind == "file" else None,
        submodule_git_url=None, _links=FileLinks(self=self_url, git=git_url, html=html),
    )


def _checked_path(path: str) -> str:
    path = git.clean_path(path)
    if path and (problem := git.path_problem(path)):
        raise fail(422, problem)
    return path


@get([f"{R}/contents", f"{R}/contents/{{path:path}}"], name="api:gitea:contents")
async def get_contents(request: Request[Any, Any, Any], repo_service: RepoService, settings: Settings, owner: str,
                       repo: str, path: str = "", ref: str = "") -> Any:
    row, _p = await _repo(request, repo_service, owner, repo, "read")
    path = _checked_path(path)
    if not path and not ref and not await repo_service.refs(row, "refs/heads/"):
        return []  # the root of an empty repository: nothing in it yet
    ref = ref or row.default_branch
    commit = await git.resolve(repo_service.store, row.id, ref)
    if commit is None:
        raise fail(404, f"object does not exist [id: {ref[:80]}, rel_path: {path[:200]}]")
    entry = await git.entry_at(repo_service.store, row.id, commit, path)
    if entry is None:
        raise fail(404, f"object does not exist [id: {commit}, rel_path: {path[:200]}]")
    if entry.type != "tree":
        return await _contents(repo_service, settings, owner, row, commit, ref, entry, with_content=True)
    listing = await git.list_tree(repo_service.store, row.id, entry.sha, prefix=f"{path}/" if path else "")
    # One bounded history scan for the whole listing (entries beyond its reach keep "").
    last = await git.last_commits(repo_service.store, row.id, commit, path, [e.name for e in listing])
    return [await _contents(repo_service, settings, owner, row, commit, ref, e, with_content=False,
                            last_commit_sha=last.get(e.name, "")) for e in listing]


async def _raw(request: Request[Any, Any, Any], repo_service: RepoService, forge_runtime: ForgeRuntime, owner: str,
               repo: str, path: str, ref: str) -> Response[Any]:
    row, _p = await _repo(request, repo_service, owner, repo, "read")
    path = _checked_path(path)
    ref = ref or row.default_branch
    commit = await git.resolve(repo_service.store, row.id, ref)
    entry = await git.entry_at(repo_service.store, row.id, commit, path) if commit and path else None
    if entry is None or entry.type != "blob":
        raise fail(404, "file does not exist")
    # Read as the browser's raw view reads (forge.browse.views.raw): a small blob in one answer of
    # the cat-file pool, a large one streamed from its own `git cat-file blob` child, so no request
    # (anonymous ones on public repositories included) ever holds a whole large file in memory.
    pool = pool_for(repo_service.store)
    pool.observe_version(row.id, row.ref_version)
    reader = Reader(repo_service.store, pool, row.id)
    try:
        info, data = await reader.object(entry.sha, "blob", max_size=INLINE_MAX_BYTES)
    except BrowseNotFound:
        raise fail(404, "file does not exist") from None
    # Never rendered by a browser as a page of ours: plain bytes, no sniffing, a sandboxing CSP.
    headers = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox", "ETag": f'"{entry.sha}"'}
    if data is not None:
        binary = b"\x00" in data[:8000]
        return Response(data, media_type="application/octet-stream" if binary else "text/plain; charset=utf-8",
                        headers=headers)
    slot = forge_runtime.limiter.try_acquire(row.id)
    if slot is None:
        raise GiteaError("Too many git processes for this repository; try again.", status_code=429,
                         headers={"Retry-After": str(forge_runtime.config.retry_after)})
    try:
        async with reader.stream("cat-file", "blob", entry.sha) as out:
            head = await out.read(8000)
    except BaseException:
        slot.release()
        raise
    headers["Content-Length"] = str(info.size)

    async def body() -> AsyncIterator[bytes]:
        try:
            async with reader.stream("cat-file", "blob", entry.sha) as out:
                while chunk := await out.read(RAW_CHUNK):
                    yield chunk
        finally:
            slot.release()

    return Stream(body(), media_type="application/octet-stream" if b"\x00" in head else "text/plain; charset=utf-8",
                  headers=headers)


@get(f"{R}/raw/{{path:path}}", name="api:gitea:raw")
async def get_raw(request: Request[Any, Any, Any], repo_service: RepoService, forge_runtime: ForgeRuntime,
                  owner: str, repo: str, path: str, ref: str = "") -> Response[Any]:
    return await _raw(request, repo_service, forge_runtime, owner, repo, path, ref)


@get(f"{R}/media/{{path:path}}", name="api:gitea:media")
async def get_media(request: Request[Any, Any, Any], repo_service: RepoService, forge_runtime: ForgeRuntime,
                    owner: str, repo: str, path: str, ref: str = "") -> Response[Any]:
    """Like ``raw``; Gitea resolves LFS pointers here, which this forge does not store."""
    return await _raw(request, repo_service, forge_runtime, owner, repo, path, ref)


class Identity(msgspec.Struct, kw_only=True):
    name: str = ""
    email: str = ""


class FileOptions(msgspec.Struct, kw_only=True):
    """Gitea ``CreateFileOptions``/``UpdateFileOptions``/``DeleteFileOptions`` (one struct, all optional)."""

    content: str = ""
    sha: str = ""
    message: str = ""
    branch: str = ""
    new_branch: str = ""
    author: Identity | None = None
    committer: Identity | None = None
    from_path: str = ""


class FileCommitResponse(msgspec.Struct, kw_only=True):
    url: str
    sha: str
    created: str
    html_url: str
    author: CommitUser
    committer: CommitUser
    parents: list[CommitMeta]
    message: str
    tree: CommitMeta


class FileResponse(msgspec.Struct, kw_only=True):
    content: ContentsResponse | None
    commit: FileCommitResponse
    verification: None = None


def _ident(who: Identity | None) -> tuple[str, str] | None:
    return (who.name, who.email) if who is not None and who.name and who.email else None


async def _write(request: Request[Any, Any, Any], repo_service: RepoService, settings: Settings, owner: str,
                 repo: str, path: str, data: FileOptions, mode: str) -> FileResponse:
    row, _p = await _repo(request, repo_service, owner, repo, "write")
    _writable(row)
    user = viewer(request)[0]
    assert user is not None  # load_repo refused anonymous writes
    content: bytes | None = None
    if mode != "delete":
        try:
            content = base64.b64decode(data.content, validate=True)
        except (binascii.Error, ValueError):
            raise fail(422, "content must be base64") from None
    try:
        result = await git.write_file(
            repo_service, row, user, path=path, content=content, sha=data.sha or None, branch=data.branch or None,
            new_branch=data.new_branch or None, message=data.message or f"{mode.capitalize()} {git.clean_path(path)}",
            author=_ident(data.author), committer=_ident(data.committer), mode=mode)
    except git.Conflict as exc:
        raise fail(409, str(exc)) from None
    except InputProblems as exc:
        raise fail(exc.status, "; ".join(exc.errors.values())) from None
    found = await git.commit_object(repo_service.store, row.id, result.commit)
    assert found is not None
    base = _api_base(settings, owner, row)
    commit = FileCommitResponse(
        url=f"{base}/git/commits/{found.sha}", sha=found.sha, created=ts(found.committed),
        html_url=f"{_web_base(settings, owner, row)}/commit/{found.sha}",
        author=CommitUser(found.author_name, found.author_email, ts(found.authored)),
        committer=CommitUser(found.committer_name, found.committer_email, ts(found.committed)),
        parents=[CommitMeta(f"{base}/git/commits/{p}", p, ts(found.committed)) for p in found.parents],
        message=found.message + "\n", tree=CommitMeta(f"{base}/git/trees/{found.tree}", found.tree,
                                                      ts(found.committed)))
    file = None
    if mode != "delete":
        entry = await git.entry_at(repo_service.store, row.id, result.commit, git.clean_path(path))
        assert entry is not None
        file = await _contents(repo_service, settings, owner, row, result.commit, result.branch, entry,
                               with_content=False)
    return FileResponse(content=file, commit=commit)


@post(f"{R}/contents/{{path:path}}", name="api:gitea:create_file", status_code=201)
async def create_file(request: Request[Any, Any, Any], repo_service: RepoService, settings: Settings, owner: str,
                      repo: str, path: str, data: FileOptions) -> FileResponse:
    return await _write(request, repo_service, settings, owner, repo, path, data, "create")


@put(f"{R}/contents/{{path:path}}", name="api:gitea:update_file", status_code=200)
async def update_file(request: Request[Any, Any, Any], repo_service: RepoService, settings: Settings, owner: str,
                      repo: str, path: str, data: FileOptions) -> FileResponse:
    return await _write(request, repo_service, settings, owner, repo, path, data, "update")


@delete(f"{R}/contents/{{path:path}}", name="api:gitea:delete_file", status_code=200)
async def delete_file(request: Request[Any, Any, Any], repo_service: RepoService, settings: Settings, owner: str,
                      repo: str, path: str, data: FileOptions) -> FileResponse:
    return await _write(request, repo_service, settings, owner, repo, path, data, "delete")


# -- archive -------------------------------------------------------------------------------------------
@get(f"{R}/archive/{{archive:str}}", name="api:gitea:archive")
async def get_archive(request: Request[Any, Any, Any], repo_service: RepoService, forge_runtime: ForgeRuntime,
                      owner: str, repo: str, archive: str) -> Stream:
    from forge.process import spawn

    row, _p = await _repo(request, repo_service, owner, repo, "read")
    formats = {".tar.gz": ("tar.gz", "application/gzip"), ".zip": ("zip", "application/zip")}
    suffix = next((s for s in formats if archive.endswith(s)), "")
    if not suffix:
        raise fail(404, "Unknown archive format; use .zip or .tar.gz")
    fmt, media = formats[suffix]
    ref = archive.removesuffix(suffix)
    commit = await git.resolve(repo_service.store, row.id, ref)
    if commit is None:
        raise fail(404, "ref does not exist")
    # Every archive is a `git archive` child for as long as the download lasts: counted against the
    # same per-repository and total limits as clones and the browser's archives (forge.runtime).
    slot = forge_runtime.limiter.try_acquire(row.id)
    if slot is None:
        raise GiteaError("Too many git processes for this repository; try again.", status_code=429,
                         headers={"Retry-After": str(forge_runtime.config.retry_after)})
    prefix = f"{row.name}/"
    store = repo_service.store
    argv = ["git", "--git-dir", str(store.locate(row.id)), "archive", f"--format={fmt}", f"--prefix={prefix}",
            commit]

    async def body() -> AsyncIterator[bytes]:
        try:
            child = await spawn(argv, env=store.git_env())
            assert child.stdout is not None
            try:
                while chunk := await child.stdout.read(256 * 1024):
                    yield chunk
                await child.wait()
            finally:
                child.kill_group()
                child.close_pipes()
        finally:
            slot.release()

    name = f"{row.name}-{ref.replace('/', '-')}{suffix}"
    return Stream(body(), media_type=media, headers={
        "Content-Disposition": f"attachment; filename=\"{quote(name)}\"", "X-Content-Type-Options": "nosniff"})


# -- hooks -----------------------------------------------------------------------------------------------
class HookJSON(msgspec.Struct, kw_only=True):
    """Gitea ``Hook`` (the secret is never shown)."""

    id: int
    type: str
    branch_filter: str
    config: dict[str, str]
    events: list[str]
    authorization_header: str
    active: bool
    updated_at: str
    created_at: str


class CreateHookOption(msgspec.Struct, kw_only=True):
    type: str = "gitea"
    config: dict[str, str] = {}
    events: list[str] = []
    branch_filter: str = "*"
    active: bool = False
    authorization_header: str = ""


class EditHookOption(msgspec.Struct, kw_only=True):
    config: dict[str, str] | None = None
    events: list[str] | None = None
    branch_filter: str | None = None
    active: bool | None = None
    authorization_header: str | None = None


async def _hook_json(db: AsyncSession, hook: ForgeWebhook) -> HookJSON:
    return HookJSON(id=await gitea_id(db, "hook", hook.id), type="gitea", branch_filter=hook.branch_filter,
                    config={"url": hook.url, "content_type": hook.content_type, "http_method": "post"},
                    events=hook.event_list, authorization_header="", active=hook.active,
                    updated_at=ts(hook.updated_at), created_at=ts(hook.created_at))


async def _hook(db: AsyncSession, repo: ForgeRepo, hook_id: int) -> ForgeWebhook:
    target = await target_of(db, "hook", hook_id)
    hook = await db.get(ForgeWebhook, target) if target else None
    if hook is None or hook.repo_id != repo.id:
        raise fail(404, "hook does not exist")
    return hook


def _hook_events(events: list[str]) -> list[str]:
    # Gitea clients may send the GitHub spelling of ours; anything else is refused by webhooks.parse_events.
    return [e for e in events if e not in ("pull_request_only", "push_only")]


@get(f"{R}/hooks", name="api:gitea:hooks")
async def list_hooks(request: Request[Any, Any, Any], repo_service: RepoService, owner: str, repo: str,
                     page: PageNumber = 1, limit: PageSize = DEFAULT_LIMIT) -> Response[Any]:
    row, _p = await _repo(request, repo_service, owner, repo, "admin")
    hooks = await webhooks.hooks_of(repo_service.db, row.id)
    limit = _limit(limit)
    out = [await _hook_json(repo_service.db, h) for h in hooks[(page - 1) * limit:page * limit]]
    return paged(request, out, len(hooks), page, limit)


@post(f"{R}/hooks", name="api:gitea:create_hook", status_code=201)
async def create_hook(request: Request[Any, Any, Any], repo_service: RepoService, settings: Settings, owner: str,
                      repo: str, data: CreateHookOption) -> HookJSON:
    row, _p = await _repo(request, repo_service, owner, repo, "admin")
    if data.type not in ("gitea", "gogs", "forgejo"):
        raise fail(422, f"Invalid hook type: {data.type[:40]}")
    if "url" not in data.config or "content_type" not in data.config:
        raise fail(422, "Missing config option: url, content_type")
    try:
        hook = await webhooks.create_hook(
            repo_service.db, settings, row, url=data.config["url"], secret=data.config.get("secret", ""),
            content_type=data.config["content_type"], events=_hook_events(data.events) or ["push"],
            active=data.active, branch_filter=data.branch_filter)
    except InputProblems as exc:
        raise fail(422, "; ".join(exc.errors.values())) from None
    return await _hook_json(repo_service.db, hook)


@get(f"{R}/hooks/{{hook_id:int}}", name="api:gitea:hook")
async def get_hook(request: Request[Any, Any, Any], repo_service: RepoService, owner: str, repo: str,
                   hook_id: int) -> HookJSON:
    row, _p = await _repo(request, repo_service, owner, repo, "admin")
    return await _hook_json(repo_service.db, await _hook(repo_service.db, row, hook_id))


@patch(f"{R}/hooks/{{hook_id:int}}", name="api:gitea:edit_hook")
async def edit_hook(request: Request[Any, Any, Any], repo_service: RepoService, settings: Settings, owner: str,
                    repo: str, hook_id: int, data: EditHookOption) -> HookJSON:
    row, _p = await _repo(request, repo_service, owner, repo, "admin")
    hook = await _hook(repo_service.db, row, hook_id)
    config = data.config or {}
    try:
        await webhooks.update_hook(
            repo_service.db, settings, hook, url=config.get("url"), secret=config.get("secret"),
            content_type=config.get("content_type"),
            events=_hook_events(data.events) if data.events is not None else None, active=data.active,
            branch_filter=data.branch_filter)
    except InputProblems as exc:
        raise fail(422, "; ".join(exc.errors.values())) from None
    return await _hook_json(repo_service.db, hook)


@delete(f"{R}/hooks/{{hook_id:int}}", name="api:gitea:delete_hook", status_code=204)
async def delete_hook(request: Request[Any, Any, Any], repo_service: RepoService, owner: str, repo: str,
                      hook_id: int) -> None:
    row, _p = await _repo(request, repo_service, owner, repo, "admin")
    hook = await _hook(repo_service.db, row, hook_id)
    await webhooks.delete_hook(repo_service.db, hook)


@post(f"{R}/hooks/{{hook_id:int}}/tests", name="api:gitea:test_hook", status_code=204)
async def test_hook(request: Request[Any, Any, Any], repo_service: RepoService, settings: Settings, owner: str,
                    repo: str, hook_id: int, ref: str = "") -> None:
    """Gitea's "Test delivery": a ``push`` payload of the branch's latest commit, to this hook only."""
    row, _p = await _repo(request, repo_service, owner, repo, "admin")
    hook = await _hook(repo_service.db, row, hook_id)
    user = viewer(request)[0]
    branch = ref or row.default_branch
    head = await git.resolve(repo_service.store, row.id, f"refs/heads/{branch}")
    repository = await repo_json(repo_service, settings, row, "admin")
    sender = await user_json(repo_service.db, settings.base_url, user) if user else None
    commits: list[webhooks.PayloadCommit] = []
    found = await git.commit_object(repo_service.store, row.id, head) if head else None
    if found is not None:
        commits = [webhooks.payload_commit_of(found, repository.html_url)]
    payload = webhooks.PushPayload(
        ref=f"refs/heads/{branch}", before=head or "0" * 40, after=head or "0" * 40, compare_url="",
        commits=commits[:1], total_commits=len(commits[:1]), head_commit=commits[0] if commits else None,
        repository=repository, pusher=sender, sender=sender)
    await webhooks.enqueue_delivery(repo_service.db, hook, "push", payload)


READ_HANDLERS = [
    list_topics, list_refs, filter_refs, get_branch, get_git_commit, list_commits, get_tree, list_statuses,
    list_statuses_by_ref, combined, get_contents, get_raw, get_media, get_archive,
]
WRITE_HANDLERS = [create_status, create_file, update_file, delete_file]
ADMIN_HANDLERS = [put_topics, list_branch_protections, list_hooks, create_hook, get_hook, edit_hook, delete_hook,
                  test_hook]

router = Router(path="/", dependencies=DEPENDENCIES, route_handlers=[
    Router(path="/", opt=access.public(), route_handlers=[version, settings_api]),
    # The account's own record: any token with scope "api" (as the account domain declared it).
    Router(path="/", opt=access.token("api"), route_handlers=[current_user]),
    Router(path="/", opt=access.token("repo:read", anonymous=True), route_handlers=[
        get_user, list_user_repos, search_repos]),
    Router(path="/", opt=access.token("repo:read", anonymous=True, owner="repo"), route_handlers=READ_HANDLERS),
    Router(path="/", opt=access.token("repo:write", owner="repo"), route_handlers=[*WRITE_HANDLERS, *ADMIN_HANDLERS]),
])

__all__ = ["VERSION", "router"]
