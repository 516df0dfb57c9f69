"""Forge: git hosting over smart HTTP (design/forge.md).

``router`` (everything forge serves) is imported lazily, so the pre-receive hook, which runs
``python -m forge.hooks.pre_receive`` once per push, does not pay for importing the web stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from litestar import Router

__all__ = ["router"]


def _make_router() -> Router:
    from litestar import Router

    import forge.mirror_jobs  # noqa: F401  (registers the forge.mirror.sync job and the push listener)
    from app import access
    from forge.api import create_repo
    from forge.gitea_api import router as gitea_api_router
    from forge.smart_http import git_router
    from forge.web import router as web_router

    return Router(path="/", route_handlers=[
        git_router, web_router, gitea_api_router,
        Router(path="/", opt=access.token("repo:write"), route_handlers=[create_repo]),
    ])


def __getattr__(name: str) -> Any:
    if name == "router":
        value = _make_router()
        globals()["router"] = value
        return value
    raise AttributeError(f"module 'forge' has no attribute {name!r}")
