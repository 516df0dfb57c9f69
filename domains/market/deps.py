"""The market services as Litestar dependencies: a handler names ``catalogue``, ``producers`` or
``media``. All are built on the request's ``db_session``, so the purge and event jobs they write
commit with the change that caused them."""

from __future__ import annotations

from litestar.di import Provide
from sqlalchemy.ext.asyncio import AsyncSession

from app.settings import Settings
from domains.market.services import CatalogueService, MediaService, ProducerService

__all__ = ["dependencies", "provide_catalogue", "provide_media", "provide_producers"]


def provide_catalogue(db_session: AsyncSession, settings: Settings) -> CatalogueService:
    return CatalogueService(db_session, base_url=settings.base_url, currency=settings.market_currency,
                            vat_rates=settings.cart_vat_rates)


def provide_producers(db_session: AsyncSession, settings: Settings) -> ProducerService:
    return ProducerService(db_session, base_url=settings.base_url)


def provide_media(db_session: AsyncSession, settings: Settings) -> MediaService:
    return MediaService(db_session, settings.data_dir)


dependencies: dict[str, Provide] = {
    "catalogue": Provide(provide_catalogue, sync_to_thread=False),
    "producers": Provide(provide_producers, sync_to_thread=False),
    "media": Provide(provide_media, sync_to_thread=False),
}
