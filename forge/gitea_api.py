"""Gitea-compatible JSON API, the repository subset (``/api/v1``, Gitea's field names).

``GET|PATCH|DELETE /repos/{owner}/{repo}``, ``GET …/branches``, ``GET …/tags``,
``GET|PUT|DELETE …/collaborators/{user}``, ``GET /user/repos``; and the mirror client in Gitea's
shapes: ``POST /repos/migrate`` (clone, optionally as a pull mirror), ``POST …/mirror-sync``,
``GET|POST …/push_mirrors``, ``DELETE …/push_mirrors/{name}``, ``POST …/push_mirrors-sync``.
(``POST /user/repos`` is in :mod:`forge.api`.)

Auth is a personal access token (``Authorization: token …``, ``Bearer …`` or Basic with the token
as password; the session cookie is never honoured under ``/api/``). Scopes: reading a private
repository needs ``repo:read``; changing anything needs ``repo:write``; listing your own
repositories needs ``repo:read`` or ``api``. Errors are problem+json (app.errors) with the house
codes: 401 anonymous where credentials are needed, 404 where the caller may not know the
repository exists, 403 for a visible repository the caller may not change, 409 for a taken
name, 422 for bad input.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, TypeVar

import msgspec
from litestar import Request, Response, Router, delete, get, patch, post, put
from litestar.exceptions import (
    ClientException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    ValidationException,
)
from sqlalchemy.ext.asyncio import AsyncSession

from app import access
from app.errors import PROBLEM_JSON
from app.forms import InputProblems
from app.params import PageNumber, PageSize
from app.settings import Settings
from domains.account.models import User
from forge.deps import DEPENDENCIES
from forge.gitea.shapes import repo_json, ts, users_json
from forge.guards import load_repo, request_line, viewer
from forge.mirror import MirrorService, import_repository
from forge.mirror_models import ForgeMirror
from forge.models import PERMISSIONS, ForgeRepo, ForgeRepoRef
from forge.queries import CommitInfo, commits_by_id, repos_of, user_by_username
from forge.remote import basic_credential
from forge.schemas import (
    BranchRead,
    CollaboratorOption,
    CreatePushMirrorOption,
    EditRepoOption,
    MigrateRepoOption,
    PayloadCommit,
    PayloadUser,
    TagCommit,
    TagRead,
)
from forge.services import Permission, RepoService, at_least, branch_name_problem, repo_name_problem
from forge.web import purge_repo_pages

API = "/api/v1"
# Gitea's paging: ?page=1&limit=N (its DEFAULT_PAGING_NUM and MAX_RESPONSE_ITEMS), X-Total-Count.
DEFAULT_LIMIT = 30
MAX_LIMIT = 50
T = TypeVar("T")


# -- helpers ---------------------------------------------------------------------------------------------
def problem(status: int, detail: str, errors: dict[str, str] | None = None) -> Response[Any]:
    from http import HTTPStatus

    body: dict[str, Any] = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status,
                            "detail": detail, "message": detail, "url": ""}  # Gitea's APIError beside problem+json
    if errors:
        body["errors"] = errors
    return Response(body, status_code=status, media_type=PROBLEM_JSON)


async def _repo(request: Request[Any, Any, Any], service: RepoService, owner: str, name: str,
                need: Permission) -> tuple[ForgeRepo, Permission]:
    user, auth = viewer(request)
    return await load_repo(service, owner, name, user, need, auth, audit=request_line(request))


async def _is_empty(service: RepoService, repo: ForgeRepo) -> bool:
    return not await service.refs(repo, "refs/heads/")


async def _repo_json(service: RepoService, settings: Settings, repo: ForgeRepo, permission: Permission,
                     owner: User | None = None) -> Any:
    return await repo_json(service, settings, repo, permission, owner=owner)


def _page(items: Sequence[T], page: int, limit: int) -> list[T]:
    limit = min(MAX_LIMIT, limit)  # Gitea caps a larger limit rather than refusing it
    return list(items[(page - 1) * limit:page * limit])


def _paged(items: list[Any], total: int) -> Response[list[Any]]:
    return Response(items, headers={"X-Total-Count": str(total)})


def _interval(raw: str | None, default: int = 8 * 3600) -> int:
    """Gitea durations ("8h0m0s", "10m", "90s") or plain seconds."""
    if raw is None or not str(raw).strip():
        return default
    text = str(raw).strip()
    if text.isdigit():
        return int(text)
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
    if not match or not any(match.groups()):
        raise InputProblems({"interval": "Use a duration such as 8h0m0s, 10m or a number of seconds."})
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def _payload_commit(settings: Settings, full_name: str, oid: str, info: CommitInfo | None) -> PayloadCommit:
    url = f"{settings.base_url}/forge/{full_name}"
    if info is None:
        return PayloadCommit(id=oid, message="", url=url, author=None, committer=None, timestamp=None)
    return PayloadCommit(
        id=oid, message=info.message + "\n", url=url,
        author=PayloadUser(name=info.author_name, email=info.author_email),
        committer=PayloadUser(name=info.committer_name, email=info.committer_email),
        timestamp=ts(info.committed),
    )


def _push_mirror_json(repo_full_name: str, mirror: ForgeMirror) -> dict[str, Any]:
    """Gitea ``PushMirror`` (``remote_name`` is our mirror id; never the credential)."""
    return {
        "repo_name": repo_full_name,
        "remote_name": str(mirror.id),
        "remote_address": mirror.remote_url,
        "created": mirror.created_at.isoformat(),
        "last_update": mirror.last_sync_at.isoformat() if mirror.last_sync_at else None,
        "last_error": mirror.last_error,
        "interval": f"{mirror.interval_seconds}s",
        "sync_on_commit": True,
    }


# -- repositories ----------------------------------------------------------------------------------------
@get(f"{API}/repos/{{owner:str}}/{{repo:str}}", name="api:forge:repo")
async def get_repo(request: Request[Any, Any, Any], repo_service: RepoService, settings: Settings, owner: str,
                   repo: str) -> Any:
    row, permission = await _repo(request, repo_service, owner, repo, "read")
    return await _repo_json(repo_service, settings, row, permission)


@patch(f"{API}/repos/{{owner:str}}/{{repo:str}}", name="api:forge:edit_repo")
async def edit_repo(request: Request[Any, Any, Any], db_session: AsyncSession, repo_service: RepoService,
                    settings: Settings, owner: str, repo: str, data: EditRepoOption) -> Any:
    row, permission = await _repo(request, repo_service, owner, repo, "admin")
    errors: dict[str, str] = {}
    if data.name is not None and (name_problem := repo_name_problem(data.name.strip())):
        errors["name"] = name_problem
    if data.default_branch is not None and (problem_text := branch_name_problem(data.default_branch)):
        errors["default_branch"] = problem_text
    if data.description is not None and len(data.description) > 2000:
        errors["description"] = "Use 2,000 characters at most."
    if errors:  # checked before the row is touched
        return problem(422, "; ".join(f"{k}: {v}" for k, v in errors.items()), errors)
    if data.name is not None and data.name.strip() != row.name:
        try:
            await repo_service.rename(row, data.name)
        except InputProblems as exc:
            return problem(exc.status, str(exc), exc.errors)
    if data.archived is not None:
        row.is_archived = data.archived
    await repo_service.update_settings(row, description=data.description, private=data.private,
                                       default_branch=data.default_branch)
    await purge_repo_pages(db_session, row.id, row.owner_id)
    return await _repo_json(repo_service, settings, row, permission)


@delete(f"{API}/repos/{{owner:str}}/{{repo:str}}", name="api:forge:delete_repo", status_code=204)
async def delete_repo(request: Request[Any, Any, Any], db_session: AsyncSession, repo_service: RepoService,
                      settings: Settings, owner: str, repo: str) -> None:
    from forge.webhooks import announce_deletion

    row, _permission = await _repo(request, repo_service, owner, repo, "admin")
    await announce_deletion(repo_service, settings, row, viewer(request)[0])
    await purge_repo_pages(db_session, row.id, row.owner_id)
    await repo_service.delete(row)


@get(f"{API}/user/repos", name="api:forge:user_repos")
async def user_repos(request: Request[Any, Any, Any], db_session: AsyncSession, repo_service: RepoService,
                     settings: Settings, page: PageNumber = 1, limit: PageSize = DEFAULT_LIMIT) -> Response[list[Any]]:
    user, auth = viewer(request)
    if user is None:
        raise NotAuthorizedException("Authentication required.")
    if auth is not None and not (auth.allows("repo:read") or auth.allows("api")):
        raise PermissionDeniedException("This token lacks the 'repo:read' scope.")
    repos = await repos_of(db_session, user)
    out = []
    for repo, _owner in _page(repos, page, limit):
        out.append(await _repo_json(repo_service, settings, repo, await repo_service.permission(user, repo)))
    return _paged(out, len(repos))


# -- refs ---------------------------------------------------------------------------------------------------
async def branch_read(service: RepoService, settings: Settings, row: ForgeRepo, permission: Permission,
                      refs: Sequence[ForgeRepoRef]) -> list[BranchRead]:
    """Gitea ``Branch`` for each of ``refs`` (``refs/heads/*``)."""
    commits = await commits_by_id(service.store, row.id, [r.oid for r in refs])
    policy = await service.push_policy(row)
    owner_user = await service.db.get(User, row.owner_id)
    assert owner_user is not None
    full_name = f"{owner_user.username}/{row.name}"
    out = []
    for ref in refs:
        name = ref.name.removeprefix("refs/heads/")
        rule = policy.protection_for(name)
        out.append(BranchRead(
            name=name, commit=_payload_commit(settings, full_name, ref.oid, commits.get(ref.oid)),
            protected=rule is not None, user_can_push=at_least(permission, "write") and not row.is_archived,
            effective_branch_protection_name=rule.pattern if rule is not None else "",
        ))
    return out


@get(f"{API}/repos/{{owner:str}}/{{repo:str}}/branches", name="api:forge:branches")
async def list_branches(request: Request[Any, Any, Any], repo_service: RepoService,
                        settings: Settings, owner: str, repo: str, page: PageNumber = 1,
                        limit: PageSize = DEFAULT_LIMIT) -> Response[list[BranchRead]]:
    row, permission = await _repo(request, repo_service, owner, repo, "read")
    every = await repo_service.refs(row, "refs/heads/")
    refs = _page(list(every), page, limit)
    return _paged(await branch_read(repo_service, settings, row, permission, refs), len(every))


@get(f"{API}/repos/{{owner:str}}/{{repo:str}}/tags", name="api:forge:tags")
async def list_tags(request: Request[Any, Any, Any], db_session: AsyncSession, repo_service: RepoService,
                    settings: Settings, owner: str, repo: str, page: PageNumber = 1,
                    limit: PageSize = DEFAULT_LIMIT) -> Response[list[TagRead]]:
    row, _permission = await _repo(request, repo_service, owner, repo, "read")
    every: list[ForgeRepoRef] = sorted(await repo_service.refs(row, "refs/tags/"), key=lambda r: r.name, reverse=True)
    refs = _page(every, page, limit)
    commits = await commits_by_id(repo_service.store, row.id, [r.peeled or r.oid for r in refs])
    owner_user = await db_session.get(User, row.owner_id)
    assert owner_user is not None
    base = f"{settings.base_url}/forge/{owner_user.username}/{row.name}"
    messages = await _tag_messages(repo_service, row, [r.name for r in refs if r.peeled])
    out = []
    for ref in refs:
        name = ref.name.removeprefix("refs/tags/")
        sha = ref.peeled or ref.oid
        info = commits.get(sha)
        out.append(TagRead(
            name=name, message=messages.get(ref.name, ""), id=ref.oid,
            commit=TagCommit(url=base, sha=sha, created=ts(info.committed) if info else None),
            zipball_url=f"{base}/archive/{name}.zip", tarball_url=f"{base}/archive/{name}.tar.gz",
        ))
    return _paged(out, len(every))


def repo_service_base(request: Request[Any, Any, Any]) -> str:
    return str(request.base_url).rstrip("/")


async def _tag_messages(service: RepoService, row: ForgeRepo, names: list[str]) -> dict[str, str]:
    """The messages of annotated tags (Gitea ``Tag.message``), in one ``for-each-ref``."""
    if not names:
        return {}
    _code, out, _err = await service.store.git(row.id, "for-each-ref", "--format=%(refname)%00%(contents)%00",
                                               *names, check=False)
    parts = out.decode(errors="replace").split("\x00")
    found: dict[str, str] = {}
    for i in range(0, len(parts) - 1, 2):
        found[parts[i].lstrip("\n")] = parts[i + 1]
    return found


# -- collaborators ---------------------------------------------------------------------------------------
async def _member(db_session: AsyncSession, username: str) -> User:
    member = await user_by_username(db_session, username)
    if member is None or not member.is_active:
        raise NotFoundException("No such user.")
    return member


@get(f"{API}/repos/{{owner:str}}/{{repo:str}}/collaborators", name="api:forge:collaborators")
async def list_collaborators(request: Request[Any, Any, Any], repo_service: RepoService, owner: str,
                             repo: str) -> list[dict[str, Any]]:
    row, _permission = await _repo(request, repo_service, owner, repo, "write")
    pairs = await repo_service.list_collaborators(row)
    shapes = await users_json(repo_service.db, repo_service_base(request), [u for u, _p in pairs])
    return [{**msgspec.to_builtins(shape),
             "permissions": {"admin": p == "admin", "push": p in ("write", "admin"), "pull": True}}
            for shape, (_u, p) in zip(shapes, pairs, strict=True)]


@get(f"{API}/repos/{{owner:str}}/{{repo:str}}/collaborators/{{collaborator:str}}", status_code=204,
     name="api:forge:is_collaborator")
async def is_collaborator(request: Request[Any, Any, Any], db_session: AsyncSession, repo_service: RepoService,
                          owner: str, repo: str, collaborator: str) -> None:
    row, _permission = await _repo(request, repo_service, owner, repo, "read")
    member = await _member(db_session, collaborator)
    if not any(u.id == member.id for u, _p in await repo_service.list_collaborators(row)):
        raise NotFoundException("Not a collaborator.")


@put(f"{API}/repos/{{owner:str}}/{{repo:str}}/collaborators/{{collaborator:str}}", status_code=204,
     name="api:forge:add_collaborator")
async def add_collaborator(request: Request[Any, Any, Any], db_session: AsyncSession, repo_service: RepoService,
                           owner: str, repo: str, collaborator: str,
                           data: CollaboratorOption | None = None) -> None:
    row, _permission = await _repo(request, repo_service, owner, repo, "admin")
    member = await user_by_username(db_session, collaborator)
    if member is None or not member.is_active:
        raise ValidationException("No such user.", status_code=422, extra={"user": "No member has that username."})
    permission = (data or CollaboratorOption()).permission
    if permission not in PERMISSIONS:
        raise ValidationException("Use read, write or admin.", status_code=422,
                                  extra={"permission": "Use read, write or admin."})
    try:
        await repo_service.add_collaborator(row, member, permission)  # type: ignore[arg-type]
    except InputProblems as exc:
        raise ValidationException(str(exc), status_code=exc.status, extra=exc.errors) from None


@delete(f"{API}/repos/{{owner:str}}/{{repo:str}}/collaborators/{{collaborator:str}}", status_code=204,
        name="api:forge:remove_collaborator")
async def remove_collaborator(request: Request[Any, Any, Any], db_session: AsyncSession, repo_service: RepoService,
                              owner: str, repo: str, collaborator: str) -> None:
    row, _permission = await _repo(request, repo_service, owner, repo, "admin")
    member = await _member(db_session, collaborator)
    if not await repo_service.remove_collaborator(row, member):
        raise NotFoundException("Not a collaborator.")


# -- mirrors ---------------------------------------------------------------------------------------------
@post(f"{API}/repos/migrate", status_code=201, name="api:forge:migrate")
async def migrate(request: Request[Any, Any, Any], db_session: AsyncSession, repo_service: RepoService,
                  settings: Settings, data: MigrateRepoOption) -> Response[Any]:
    """Clone a remote repository into a new one of the caller (``mirror``: keep pulling it)."""
    user, auth = viewer(request)
    if user is None:
        raise NotAuthorizedException("Authentication required.")
    if auth is not None and not auth.allows("repo:write"):
        raise PermissionDeniedException("This token lacks the 'repo:write' scope.")
    credential = data.auth_token or None
    if data.auth_username or data.auth_password:
        if credential is not None:
            return problem(422, "Give auth_token or auth_username/auth_password, not both.",
                           {"auth_token": "Give auth_token or auth_username/auth_password, not both."})
        if not data.auth_password:
            return problem(422, "auth_password is required with auth_username.",
                           {"auth_password": "auth_password is required with auth_username."})
        if ":" in (data.auth_username or ""):
            return problem(422, "A user name cannot contain ':'.", {"auth_username": "A user name cannot contain ':'."})
        credential = basic_credential(data.auth_username or "", data.auth_password)
    try:
        repo = await import_repository(repo_service, settings, user, data.repo_name, data.clone_addr, credential,
                                       mirror=data.mirror, interval_seconds=_interval(data.mirror_interval),
                                       description=data.description, private=data.private)
    except InputProblems as exc:
        await db_session.rollback()
        keys = {"name": "repo_name", "url": "clone_addr", "interval": "mirror_interval"}
        errors = {keys.get(k, k): v for k, v in exc.errors.items()}
        return problem(exc.status, "; ".join(errors.values()), errors)
    return Response(await _repo_json(repo_service, settings, repo, "admin", owner=user), status_code=201)


@post(f"{API}/repos/{{owner:str}}/{{repo:str}}/mirror-sync", status_code=200, name="api:forge:mirror_sync")
async def mirror_sync(request: Request[Any, Any, Any], repo_service: RepoService, mirror_service: MirrorService,
                      owner: str, repo: str) -> None:
    await _sync(request, repo_service, mirror_service, owner, repo, "pull")


@post(f"{API}/repos/{{owner:str}}/{{repo:str}}/push_mirrors-sync", status_code=200, name="api:forge:push_mirror_sync")
async def push_mirrors_sync(request: Request[Any, Any, Any], repo_service: RepoService,
                            mirror_service: MirrorService, owner: str, repo: str) -> None:
    await _sync(request, repo_service, mirror_service, owner, repo, "push")


async def _sync(request: Request[Any, Any, Any], repo_service: RepoService, mirrors: MirrorService, owner: str,
                repo: str, direction: str) -> None:
    row, _permission = await _repo(request, repo_service, owner, repo, "write")
    found = [m for m in await mirrors.list_for(row) if m.direction == direction]
    if not found:
        raise ClientException("This repository has no such mirror.", status_code=400)
    for mirror in found:
        await mirrors.schedule_now(row, str(mirror.id))


@get(f"{API}/repos/{{owner:str}}/{{repo:str}}/push_mirrors", name="api:forge:push_mirrors")
async def list_push_mirrors(request: Request[Any, Any, Any], repo_service: RepoService,
                            mirror_service: MirrorService, owner: str, repo: str) -> list[dict[str, Any]]:
    row, _permission = await _repo(request, repo_service, owner, repo, "admin")
    mirrors = await mirror_service.list_for(row)
    return [_push_mirror_json(f"{owner}/{row.name}", m) for m in mirrors if m.direction == "push"]


@post(f"{API}/repos/{{owner:str}}/{{repo:str}}/push_mirrors", status_code=200, name="api:forge:add_push_mirror")
async def add_push_mirror(request: Request[Any, Any, Any], repo_service: RepoService, mirror_service: MirrorService,
                          owner: str, repo: str, data: CreatePushMirrorOption) -> Response[Any]:
    row, _permission = await _repo(request, repo_service, owner, repo, "admin")
    try:
        mirror = await mirror_service.add(
            row, direction="push", remote_url=data.remote_address,
            token=basic_credential(data.remote_username, data.remote_password)
            if data.remote_username and data.remote_password else data.remote_password,
            interval_seconds=_interval(data.interval))
    except InputProblems as exc:
        return problem(exc.status, str(exc), exc.errors)
    return Response(_push_mirror_json(f"{owner}/{row.name}", mirror), status_code=200)


@delete(f"{API}/repos/{{owner:str}}/{{repo:str}}/push_mirrors/{{name:str}}", status_code=204,
        name="api:forge:delete_push_mirror")
async def delete_push_mirror(request: Request[Any, Any, Any], repo_service: RepoService,
                             mirror_service: MirrorService, owner: str, repo: str, name: str) -> None:
    row, _permission = await _repo(request, repo_service, owner, repo, "admin")
    if not await mirror_service.remove(row, name):
        raise NotFoundException("No such push mirror.")


# Reading a public repository needs no token (as on Gitea); a token must still carry the scope.
router = Router(path="/", opt=access.token("repo:write", owner="repo"), dependencies=DEPENDENCIES, route_handlers=[
    edit_repo, delete_repo, list_collaborators, add_collaborator, remove_collaborator, mirror_sync,
    push_mirrors_sync, list_push_mirrors, add_push_mirror, delete_push_mirror,
    Router(path="/", opt=access.token("repo:read", anonymous=True, owner="repo"),
           route_handlers=[get_repo, list_branches, list_tags, is_collaborator]),
    Router(path="/", opt=access.token("repo:read", "api"), route_handlers=[user_repos]),
    Router(path="/", opt=access.token("repo:write"), route_handlers=[migrate]),
])
