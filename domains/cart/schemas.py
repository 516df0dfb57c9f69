"""Cart forms (msgspec Structs parsed by ``app.forms.parse_form``); quantities stay strings here
and are checked by the service, so "abc", "-1" and "1e9" get one clear message."""

from __future__ import annotations

import msgspec

__all__ = ["AddForm", "CheckoutForm", "LineForm", "PlaceForm"]


class AddForm(msgspec.Struct, kw_only=True):
    sku: str = ""
    # Another line source's item (domains/cart/sources.py): ``source=events&item=<ticket type id>``.
    source: str = "market"
    item: str = ""
    quantity: str = "1"
    next: str = ""
    # "button": the product page's add-to-cart hole (me.add-to-cart) posting with htmx; it gets
    # its own block back ("Added ...") instead of the cart.
    reply: str = ""


class LineForm(msgspec.Struct, kw_only=True):
    quantity: str = "0"


class CheckoutForm(msgspec.Struct, kw_only=True):
    email: str = ""
    fulfilment: str = "collection"
    address: str = ""
    notes: str = ""
    payment: str = "collection"
    # "Market hall|Sat 09:00-12:00": a collection point and slot (ROSE_ASH_CART_COLLECTION_SLOTS).
    collection: str = ""


class PlaceForm(CheckoutForm, kw_only=True):
    idempotency_key: str = ""
