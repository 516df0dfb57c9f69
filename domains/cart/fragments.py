"""The cart takes over the ``me.cart-badge`` hole (templates/base.html): the link with the number of
items in the visitor's cart. Personal: never cached for anybody else."""

from __future__ import annotations

from app.caching import CachePolicy
from domains.cart.sessions import cart_token
from fragments.registry import FragmentContext, FragmentData, fragment

__all__ = ["cart_badge"]


@fragment("me.cart-badge", policy=CachePolicy.PERSONAL, title="Cart badge", template="cart/badge.html",
          fallback="fragments/me/cart-badge_fallback.html", replace=True)
async def cart_badge(ctx: FragmentContext) -> FragmentData:
    """The cart link with the number of items in the visitor's cart."""
    from domains.cart.services import CartService

    user = ctx.user
    service = CartService(ctx.db, ctx.settings)
    if user is not None:
        count = await service.count(user_id=user.id)
    else:
        token = cart_token(ctx.request)
        count = await service.count(token=token) if token else 0
    return FragmentData({"count": count or None, "user": user is not None})
