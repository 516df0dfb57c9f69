"""The cart domain: the cart as a draft order, checkout with stock reservations, placed orders
(issue 17; design/domains.md §2). Laid out as the market is (domains/market/__init__.py).

``models.py``     ``Order`` (the cart is an order in state ``cart``; FSM ``ORDER_STATE``), ``OrderLine``
                  (variant, SKU, title and unit price snapshotted when added), ``Reservation``,
                  ``OrderTransition`` (from, to, who, when), ``IdempotencyKey``, ``OrderCounter``.
``services.py``   ``CartService``: lines (``add``/``set_quantity``/``remove``/``merge``),
                  ``start_checkout`` (reserve under the stock row lock), ``place`` (reservations ->
                  allocations by conditional UPDATEs, one savepoint), ``mark_paid``, ``cancel``,
                  ``sweep_reservations``; ``InsufficientStock`` names the lines.
``hooks.py``      reservations counted in the market's availability; the session cart merged at sign-in.
``fragments.py``  takes over ``me.cart-badge``; ``me.add-to-cart``, the product page's add-to-cart hole.
``jobs.py``       the recurring sweep of expired reservations, payment reconciliation, unpaid expiry.
``fulfilment.py`` ``OrderDesk``: hand lines over, cancel, refund, a payer's retry; ``expire_unpaid``.
``notices.py``    the mails after placement: payment failed, cancelled, refunded, staff's new order.
``admin.py``      staff's ``/cart/admin/orders`` (and a printable packing list); ``payer.py`` the retry.
``controllers.py``  ``/cart/`` pages (``GET /cart/add``: the no-JS confirm step from a product page)
                  and ``/account/orders``; ``api.py`` the storefront JSON API ``/api/cart``.

``sources.py``    the line-source protocol and registry: the cart sells items of other domains (the
                  market's variants, ``market_source.py``; events' paid tickets) through it.

The market is reached only through ``domains.market.services`` (``offers``, ``lock_stock``,
``allocate``, ``release``, ``register_reserved``), from ``market_source.py`` and the product page's
add-to-cart steps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.kit import Domain, NavEntry

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.types import ControllerRouterHandler


def _routes() -> list[ControllerRouterHandler]:
    from litestar import Router

    from app import access
    from domains.cart.admin import admin_handlers
    from domains.cart.api import api_handlers
    from domains.cart.controllers import cart_handlers, order_handlers
    from domains.cart.deps import dependencies
    from domains.cart.payer import payer_handlers

    return [
        Router(path="/", opt=access.public(), route_handlers=list(cart_handlers)),
        Router(path="/", opt=access.public(), route_handlers=list(payer_handlers)),
        Router(path="/", opt=access.session(), route_handlers=list(order_handlers)),
        Router(path="/", opt=access.admin(), route_handlers=list(admin_handlers)),
        # The storefront API: anonymous clients carry X-Cart-Token; a token (scope "api") uses its member's cart.
        Router(path="/", opt=access.token("api", anonymous=True), route_handlers=list(api_handlers),
               dependencies=dependencies),
    ]


async def _check_settings(app: Litestar) -> None:
    from domains.cart.slots import check_settings

    check_settings(app.state["settings"])


domain = Domain(
    name="cart",
    routes=_routes,
    models=("domains.cart.models",),
    setup=("domains.cart.hooks", "domains.cart.fragments", "domains.cart.jobs"),
    admin=(NavEntry("/cart/admin/orders/", "Orders", 35),),
    on_startup=(_check_settings,),
)

__all__ = ["domain"]
