"""Litestar dependencies for the forge's services, so no handler builds one by hand.

Routers and handlers declare ``dependencies=DEPENDENCIES`` and take ``repo_service: RepoService``
or ``mirror_service: MirrorService`` as parameters; both work in the request's ``db_session``
(committed by advanced-alchemy's ``autocommit_include_redirects``) on the one store per data
directory that :func:`forge.runtime.runtime_for` keeps; ``forge_runtime`` is that per-process
state itself (limits and the git-children limiter), for the smart HTTP handlers.
"""

from __future__ import annotations

from litestar.di import Provide
from sqlalchemy.ext.asyncio import AsyncSession

from app.settings import Settings
from forge.mirror import MirrorService
from forge.runtime import ForgeRuntime, runtime_for
from forge.services import RepoService

__all__ = ["DEPENDENCIES", "provide_forge_runtime", "provide_mirror_service", "provide_repo_service"]


def provide_forge_runtime(settings: Settings) -> ForgeRuntime:
    return runtime_for(settings)


def provide_repo_service(db_session: AsyncSession, settings: Settings) -> RepoService:
    return RepoService(db_session, runtime_for(settings).store)


def provide_mirror_service(db_session: AsyncSession, settings: Settings) -> MirrorService:
    return MirrorService(db_session, runtime_for(settings).store, settings)


DEPENDENCIES = {
    "forge_runtime": Provide(provide_forge_runtime, sync_to_thread=False),
    "repo_service": Provide(provide_repo_service, sync_to_thread=False),
    "mirror_service": Provide(provide_mirror_service, sync_to_thread=False),
}
