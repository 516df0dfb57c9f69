"""The order page at ``/cart/order/<token>`` is a capability link: whoever holds it sees what a
receipt shows (status, items, totals); the delivery address and the email only the signed-in member
who placed the order, or staff. A different member and an anonymous holder see neither. Both databases."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from app.settings import Settings
from domains.account.models import User
from domains.cart.models import Order
from tests.domains.cart.helpers import stocked
from tests.domains.cart.test_cart_fulfilment import placed
from tests.helpers.web import login, signup

pytestmark = pytest.mark.anyio

ADDRESS = "Hillside Farm\n1 Main Street\nGhent"


async def test_only_the_owner_and_staff_see_the_address(client: Any, engine: AsyncEngine,
                                                         settings: Settings) -> None:
    maker = async_sessionmaker(engine, expire_on_commit=False)
    for name in ("owner", "other", "staff"):
        client.cookies.clear()
        assert (await signup(client, name)).status_code == 303
    async with maker() as session:
        await stocked(session, stock={"TOM-S": 5})
        order = await placed(session, settings, {"TOM-S": "2"}, key="p", email="owner@example.org")
        owner_id = (await session.execute(select(User.id).where(User.username == "owner"))).scalar_one()
        await session.execute(update(Order).where(Order.id == order.id).values(
            fulfilment="delivery", address=ADDRESS, user_id=owner_id))
        await session.execute(update(User).where(User.username == "staff").values(is_admin=True))
        await session.commit()
    url = f"/cart/order/{order.token}"

    async def page_as(username: str | None) -> str:
        client.cookies.clear()
        if username:
            assert (await login(client, username)).status_code == 303
        response = await client.get(url)
        assert response.status_code == 200, (username, response.status_code)
        return str(response.text)

    for viewer in (None, "other"):
        shown = await page_as(viewer)
        # What a receipt shows is there ...
        assert f"Order {order.number}" in shown and "€5.00" in shown and "Heritage tomatoes" in shown
        assert "Delivery to the address given with the order." in shown
        # ... and nothing personal.
        assert "Hillside Farm" not in shown and "Main Street" not in shown, viewer
        assert "owner@example.org" not in shown, viewer
    assert 'href="/account/login?next=' in await page_as(None)  # the owner is told how to see the rest
    for viewer in ("owner", "staff"):
        shown = await page_as(viewer)
        assert "Hillside Farm<br>1 Main Street<br>Ghent" in shown and "owner@example.org" in shown, viewer
    # The member's own orders page shows it too; another member gets a 404 there, not the order.
    client.cookies.clear()
    assert (await login(client, "owner")).status_code == 303
    assert "Hillside Farm" in (await client.get(f"/account/orders/{order.number}")).text
    client.cookies.clear()
    assert (await login(client, "other")).status_code == 303
    assert (await client.get(f"/account/orders/{order.number}")).status_code == 404
    assert (await client.get("/cart/order/" + "x" * 43)).status_code == 404
