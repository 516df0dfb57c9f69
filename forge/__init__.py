"""Forge: git hosting over smart HTTP (design/forge.md).

Importing the package builds nothing (its ``domain`` names factories and modules, app/kit.py), so
the pre-receive hook, which runs ``python -m forge.hooks.pre_receive`` once per push, does not pay
for importing the web stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.kit import Domain, NavEntry, ServiceActor

if TYPE_CHECKING:
    import click
    from litestar.types import ControllerRouterHandler

__all__ = ["domain"]


def _routes() -> list[ControllerRouterHandler]:
    from litestar import Router

    from app import access
    from forge.api import create_repo
    from forge.browse.views import router as browse_router
    from forge.deps import DEPENDENCIES
    from forge.gitea.routes import router as gitea_routes
    from forge.gitea_api import router as gitea_api_router
    from forge.guards import MovedPermanently, moved_handler
    from forge.smart_http import git_router
    from forge.web import router as web_router
    from forge.webhooks_web import HooksController

    return [Router(path="/", exception_handlers={MovedPermanently: moved_handler}, route_handlers=[
        git_router, web_router, gitea_api_router, browse_router, gitea_routes,
        Router(path="/", opt=access.token("repo:write"), route_handlers=[create_repo]),
        Router(path="/", opt=access.session(owner="repo"), dependencies=DEPENDENCIES, route_handlers=[HooksController]),
    ])]


def _cli() -> list[click.Command]:
    from forge.cli import forge_group

    return [forge_group]


domain = Domain(
    name="forge",
    routes=_routes,
    cli=_cli,
    models=("forge.models", "forge.mirror_models", "forge.gitea_models"),
    # The forge.mirror.sync job and the push listener; forge.web's personal fragments; the
    # browser's commit-graph refresh after pushes; webhook deliveries and their push subscriber; the
    # dashboard's repositories panel (forge.fragments).
    setup=("forge.mirror_jobs", "forge.events", "forge.web", "forge.browse.maintenance", "forge.webhooks",
           "forge.fragments"),
    # Git smart HTTP: Basic auth with a token, never the cookie.
    machine_routes=(r"^/forge/[^/]+/[^/]+?(\.git)?/(info/refs|git-upload-pack|git-receive-pack)$",),
    nav=(NavEntry("/forge/", "Forge", 50),),
    actor=ServiceActor("forge", "Application"),
)
