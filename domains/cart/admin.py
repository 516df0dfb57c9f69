"""Staff's orders admin under ``/cart/admin/orders``: list by state, an order with its history, a
printable packing list, and the moves staff make: paid at the counter, hand lines over (some or
all), cancel before anything was handed over (stock returned), refund in part or in full.

Every move is the order state machine's (domains/cart/services.py and fulfilment.py: one
conditional UPDATE, recorded with who and when). A refused move changes nothing and says why in a
flash on the order page (a 303 back to it, Post/Redirect/Get). Members who are not admins get
the admin router's answer (``access.admin()``), as every other admin page does.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.exceptions import NotFoundException
from litestar.params import Parameter
from litestar.response import Redirect, Template

from app.forms import InputProblems, see_other
from app.money import format_minor, minor_exponent
from app.responses import PRIVATE
from domains.cart.deps import dependencies
from domains.cart.fulfilment import REFUNDABLE_STATES, OrderDesk
from domains.cart.guards import NOT_FOUND
from domains.cart.models import NEEDS_ATTENTION, STATES, Order
from domains.cart.services import CartService, order_context

__all__ = ["OrdersAdmin", "admin_handlers"]

ACTIONS = ("paid", "fulfil", "fulfil-lines", "cancel", "refund")


def _who(request: Request[Any, Any, Any]) -> tuple[str, Any]:
    return str(getattr(request.user, "username", "staff")), getattr(request.user, "id", None)


class OrdersAdmin(Controller):
    path = "/cart/admin/orders"
    dependencies = dependencies
    cache_control = PRIVATE

    @get("/", name="cart:admin-orders")
    async def orders(self, cart_service: CartService,
                     state_filter: Annotated[str, Parameter(query="state", max_length=24)] = "") -> Template:
        state = state_filter if state_filter in STATES else ""
        orders = await cart_service.admin_list(state)
        return Template("cart/admin/orders.html", context={"orders": orders, "state": state, "states": STATES,
                                                            "money": format_minor})

    async def _order(self, service: CartService, number: str) -> Order:
        order = await service.by_number(number)
        if order is None:
            raise NotFoundException(NOT_FOUND)
        return order

    @get("/{number:str}", name="cart:admin-order")
    async def order(self, cart_service: CartService, number: str) -> Template:
        order = await self._order(cart_service, number)
        left = order.paid_minor - order.refunded_minor
        return Template("cart/admin/order.html", context={
            "order": order, "o": order_context(order), "history": await cart_service.history(order),
            "paid": format_minor(order.paid_minor, order.currency),
            "refunded": format_minor(order.refunded_minor, order.currency),
            "refundable": order.state in REFUNDABLE_STATES and left > 0,
            "left": format_minor(max(left, 0), order.currency),
            "step": f"{10 ** -minor_exponent(order.currency):.{minor_exponent(order.currency)}f}"})

    @get("/{number:str}/packing-list", name="cart:admin-packing-list")
    async def packing_list(self, cart_service: CartService, number: str) -> Template:
        order = await self._order(cart_service, number)
        shown = order_context(order)
        # Tickets are issued, not packed: only the lines that are handed over (a mixed order's goods).
        lines = [line for line, row in zip(order.lines, shown["lines"], strict=True) if row["ships"]]
        return Template("cart/admin/packing_list.html", context={
            "order": order, "o": shown, "lines": lines, "units": sum(line.quantity for line in lines)})

    @post("/{number:str}/{action:str}", status_code=303, name="cart:admin-move")
    async def move(self, request: Request[Any, Any, Any], cart_service: CartService, number: str,
                   action: str) -> Redirect:
        if action not in ACTIONS:
            raise NotFoundException("No such action.")
        order = await self._order(cart_service, number)
        who, actor_id = _who(request)
        back = f"/cart/admin/orders/{number}"
        form = await request.form()
        desk = OrderDesk(cart_service.db, cart_service.settings)
        try:
            if action == "paid":
                if not await cart_service.mark_paid(order, actor=who, actor_id=actor_id, note="paid at the counter"):
                    return see_other(back, request, f"Order {number} is {order.state.replace('_', ' ')}: "
                                                    "nothing to do.", "error")
                # A cancelled order is never revived: money for it puts it in needs_attention.
                message = f"Order {number} is now {order.state.replace('_', ' ')}."
            elif action == "fulfil":
                if order.state == NEEDS_ATTENTION:
                    await cart_service.fulfil(order, actor=who, actor_id=actor_id)
                else:
                    remaining = {str(line.id): str(line.quantity - line.fulfilled_quantity) for line in order.lines}
                    order = await desk.fulfil_lines(order, remaining, actor=who, actor_id=actor_id)
                message = f"Order {number} is now {order.state.replace('_', ' ')}."
            elif action == "fulfil-lines":
                quantities = {str(key)[5:]: str(value) for key, value in form.items() if str(key).startswith("line-")}
                order = await desk.fulfil_lines(order, quantities, actor=who, actor_id=actor_id)
                message = f"Order {number} is now {order.state.replace('_', ' ')}."
            elif action == "cancel":
                order = await desk.cancel(order, actor=who, actor_id=actor_id, reason=str(form.get("reason") or ""))
                message = f"Order {number} is cancelled; its stock is back on sale."
            else:
                before = order.refunded_minor
                order = await desk.refund(order, str(form.get("amount") or ""), actor=who, actor_id=actor_id,
                                          note=str(form.get("note") or ""))
                amount = format_minor(order.refunded_minor - before, order.currency)
                message = f"Refunded {amount} for order {number}" + (
                    "; it is now refunded in full." if order.state == "refunded" else ".")
        except InputProblems as exc:
            return see_other(back, request, " ".join(exc.errors.values()), "error")
        # A move is written in the request's session: commit it before the redirect is sent.
        await cart_service.db.commit()
        return see_other(back, request, message)


admin_handlers = [OrdersAdmin]
