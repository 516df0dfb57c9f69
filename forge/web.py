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
  Renaming (``…/settings/rename``) and archiving (``…/settings/archive``) follow the Gitea API's
  ``PATCH /repos/{owner}/{repo}`` rules (``name``, ``archived``): the same service calls, so the
  old name keeps redirecting (web, API and git) until a repository takes it, and an archived
  repository refuses pushes and API writes until it is unarchived.

The routes never collide with smart HTTP (``…/{repo}.git/info/refs``, ``…/git-upload-pack``,
``…/git-receive-pack``): no page ends in those segments, and ``/forge/{owner}/{repo}.git``
itself redirects browsers to the page.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any
from urllib.parse import quote

import msgspec
from litestar import Controller, Request, Response, Router, get, post
from litestar.exceptions import NotFoundException
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from app import access
from app.caching import CachePolicy, conditional_response, weak_etag
from app.forms import InputProblems, done, form_page, parse_form, see_other
from app.jobs import JobContext
from app.responses import PRIVATE
from app.security import requires_user
from app.settings import Settings
from domains.account.models import User
from forge import keys as forge_keys
from forge.access import NOT_FOUND
from forge.deps import DEPENDENCIES, provide_repo_service
from forge.events import PushEvent, on_push
from forge.guards import load_repo, redirect_if_renamed, request_line, viewer
from forge.mirror import MirrorService, import_repository
from forge.models import PERMISSIONS, ForgeRepo
from forge.queries import (
    latest_commits,
    public_repos,
    read_readme,
    render_readme,
    repos_of,
    user_by_username,
)
from forge.remote import MirrorError
from forge.schemas import (
    CHECKED,
    CollaboratorForm,
    DeleteRepoForm,
    MirrorChoiceForm,
    MirrorForm,
    NewRepoForm,
    ProtectionForm,
    RepoSettingsForm,
)
from forge.services import OWNER_NAME, RepoService, at_least, branch_name_problem, repo_name_problem
from forge.statuses import page_statuses, status_stamp
from fragments.page_cache import PAGE_CACHE_OPT
from fragments.pages import public_get
from fragments.purge import SurrogateKey, emit_purge
from fragments.registry import FragmentContext, FragmentData, fragment

log = logging.getLogger("rose_ash.forge.web")

COMMITS_SHOWN = 10
REFS_SHOWN = 100
# Part of the repository page's ETag: bump when templates/forge/repo.html changes shape.
PAGE_REVISION = "3"


class RenameRepoForm(msgspec.Struct, kw_only=True):
    new_name: str = ""


class ArchiveRepoForm(msgspec.Struct, kw_only=True):
    archived: str = ""  # "true" archives, "false" unarchives


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
    mirror_errors: list[str] = []
    if user is not None and owner and name:
        service = provide_repo_service(ctx.db, ctx.settings)
        repo = await service.get_by_owner_and_name(owner, name)
        is_admin = repo is not None and at_least(await service.permission(user, repo), "admin")
        if is_admin and repo is not None:
            # A mirror's last error may name the remote's internals: only its administrators see it.
            mirrors = await MirrorService(ctx.db, service.store, ctx.settings).list_for(repo)
            mirror_errors = [f"{m.remote_url}: {m.last_error}" for m in mirrors if m.last_error]
    return FragmentData({"owner": owner, "name": name, "is_admin": is_admin, "mirror_errors": mirror_errors})


# -- public pages ----------------------------------------------------------------------------------
@public_get("/forge", name="forge:index", include_in_schema=False)
async def index(request: Request[Any, Any, Any], db_session: AsyncSession) -> Response[bytes]:
    repos = await public_repos(db_session)
    html = _render(request, "forge/index.html", {"repos": repos})
    return conditional_response(request, html, CachePolicy.PUBLIC, surrogate_keys=[forge_keys.INDEX])


@public_get("/forge/{owner:str}", name="forge:owner", include_in_schema=False)
async def owner_page(request: Request[Any, Any, Any], db_session: AsyncSession, repo_service: RepoService,
                     owner: str) -> Response[bytes]:
    user = await user_by_username(db_session, owner) if OWNER_NAME.match(owner) else None
    if user is None or not user.is_active:
        raise NotFoundException("No such user.")
    repos = [r for r in await repo_service.list_for_owner(user) if not r.is_private]
    html = _render(request, "forge/owner.html", {"owner": user, "repos": repos})
    keys = [forge_keys.INDEX, forge_keys.owner(user.id)]
    return conditional_response(request, html, CachePolicy.PUBLIC, surrogate_keys=keys)


# A public repository's page is the same for everyone and kept by the page cache; a private one's
# answer is private and never kept (fragments/page_cache.py).
@get("/forge/{owner:str}/{repo:str}", opt={"exclude_from_csrf": True, PAGE_CACHE_OPT: True}, name="forge:repo",
     include_in_schema=False)
async def repo_page(request: Request[Any, Any, Any], repo_service: RepoService, settings: Settings, owner: str,
                    repo: str) -> Response[Any]:
    if repo.endswith(".git") and not repo_name_problem(repo[:-4]):
        return Redirect(f"/forge/{quote(owner)}/{quote(repo[:-4])}", status_code=301)
    row = await repo_service.get_by_owner_and_name(owner, repo)
    if row is None:
        await redirect_if_renamed(repo_service, owner, repo, *viewer(request))  # a 301 after a rename
        raise NotFoundException(NOT_FOUND)
    policy = CachePolicy.PUBLIC
    if row.is_private:
        # Only here does the page depend on who asks; it is then private, never cached.
        user, auth = viewer(request)
        row, _perm = await load_repo(repo_service, owner, repo, user, "read", auth, audit=request_line(request))
        policy = CachePolicy.PRIVATE
    # The status stamp: the page shows the default branch's combined commit status (a new one purges it).
    etag = weak_etag("forge-repo", PAGE_REVISION, str(row.id), str(row.ref_version), row.updated_at.isoformat(),
                     await status_stamp(repo_service.db, row.id))
    keys = _repo_keys(row)
    if policy is CachePolicy.PUBLIC:
        cheap = conditional_response(request, b"", policy, etag=etag, surrogate_keys=keys)
        if cheap.status_code == 304:
            return cheap
    context = await repo_context(repo_service, settings, row)
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
    pull_mirrors = [m for m in await MirrorService(service.db, service.store, settings).list_for(repo)
                    if m.direction == "pull"]
    head_oid = next((b.oid for b in branches if b.name == head), "")
    return {
        "mirror": pull_mirrors[0] if pull_mirrors else None,
        "sha": head_oid, "statuses": await page_statuses(service.db, repo.id, [head_oid] if head_oid else []),
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
    async def create(self, request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings,
                     repo_service: RepoService) -> Template | Redirect:
        form = await parse_form(request, NewRepoForm)
        values: dict[str, Any] = {
            "name": form.name.strip(),
            "description": form.description,
            "visibility": "private" if form.visibility == "private" else "public",
            "default_branch": (form.default_branch or "main").strip(),
            "import_url": form.import_url.strip(),
            "mirror": form.mirror == CHECKED,
        }
        try:
            # Clone from another forge (and keep pulling it): the default branch follows the remote.
            if values["import_url"]:
                repo = await import_repository(
                    repo_service, settings, request.user, values["name"], values["import_url"],
                    form.import_token.strip() or None, mirror=values["mirror"],
                    description=values["description"], private=values["visibility"] == "private")
            else:
                repo = await repo_service.create(
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

    async def _load(self, request: Request[User, Any, Any], service: RepoService, owner: str, repo: str) -> ForgeRepo:
        user, auth = viewer(request)
        row, _perm = await load_repo(service, owner, repo, user, "admin", auth, audit=request_line(request))
        return row

    async def _page(self, service: RepoService, mirrors: MirrorService, repo: ForgeRepo, *,
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
            "mirrors": await mirrors.list_for(repo),
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
    async def show(self, request: Request[User, Any, Any], repo_service: RepoService, mirror_service: MirrorService,
                   owner: str, repo: str) -> Template:
        row = await self._load(request, repo_service, owner, repo)
        return await self._page(repo_service, mirror_service, row)

    @post("/", status_code=303)
    async def save(self, request: Request[User, Any, Any], db_session: AsyncSession, repo_service: RepoService,
                   mirror_service: MirrorService, owner: str, repo: str) -> Template | Redirect:
        row = await self._load(request, repo_service, owner, repo)
        form = await parse_form(request, RepoSettingsForm)
        branch = (row.default_branch if form.default_branch is None else form.default_branch).strip()
        values = {"description": form.description, "visibility": form.visibility, "default_branch": branch}
        errors: dict[str, str] = {}
        if form.visibility not in {"public", "private"}:
            errors["visibility"] = "Choose public or private."
        if problem := branch_name_problem(branch):
            errors["default_branch"] = problem
        if len(form.description) > 2000:
            errors["description"] = "Use 2,000 characters at most."
        if errors:  # checked before the row is touched, so a re-render shows the saved values
            return await self._page(repo_service, mirror_service, row, values=values, status=422, errors=errors)
        await repo_service.update_settings(row, description=form.description, private=form.visibility == "private",
                                           allow_force_push=form.allow_force_push == CHECKED, default_branch=branch)
        return await self._back(request, db_session, owner, row, "Settings saved.")

    @post("/collaborators", status_code=303)
    async def add_collaborator(self, request: Request[User, Any, Any], db_session: AsyncSession,
                               repo_service: RepoService, mirror_service: MirrorService, owner: str,
                               repo: str) -> Template | Redirect:
        row = await self._load(request, repo_service, owner, repo)
        form = await parse_form(request, CollaboratorForm)
        username = form.username.strip().lstrip("@")
        values = {"collaborator": username, "permission": form.permission}
        member = await user_by_username(db_session, username)
        if member is None or not member.is_active:
            return await self._page(repo_service, mirror_service, row, values=values, status=422,
                                    errors={"collaborator": "No member has that username."})
        if form.permission not in PERMISSIONS:
            return await self._page(repo_service, mirror_service, row, values=values, status=422,
                                    errors={"permission": "Choose read, write or admin."})
        try:
            await repo_service.add_collaborator(row, member, form.permission)  # type: ignore[arg-type]
        except InputProblems as exc:
            errors = {("collaborator" if k == "user" else k): v for k, v in exc.errors.items()}
            return await self._page(repo_service, mirror_service, row, values=values, errors=errors,
                                    status=exc.status)
        return await self._back(request, db_session, owner, row,
                                f"{member.username} now has {form.permission} access.")

    @post("/collaborators/remove", status_code=303)
    async def remove_collaborator(self, request: Request[User, Any, Any], db_session: AsyncSession,
                                  repo_service: RepoService, mirror_service: MirrorService, owner: str,
                                  repo: str) -> Template | Redirect:
        row = await self._load(request, repo_service, owner, repo)
        form = await parse_form(request, CollaboratorForm)
        member = await user_by_username(db_session, form.username.strip())
        if member is None or not await repo_service.remove_collaborator(row, member):
            return await self._page(repo_service, mirror_service, row, status=422,
                                    errors={"collaborator": "That member is not a collaborator."})
        return await self._back(request, db_session, owner, row, f"Removed {member.username}.")

    @post("/protection", status_code=303)
    async def protect(self, request: Request[User, Any, Any], db_session: AsyncSession, repo_service: RepoService,
                      mirror_service: MirrorService, owner: str, repo: str) -> Template | Redirect:
        row = await self._load(request, repo_service, owner, repo)
        form = await parse_form(request, ProtectionForm)
        pattern = form.pattern.strip()
        probe = pattern.replace("*", "x").replace("?", "x").replace("[", "x").replace("]", "x")
        if not pattern or len(pattern) > 200 or branch_name_problem(probe):
            return await self._page(repo_service, mirror_service, row, values={"pattern": pattern}, status=422,
                                    errors={"pattern": "Enter a branch name or a pattern such as release/*."})
        await repo_service.protect_branch(row, pattern, allow_deletion=form.allow_deletion == CHECKED)
        return await self._back(request, db_session, owner, row, f"Branches matching {pattern} are protected.")

    @post("/protection/remove", status_code=303)
    async def unprotect(self, request: Request[User, Any, Any], db_session: AsyncSession, repo_service: RepoService,
                        mirror_service: MirrorService, owner: str, repo: str) -> Template | Redirect:
        row = await self._load(request, repo_service, owner, repo)
        form = await parse_form(request, ProtectionForm)
        if not await repo_service.unprotect_branch(row, form.pattern):
            return await self._page(repo_service, mirror_service, row, status=422,
                                    errors={"pattern": "No such protection rule."})
        return await self._back(request, db_session, owner, row, f"Removed the protection of {form.pattern}.")

    @post("/mirrors", status_code=303)
    async def add_mirror(self, request: Request[User, Any, Any], db_session: AsyncSession, repo_service: RepoService,
                         mirror_service: MirrorService, owner: str, repo: str) -> Template | Redirect:
        row = await self._load(request, repo_service, owner, repo)
        form = await parse_form(request, MirrorForm)
        url = form.remote_url.strip()
        values = {"direction": form.direction, "remote_url": url, "interval": form.interval}
        try:
            interval = int(form.interval)
            await mirror_service.add(row, direction=form.direction, remote_url=url,
                                     token=form.token.strip() or None, interval_seconds=interval,
                                     follow_force=form.follow_force == CHECKED)
        except ValueError:
            return await self._page(repo_service, mirror_service, row, values=values, status=422,
                                    errors={"interval": "Enter a number of seconds."})
        except InputProblems as exc:
            return await self._page(repo_service, mirror_service, row, values=values, errors=exc.errors,
                                    status=exc.status)
        return await self._back(request, db_session, owner, row, "Mirror saved; the first sync is queued.")

    @post("/mirrors/remove", status_code=303)
    async def remove_mirror(self, request: Request[User, Any, Any], db_session: AsyncSession,
                            repo_service: RepoService, mirror_service: MirrorService, owner: str,
                            repo: str) -> Template | Redirect:
        row = await self._load(request, repo_service, owner, repo)
        form = await parse_form(request, MirrorChoiceForm)
        if not await mirror_service.remove(row, form.mirror_id):
            return await self._page(repo_service, mirror_service, row, status=422,
                                    errors={"mirror": "No such mirror."})
        return await self._back(request, db_session, owner, row, "Mirror removed.")

    @post("/mirrors/sync", status_code=303)
    async def sync_mirror(self, request: Request[User, Any, Any], db_session: AsyncSession,
                          repo_service: RepoService, mirror_service: MirrorService, owner: str,
                          repo: str) -> Template | Redirect:
        row = await self._load(request, repo_service, owner, repo)
        form = await parse_form(request, MirrorChoiceForm)
        try:
            await mirror_service.schedule_now(row, form.mirror_id)
        except MirrorError as exc:
            return await self._page(repo_service, mirror_service, row, status=422, errors={"mirror": str(exc)})
        return await self._back(request, db_session, owner, row, "Sync queued.")

    @post("/mirrors/force", status_code=303)
    async def mirror_force(self, request: Request[User, Any, Any], db_session: AsyncSession,
                           repo_service: RepoService, mirror_service: MirrorService, owner: str,
                           repo: str) -> Template | Redirect:
        row = await self._load(request, repo_service, owner, repo)
        form = await parse_form(request, MirrorChoiceForm)
        follow = form.follow_force == CHECKED
        try:
            await mirror_service.set_follow_force(row, form.mirror_id, follow)
        except MirrorError as exc:
            return await self._page(repo_service, mirror_service, row, status=422, errors={"mirror": str(exc)})
        return await self._back(request, db_session, owner, row, "The mirror now follows force-pushes, keeping "
                                "the replaced tips." if follow else "The mirror no longer follows force-pushes.")

    @post("/rename", status_code=303)
    async def rename(self, request: Request[User, Any, Any], db_session: AsyncSession, repo_service: RepoService,
                     mirror_service: MirrorService, owner: str, repo: str) -> Template | Redirect:
        row = await self._load(request, repo_service, owner, repo)
        form = await parse_form(request, RenameRepoForm)
        name = form.new_name.strip()
        if name == row.name:
            return await self._page(repo_service, mirror_service, row, status=422, values={"new_name": name},
                                    errors={"new_name": "That is already its name."})
        old = row.name
        try:
            await repo_service.rename(row, name)  # the API's rules: a valid name, free within the owner
        except InputProblems as exc:  # raised before anything is written
            message = exc.errors.get("name", str(exc))
            return await self._page(repo_service, mirror_service, row, status=exc.status, values={"new_name": name},
                                    errors={"new_name": message})
        return await self._back(request, db_session, owner, row,
                                f"Renamed {owner}/{old} to {owner}/{row.name}; the old address redirects here.")

    @post("/archive", status_code=303)
    async def archive(self, request: Request[User, Any, Any], db_session: AsyncSession, repo_service: RepoService,
                      mirror_service: MirrorService, owner: str, repo: str) -> Template | Redirect:
        row = await self._load(request, repo_service, owner, repo)
        form = await parse_form(request, ArchiveRepoForm)
        if form.archived not in {"true", "false"}:
            return await self._page(repo_service, mirror_service, row, status=422,
                                    errors={"archived": "Choose to archive or to unarchive."})
        archived = form.archived == "true"
        if archived == row.is_archived:
            state = "already archived" if archived else "not archived"
            return await self._back(request, db_session, owner, row, f"The repository is {state}.")
        row.is_archived = archived  # as the API's PATCH {"archived": …} does
        await repo_service.update_settings(row)
        message = ("Archived: the repository is read-only now (no pushes, no API writes)." if archived
                   else "Unarchived: the repository accepts pushes again.")
        return await self._back(request, db_session, owner, row, message)

    @post("/delete", status_code=303)
    async def delete(self, request: Request[User, Any, Any], db_session: AsyncSession, repo_service: RepoService,
                     mirror_service: MirrorService, settings: Settings, owner: str,
                     repo: str) -> Template | Response[None]:
        row = await self._load(request, repo_service, owner, repo)
        form = await parse_form(request, DeleteRepoForm)
        if form.confirm.strip() != row.name:
            return await self._page(repo_service, mirror_service, row, status=422, values={"confirm": form.confirm},
                                    errors={"confirm": f"Type {row.name} to confirm."})
        name = row.name
        from forge.webhooks import announce_deletion  # the repository event to its webhooks

        await announce_deletion(repo_service, settings, row, request.user)
        await purge_repo_pages(db_session, row.id, row.owner_id)
        await repo_service.delete(row)
        # To a private page: public pages never read the session, so the flash shows there.
        return done("/account", request, f"Deleted {owner}/{name}.")


router = Router(
    path="/",
    dependencies=DEPENDENCIES,
    opt=access.public(owner="repo"),  # a private repository is shown to those who may see it
    route_handlers=[
        index, owner_page, repo_page,
        Router(path="/", opt=access.session(), route_handlers=[NewRepoController]),
        Router(path="/", opt=access.session(owner="repo"), route_handlers=[SettingsController]),
    ],
)
