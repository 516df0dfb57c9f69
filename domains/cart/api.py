"""The storefront JSON API under ``/api/cart`` (issue 17 item 7; Saleor's checkout token and
Shopify's cart id are the models), on the same service and rules as the HTML cart.

``POST /api/cart`` makes a cart and answers its ``token``; every later call sends it in
``X-Cart-Token`` (a caller with an access token uses its member's cart instead). ``GET /api/cart``;
``POST /api/cart/lines`` ``{"sku", "quantity"}`` (or ``{"source": "events", "item": <ticket type id>,
"quantity", "details"}`` for paid tickets, with the HTML path's capacity checks);
``PATCH``/``DELETE /api/cart/lines/<id>`` (raising a ticket line needs ``details`` naming every ticket);
``POST /api/cart/checkout`` with an ``Idempotency-Key`` header reserves and places the order in
one call: 201 with the order, or 409 with the lines that lack stock and what is available.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec
from litestar import Request, Response, delete, get, patch, post
from litestar.exceptions import ClientException, NotFoundException

from app.forms import InputProblems
from domains.cart.models import Order
from domains.cart.services import CartService, CheckoutDetails, InsufficientStock, order_totals

__all__ = ["api_handlers"]

TOKEN_HEADER = "x-cart-token"


class LineIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A market product by ``sku``, or another line source's item: ``{"source": "events", "item":
    "<ticket type id>", "quantity": 2, "details": {"attendees": [{"name": …, "dietary": …}, …],
    "answer": …}}`` (``details`` as the source asks: domains/cart/sources.py ``check_details``)."""

    sku: str = ""
    quantity: int = 1
    source: str = "market"
    item: str = ""
    details: dict[str, Any] = {}

    def target(self) -> dict[str, Any]:
        """The service's item arguments; InputProblems (422) for a line naming nothing or a bad id."""
        if self.source == "market" and not self.item:
            if not self.sku.strip():
                raise InputProblems({"sku": "Name a product by its sku, or another source's item by source and item."})
            return {"sku": self.sku}
        try:
            item = UUID(self.item.strip()[:36])
        except ValueError:
            raise InputProblems({"item": "The item is the id (a UUID) of what the source sells."}) from None
        return {"source": self.source[:16], "variant_id": item}


class QuantityIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A line's new quantity. A ticket line (each ticket named) is raised only with ``details``:
    the line's details as a whole from now on, a name per ticket (``{"attendees": [{"name": …},
    …], "answer": …}``); without them raising it is a 422, lowering is always allowed."""

    quantity: int
    details: dict[str, Any] | None = None


class FulfilmentIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    method: str = "collection"
    address: str = ""
    # Collection: a location and one of its slots, as configured (ROSE_ASH_CART_COLLECTION_SLOTS).
    location: str = ""
    slot: str = ""


class CheckoutIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    email: str
    fulfilment: FulfilmentIn = msgspec.field(default_factory=FulfilmentIn)
    payment: str = "collection"
    notes: str = ""


def cart_json(order: Order) -> dict[str, Any]:
    totals = order_totals(order)  # money.py: the same figures the pages and the receipt show
    return {
        "id": str(order.id), "state": order.state, "number": order.number, "currency": order.currency,
        "lines": [{"id": str(line.id), "sku": line.sku, "title": line.title, "quantity": line.quantity,
                   "unit_price_minor": line.unit_price_minor, "total_minor": total,
                   "tax_rate": line.tax_rate_bp / 100, "source": line.source, "details": line.details or {}}
                  for line, total in zip(order.lines, totals.line_totals, strict=True)],
        "subtotal_minor": totals.subtotal_minor, "shipping_minor": totals.shipping_minor,
        "total_minor": totals.total_minor, "tax_minor": totals.tax_minor,
        "vat": [{"rate": share.rate_bp / 100, "gross_minor": share.gross_minor, "vat_minor": share.vat_minor}
                for share in totals.vat if share.rate_bp > 0],
        "weight_grams": totals.weight_grams,
    }


def _user_id(request: Request[Any, Any, Any]) -> UUID | None:
    user_id: UUID | None = getattr(request.scope.get("user"), "id", None)
    return user_id


async def _cart(request: Request[Any, Any, Any], service: CartService) -> Order:
    user_id = _user_id(request)
    token = request.headers.get(TOKEN_HEADER, "")
    order = await service.open_cart(user_id=user_id, token=None if user_id else token)
    if order is None:
        raise NotFoundException("No open cart: create one with POST /api/cart and send its token in X-Cart-Token.")
    return order


def _empty(service: CartService) -> dict[str, Any]:
    return {"id": None, "state": "cart", "number": None, "currency": service.settings.market_currency, "lines": [],
            "subtotal_minor": 0, "shipping_minor": 0, "total_minor": 0, "tax_minor": 0, "vat": [], "weight_grams": 0}


def _quantity(value: int) -> str:
    return str(value) if value >= 0 else "-"  # the service's one check answers every bad quantity


def _short(exc: InsufficientStock) -> Response[Any]:
    return Response({"title": "Insufficient stock", "status": 409, "detail": exc.errors["stock"],
                     "lines": [{"sku": s.sku, "title": s.title, "wanted": s.wanted, "available": s.available}
                               for s in exc.shortages]},
                    status_code=409, media_type="application/problem+json")


@post("/api/cart", name="api:cart-create", status_code=201)
async def create_cart(request: Request[Any, Any, Any], cart_service: CartService) -> dict[str, Any]:
    """A new cart (or the member's open one): its ``token`` goes in ``X-Cart-Token`` from now on."""
    service = cart_service
    user_id = _user_id(request)
    order = (await service.open_cart(user_id=user_id) if user_id else None) or await service.new_cart(user_id=user_id)
    return {**cart_json(order), "token": order.token}


@get("/api/cart", name="api:cart")
async def get_cart(request: Request[Any, Any, Any], cart_service: CartService) -> dict[str, Any]:
    """The cart ``X-Cart-Token`` names (404 if it names no open cart); without one, an empty cart
    (``id`` null): nothing was made yet."""
    service = cart_service
    if _user_id(request) is None and not request.headers.get(TOKEN_HEADER):
        return _empty(service)
    user_id = _user_id(request)
    order = await service.open_cart(user_id=user_id, token=None if user_id else request.headers.get(TOKEN_HEADER))
    if order is None:
        if user_id is not None:
            return _empty(service)
        raise NotFoundException("No open cart has that token.")
    return cart_json(order)


@post("/api/cart/lines", name="api:cart-add", status_code=201)
async def add_line(request: Request[Any, Any, Any], cart_service: CartService,
                   data: LineIn) -> Any:
    service = cart_service
    target = data.target()  # a line naming nothing is a 422 whichever cart it was meant for
    order = await _cart(request, service)
    try:
        await service.add(order, quantity=_quantity(data.quantity), details=data.details, **target)
    except InsufficientStock as exc:
        return _short(exc)
    return cart_json(order)


@patch("/api/cart/lines/{line_id:str}", name="api:cart-line")
async def change_line(request: Request[Any, Any, Any], cart_service: CartService,
                      line_id: str, data: QuantityIn) -> Any:
    service = cart_service
    order = await _cart(request, service)
    try:
        await service.set_quantity(order, line_id, _quantity(data.quantity), details=data.details)
    except InsufficientStock as exc:
        return _short(exc)
    return cart_json(order)


@delete("/api/cart/lines/{line_id:str}", name="api:cart-remove", status_code=200)
async def remove_line(request: Request[Any, Any, Any], cart_service: CartService,
                      line_id: str) -> dict[str, Any]:
    service = cart_service
    order = await _cart(request, service)
    await service.remove(order, line_id)
    return cart_json(order)


@post("/api/cart/checkout", name="api:cart-checkout", status_code=201)
async def checkout(request: Request[Any, Any, Any], cart_service: CartService,
                   data: CheckoutIn) -> Any:
    """Reserve and place the order (the HTML checkout's path); ``Idempotency-Key`` makes a retry
    answer the same order. SumUp: the answer's ``payment_url`` is where the payer goes."""
    key = request.headers.get("idempotency-key", "")
    if len(key.strip()) < 16:
        raise ClientException("Send an Idempotency-Key header (16 to 100 characters) with a checkout.")
    service = cart_service
    details = CheckoutDetails(email=data.email, fulfilment=data.fulfilment.method, address=data.fulfilment.address,
                              notes=data.notes, payment=data.payment, location=data.fulfilment.location,
                              slot=data.fulfilment.slot)
    order = await service.open_cart(user_id=_user_id(request),
                                    token=None if _user_id(request) else request.headers.get(TOKEN_HEADER, ""))
    try:
        if order is None:
            placed = await service.place_again(key)
        else:
            service.check_details(details, order)  # every problem before anything is written
            await service.start_checkout(order)
            placed = await service.place(order, details, idempotency_key=key, actor_id=_user_id(request))
    except InsufficientStock as exc:
        return _short(exc)
    except InputProblems as exc:
        if order is None:
            raise NotFoundException("No open cart and no order placed with that Idempotency-Key.") from None
        raise exc
    payment_url = None
    if placed.payment_provider != "collection":
        await service.db.commit()  # placed first: nothing is locked while the provider answers
        payment_url = await service.open_payment(placed)
    collection = ({"location": placed.collection_location, "slot": placed.collection_slot}
                  if placed.collection_location else None)
    return {**cart_json(placed), "email": placed.email, "fulfilment": placed.fulfilment, "collection": collection,
            "payment": placed.payment_provider, "payment_url": payment_url}


api_handlers = [create_cart, get_cart, add_line, change_line, remove_line, checkout]
