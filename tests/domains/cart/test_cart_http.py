"""The cart through HTTP: forms that answer 303, htmx answering the cart block with
``HX-Trigger: cart-changed``, the badge, bad input, the session cart merged at sign-in, checkout,
placing (a double submit is one order), the confirmation and /account/orders (another member's: 404)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from domains.cart.models import Order
from tests.domains.cart.helpers import allocated, stocked
from tests.helpers.web import CSRF_FIELD, login, signup

pytestmark = pytest.mark.anyio

IDEM = re.compile(r'name="idempotency_key" value="([^"]+)"')


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def token_of(client: Any, page: str = "/cart/") -> str:
    response = await client.get(page)
    assert response.status_code == 200, response.text[:300]
    match = CSRF_FIELD.search(response.text)
    assert match
    return match.group(1)


async def add(client: Any, sku: str, quantity: str = "1", **headers: str) -> Any:
    csrf = await token_of(client, "/account/login")
    return await client.post("/cart/add", data={"sku": sku, "quantity": quantity, "_csrf_token": csrf},
                             headers=headers)


async def badge(client: Any) -> str:
    response = await client.get("/f/me/cart-badge")
    assert response.status_code == 200
    assert "no-store" in response.headers.get("cache-control", "") or "private" in response.headers.get(
        "cache-control", "")
    return str(response.text)


async def test_add_change_remove_with_forms_and_htmx(client: Any, sessionmaker: Any) -> None:
    async with sessionmaker() as session:
        await stocked(session, stock={"TOM-S": 5, "TOM-M": 2})
    empty = await client.get("/cart/")
    assert empty.status_code == 200 and "Your cart is empty" in empty.text
    assert "no-store" in empty.headers["cache-control"]

    response = await add(client, "TOM-S", "2")
    assert response.status_code == 303 and response.headers["location"] == "/cart/"
    assert response.headers["hx-trigger"] == "cart-changed"
    assert '<span class="badge">2</span>' in await badge(client)

    htmx = await add(client, "TOM-M", "1", **{"HX-Request": "true"})
    assert htmx.status_code == 200 and htmx.headers["hx-trigger"] == "cart-changed"
    assert htmx.text.lstrip().startswith('<div id="cart"') and "<html" not in htmx.text
    page = await client.get("/cart/")
    line_ids = re.findall(r'action="/cart/lines/([0-9a-f-]+)"', page.text)
    assert len(line_ids) == 2
    csrf = CSRF_FIELD.search(page.text).group(1)  # type: ignore[union-attr]
    changed = await client.post(f"/cart/lines/{line_ids[0]}", data={"quantity": "4", "_csrf_token": csrf})
    assert changed.status_code == 303 and changed.headers["hx-trigger"] == "cart-changed"
    removed = await client.post(f"/cart/lines/{line_ids[1]}/remove", data={"_csrf_token": csrf})
    assert removed.status_code == 303
    assert '<span class="badge">4</span>' in await badge(client)

    # Bad input: a clear message and a 4xx, nothing changed.
    for quantity in ("abc", "-1", "0", "1e9", "100"):
        bad = await add(client, "TOM-S", quantity)
        assert bad.status_code == 422, (quantity, bad.status_code)
        assert "Quantity" in bad.text or "At most" in bad.text
    too_many = await add(client, "TOM-S", "2")
    assert too_many.status_code == 409 and "5 available, 6 wanted" in too_many.text
    unknown = await add(client, "NOPE")
    assert unknown.status_code == 404
    foreign = await client.post("/cart/lines/00000000-0000-4000-8000-000000000000",
                                data={"quantity": "1", "_csrf_token": csrf})
    assert foreign.status_code == 404
    without_csrf = await client.post("/cart/add", data={"sku": "TOM-S", "quantity": "1"})
    assert without_csrf.status_code == 403
    assert '<span class="badge">4</span>' in await badge(client)


async def test_the_session_cart_follows_sign_in(client: Any, sessionmaker: Any) -> None:
    async with sessionmaker() as session:
        await stocked(session, stock={"TOM-S": 5, "TOM-M": 3})
    # bob has an account with a cart already (made in another browser).
    assert (await signup(client, "bob")).status_code == 303
    assert (await add(client, "TOM-S", "4")).status_code == 303
    client.cookies.clear()  # a new browser, anonymous: two products
    assert '<span class="badge">' not in await badge(client)
    assert (await add(client, "TOM-S", "3")).status_code == 303
    assert (await add(client, "TOM-M", "2")).status_code == 303
    signed_in = await login(client, "bob")
    assert signed_in.status_code == 303
    page = await client.get("/cart/")
    # Quantities added, capped by availability (5 of TOM-S).
    assert re.search(r'id="q-[^"]+" name="quantity" type="number" min="0" max="99" value="5"', page.text)
    assert '<span class="badge">7</span>' in await badge(client)
    async with sessionmaker() as session:
        open_carts = (await session.execute(select(func.count()).select_from(Order)
                                            .where(Order.state.in_(("cart", "checkout"))))).scalar_one()
        assert open_carts == 1


async def test_checkout_place_confirmation_and_orders(client: Any, sessionmaker: Any) -> None:
    async with sessionmaker() as session:
        await stocked(session, stock={"TOM-S": 5})
    assert (await signup(client, "carol")).status_code == 303
    assert (await add(client, "TOM-S", "2")).status_code == 303
    # The checkout page before checkout started: back to the cart.
    assert (await client.get("/cart/checkout")).headers.get("location") == "/cart/"
    csrf = await token_of(client)
    started = await client.post("/cart/checkout", data={"_csrf_token": csrf})
    assert started.status_code == 303 and started.headers["location"] == "/cart/checkout"
    form = await client.get("/cart/checkout")
    assert form.status_code == 200 and "held for you until" in form.text
    key = IDEM.search(form.text).group(1)  # type: ignore[union-attr]
    data = {"_csrf_token": csrf, "idempotency_key": key, "email": "carol@example.org", "fulfilment": "delivery",
            "address": "", "notes": "", "payment": "collection"}
    missing = await client.post("/cart/place", data=data)
    assert missing.status_code == 422 and "address to deliver to" in missing.text
    data.update(fulfilment="collection", notes="Ring twice")
    first = await client.post("/cart/place", data=data)
    assert first.status_code == 303, first.text[:500]
    confirmation = first.headers["location"]
    second = await client.post("/cart/place", data=data)  # the double click
    assert second.status_code == 303 and second.headers["location"] == confirmation
    async with sessionmaker() as session:
        assert await allocated(session, "TOM-S") == (5, 2)
        numbers = (await session.execute(select(Order.number).where(Order.number.is_not(None)))).scalars().all()
    assert len(numbers) == 1
    page = await client.get(confirmation)
    assert page.status_code == 200 and numbers[0] in page.text and "pay when you collect" in page.text
    orders = await client.get("/account/orders/")
    assert orders.status_code == 200 and numbers[0] in orders.text
    mine = await client.get(f"/account/orders/{numbers[0]}")
    assert mine.status_code == 200 and "€5.00" in mine.text
    assert '<span class="badge">' not in await badge(client)  # the cart is empty again

    client.cookies.clear()  # another browser, another member
    anonymous = await client.get("/account/orders/")
    assert anonymous.status_code in (302, 303, 401) and numbers[0] not in anonymous.text
    assert (await signup(client, "dave")).status_code == 303
    assert (await client.get(f"/account/orders/{numbers[0]}")).status_code == 404
    assert (await client.get("/cart/order/not-a-token")).status_code == 404
    theirs = await client.get("/account/orders/")
    assert theirs.status_code == 200 and numbers[0] not in theirs.text


async def test_prices_come_from_the_market_and_changes_are_noticed(client: Any, sessionmaker: Any) -> None:
    async with sessionmaker() as session:
        await stocked(session, stock={"TOM-S": 5})
    csrf = await token_of(client, "/account/login")
    # A tampered price (or any other field) in the form is not read: the variant's price is.
    response = await client.post("/cart/add", data={"sku": "TOM-S", "quantity": "1", "price": "1",
                                                    "unit_price_minor": "1", "_csrf_token": csrf})
    assert response.status_code == 303
    assert "€2.50" in (await client.get("/cart/")).text
    async with sessionmaker() as session, session.begin():
        from sqlalchemy import update

        from domains.market.models import Variant

        await session.execute(update(Variant).where(Variant.sku == "TOM-S").values(price_minor=300))
    page = await client.get("/cart/")
    assert "The price is now €3.00; your cart keeps €2.50." in page.text
