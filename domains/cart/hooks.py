"""The cart's registrations with other domains, imported once per process (``setup``):

- the market counts unexpired reservations in every availability (``register_reserved``);
- at sign-in, the anonymous session's cart is merged into the member's (account's ``on_sign_in``):
  quantities added, capped by availability; the anonymous cart is then cancelled.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.db import settings_of
from app.settings import Settings
from domains.account.hooks import on_sign_in
from domains.account.models import User
from domains.cart.services import CartService, reserved_term
from domains.cart.sessions import CART_SESSION_KEY
from domains.market.services import register_reserved

__all__ = ["merge_at_sign_in"]

register_reserved(reserved_term)


@on_sign_in
async def merge_at_sign_in(session: AsyncSession, user: User, old: Mapping[str, Any]) -> dict[str, Any] | None:
    token = old.get(CART_SESSION_KEY)
    if not isinstance(token, str) or not token:
        return None
    settings = settings_of(session) or Settings.from_env()
    service = CartService(session, settings)
    anonymous = await service.open_cart(token=token)
    if anonymous is None or not anonymous.lines:
        return None
    mine = await service.open_cart(user_id=user.id)
    if mine is None:
        # The anonymous cart simply becomes the member's.
        anonymous.user_id = user.id
        await session.flush()
        return None
    await service.merge(anonymous, mine)
    return None
