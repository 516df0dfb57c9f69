"""Staff's orders admin under ``/cart/admin/orders``: list by state, an order with its history,
and the moves staff make (paid at the counter, fulfilled, cancelled with its stock returned).
Every move is the order state machine's (one conditional UPDATE, recorded with who and when)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.exceptions import NotFoundException
from litestar.params import Parameter
from litestar.response import Redirect, Template

from app.forms import InputProblems, see_other
from app.money import format_minor
from app.responses import PRIVATE
from domains.cart.deps import dependencies
from domains.cart.guards import NOT_FOUND
from domains.cart.models import STATES, Order
from domains.cart.services import CartService, order_context

__all__ = ["OrdersAdmin", "admin_handlers"]


class OrdersAdmin(Controller):
    path = "/cart/admin/orders"
    dependencies = dependencies
    cache_control = PRIVATE

    @get("/", name="cart:admin-orders")
    async def orders(self, cart_service: CartService,
                     state_filter: Annotated[str, Parameter(query="state", max_length=24)] = "") -> Template:
        state = state_filter if state_filter in STATES else ""
        orders = await cart_service.admin_list(state)
        return Template("cart/admin_orders.html", context={"orders": orders, "state": state, "states": STATES,
                                                            "money": format_minor})

    async def _order(self, service: CartService, number: str) -> Order:
        order = await service.by_number(number)
        if order is None:
            raise NotFoundException(NOT_FOUND)
        return order

    @get("/{number:str}", name="cart:admin-order")
    async def order(self, cart_service: CartService, number: str) -> Template:
        order = await self._order(cart_service, number)
        return Template("cart/admin_order.html", context={
            "order": order, "o": order_context(order), "history": await cart_service.history(order)})

    @post("/{number:str}/{action:str}", status_code=303, name="cart:admin-move")
    async def move(self, request: Request[Any, Any, Any], cart_service: CartService, number: str,
                   action: str) -> Redirect:
        order = await self._order(cart_service, number)
        who = str(getattr(request.user, "username", "staff"))
        actor_id = getattr(request.user, "id", None)
        back = f"/cart/admin/orders/{number}"
        try:
            if action == "paid":
                moved = await cart_service.mark_paid(order, actor=who, actor_id=actor_id, note="paid at the counter")
            elif action == "fulfil":
                moved = await cart_service.fulfil(order, actor=who, actor_id=actor_id)
            elif action == "cancel":
                moved = await cart_service.cancel(order, actor=who, actor_id=actor_id)
            else:
                raise NotFoundException("No such action.")
        except InputProblems as exc:
            return see_other(back, request, next(iter(exc.errors.values())), "error")
        if not moved:
            return see_other(back, request, f"Order {number} is {order.state.replace('_', ' ')}: nothing to do.",
                             "error")
        return see_other(back, request, f"Order {number} is now {order.state.replace('_', ' ')}.")


admin_handlers = [OrdersAdmin]
