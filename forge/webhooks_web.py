"""The webhook settings pages: ``/forge/<owner>/<repo>/settings/hooks[/<id>]`` (issue 19 item 3).

Owner (admin permission) only, like the rest of the settings (forge.web.SettingsController): a
private page with CSRF, Post/Redirect/Get, 422 re-renders. A hook's page shows its recent
deliveries as sent (headers and body) with the receiver's answer (status, an excerpt of the body,
the time it took, the error), and "Redeliver" for each. Hook ids in URLs are the Gitea integer
ids the API uses too.
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.exceptions import NotFoundException
from litestar.response import Redirect, Template
from sqlalchemy import select

from app.forms import InputProblems, form_page, parse_form, see_other
from app.responses import PRIVATE
from app.security import requires_user
from app.settings import Settings
from domains.account.models import User
from forge import webhooks
from forge.gitea_ids import gitea_id, gitea_ids, target_of
from forge.gitea_models import HOOK_EVENTS, ForgeWebhook, ForgeWebhookDelivery
from forge.guards import load_repo, request_line, viewer
from forge.models import ForgeRepo
from forge.services import RepoService

CHECKED = "on"


class HookForm(msgspec.Struct, kw_only=True):
    url: str = ""
    secret: str = ""
    content_type: str = "json"
    events: list[str] = []
    branch_filter: str = "*"
    active: str = ""
    keep_secret: str = ""


class HooksController(Controller):
    path = "/forge/{owner:str}/{repo:str}/settings/hooks"
    guards = [requires_user]
    cache_control = PRIVATE
    include_in_schema = False

    async def _load(self, request: Request[User, Any, Any], service: RepoService, owner: str,
                    repo: str) -> ForgeRepo:
        user, auth = viewer(request)
        row, _perm = await load_repo(service, owner, repo, user, "admin", auth, audit=request_line(request))
        return row

    async def _hook(self, service: RepoService, repo: ForgeRepo, hook_id: int) -> ForgeWebhook:
        target = await target_of(service.db, "hook", hook_id)
        hook = await service.db.get(ForgeWebhook, target) if target else None
        if hook is None or hook.repo_id != repo.id:
            raise NotFoundException("No such webhook.")
        return hook

    async def _base(self, service: RepoService, repo: ForgeRepo) -> tuple[User, str]:
        owner = await service.db.get(User, repo.owner_id)
        assert owner is not None
        return owner, f"/forge/{owner.username}/{repo.name}/settings/hooks"

    async def _list_page(self, service: RepoService, repo: ForgeRepo, *, errors: dict[str, str] | None = None,
                         values: dict[str, Any] | None = None, status: int = 200) -> Template:
        owner, base = await self._base(service, repo)
        hooks = await webhooks.hooks_of(service.db, repo.id)
        ids = await gitea_ids(service.db, "hook", [h.id for h in hooks])
        context = {"repo": repo, "owner": owner, "base": base, "hooks": [(ids[h.id], h) for h in hooks],
                   "all_events": HOOK_EVENTS, "values": values or {"events": ["push"], "active": True}}
        return form_page("forge/settings/hooks.html", context, errors or {}, status)

    async def _hook_page(self, service: RepoService, repo: ForgeRepo, hook: ForgeWebhook, *,
                         errors: dict[str, str] | None = None, status: int = 200) -> Template:
        owner, base = await self._base(service, repo)
        deliveries = await webhooks.deliveries_of(service.db, hook.id)
        context = {"repo": repo, "owner": owner, "base": base, "hook": hook,
                   "hook_id": await gitea_id(service.db, "hook", hook.id), "all_events": HOOK_EVENTS,
                   "deliveries": [webhooks.describe(d) for d in deliveries]}
        return form_page("forge/settings/hook.html", context, errors or {}, status)

    @get("/", name="forge:hooks")
    async def index(self, request: Request[User, Any, Any], repo_service: RepoService, owner: str,
                    repo: str) -> Template:
        return await self._list_page(repo_service, await self._load(request, repo_service, owner, repo))

    @post("/", status_code=303)
    async def create(self, request: Request[User, Any, Any], repo_service: RepoService, settings: Settings,
                     owner: str, repo: str) -> Template | Redirect:
        row = await self._load(request, repo_service, owner, repo)
        form = await parse_form(request, HookForm)
        values = {"url": form.url, "content_type": form.content_type, "events": form.events,
                  "branch_filter": form.branch_filter, "active": form.active == CHECKED}
        try:
            hook = await webhooks.create_hook(repo_service.db, settings, row, url=form.url.strip(), secret=form.secret,
                                              content_type=form.content_type, events=form.events or ["push"],
                                              active=form.active == CHECKED, branch_filter=form.branch_filter)
        except InputProblems as exc:
            return await self._list_page(repo_service, row, errors=exc.errors, values=values, status=exc.status)
        _owner, base = await self._base(repo_service, row)
        return see_other(f"{base}/{await gitea_id(repo_service.db, 'hook', hook.id)}", request, "Webhook added.")

    @get("/{hook_id:int}", name="forge:hook")
    async def show(self, request: Request[User, Any, Any], repo_service: RepoService, owner: str, repo: str,
                   hook_id: int) -> Template:
        row = await self._load(request, repo_service, owner, repo)
        return await self._hook_page(repo_service, row, await self._hook(repo_service, row, hook_id))

    @post("/{hook_id:int}", status_code=303)
    async def update(self, request: Request[User, Any, Any], repo_service: RepoService, settings: Settings,
                     owner: str, repo: str, hook_id: int) -> Template | Redirect:
        row = await self._load(request, repo_service, owner, repo)
        hook = await self._hook(repo_service, row, hook_id)
        form = await parse_form(request, HookForm)
        try:
            await webhooks.update_hook(
                repo_service.db, settings, hook, url=form.url.strip(), content_type=form.content_type,
                secret=None if form.keep_secret == CHECKED else form.secret, events=form.events or ["push"],
                active=form.active == CHECKED, branch_filter=form.branch_filter)
        except InputProblems as exc:
            await repo_service.db.refresh(hook)
            return await self._hook_page(repo_service, row, hook, errors=exc.errors, status=exc.status)
        _owner, base = await self._base(repo_service, row)
        return see_other(f"{base}/{hook_id}", request, "Webhook saved.")

    @post("/{hook_id:int}/delete", status_code=303)
    async def remove(self, request: Request[User, Any, Any], repo_service: RepoService, owner: str, repo: str,
                     hook_id: int) -> Redirect:
        row = await self._load(request, repo_service, owner, repo)
        hook = await self._hook(repo_service, row, hook_id)
        await webhooks.delete_hook(repo_service.db, hook)
        _owner, base = await self._base(repo_service, row)
        return see_other(base, request, "Webhook deleted.")

    @post("/{hook_id:int}/deliveries/{delivery_id:uuid}/redeliver", status_code=303)
    async def redeliver(self, request: Request[User, Any, Any], repo_service: RepoService, owner: str, repo: str,
                        hook_id: int, delivery_id: uuid.UUID) -> Redirect:
        row = await self._load(request, repo_service, owner, repo)
        hook = await self._hook(repo_service, row, hook_id)
        old = (await repo_service.db.execute(select(ForgeWebhookDelivery).where(
            ForgeWebhookDelivery.id == delivery_id, ForgeWebhookDelivery.hook_id == hook.id))).scalar_one_or_none()
        if old is None:
            raise NotFoundException("No such delivery.")
        await webhooks.redeliver(repo_service.db, hook, old)
        _owner, base = await self._base(repo_service, row)
        return see_other(f"{base}/{hook_id}", request, "Delivery queued again.")
