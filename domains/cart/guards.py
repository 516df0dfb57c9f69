"""Who may see an order: its member, or whoever holds its token (a guest's confirmation link).
Anybody else gets a 404, never a 403 (an order number is not confirmed to strangers)."""

from __future__ import annotations

from uuid import UUID

from litestar.exceptions import NotFoundException

from domains.cart.models import Order

__all__ = ["NOT_FOUND", "own_order"]

NOT_FOUND = "We couldn't find that order."


def own_order(order: Order | None, user_id: UUID | None) -> Order:
    if order is None or order.number is None or user_id is None or order.user_id != user_id:
        raise NotFoundException(NOT_FOUND)
    return order
