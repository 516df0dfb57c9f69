"""Staff's orders admin: list and filter by state, mark paid at the counter, fulfil, cancel with
stock returned; every move in the order's history with who; members get 403."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from app.settings import Settings
from domains.account.models import User
from domains.cart.services import CartService, CheckoutDetails
from tests.domains.cart.helpers import allocated, stocked
from tests.helpers.web import CSRF_FIELD, signup

pytestmark = pytest.mark.anyio


async def test_staff_move_orders(client: Any, engine: AsyncEngine, settings: Settings) -> None:
    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with maker() as session:
        await stocked(session, stock={"TOM-S": 5})
        cart = CartService(session, settings)
        numbers = []
        for i in range(2):
            order = await cart.new_cart()
            await cart.add(order, sku="TOM-S", quantity="2")
            placed = await cart.place(order, CheckoutDetails(email=f"c{i}@example.org"), idempotency_key=f"{i}" * 20)
            numbers.append(placed.number)
        await session.commit()
    assert (await signup(client, "ada")).status_code == 303
    assert (await client.get("/cart/admin/orders/")).status_code == 403  # a member, not staff
    async with maker() as session, session.begin():
        await session.execute(update(User).where(User.username == "ada").values(is_admin=True))
    listing = await client.get("/cart/admin/orders/")
    assert listing.status_code == 200 and all(n in listing.text for n in numbers)
    assert numbers[0] not in (await client.get("/cart/admin/orders/?state=paid")).text
    page = await client.get(f"/cart/admin/orders/{numbers[0]}")
    csrf = CSRF_FIELD.search(page.text).group(1)  # type: ignore[union-attr]
    early = await client.post(f"/cart/admin/orders/{numbers[0]}/fulfil", data={"_csrf_token": csrf})
    assert early.status_code == 303  # not paid yet: nothing to do, said so
    for action in ("paid", "fulfil"):
        moved = await client.post(f"/cart/admin/orders/{numbers[0]}/{action}", data={"_csrf_token": csrf})
        assert moved.status_code == 303
    shown = await client.get(f"/cart/admin/orders/{numbers[0]}")
    assert "fulfilled" in shown.text and "by ada" in shown.text and "paid at the counter" in shown.text
    assert (await client.post(f"/cart/admin/orders/{numbers[0]}/cancel", data={"_csrf_token": csrf})).status_code == 303
    assert (await client.post(f"/cart/admin/orders/{numbers[1]}/cancel", data={"_csrf_token": csrf})).status_code == 303
    unknown = await client.post(f"/cart/admin/orders/{numbers[1]}/explode", data={"_csrf_token": csrf})
    assert unknown.status_code == 404
    assert (await client.get("/cart/admin/orders/RA-0000-000000")).status_code == 404
    async with maker() as session:
        from domains.cart.models import Order

        states = dict((await session.execute(select(Order.number, Order.state)
                                             .where(Order.number.in_(numbers)))).all())
        assert states == {numbers[0]: "fulfilled", numbers[1]: "cancelled"}
        assert await allocated(session, "TOM-S") == (5, 2)  # the fulfilled order keeps its units
