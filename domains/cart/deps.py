"""The cart service as a Litestar dependency (``cart_service``), on the request's session."""

from __future__ import annotations

from litestar.di import Provide
from sqlalchemy.ext.asyncio import AsyncSession

from app.settings import Settings
from domains.cart.services import CartService

__all__ = ["dependencies", "provide_cart"]


def provide_cart(db_session: AsyncSession, settings: Settings) -> CartService:
    return CartService(db_session, settings)


dependencies: dict[str, Provide] = {"cart_service": Provide(provide_cart, sync_to_thread=False)}
