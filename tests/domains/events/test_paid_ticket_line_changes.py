"""A ticket line's quantity is no free field (the new-user walk: raising it on /cart issued tickets
to a placeholder name, and the cart took 12 though the names form caps at 10). The cart shows
the count with "Change tickets" (the names page, prefilled, which replaces the line) and
"Remove"; raising through /cart or the JSON API without a name per ticket is a 422, lowering
stays allowed; the per-type cap holds on every path. Shortages are worded as places left, and
shown with htmx too. Both databases."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from app.forms import InputProblems
from app.settings import Settings
from domains.cart.models import OrderLine
from domains.cart.services import CartService
from domains.events.booking_models import TicketType
from domains.events.models import Event
from domains.events.services.tickets import SOURCE
from tests.domains.events.test_paid_tickets import _ticketed
from tests.helpers.web import CSRF_FIELD

pytestmark = pytest.mark.anyio


async def _buy(client: Any, event: Event, ticket: TicketType, *names: str) -> None:
    page = await client.get(f"/events/{event.slug}/tickets", params={f"q-{ticket.id}": str(len(names))})
    token = CSRF_FIELD.search(page.text)
    assert token
    form = {"_csrf_token": token.group(1), f"q-{ticket.id}": str(len(names)),
            **{f"a-{ticket.id}-{i}": n for i, n in enumerate(names, start=1)}}
    added = await client.post(f"/events/{event.slug}/tickets", data=form)
    assert added.status_code == 303, added.text


async def _line(engine: AsyncEngine) -> OrderLine:
    async with async_sessionmaker(engine, expire_on_commit=False)() as session:
        return (await session.execute(select(OrderLine))).scalar_one()


def _names(line: OrderLine) -> list[str]:
    return [p["name"] for p in (line.details or {}).get("attendees") or []]


async def test_the_cart_changes_ticket_lines_only_through_the_names_page(client: Any, engine: AsyncEngine,
                                                                         settings: Settings) -> None:
    async with async_sessionmaker(engine, expire_on_commit=False)() as session:
        event, ticket = await _ticketed(session, settings, capacity=50)
    await _buy(client, event, ticket, "Ada", "Grace", "Linus")
    line = await _line(engine)
    cart = await client.get("/cart/")
    assert cart.status_code == 200
    # The count, "Change tickets" and "Remove"; no quantity field, no stock code for a ticket.
    assert f'id="q-{line.id}"' not in cart.text and f'href="/cart/lines/{line.id}/change"' in cart.text
    assert f"/cart/lines/{line.id}/remove" in cart.text and "TICKET-" not in cart.text
    token = CSRF_FIELD.search(cart.text)
    assert token
    csrf = token.group(1)
    # Raising through the cart's form: refused, nothing changes, the message says what to do.
    raised = await client.post(f"/cart/lines/{line.id}", data={"_csrf_token": csrf, "quantity": "5"})
    assert raised.status_code == 422 and "Change tickets" in raised.text
    assert (await _line(engine)).quantity == 3
    # htmx too (422 swaps, so the message shows in place).
    swapped = await client.post(f"/cart/lines/{line.id}", data={"_csrf_token": csrf, "quantity": "5"},
                                headers={"HX-Request": "true"})
    assert swapped.status_code == 422 and "<html" not in swapped.text and "needs a name" in swapped.text
    # Lowering stays allowed, and the names of the places let go go with them.
    lowered = await client.post(f"/cart/lines/{line.id}", data={"_csrf_token": csrf, "quantity": "2"})
    assert lowered.status_code == 303
    assert _names(await _line(engine)) == ["Ada", "Grace"]
    # "Change tickets": the names page prefilled with the line's count and names.
    change = await client.get(f"/cart/lines/{line.id}/change")
    assert change.status_code == 303 and change.headers["location"] == f"/events/{event.slug}/tickets?line={line.id}"
    page = await client.get(change.headers["location"])
    assert page.status_code == 200 and f'name="line" value="{line.id}"' in page.text
    assert re.search(rf'name="q-{ticket.id}"[^>]*value="2"', page.text)
    assert 'value="Ada"' in page.text and 'value="Grace"' in page.text and f'name="a-{ticket.id}-3"' not in page.text
    token = CSRF_FIELD.search(page.text)
    assert token
    form = {"_csrf_token": token.group(1), "line": str(line.id), f"q-{ticket.id}": "4", f"shown-{ticket.id}": "4",
            f"a-{ticket.id}-1": "Ada", f"a-{ticket.id}-2": "Grace", f"a-{ticket.id}-3": "Linus",
            f"a-{ticket.id}-4": ""}
    unnamed = await client.post(f"/events/{event.slug}/tickets", data=form)
    assert unnamed.status_code == 422 and (await _line(engine)).quantity == 2
    replaced = await client.post(f"/events/{event.slug}/tickets", data={**form, f"a-{ticket.id}-4": "Barbara"})
    assert replaced.status_code == 303
    after = await _line(engine)
    # The line is replaced, not added to: 4 tickets, one name each, the same line.
    assert (after.id, after.quantity, _names(after)) == (line.id, 4, ["Ada", "Grace", "Linus", "Barbara"])
    # Another visitor's line id changes nothing: their form just adds.
    client.cookies.clear()
    other = await client.get(f"/cart/lines/{line.id}/change")
    assert other.status_code == 404
    foreign = await client.get(f"/events/{event.slug}/tickets", params={"line": str(line.id)})
    assert foreign.status_code == 200 and f'name="line" value="{line.id}"' not in foreign.text


async def test_without_js_a_changed_count_returns_the_rows_without_an_error(client: Any, engine: AsyncEngine,
                                                                            settings: Settings) -> None:
    async with async_sessionmaker(engine, expire_on_commit=False)() as session:
        event, ticket = await _ticketed(session, settings, capacity=50)
    page = await client.get(f"/events/{event.slug}/tickets", params={f"q-{ticket.id}": "1"})
    assert f'name="shown-{ticket.id}" value="1"' in page.text
    token = CSRF_FIELD.search(page.text)
    assert token
    step = await client.post(f"/events/{event.slug}/tickets", data={
        "_csrf_token": token.group(1), f"q-{ticket.id}": "3", f"shown-{ticket.id}": "1", f"a-{ticket.id}-1": "Ada"})
    assert step.status_code == 200 and f'name="a-{ticket.id}-3"' in step.text
    assert "There is a problem" not in step.text and "flash-error" not in step.text and 'value="Ada"' in step.text
    async with async_sessionmaker(engine, expire_on_commit=False)() as session:
        assert (await session.execute(select(OrderLine))).first() is None  # nothing added yet


async def test_the_json_api_and_the_service_keep_names_and_the_cap(client: Any, engine: AsyncEngine,
                                                                   settings: Settings) -> None:
    async with async_sessionmaker(engine, expire_on_commit=False)() as session:
        _, ticket = await _ticketed(session, settings, capacity=50)
    h = {"X-Cart-Token": (await client.post("/api/cart")).json()["token"]}
    added = await client.post("/api/cart/lines", headers=h, json={
        "source": "events", "item": str(ticket.id), "quantity": 2,
        "details": {"attendees": [{"name": "Ada"}, {"name": "Grace"}]}})
    assert added.status_code == 201, added.text
    line_id = added.json()["lines"][0]["id"]
    unnamed = await client.patch(f"/api/cart/lines/{line_id}", headers=h, json={"quantity": 3})
    assert unnamed.status_code == 422 and "needs a name" in unnamed.text
    short = await client.patch(f"/api/cart/lines/{line_id}", headers=h, json={
        "quantity": 3, "details": {"attendees": [{"name": "Ada"}, {"name": "Grace"}]}})
    assert short.status_code == 422  # a name per ticket, not per added ticket only
    named = await client.patch(f"/api/cart/lines/{line_id}", headers=h, json={
        "quantity": 3, "details": {"attendees": [{"name": "Ada"}, {"name": "Grace"}, {"name": "Linus"}]}})
    assert named.status_code == 200, named.text
    assert [a["name"] for a in named.json()["lines"][0]["details"]["attendees"]] == ["Ada", "Grace", "Linus"]
    over = await client.patch(f"/api/cart/lines/{line_id}", headers=h, json={
        "quantity": 12, "details": {"attendees": [{"name": f"P{i}"} for i in range(12)]}})
    assert over.status_code == 422 and "At most 10 tickets" in over.text
    lowered = await client.patch(f"/api/cart/lines/{line_id}", headers=h, json={"quantity": 1})
    assert lowered.status_code == 200
    assert [a["name"] for a in lowered.json()["lines"][0]["details"]["attendees"]] == ["Ada"]
    # Adding past the cap is refused too (the names form caps at 10; so does every other path).
    many = await client.post("/api/cart/lines", headers=h, json={
        "source": "events", "item": str(ticket.id), "quantity": 10,
        "details": {"attendees": [{"name": f"P{i}"} for i in range(10)]}})
    assert many.status_code == 422 and "At most 10 tickets" in many.text
    async with async_sessionmaker(engine, expire_on_commit=False)() as session:
        cart = CartService(session, settings)
        order = await cart.new_cart()
        with pytest.raises(InputProblems) as capped:
            await cart.add(order, source=SOURCE, variant_id=ticket.id, quantity="11")
        assert capped.value.status == 422


async def test_a_shortage_on_the_cart_says_places_left_with_and_without_js(client: Any, engine: AsyncEngine,
                                                                           settings: Settings) -> None:
    async with async_sessionmaker(engine, expire_on_commit=False)() as session:
        event, ticket = await _ticketed(session, settings, capacity=3)
    await _buy(client, event, ticket, "Ada", "Grace")
    line = await _line(engine)
    token = CSRF_FIELD.search((await client.get("/cart/")).text)
    assert token
    body = {"_csrf_token": token.group(1), "line": str(line.id), f"q-{ticket.id}": "4", f"shown-{ticket.id}": "4",
            **{f"a-{ticket.id}-{i}": f"P{i}" for i in range(1, 5)}}
    # The names page checks the date's places (its own message); the service says places left.
    page = await client.post(f"/events/{event.slug}/tickets", data=body)
    assert page.status_code == 409 and "Only 3 places are available" in page.text
    async with async_sessionmaker(engine, expire_on_commit=False)() as session:
        cart = CartService(session, settings)
        order = await cart.new_cart()
        with pytest.raises(InputProblems) as short:
            await cart.add(order, source=SOURCE, variant_id=ticket.id, quantity="4",
                           details={"attendees": [{"name": f"P{i}"} for i in range(4)]})
        assert short.value.status == 409
        text = short.value.errors["stock"]
        assert text.startswith(f"Only 3 places left for “{event.title}”, ") and text.endswith(", 19:00.")
    # Asking the cart for more than is left: with htmx the 409 is answered as a swappable 422
    # (base.html's responseHandling swaps 422 only) carrying the message; without, a 409 page.
    raised = await client.post(f"/cart/lines/{line.id}", data={"_csrf_token": token.group(1), "quantity": "5"},
                               headers={"HX-Request": "true"})
    assert raised.status_code == 422 and "<html" not in raised.text
    assert f"Only 3 places left for “{event.title}”, " in raised.text and "TICKET-" not in raised.text
    plain = await client.post(f"/cart/lines/{line.id}", data={"_csrf_token": token.group(1), "quantity": "5"})
    assert plain.status_code == 409 and "Only 3 places left" in plain.text and "Stock:" not in plain.text
    assert (await _line(engine)).quantity == 2
