"""Adding to the cart from the (edge-cached, session-less) product page: the page holds the same
hole for everybody (a GET form to /cart/add, hx-get /f/me/add-to-cart); the private /cart/add page
and the personal fragment carry the real POST form with CSRF; the htmx post answers "Added" in place
with ``HX-Trigger: cart-changed``; out of stock shows no add control."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.domains.cart.helpers import stocked
from tests.helpers.web import CSRF_FIELD, signup

pytestmark = pytest.mark.anyio


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def _product(sessionmaker: Any) -> str:
    async with sessionmaker() as session:
        product = await stocked(session, stock={"TOM-S": 5, "TOM-M": 0, "TOM-L": 1})
        return str(product.slug)


async def test_product_page_holds_a_get_form_and_a_hole_the_same_for_everybody(client: Any,
                                                                                sessionmaker: Any) -> None:
    slug = await _product(sessionmaker)
    anon = await client.get(f"/market/{slug}?variant=TOM-S")
    assert anon.status_code == 200
    assert 'hx-get="/f/me/add-to-cart?sku=TOM-S"' in anon.text
    assert '<form class="add-to-cart-form" method="get" action="/cart/add">' in anon.text
    assert "csrf" not in anon.text.lower().replace("csrf-header.js", "")
    assert "set-cookie" not in anon.headers
    await signup(client, "erin")
    mine = await client.get(f"/market/{slug}?variant=TOM-S")
    assert mine.content == anon.content and mine.headers["etag"] == anon.headers["etag"]
    # Out of stock: no add control, neither on the page nor in the htmx offer block.
    out = await client.get(f"/market/{slug}?variant=TOM-M")
    assert "Out of stock" in out.text and "add-to-cart" not in out.text
    offer = await client.get(f"/market/{slug}/offer?variant=TOM-M", headers={"HX-Request": "true"})
    assert "add-to-cart" not in offer.text
    offer = await client.get(f"/market/{slug}/offer?variant=TOM-L", headers={"HX-Request": "true"})
    assert 'hx-get="/f/me/add-to-cart?sku=TOM-L"' in offer.text and 'max="1"' in offer.text


async def test_without_javascript_a_confirm_page_then_the_post(client: Any, sessionmaker: Any) -> None:
    await _product(sessionmaker)
    page = await client.get("/cart/add", params={"sku": "TOM-S", "quantity": "2"})
    assert page.status_code == 200 and "no-store" in page.headers["cache-control"]
    assert "Heritage tomatoes" in page.text and 'value="2"' in page.text
    token = CSRF_FIELD.search(page.text)
    assert token and client.cookies.get("csrftoken")
    posted = await client.post("/cart/add", data={"sku": "TOM-S", "quantity": "2", "_csrf_token": token.group(1)})
    assert posted.status_code == 303 and posted.headers["location"] == "/cart/"
    assert posted.headers["hx-trigger"] == "cart-changed"
    cart = await client.get("/cart/")
    assert "Added Heritage tomatoes" in cart.text and "TOM-S" in cart.text
    # No token: refused, nothing added.
    refused = await client.post("/cart/add", data={"sku": "TOM-S", "quantity": "1"})
    assert refused.status_code == 403
    assert '<span class="badge">2</span>' in (await client.get("/f/me/cart-badge")).text


@pytest.mark.parametrize(("sku", "status", "message"), [
    ("NOPE", 404, "not for sale"), ("", 404, "not for sale"), ("TOM-M", 200, "out of stock")])
async def test_confirm_page_bad_paths(client: Any, sessionmaker: Any, sku: str, status: int, message: str) -> None:
    await _product(sessionmaker)
    page = await client.get("/cart/add", params={"sku": sku})
    assert page.status_code == status and message in page.text
    assert 'method="post" action="/cart/add"' not in page.text


async def test_with_javascript_the_hole_posts_and_answers_added(client: Any, sessionmaker: Any) -> None:
    await _product(sessionmaker)
    hole = await client.get("/f/me/add-to-cart", params={"sku": "TOM-S"})
    assert hole.status_code == 200 and hole.headers["cache-control"] == "private, no-cache"
    assert 'hx-post="/cart/add"' in hole.text and 'name="reply" value="button"' in hole.text
    token = CSRF_FIELD.search(hole.text)
    assert token and client.cookies.get("csrftoken")
    htmx = {"HX-Request": "true", "x-csrftoken": client.cookies["csrftoken"]}
    added = await client.post("/cart/add", data={"sku": "TOM-S", "quantity": "3", "reply": "button"}, headers=htmx)
    assert added.status_code == 200 and added.headers["hx-trigger"] == "cart-changed"
    assert "Added Heritage tomatoes" in added.text and 'id="add-to-cart"' in added.text
    assert 'id="cart"' not in added.text  # its own block, not the cart
    # More than there is: 422 (htmx swaps it), the message in place, the cart unchanged.
    too_many = await client.post("/cart/add", data={"sku": "TOM-S", "quantity": "3", "reply": "button"},
                                 headers=htmx)
    assert too_many.status_code == 422 and "hx-trigger" not in too_many.headers
    assert 'role="alert"' in too_many.text and "Add to cart" in too_many.text
    assert '<span class="badge">3</span>' in (await client.get("/f/me/cart-badge")).text
    # Out of stock or unknown: the hole shows no form.
    for sku, text in (("TOM-M", "Out of stock"), ("NOPE", "Not for sale"), ("", "Not for sale")):
        body = (await client.get("/f/me/add-to-cart", params={"sku": sku})).text
        assert text in body and "<form" not in body
    assert re.search(r'<span class="badge">3</span>', (await client.get("/f/me/cart-badge")).text)
