"""``POST /cart/order/<token>/pay``: the payer tries again to pay an order still waiting for its
online payment (the first checkout failed, or the tab was closed). The token in the address is the
capability, as for the confirmation page; an unknown token is a 404.

The desk (domains/cart/fulfilment.py ``OrderDesk.retry_payment``) answers the open hosted page
while the checkout can still be paid, else opens a new checkout under a new reference; a payment
that arrived meanwhile moves the order and the payer lands on the confirmation.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, post
from litestar.exceptions import NotFoundException
from litestar.response import Redirect

from app.forms import InputProblems, see_other
from app.responses import PRIVATE
from domains.cart.deps import dependencies
from domains.cart.fulfilment import OrderDesk
from domains.cart.guards import NOT_FOUND
from domains.cart.services import CartService

__all__ = ["payer_handlers", "retry_payment"]


@post("/cart/order/{token:str}/pay", status_code=303, name="cart:payment-retry", dependencies=dependencies,
      cache_control=PRIVATE)
async def retry_payment(request: Request[Any, Any, Any], cart_service: CartService, token: str) -> Redirect:
    order = await cart_service.by_token(token)
    if order is None or order.number is None:
        raise NotFoundException(NOT_FOUND)
    back = f"/cart/order/{token}"
    try:
        url = await OrderDesk(cart_service.db, cart_service.settings).retry_payment(order)
    except InputProblems as exc:
        return see_other(back, request, " ".join(exc.errors.values()), "error")
    # The new checkout's id must be kept before the payer leaves for the provider's page.
    await cart_service.db.commit()
    if url is None:
        return see_other(back, request, "Thank you: your payment is confirmed.")
    return Redirect(path=url, status_code=303)


payer_handlers = [retry_payment]
