"""Cart pages: ``/cart/`` with add, change and remove as real forms (303) that htmx enhances in
place, checkout (``/cart/checkout``: starting it reserves stock), placing the order, the
confirmation, and the member's orders under ``/account/orders``.

Every answer here is ``private, no-store`` (nothing about a cart is ever in a shared response);
every change answers ``HX-Trigger: cart-changed`` so the badge (``me.cart-badge``) refreshes.
"""

from __future__ import annotations

import secrets
from typing import Any
from uuid import UUID

from litestar import Controller, Request, get, post
from litestar.exceptions import NotFoundException
from litestar.response import Redirect, Template

from app.forms import InputProblems, is_htmx, parse_form, see_other
from app.money import format_minor
from app.responses import PRIVATE
from app.security import current_user
from domains.cart.deps import dependencies
from domains.cart.guards import NOT_FOUND, own_order
from domains.cart.models import CHECKOUT, COLLECTION, DELIVERY, PAYMENT_PENDING, Order
from domains.cart.schemas import AddForm, LineForm, PlaceForm
from domains.cart.services import (
    MAX_QUANTITY,
    CartService,
    CheckoutDetails,
    InsufficientStock,
    order_context,
    order_totals,
    ships,
)
from domains.cart.sessions import forget_cart
from domains.cart.sources import Offer, add_url, change_url, named_units
from domains.market.services import offers
from domains.payments.schemas import PaymentError
from domains.payments.services import available_providers, payment_instructions, request_refresh

__all__ = ["AccountOrdersController", "CartController", "cart_handlers", "order_handlers"]

CHANGED = {"HX-Trigger": "cart-changed"}


def _user_id(request: Request[Any, Any, Any]) -> UUID | None:
    user_id: UUID | None = getattr(current_user(request), "id", None)  # the member (domains.account User)
    return user_id


def personal_details_for(request: Request[Any, Any, Any], order: Order) -> bool:
    """Whether this visitor may see the order's personal details: its member, signed in, or staff."""
    user = current_user(request)
    if user is None:
        return False
    return bool(user.is_admin) or (order.user_id is not None and order.user_id == _user_id(request))


async def current_cart(request: Request[Any, Any, Any], service: CartService, *, create: bool = False) -> Order | None:
    """The visitor's open cart (the member's, or the session's for a guest); made when ``create``."""
    return await service.visitor_cart(request, user_id=_user_id(request), create=create)


def _item(form: AddForm) -> dict[str, Any]:
    """The item another source sells (``source`` and ``item``), or nothing for a market SKU."""
    if form.source == "market" and not form.item:
        return {}
    try:
        item = UUID(form.item.strip()[:36])
    except ValueError:
        raise InputProblems({"sku": "That is not an item we sell."}, status=404) from None
    return {"source": form.source[:16], "variant_id": item}


def _count(quantity: str) -> int:
    """A typed quantity as a count for the names page (1 when it is no whole number: the page asks again)."""
    text = quantity.strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 3 else 1


def _safe_back(value: str) -> str:
    return value if value.startswith("/") and not value.startswith("//") and "\\" not in value else "/cart/"


class CartController(Controller):
    path = "/cart"
    dependencies = dependencies
    cache_control = PRIVATE

    async def _page(self, request: Request[Any, Any, Any], service: CartService, *,
                    errors: dict[str, str] | None = None, status: int = 200,
                    headers: dict[str, str] | None = None) -> Template:
        order = await current_cart(request, service)
        changed = await service.price_changes(order) if order else {}
        htmx = is_htmx(request)
        template = "cart/_cart.html" if htmx else "cart/cart.html"
        money = (lambda amount: format_minor(amount, order.currency)) if order else str
        # A shortage is about the cart as a whole (no field to link to): the page's error summary
        # says it as it is ("Only 43 places left for …"), not as "Stock: …".
        errors = {("form" if key == "stock" else key): message for key, message in (errors or {}).items()}
        if htmx and status == 409:
            # htmx swaps 422 answers only (base.html's responseHandling, as the add button's): a
            # shortage answered 409 would leave the cart as it was and say nothing.
            status = 422
        return Template(template, status_code=status, headers=headers or {}, context={
            "order": order, "errors": errors or {}, "money": money,
            # Lines whose every unit is named (tickets): a count and "Change tickets", no free field.
            "named": {str(line.id) for line in order.lines if named_units(line.source)} if order else set(),
            "vat": order_totals(order).vat_lines() if order else [],
            "price_changes": {str(k): v for k, v in changed.items()}})

    @get("/", name="cart:page")
    async def page(self, request: Request[Any, Any, Any], cart_service: CartService) -> Template:
        return await self._page(request, cart_service)

    @get("/add", name="cart:add-confirm")
    async def add_confirm(self, request: Request[Any, Any, Any], cart_service: CartService,
                          sku: str = "", quantity: str = "1", source: str = "market",
                          item: str = "") -> Template | Redirect:
        """The no-JS way in from a (cached, form-less) product or event page: a GET link lands here
        and this private page carries the real POST form with its CSRF token: one click more.
        ``source`` and ``item`` name another line source's item (events: a ticket type). An item
        whose every unit carries details (``named_units``: a name per ticket) is added on its
        source's own form, which asks them: this page sends the buyer there (303) once the item
        is known to be for sale to them (a visitor is answered 404 for a members-only one first)."""
        offer: Any = None
        if source != "market" or item:
            try:
                # A visitor is answered for a members-only item exactly as for an absent one.
                offer = await cart_service.offer(source[:16], UUID(item.strip()[:36]),
                                                 member=_user_id(request) is not None)
            except ValueError:
                offer = None
        else:
            offer = next(iter((await offers(cart_service.db, skus=[sku[:200]] if sku.strip() else [])).values()), None)
        errors: dict[str, str] = {}
        status = 200
        if offer is None or not offer.active:
            errors = {"sku": getattr(offer, "reason", "") or "That product is not for sale."}
            status = 404 if offer is None else 409
        elif offer.available < 1:
            errors = {"sku": f"{offer.title} is sold out." if source != "market" else f"{offer.title} is out of stock."}
        elif isinstance(offer, Offer) and named_units(offer.source) and (
                names := await add_url(cart_service.db, offer.source, offer.id, _count(quantity))):
            # (A market item is the market's VariantOffer, not a line source's Offer: it stays here.)
            return Redirect(path=names, status_code=303)
        return Template("cart/add.html", status_code=status, context={
            "source": source if offer is not None and source != "market" else "",
            "offer": offer, "quantity": quantity[:8], "errors": errors, "max_quantity": MAX_QUANTITY,
            "price": format_minor(offer.price_minor, offer.currency) if offer else ""})

    @post("/add", status_code=303, name="cart:add")
    async def add(self, request: Request[Any, Any, Any], cart_service: CartService) -> Template | Redirect:
        form = await parse_form(request, AddForm)
        if named_units(form.source) and (names := await self._names_page(request, cart_service, form)):
            # This form carries no names (a confirm page from before the rule, a hand-made POST):
            # the names page asks them. The service would refuse the unnamed units anyway (422).
            return Redirect(path=names, status_code=303)
        button = form.reply == "button" and is_htmx(request)
        order = await current_cart(request, cart_service, create=True)
        assert order is not None
        try:
            line = await cart_service.add(order, sku=form.sku, quantity=form.quantity, **_item(form))
        except InputProblems as exc:
            if button:  # 422: htmx swaps it, so the message shows where the button was
                return await self._button(cart_service, form.sku, errors=exc.errors, status=422)
            return await self._page(request, cart_service, errors=exc.errors, status=exc.status)
        if button:
            return await self._button(cart_service, form.sku, message=f"Added {line.title} to your cart.",
                                      headers=CHANGED)
        if is_htmx(request):
            return await self._page(request, cart_service, headers=CHANGED)
        redirect = see_other(_safe_back(form.next), request, f"Added {line.title} to your cart.")
        redirect.headers.update(CHANGED)
        return redirect

    async def _names_page(self, request: Request[Any, Any, Any], service: CartService, form: AddForm) -> str | None:
        """The source's names page for the item ``form`` adds, if it is for sale to this buyer;
        None otherwise, so the service answers as for any other item (404 for an absent one)."""
        target = _item(form)
        if not target:
            return None
        offer = await service.offer(target["source"], target["variant_id"], member=_user_id(request) is not None)
        if offer is None or not offer.active:
            return None
        return await add_url(service.db, offer.source, offer.id, _count(form.quantity))

    async def _button(self, service: CartService, sku: str, *, message: str = "", errors: dict[str, str] | None = None,
                      status: int = 200, headers: dict[str, str] | None = None) -> Template:
        offer = next(iter((await offers(service.db, skus=[sku] if sku.strip() else [])).values()), None)
        return Template("cart/_add_button.html", status_code=status, headers=headers or {}, context={
            "offer": offer, "message": message, "errors": errors or {}, "max_quantity": MAX_QUANTITY})

    @post("/lines/{line_id:str}", status_code=303, name="cart:line")
    async def change(self, request: Request[Any, Any, Any], cart_service: CartService,
                     line_id: str) -> Template | Redirect:
        form = await parse_form(request, LineForm)
        return await self._change(request, cart_service, line_id, form.quantity)

    @get("/lines/{line_id:str}/change", name="cart:line-change")
    async def change_named(self, request: Request[Any, Any, Any], cart_service: CartService,
                           line_id: str) -> Redirect:
        """"Change tickets": to the line's source's own form, prefilled with the line (events: the
        names page), which replaces the line's quantity and names. A line not in this visitor's
        cart, or one the source has no such form for, is the cart's usual 404."""
        order = await current_cart(request, cart_service)
        line = next((x for x in order.lines if str(x.id) == line_id), None) if order else None
        url = await change_url(cart_service.db, line.source, line.variant_id, line.id) if line else None
        if url is None:
            raise NotFoundException("That line is not in your cart.")
        return Redirect(path=url, status_code=303)

    @post("/lines/{line_id:str}/remove", status_code=303, name="cart:remove")
    async def remove(self, request: Request[Any, Any, Any], cart_service: CartService,
                     line_id: str) -> Template | Redirect:
        return await self._change(request, cart_service, line_id, "0")

    async def _change(self, request: Request[Any, Any, Any], service: CartService, line_id: str,
                      quantity: str) -> Template | Redirect:
        order = await current_cart(request, service)
        try:
            if order is None:
                raise InputProblems({"line": "That line is not in your cart."}, status=404)
            await service.set_quantity(order, line_id, quantity)
        except InputProblems as exc:
            return await self._page(request, service, errors=exc.errors, status=exc.status)
        if is_htmx(request):
            return await self._page(request, service, headers=CHANGED)
        redirect = see_other("/cart/", request, "Your cart is updated.")
        redirect.headers.update(CHANGED)
        return redirect

    # -- checkout ---------------------------------------------------------------------------------------

    @post("/checkout", status_code=303, name="cart:start-checkout")
    async def start_checkout(self, request: Request[Any, Any, Any], cart_service: CartService) -> Template | Redirect:
        order = await current_cart(request, cart_service)
        try:
            if order is None:
                raise InputProblems({"cart": "Your cart is empty."})
            await cart_service.start_checkout(order)
        except InputProblems as exc:
            return await self._page(request, cart_service, errors=exc.errors, status=exc.status)
        return see_other("/cart/checkout")

    def _checkout_page(self, order: Order, service: CartService, values: dict[str, str], errors: dict[str, str],
                       status: int = 200) -> Template:
        # The review's figures are placement's own (service.totals_for), once for collection and once
        # for delivery, so every VAT line the order will carry (delivery's too) is shown before placing.
        totals = service.totals_for(order, COLLECTION)
        # Tickets only: nothing to collect or deliver, so the page has no such step (nor a charge).
        handed_over = ships(order)
        quote = service.delivery_quote(order) if handed_over else None
        with_delivery = service.totals_for(order, DELIVERY) \
            if handed_over and service.settings.cart_delivery and quote is not None else None
        delivery_rate = format_minor(quote, order.currency) if quote is not None else ""
        return Template("cart/checkout.html", status_code=status, context={
            "order": order, "values": values, "errors": errors, "ships": handed_over,
            "money": lambda amount: format_minor(amount, order.currency),
            "delivery": service.settings.cart_delivery, "delivery_rate": delivery_rate,
            "delivery_total": format_minor(with_delivery.total_minor, order.currency) if with_delivery else "",
            "delivery_vat": with_delivery.vat_lines() if with_delivery else [],
            "delivery_bands": [(weights, format_minor(rate, order.currency))
                               for weights, rate in service.delivery_bands()],
            "weight_kg": f"{totals.weight_grams / 1000:g}",
            "vat": totals.vat_lines(), "collection_points": service.collection_points(),
            "payments": service.payment_methods(),
            # Pay later for tickets: nobody collects them, so the page says how to pay.
            "pay_later": payment_instructions(service.settings),
            "idempotency_key": values.get("idempotency_key") or secrets.token_urlsafe(24)})

    @get("/checkout", name="cart:checkout")
    async def checkout(self, request: Request[Any, Any, Any], cart_service: CartService) -> Template | Redirect:
        order = await current_cart(request, cart_service)
        if order is None or order.state != CHECKOUT or not order.lines:
            return see_other("/cart/")
        email = str(getattr(current_user(request), "email", "") or "")
        return self._checkout_page(order, cart_service, {"email": email}, {})

    @post("/place", status_code=303, name="cart:place")
    async def place(self, request: Request[Any, Any, Any], cart_service: CartService) -> Template | Redirect:
        form = await parse_form(request, PlaceForm)
        values = {"email": form.email, "fulfilment": form.fulfilment, "address": form.address, "notes": form.notes,
                  "payment": form.payment, "idempotency_key": form.idempotency_key, "collection": form.collection}
        order = await current_cart(request, cart_service)
        # One radio group offers every (location, slot) pair, so it works without JavaScript; its
        # value is "location|slot" (slots.py keeps "|" out of location names).
        location, _, slot = form.collection.partition("|")
        details = CheckoutDetails(email=form.email, fulfilment=form.fulfilment, address=form.address,
                                  notes=form.notes, payment=form.payment, location=location, slot=slot)
        try:
            if order is None:  # already placed (a double submit after the first committed): the key finds it
                placed = await cart_service.place_again(form.idempotency_key)
            else:
                placed = await cart_service.place(order, details, idempotency_key=form.idempotency_key,
                                                  actor_id=_user_id(request))
        except InsufficientStock as exc:
            return await self._page(request, cart_service, errors=exc.errors, status=409)
        except InputProblems as exc:
            if order is None:
                return see_other("/cart/", request, next(iter(exc.errors.values())), "error")
            return self._checkout_page(order, cart_service, values, exc.errors, exc.status)
        if placed.user_id is None:
            forget_cart(request)
        if placed.payment_provider != "collection" and placed.state == PAYMENT_PENDING:
            # The placement commits first: no lock is held while the provider is asked.
            await cart_service.db.commit()
            try:
                payment_url = await cart_service.open_payment(placed)
            except PaymentError as exc:
                return see_other(f"/cart/order/{placed.token}", request,
                                 f"Your order {placed.number} is placed, but the payment could not be started: "
                                 f"{exc.message}", "error")
            if payment_url:
                redirect = Redirect(path=payment_url, status_code=303)
                redirect.headers.update(CHANGED)
                return redirect
        redirect = see_other(f"/cart/order/{placed.token}", request, f"Thank you! Your order is {placed.number}.")
        redirect.headers.update(CHANGED)
        return redirect

    @get("/order/{token:str}/return", name="cart:payment-return")
    async def payment_return(self, request: Request[Any, Any, Any], cart_service: CartService,
                             token: str) -> Redirect:
        """The payer is back from the provider's page: re-fetch the checkout (never trust the URL)
        and move the order on what the provider says; if the provider cannot be asked now, a job does."""
        order = await cart_service.by_token(token)
        if order is None or order.number is None:
            raise NotFoundException(NOT_FOUND)
        if order.payment_id:
            provider = available_providers(cart_service.settings).get(order.payment_provider)
            try:
                if provider is None:
                    raise PaymentError("That payment provider is not configured any more.", retryable=True)
                outcome = await cart_service.apply_payment(await provider.fetch(order.payment_id))
            except PaymentError:
                await request_refresh(cart_service.db, order.payment_provider, order.payment_id)
                outcome = "pending"
            message = {"paid": "Thank you: your payment is confirmed.", "unchanged": "",
                       "cancelled": "The payment did not go through; the order is cancelled.",
                       "failed": "The payment did not go through; you can try again below.",
                       "pending": "We are waiting for the payment to be confirmed."}.get(outcome, "")
            return see_other(f"/cart/order/{token}", request, message or None)
        return see_other(f"/cart/order/{token}")

    @get("/order/{token:str}", name="cart:order")
    async def confirmation(self, request: Request[Any, Any, Any], cart_service: CartService,
                           token: str) -> Template:
        """The order as its buyer sees it; the token in the address is the capability (guests).

        The token travels in mails, browser history and shared screens, so it shows what a
        receipt shows (status, items, totals); the delivery address and the email only to the
        signed-in member who placed the order, or to staff (``personal_details_for``)."""
        order = await cart_service.by_token(token)
        if order is None or order.number is None:
            raise NotFoundException(NOT_FOUND)
        return await _order_page(cart_service, order, personal=personal_details_for(request, order))



class AccountOrdersController(Controller):
    path = "/account/orders"
    dependencies = dependencies
    cache_control = PRIVATE

    @get("/", name="cart:account-orders")
    async def orders(self, request: Request[Any, Any, Any], cart_service: CartService) -> Template:
        user_id = _user_id(request)
        assert user_id is not None
        orders = await cart_service.orders_of(user_id)
        return Template("cart/orders.html", context={"orders": orders, "money": format_minor})

    @get("/{number:str}", name="cart:account-order")
    async def order(self, request: Request[Any, Any, Any], cart_service: CartService, number: str) -> Template:
        order = own_order(await cart_service.by_number(number), _user_id(request))
        return await _order_page(cart_service, order, personal=True)


async def _order_page(service: CartService, order: Order, *, personal: bool) -> Template:
    """The order with what its lines' sources issued (ticket pages, once the order is paid);
    ``personal``: whether the viewer may see the address and email (owner or staff)."""
    issued: dict[str, list[dict[str, str]]] = {}
    for link in await service.issued(order):
        issued.setdefault(str(link.item_id), []).append({"label": link.label, "url": link.url})
    return Template("cart/order.html", context={
        "order": order, "o": order_context(order), "issued": issued, "personal": personal,
        "pay_later": payment_instructions(service.settings, order.number or ""),
        "names": {str(line.variant_id): [str(p.get("name") or "") for p in (line.details or {}).get("attendees") or []
                                         if isinstance(p, dict)] for line in order.lines}})


cart_handlers = [CartController]
order_handlers = [AccountOrdersController]
