"""Forge web pages: the repository index, a user's repositories, the new-repository form, the
repository page and its settings (design/forge.md §3.6; ARCHITECTURE.md "HTTP and HTML").

Caching classes (design/fragments.md §2):

* ``/forge/`` and ``/forge/{owner}`` are public pages: they skip the session, the user lookup and
  the CSRF cookie, list public repositories only, and the viewer's own repositories arrive
  through the personal hole ``/f/me/forge-repos``.
* ``/forge/{owner}/{repo}`` depends on the repository: a public one is served to everyone as the
  same public, cacheable page (ETag from ``ref_version`` and the row's ``updated_at``, checked
  before any git process starts) and never looks at who asks; the owner's settings link is the
  personal hole ``/f/me/forge-repo-menu``. A private one is read only by members, answered
  ``private, no-store``; to everyone else, anonymous included, it answers 404 exactly as an
  absent repository does (the API too; git: a 401 challenge for both, then 404).
* ``/forge/new`` and ``…/settings`` are private pages (CSRF, PRG with 303, 422/409 re-render).

The routes never collide with smart HTTP (``…/{repo}.git/info/refs``, ``…/git-upload-pack``,
``…/git-receive-pack``): no page ends in those segments, and ``/forge/{owner}/{repo}.git``
itself redirects browsers to the page.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any
from urllib.parse import quote

from litestar import Controller, Request, Response, Router, get, post
from litestar.exceptions import NotAuthorizedException, NotFoundException, PermissionDeniedException
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from app import access
from app.forms import InputProblems, form_data, form_page, see_other
from app.jobs import JobContext
from app.responses import PRIVATE
from app.security import AuthInfo, requires_user
from app.settings import Settings
from domains.account.models import User
from forge import keys as forge_keys
from forge.access import NOT_FOUND, may_see
from forge.events import PushEvent, on_push
from forge.mirror import MirrorError, MirrorService, import_repository
from forge.models import PERMISSIONS, ForgeRepo
from forge.queries import (
    latest_commits,
    public_repos,
    read_readme,
    render_readme,
    repos_of,
    user_by_username,
)
from forge.services import OWNER_NAME, Permission, RepoService, at_least, branch_name_problem, repo_name_problem
from forge.smart_http import runtime_for
from fragments.caching import CachePolicy, conditional_response, weak_etag
from fragments.pages import public_get
from fragments.purge import SurrogateKey, emit_purge
from fragments.registry import FragmentContext, FragmentData, fragment

log = logging.getLogger("rose_ash.forge.web")

# Public pages with path parameters: the same opt-outs as fragments.caching.route_opt(PUBLIC),
# without the route-class marker (whose header walk needs sample URLs for parametrised paths).
PUBLIC_PAGE_OPT: dict[str, Any] = {"skip_session": True, "exclude_from_auth": True, "exclude_from_csrf": True}
COMMITS_SHOWN = 10
REFS_SHOWN = 100
# Part of the repository page's ETag: bump when templates/forge/repo.html changes shape.
PAGE_REVISION = "1"


def _render(request: Request[Any, Any, Any], template: str, context: dict[str, Any]) -> str:
    env = request.app.template_engine.engine  # type: ignore[union-attr]
    return str(env.get_template(template).render({"request": request, **context}))


def _repo_keys(repo: ForgeRepo) -> list[SurrogateKey]:
    return forge_keys.repo_pages(repo.id)


async def purge_repo_pages(db: AsyncSession, repo_id: uuid.UUID | str, owner_id: uuid.UUID | str | None = None) -> None:
    """Queue an edge purge of the pages that show this repository (in the caller's transaction)."""
    await emit_purge(db, forge_keys.repo_pages(repo_id, owner_id))


@on_push
async def purge_after_push(ctx: JobContext, event: PushEvent) -> None:
    """Every accepted ref change (push, API, mirror) refreshes the repository page at the edge."""
    async with ctx.sessionmaker() as session, session.begin():
        await purge_repo_pages(session, event.repo_id)


def _service(db_session: AsyncSession, settings: Settings) -> RepoService:
    return RepoService(db_session, runtime_for(settings).store)


def _viewer(request: Request[Any, Any, Any]) -> tuple[User | None, AuthInfo | None]:
    """Who is asking. Only called where the answer may depend on it (private pages and repositories)."""
    user: User | None = request.scope.get("user")
    auth = request.scope.get("auth")
    return user, auth if isinstance(auth, AuthInfo) else None


async def load_repo(service: RepoService, owner: str, name: str, user: User | None, need: Permission,
                    auth: AuthInfo | None = None, *, audit: str = "") -> tuple[ForgeRepo, Permission]:
    """The repository and the caller's permission, or the house error: 404 for an absent
    repository and for a private one the caller may not see (anonymous included: web and API
    pages answer the same for both), 401 anonymous on a change, 403 when they may see it but not
    do ``need``. With ``audit`` (the request, e.g. ``"POST /forge/bob/x/settings"``), an
    administrator's use of powers they hold only as site admin goes to the audit log."""
    repo = await service.get_by_owner_and_name(owner, name)
    if repo is None:
        raise NotFoundException(NOT_FOUND)
    permission, own = await service.access(user, repo)
    if not may_see(repo.is_private, permission, auth):
        raise NotFoundException(NOT_FOUND)
    if need != "read":
        if user is None:
            raise NotAuthorizedException("Sign in to continue.")
        scope = "repo:write"
        if auth is not None and not auth.allows(scope):
            raise PermissionDeniedException(f"This token lacks the '{scope}' scope.")
    if not at_least(permission, need):
        raise PermissionDeniedException("You don't have permission to do that in this repository.")
    if audit and user is not None and not at_least(own, need):
        await service.audit_admin_use(user, repo, need, audit)
    return repo, permission


def _request_line(request: Request[Any, Any, Any]) -> str:
    return f"{request.method} {request.url.path}"


def clone_url(settings: Settings, owner: str, repo: ForgeRepo) -> str:
    return f"{settings.base_url}/forge/{owner}/{repo.name}.git"


# -- personal holes ----------------------------------------------------------------------------------
@fragment("me.forge-repos", policy=CachePolicy.PERSONAL, title="Your repositories",
          template="forge/_my_repos.html", fallback="forge/_my_repos_fallback.html")
async def my_repos(ctx: FragmentContext) -> FragmentData:
    """The signed-in person's repositories (private ones too), for the forge index."""
    user = ctx.user
    repos = await repos_of(ctx.db, user) if user is not None else []
    return FragmentData({"user": user, "repos": repos})


@fragment("me.forge-repo-menu", policy=CachePolicy.PERSONAL, title="Repository menu",
          template="forge/_repo_menu.html", fallback="forge/_repo_menu_fallback.html", params={"repo": "alice/demo"})
async def repo_menu(ctx: FragmentContext) -> FragmentData:
    """The settings link of a repository page, for those who may change its settings."""
    owner, _, name = ctx.params.get("repo", "").partition("/")
    user = ctx.user
    is_admin = False
    if user is not None and owner and name:
        service = RepoService(ctx.db, runtime_for(ctx.settings).store)
        repo = await service.get_by_owner_and_name(owner, name)
        is_admin = repo is not None and at_least(await service.permission(user, repo), "admin")
    return FragmentData({"owner": owner, "name": name, "is_admin": is_admin})


# -- public pages ----------------------------------------------------------------------------------
@public_get("/forge", name="forge:index", include_in_schema=False)
async def index(request: Request[Any, Any, Any], db_session: AsyncSession) -> Response[bytes]:
    repos = await public_repos(db_session)
    html = _render(request, "forge/index.html", {"repos": repos})
    return conditional_response(request, html, CachePolicy.PUBLIC, surrogate_keys=[forge_keys.INDEX])


@get("/forge/{owner:str}", opt=PUBLIC_PAGE_OPT, name="forge:owner", include_in_schema=False)
async def owner_page(request: Request[Any, Any, Any], db_session: AsyncSession, settings: Settings,
                     owner: str) -> Response[bytes]:
    user = await user_by_username(db_session, owner) if OWNER_NAME.match(owner) else None
    if user is None or not user.is_active:
        raise NotFoundException("No such user.")
    repos = [r for r in await _service(db_session, settings).list_for_owner(user) if not r.is_private]
    html = _render(request, "forge/owner.html", {"owner": user, "repos": repos})
    keys = [forge_keys.INDEX, forge_keys.owner(user.id)]
    return conditional_response(request, html, CachePolicy.PUBLIC, surrogate_keys=keys)


@get("/forge/{owner:str}/{repo:str}", opt={"exclude_from_csrf": True}, name="forge:repo", include_in_schema=False)
async def repo_page(request: Request[Any, Any, Any], db_session: AsyncSession, settings: Settings, owner: str,
                    repo: str) -> Response[Any]:
    if repo.endswith(".git") and not repo_name_problem(repo[:-4]):
        return Redirect(f"/forge/{quote(owner)}/{quote(repo[:-4])}", status_code=301)
    service = _service(db_session, settings)
    row = await service.get_by_owner_and_name(owner, repo)
    if row is None:
        raise NotFoundException(NOT_FOUND)
    policy = CachePolicy.PUBLIC
    if row.is_private:
        # Only here does the page depend on who asks; it is then private, never cached.
        user, auth = _viewer(request)
        row, _perm = await load_repo(service, owner, repo, user, "read", auth, audit=_request_line(request))
        policy = CachePolicy.PRIVATE
    etag = weak_etag("forge-repo", PAGE_REVISION, str(row.id), str(row.ref_version), row.updated_at.isoformat())
    keys = _repo_keys(row)
    if policy is CachePolicy.PUBLIC:
        cheap = conditional_response(request, b"", policy, etag=etag, surrogate_keys=keys)
        if cheap.status_code == 304:
            return cheap
    context = await repo_context(service, settings, row)
    html = _render(request, "forge/repo.html", context)
    return conditional_response(request, html, policy, etag=etag, surrogate_keys=keys)


async def repo_context(service: RepoService, settings: Settings, repo: ForgeRepo) -> dict[str, Any]:
    owner = await service.db.get(User, repo.owner_id)
    assert owner is not None
    refs = await service.refs(repo)
    branches = [r for r in refs if r.name.startswith("refs/heads/")]
    tags = [r for r in refs if r.name.startswith("refs/tags/")]
    head = f"refs/heads/{repo.default_branch}"
    has_head = any(b.name == head for b in branches)
    commits = await latest_commits(service.store, repo.id, head, COMMITS_SHOWN) if has_head else []
    readme_html = ""
    readme_name = ""
    if has_head:
        found = await read_readme(service.store, repo.id, head)
        if found is not None:
            readme_name, text = found
            readme_html = render_readme(readme_name, text) if text else ""
    return {
        "repo": repo, "owner": owner, "clone_url": clone_url(settings, owner.username, repo),
        "branches": [(b.name.removeprefix("refs/heads/"), b.oid) for b in branches[:REFS_SHOWN]],
        "more_branches": max(0, len(branches) - REFS_SHOWN),
        "tags": [(t.name.removeprefix("refs/tags/"), t.peeled or t.oid) for t in tags[-REFS_SHOWN:]],
        "more_tags": max(0, len(tags) - REFS_SHOWN),
        "commits": commits, "readme_name": readme_name, "readme_html": readme_html, "empty": not refs,
    }


# -- new repository -------------------------------------------------------------------------------------
class NewRepoController(Controller):
    path = "/forge/new"
    guards = [requires_user]
    cache_control = PRIVATE
    include_in_schema = False

    @get("/", name="forge:new")
    async def form(self) -> Template:
        return Template("forge/new.html", context={"values": {"default_branch": "main"}, "errors": {}})

    @post("/", status_code=303)
    async def create(self, request: Request[User, Any, Any], db_session: AsyncSession,
                     settings: Settings) -> Template | Redirect:
        data = await form_data(request)
        values: dict[str, Any] = {
            "name": str(data.get("name", "")).strip(),
            "description": str(data.get("description", "")),
            "visibility": "private" if data.get("visibility") == "private" else "public",
            "default_branch": str(data.get("default_branch", "") or "main").strip(),
        }
        import_url = str(data.get("import_url", "")).strip()
        values.update(import_url=import_url, mirror=data.get("mirror") == "on")
        service = _service(db_session, settings)
        try:
            if import_url:  # clone from another forge (and keep pulling it): the default branch follows the remote
                repo = await import_repository(
                    service, settings, request.user, values["name"], import_url,
                    str(data.get("import_token", "")).strip() or None, mirror=bool(values["mirror"]),
                    description=values["description"], private=values["visibility"] == "private")
            else:
                repo = await service.create(
                    request.user, values["name"], description=values["description"],
                    private=values["visibility"] == "private", default_branch=values["default_branch"])
        except InputProblems as exc:
            errors = {("import_url" if k == "url" else k): v for k, v in exc.errors.items()}
            return form_page("forge/new.html", {"values": values}, errors, exc.status)
        await purge_repo_pages(db_session, repo.id, repo.owner_id)
        return see_other(f"/forge/{request.user.username}/{repo.name}", request, "Repository created.")


# -- settings ----------------------------------------------------------------------------------------
class SettingsController(Controller):
    path = "/forge/{owner:str}/{repo:str}/settings"
    guards = [requires_user]
    cache_control = PRIVATE
    include_in_schema = False

    async def _load(self, request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings,
                    owner: str, repo: str) -> tuple[RepoService, ForgeRepo]:
        service = _service(db_session, settings)
        user, auth = _viewer(request)
        row, _perm = await load_repo(service, owner, repo, user, "admin", auth, audit=_request_line(request))
        return service, row

    async def _page(self, service: RepoService, settings: Settings, repo: ForgeRepo, *,
                    errors: dict[str, str] | None = None, values: dict[str, Any] | None = None,
                    status: int = 200) -> Template:
        owner = await service.db.get(User, repo.owner_id)
        assert owner is not None
        refs = await service.refs(repo, "refs/heads/")
        context = {
            "repo": repo, "owner": owner,
            "branches": [r.name.removeprefix("refs/heads/") for r in refs],
            "collaborators": await service.list_collaborators(repo),
            "protections": await service.protections(repo),
            "mirrors": await MirrorService(service.db, service.store, settings).list_for(repo),
            "permissions": PERMISSIONS,
            "values": values or {},
        }
        return form_page("forge/settings.html", context, errors or {}, status)

    async def _back(self, request: Request[Any, Any, Any], db_session: AsyncSession, owner: str, repo: ForgeRepo,
                    message: str) -> Redirect:
        """PRG back to the settings page; the public pages showing the repository are purged."""
        await purge_repo_pages(db_session, repo.id, repo.owner_id)
        return see_other(f"/forge/{owner}/{repo.name}/settings", request, message)

    @get("/", name="forge:settings")
    async def show(self, request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings,
                   owner: str, repo: str) -> Template:
        service, row = await self._load(request, db_session, settings, owner, repo)
        return await self._page(service, settings, row)

    @post("/", status_code=303)
    async def save(self, request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings,
                   owner: str, repo: str) -> Template | Redirect:
        service, row = await self._load(request, db_session, settings, owner, repo)
        data = await form_data(request)
        description = str(data.get("description", ""))
        visibility = str(data.get("visibility", "public"))
        branch = str(data.get("default_branch", row.default_branch)).strip()
        values = {"description": description, "visibility": visibility, "default_branch": branch}
        errors: dict[str, str] = {}
        if visibility not in {"public", "private"}:
            errors["visibility"] = "Choose public or private."
        if problem := branch_name_problem(branch):
            errors["default_branch"] = problem
        if len(description) > 2000:
            errors["description"] = "Use 2,000 characters at most."
        if errors:  # checked before the row is touched, so a re-render shows the saved values
            return await self._page(service, settings, row, values=values, status=422, errors=errors)
        await service.update_settings(row, description=description, private=visibility == "private",
                                      allow_force_push=data.get("allow_force_push") == "on", default_branch=branch)
        return await self._back(request, db_session, owner, row, "Settings saved.")

    @post("/collaborators", status_code=303)
    async def add_collaborator(self, request: Request[User, Any, Any], db_session: AsyncSession,
                               settings: Settings, owner: str, repo: str) -> Template | Redirect:
        service, row = await self._load(request, db_session, settings, owner, repo)
        data = await form_data(request)
        username = str(data.get("username", "")).strip().lstrip("@")
        permission = str(data.get("permission", "write"))
        values = {"collaborator": username, "permission": permission}
        member = await user_by_username(db_session, username)
        if member is None or not member.is_active:
            return await self._page(service, settings, row, values=values, status=422,
                                    errors={"collaborator": "No member has that username."})
        if permission not in PERMISSIONS:
            return await self._page(service, settings, row, values=values, status=422,
                                    errors={"permission": "Choose read, write or admin."})
        try:
            await service.add_collaborator(row, member, permission)  # type: ignore[arg-type]
        except InputProblems as exc:
            errors = {("collaborator" if k == "user" else k): v for k, v in exc.errors.items()}
            return await self._page(service, settings, row, values=values, errors=errors, status=exc.status)
        return await self._back(request, db_session, owner, row, f"{member.username} now has {permission} access.")

    @post("/collaborators/remove", status_code=303)
    async def remove_collaborator(self, request: Request[User, Any, Any], db_session: AsyncSession,
                                  settings: Settings, owner: str, repo: str) -> Template | Redirect:
        service, row = await self._load(request, db_session, settings, owner, repo)
        data = await form_data(request)
        member = await user_by_username(db_session, str(data.get("username", "")).strip())
        if member is None or not await service.remove_collaborator(row, member):
            return await self._page(service, settings, row, status=422,
                                    errors={"collaborator": "That member is not a collaborator."})
        return await self._back(request, db_session, owner, row, f"Removed {member.username}.")

    @post("/protection", status_code=303)
    async def protect(self, request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings,
                      owner: str, repo: str) -> Template | Redirect:
        service, row = await self._load(request, db_session, settings, owner, repo)
        data = await form_data(request)
        pattern = str(data.get("pattern", "")).strip()
        probe = pattern.replace("*", "x").replace("?", "x").replace("[", "x").replace("]", "x")
        if not pattern or len(pattern) > 200 or branch_name_problem(probe):
            return await self._page(service, settings, row, values={"pattern": pattern}, status=422,
                                    errors={"pattern": "Enter a branch name or a pattern such as release/*."})
        await service.protect_branch(row, pattern, allow_deletion=data.get("allow_deletion") == "on")
        return await self._back(request, db_session, owner, row, f"Branches matching {pattern} are protected.")

    @post("/protection/remove", status_code=303)
    async def unprotect(self, request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings,
                        owner: str, repo: str) -> Template | Redirect:
        service, row = await self._load(request, db_session, settings, owner, repo)
        data = await form_data(request)
        pattern = str(data.get("pattern", ""))
        if not await service.unprotect_branch(row, pattern):
            return await self._page(service, settings, row, status=422,
                                    errors={"pattern": "No such protection rule."})
        return await self._back(request, db_session, owner, row, f"Removed the protection of {pattern}.")

    @post("/mirrors", status_code=303)
    async def add_mirror(self, request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings,
                         owner: str, repo: str) -> Template | Redirect:
        service, row = await self._load(request, db_session, settings, owner, repo)
        data = await form_data(request)
        direction = str(data.get("direction", "pull"))
        url = str(data.get("remote_url", "")).strip()
        token = str(data.get("token", "")).strip() or None
        values = {"direction": direction, "remote_url": url, "interval": str(data.get("interval", "3600"))}
        try:
            interval = int(values["interval"])
            await MirrorService(db_session, service.store, settings).add(
                row, direction=direction, remote_url=url, token=token, interval_seconds=interval)
        except ValueError:
            return await self._page(service, settings, row, values=values, status=422,
                                    errors={"interval": "Enter a number of seconds."})
        except InputProblems as exc:
            return await self._page(service, settings, row, values=values, errors=exc.errors, status=exc.status)
        return await self._back(request, db_session, owner, row, "Mirror saved; the first sync is queued.")

    @post("/mirrors/remove", status_code=303)
    async def remove_mirror(self, request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings,
                            owner: str, repo: str) -> Template | Redirect:
        service, row = await self._load(request, db_session, settings, owner, repo)
        data = await form_data(request)
        mirrors = MirrorService(db_session, service.store, settings)
        if not await mirrors.remove(row, str(data.get("mirror_id", ""))):
            return await self._page(service, settings, row, status=422, errors={"mirror": "No such mirror."})
        return await self._back(request, db_session, owner, row, "Mirror removed.")

    @post("/mirrors/sync", status_code=303)
    async def sync_mirror(self, request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings,
                          owner: str, repo: str) -> Template | Redirect:
        service, row = await self._load(request, db_session, settings, owner, repo)
        data = await form_data(request)
        mirrors = MirrorService(db_session, service.store, settings)
        try:
            await mirrors.schedule_now(row, str(data.get("mirror_id", "")))
        except MirrorError as exc:
            return await self._page(service, settings, row, status=422, errors={"mirror": str(exc)})
        return await self._back(request, db_session, owner, row, "Sync queued.")

    @post("/delete", status_code=303)
    async def delete(self, request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings,
                     owner: str, repo: str) -> Template | Redirect:
        service, row = await self._load(request, db_session, settings, owner, repo)
        data = await form_data(request)
        if str(data.get("confirm", "")).strip() != row.name:
            return await self._page(service, settings, row, status=422, values={"confirm": data.get("confirm", "")},
                                    errors={"confirm": f"Type {row.name} to confirm."})
        name = row.name
        await purge_repo_pages(db_session, row.id, row.owner_id)
        await service.delete(row)
        # To a private page: public pages never read the session, so the flash shows there.
        return see_other("/account", request, f"Deleted {owner}/{name}.")


router = Router(
    path="/",
    opt=access.public(owner="repo"),  # a private repository is shown to those who may see it
    route_handlers=[
        index, owner_page, repo_page,
        Router(path="/", opt=access.session(), route_handlers=[NewRepoController]),
        Router(path="/", opt=access.session(owner="repo"), route_handlers=[SettingsController]),
    ],
)
