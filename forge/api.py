"""Forge JSON API (Gitea-compatible subset). So far: ``POST /api/v1/user/repos``."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, post

from app.forms import InputProblems
from app.settings import Settings
from domains.account.models import User
from forge.deps import DEPENDENCIES
from forge.schemas import CreateRepoOption
from forge.services import RepoService


# The handler carries its own dependencies: forge/__init__.py mounts it on a router of its own.
@post("/api/v1/user/repos", name="api:forge:create_repo", status_code=201, dependencies=DEPENDENCIES)
async def create_repo(request: Request[User, Any, Any], data: CreateRepoOption, repo_service: RepoService,
                      settings: Settings) -> Response[Any]:
    """Gitea ``POST /user/repos``: create a repository owned by the caller (``auto_init``: with a
    first commit holding README.md and the chosen LICENSE and .gitignore templates)."""
    from forge.contents import auto_init, init_problems
    from forge.gitea.shapes import repo_json

    licence, gitignores = data.license or "", data.gitignores or ""
    if data.auto_init and (errors := init_problems(licence, gitignores)):
        return Response({"message": "; ".join(errors.values()), "errors": errors}, status_code=422)
    try:
        repo = await repo_service.create(request.user, data.name, description=data.description, private=data.private,
                                         default_branch=data.default_branch)
    except InputProblems as exc:
        return Response({"message": str(exc), "errors": exc.errors}, status_code=exc.status)
    if data.auto_init:
        await auto_init(repo_service, repo, request.user, description=data.description, license=licence,
                        gitignores=gitignores)
    return Response(await repo_json(repo_service, settings, repo, "admin", owner=request.user,
                                    viewer=request.user), status_code=201)
