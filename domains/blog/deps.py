"""The blog services as Litestar dependencies: a handler names ``blog`` or ``navigation``.

Both are built on the request's ``db_session``, so the purge and event jobs they write commit
with the change that caused them. ``blog`` carries the public origin for the absolute URLs in
``PostRead`` and post events.
"""

from __future__ import annotations

from litestar.di import Provide
from sqlalchemy.ext.asyncio import AsyncSession

from app.settings import Settings
from domains.blog.services import BlogService, NavigationService


def provide_blog(db_session: AsyncSession, settings: Settings) -> BlogService:
    return BlogService(db_session, base_url=settings.base_url)


def provide_navigation(db_session: AsyncSession) -> NavigationService:
    return NavigationService(db_session)


dependencies: dict[str, Provide] = {
    "blog": Provide(provide_blog, sync_to_thread=False),
    "navigation": Provide(provide_navigation, sync_to_thread=False),
}
