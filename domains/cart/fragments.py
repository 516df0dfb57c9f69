"""The cart takes over the ``me.cart-badge`` hole (templates/base.html): the link with the number of
items in the visitor's cart; and fills ``me.add-to-cart``, the hole in the market's offer block
(templates/market/_offer.html) with a real POST form; and gives the member's dashboard their recent
orders (``me.dashboard-orders``). Personal: never cached for anybody else."""

from __future__ import annotations

from app.caching import CachePolicy
from domains.cart.sessions import cart_token
from fragments.registry import FragmentContext, FragmentData, fragment

__all__ = ["add_to_cart", "cart_badge", "my_recent_orders"]


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


@fragment("me.add-to-cart", policy=CachePolicy.PERSONAL, title="Add to cart", template="cart/_add_button.html",
          fallback="fragments/me/add-to-cart_fallback.html", params={"sku": "TOM-M"})
async def add_to_cart(ctx: FragmentContext) -> FragmentData:
    """The product page's add-to-cart hole: a real POST form with the visitor's CSRF token.

    The public page holds a GET form to ``/cart/add`` (the no-JS way, one click more); htmx swaps
    this in, which posts with htmx and answers "Added" in place (``HX-Trigger: cart-changed``)."""
    from domains.cart.services import MAX_QUANTITY
    from domains.market.services import offers

    sku = ctx.params.get("sku", "").strip()[:200]
    found = await offers(ctx.db, skus=[sku]) if sku else {}
    offer = next(iter(found.values()), None)
    return FragmentData({"offer": offer, "message": "", "errors": {}, "max_quantity": MAX_QUANTITY})


DASHBOARD_ORDERS = 5


@fragment("me.dashboard-orders", policy=CachePolicy.PERSONAL, title="Your recent orders",
          template="fragments/me/dashboard-orders.html", inline_timeout=1.0)
async def my_recent_orders(ctx: FragmentContext) -> FragmentData:
    """The signed-in member's latest placed orders, linked to their pages under /account/orders."""
    from app.money import format_minor
    from domains.cart.services import CartService

    user = ctx.user
    if user is None:
        return FragmentData({"user": None})
    orders = (await CartService(ctx.db, ctx.settings).orders_of(user.id))[:DASHBOARD_ORDERS]
    rows = [{"number": o.number, "placed_at": o.placed_at, "state": o.state.replace("_", " "),
             "total": format_minor(o.total_minor, o.currency)} for o in orders]
    return FragmentData({"user": user, "orders": rows})
