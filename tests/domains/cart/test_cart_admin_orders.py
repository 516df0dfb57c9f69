"""The orders admin over HTTP: lines handed over through the form, a refund too large refused with
its message and nothing written, CSRF required, a forged line id or a replayed form refused, the
packing list printable without inline styles; members who are not staff are turned away, and a
payer's retry link for an unknown order is a 404."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from app.settings import Settings
from domains.account.models import User
from domains.cart.models import Order, OrderLine
from domains.cart.services import CartService
from tests.domains.cart.helpers import stocked
from tests.domains.cart.test_cart_fulfilment import placed
from tests.helpers.web import CSRF_FIELD, signup

pytestmark = pytest.mark.anyio


async def test_staff_hand_over_refund_and_print(client: Any, engine: AsyncEngine, settings: Settings) -> None:
    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with maker() as session:
        await stocked(session, stock={"TOM-S": 5, "TOM-M": 5})
        order = await placed(session, settings, {"TOM-S": "2", "TOM-M": "1"}, key="x")
        other = await placed(session, settings, {"TOM-S": "1"}, key="y")
        await CartService(session, settings).mark_paid(order, actor="till")
        await session.commit()
        lines = {line.sku: str(line.id) for line in order.lines}
    number = order.number
    assert (await signup(client, "ada")).status_code == 303
    assert (await client.get(f"/cart/admin/orders/{number}/packing-list")).status_code == 403  # not staff
    async with maker() as session, session.begin():
        await session.execute(update(User).where(User.username == "ada").values(is_admin=True))
    page = await client.get(f"/cart/admin/orders/{number}")
    assert page.status_code == 200 and f'name="line-{lines["TOM-S"]}"' in page.text and "Refund" in page.text
    csrf = CSRF_FIELD.search(page.text).group(1)  # type: ignore[union-attr]
    url = f"/cart/admin/orders/{number}"

    async def flashed() -> str:
        text = (await client.get(url)).text
        found = re.findall(r'<p class="flash flash-(\w+)">([^<]*)</p>', text)
        return " | ".join(f"{kind}: {message}" for kind, message in found)

    async def state() -> tuple[str, int, dict[str, int]]:
        async with maker() as session:
            row = await session.get(Order, order.id)
            assert row is not None
            done = dict((await session.execute(select(OrderLine.sku, OrderLine.fulfilled_quantity)
                                               .where(OrderLine.order_id == order.id))).all())
            return row.state, row.refunded_minor, done

    # No CSRF token: refused before anything happens.
    assert (await client.post(f"{url}/refund", data={"amount": "1"})).status_code == 403
    # A refund larger than what was paid: said so, nothing written.
    too_much = await client.post(f"{url}/refund", data={"_csrf_token": csrf, "amount": "100"})
    assert too_much.status_code == 303
    assert "error: Cannot refund €100.00: only €8.50 of the €8.50 paid is left to refund." in await flashed()
    assert await state() == ("paid", 0, {"TOM-S": 0, "TOM-M": 0})
    # A line of another order in the form (forged): refused, nothing written.
    forged = await client.post(f"{url}/fulfil-lines", data={"_csrf_token": csrf, f"line-{other.lines[0].id}": "1"})
    assert forged.status_code == 303 and "That line is not in this order." in await flashed()
    form = {"_csrf_token": csrf, f"line-{lines['TOM-S']}": "2", f"line-{lines['TOM-M']}": "0"}
    assert (await client.post(f"{url}/fulfil-lines", data=form)).status_code == 303
    assert "success: Order " in await flashed()
    assert await state() == ("partially_fulfilled", 0, {"TOM-S": 2, "TOM-M": 0})
    # The same form again (a double click, a replay): nothing left of that line to hand over.
    assert (await client.post(f"{url}/fulfil-lines", data=form)).status_code == 303
    assert "only 0 of 2 left to hand over, not 2" in await flashed()
    cancel = await client.post(f"{url}/cancel", data={"_csrf_token": csrf})
    assert cancel.status_code == 303 and "can no longer be cancelled; refund it instead" in await flashed()
    assert (await client.post(f"{url}/refund", data={"_csrf_token": csrf, "amount": "1.25"})).status_code == 303
    assert "Refunded €1.25" in await flashed()
    assert (await client.post(f"{url}/fulfil", data={"_csrf_token": csrf})).status_code == 303
    assert await state() == ("fulfilled", 125, {"TOM-S": 2, "TOM-M": 1})
    shown = (await client.get(url)).text
    assert "partially fulfilled → fulfilled by ada" in shown and "refunded €1.25 handed back at the counter" in shown
    printed = await client.get(f"{url}/packing-list")
    assert printed.status_code == 200 and "TOM-M" in printed.text and "packing-list.css" in printed.text
    assert "style=" not in printed.text and "Packing list" in shown
    assert (await client.get("/static/css/packing-list.css")).text.count("@media print") == 1
    assert (await client.get("/cart/admin/orders/RA-0000-000000/packing-list")).status_code == 404
    assert (await client.post(f"{url}/explode", data={"_csrf_token": csrf})).status_code == 404
    # The payer's retry for an order that does not exist (or a guessed token): 404, like the order page.
    assert (await client.post("/cart/order/not-a-token/pay", data={"_csrf_token": csrf})).status_code == 404
    collect = await client.post(f"/cart/order/{order.token}/pay", data={"_csrf_token": csrf})
    assert collect.status_code == 303 and "not waiting for an online payment" in (
        await client.get(f"/cart/order/{order.token}")).text


async def test_a_delivery_address_keeps_its_lines_and_stays_escaped(client: Any, engine: AsyncEngine,
                                                                     settings: Settings) -> None:
    """A multi-line address typed at checkout shows one line per line on the customer's order page,
    the admin's order page and the packing list (it was run together on one line), each line escaped."""
    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with maker() as session:
        await stocked(session, stock={"TOM-S": 5})
        order = await placed(session, settings, {"TOM-S": "1"}, key="z")
        await session.execute(update(Order).where(Order.id == order.id).values(
            fulfilment="delivery", address="Hillside Farm\r\n1 Main <b>Street</b>\r\n\r\nGhent"))
        await session.commit()
    expected = "Hillside Farm<br>1 Main &lt;b&gt;Street&lt;/b&gt;<br>Ghent"
    # The bare link is a receipt: no address (test_cart_order_privacy.py); staff see it there too.
    assert "Hillside Farm" not in (await client.get(f"/cart/order/{order.token}")).text
    assert (await signup(client, "ada")).status_code == 303
    async with maker() as session, session.begin():
        await session.execute(update(User).where(User.username == "ada").values(is_admin=True))
    assert expected in (await client.get(f"/cart/order/{order.token}")).text
    shown = await client.get(f"/cart/admin/orders/{order.number}")
    assert shown.status_code == 200 and f"Deliver to:<br>{expected}</p>" in shown.text
    printed = await client.get(f"/cart/admin/orders/{order.number}/packing-list")
    assert f"<address>{expected}</address>" in printed.text and "<b>Street" not in printed.text
