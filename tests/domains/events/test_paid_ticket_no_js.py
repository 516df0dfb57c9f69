"""The no-JavaScript way to tickets (issue 18 item 4): a cached, form-less page links to
``GET /cart/add?source=events&item=<ticket type id>``. That step used to carry a POST form with a
quantity and no names, so it put unnamed tickets in the cart. Now it sends the buyer to the
events source's own names page (the one "Change tickets" uses), a POST to ``/cart/add`` for a
ticket does the same, and the service refuses added tickets that carry no names on every path
(the JSON API too): no unnamed ticket line can be made. Real HTTP requests through the test
client, bad input included. Both databases."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from app.settings import Settings
from domains.cart.models import OrderLine
from domains.events.booking_models import TicketType
from domains.events.models import MEMBERS, Event
from tests.domains.events.test_paid_tickets import _ticketed
from tests.helpers.web import CSRF_FIELD, signup

pytestmark = pytest.mark.anyio

ABSENT = "0190a1b2-0000-7000-8000-000000000000"


async def _lines(engine: AsyncEngine) -> list[OrderLine]:
    async with async_sessionmaker(engine, expire_on_commit=False)() as session:
        return list((await session.execute(select(OrderLine).order_by(OrderLine.created_at))).scalars())


def _names(line: OrderLine) -> list[str]:
    return [str(p.get("name")) for p in (line.details or {}).get("attendees") or []]


async def _token(client: Any, path: str = "/account/login") -> str:
    found = CSRF_FIELD.search((await client.get(path)).text)
    assert found, f"no CSRF field on {path}"
    return found.group(1)


def _form(event: Event, ticket: TicketType, token: str, quantity: int, *names: str) -> dict[str, str]:
    return {"_csrf_token": token, f"q-{ticket.id}": str(quantity), f"shown-{ticket.id}": str(quantity),
            **{f"a-{ticket.id}-{i}": n for i, n in enumerate(names, start=1)}}


async def test_the_add_to_cart_step_sends_a_ticket_to_the_names_page_and_refuses_bad_names(
        client: Any, engine: AsyncEngine, settings: Settings) -> None:
    async with async_sessionmaker(engine, expire_on_commit=False)() as session:
        event, ticket = await _ticketed(session, settings, capacity=3)
    names_page = f"/events/{event.slug}/tickets"

    # The GET step: straight on to the names page with as many name rows as tickets asked for.
    step = await client.get(f"/cart/add?source=events&item={ticket.id}&quantity=2")
    assert step.status_code == 303 and step.headers["location"] == f"{names_page}?q-{ticket.id}=2"
    assert "no-store" in step.headers["cache-control"]
    page = await client.get(step.headers["location"])
    assert page.status_code == 200
    assert f'name="a-{ticket.id}-1"' in page.text and f'name="a-{ticket.id}-2"' in page.text
    assert f'name="a-{ticket.id}-3"' not in page.text
    # A count the names page could not hold is capped as the page caps it; garbage asks for one.
    capped = await client.get(f"/cart/add?source=events&item={ticket.id}&quantity=50")
    assert capped.headers["location"].endswith(f"q-{ticket.id}=10")
    for junk in ("abc", "-3", "1e9", ""):
        odd = await client.get("/cart/add", params={"source": "events", "item": str(ticket.id), "quantity": junk})
        assert odd.status_code == 303 and odd.headers["location"].endswith(f"q-{ticket.id}=1"), junk
    assert await _lines(engine) == []

    # A POST to /cart/add (a confirm page cached before this rule, a hand-made form) has no names:
    # it too goes to the names page, and adds nothing.
    token = await _token(client)
    posted = await client.post("/cart/add", data={"source": "events", "item": str(ticket.id), "quantity": "2",
                                                  "_csrf_token": token})
    assert posted.status_code == 303 and posted.headers["location"] == f"{names_page}?q-{ticket.id}=2"
    assert await _lines(engine) == []

    # Bad names on the names page: each refused as a whole (4xx), nothing added.
    token = await _token(client, step.headers["location"])
    missing = await client.post(names_page, data=_form(event, ticket, token, 2, "Ada"))
    assert missing.status_code == 422 and "attendee 2 has no name" in missing.text
    blank = await client.post(names_page, data=_form(event, ticket, token, 2, "Ada", "   "))
    assert blank.status_code == 422 and "attendee 2 has no name" in blank.text
    none = await client.post(names_page, data=_form(event, ticket, token, 2))
    assert none.status_code == 422 and "attendee 1, 2 have no name" in none.text
    long = await client.post(names_page, data=_form(event, ticket, token, 2, "Ada", "G" * 201))
    assert long.status_code == 422 and "Attendee 2: a name of at most 200 characters." in long.text
    # More tickets than the date has left (3): the whole form is refused, with what is left.
    short = await client.post(names_page, data=_form(event, ticket, token, 4, "A", "B", "C", "D"))
    assert short.status_code == 409 and "Only 3 places are available" in short.text
    assert await _lines(engine) == []

    # More names than tickets: only a name per ticket is read, so the line holds exactly two.
    good = await client.post(names_page, data=_form(event, ticket, token, 2, "Ada", "Grace", "Stowaway"))
    assert good.status_code == 303 and good.headers["location"] == "/cart/"
    [line] = await _lines(engine)
    assert line.quantity == 2 and _names(line) == ["Ada", "Grace"]
    cart = await client.get("/cart/")
    assert "For Ada, Grace" in cart.text and "Stowaway" not in cart.text

    # The POST step cannot raise the named line with unnamed tickets either.
    again = await client.post("/cart/add", data={"source": "events", "item": str(ticket.id), "quantity": "1",
                                                 "_csrf_token": token})
    assert again.status_code == 303 and again.headers["location"].startswith(names_page)
    [line] = await _lines(engine)
    assert line.quantity == 2 and _names(line) == ["Ada", "Grace"]


async def test_the_json_api_adds_no_ticket_without_a_name_for_each(client: Any, engine: AsyncEngine,
                                                                    settings: Settings) -> None:
    async with async_sessionmaker(engine, expire_on_commit=False)() as session:
        _event, ticket = await _ticketed(session, settings, capacity=5)
    h = {"X-Cart-Token": (await client.post("/api/cart")).json()["token"]}
    item = {"source": "events", "item": str(ticket.id)}
    for body in ({**item}, {**item, "quantity": 2}, {**item, "details": {}}, {**item, "details": {"answer": "x"}},
                 {**item, "quantity": 2, "details": {"attendees": [{"name": "Ada"}]}},
                 {**item, "details": {"attendees": [{"name": " "}]}},
                 {**item, "details": {"attendees": [{"name": "A"}, {"name": "B"}]}},  # two names, one ticket
                 {**item, "details": {"attendees": [{"name": "x" * 201}]}}):
        refused = await client.post("/api/cart/lines", headers=h, json=body)
        assert refused.status_code == 422, (body, refused.text)
    assert await _lines(engine) == []
    made = await client.post("/api/cart/lines", headers=h, json={**item, "details": {"attendees": [{"name": "Ada"}]}})
    assert made.status_code == 201
    # Adding to the named line without names is refused too; the line keeps its one named ticket.
    more = await client.post("/api/cart/lines", headers=h, json={**item, "quantity": 1})
    assert more.status_code == 422
    [line] = await _lines(engine)
    assert line.quantity == 1 and _names(line) == ["Ada"]


async def test_a_members_only_ticket_on_the_no_js_path_looks_absent_to_a_visitor(
        client: Any, engine: AsyncEngine, settings: Settings) -> None:
    assert (await signup(client, "mira")).status_code == 303
    async with async_sessionmaker(engine, expire_on_commit=False)() as session:
        event, ticket = await _ticketed(session, settings, capacity=3)
        await session.execute(update(Event).where(Event.id == event.id).values(
            visibility=MEMBERS, title="Members' kiln supper"))
        await session.commit()
    member = await client.get(f"/cart/add?source=events&item={ticket.id}&quantity=1")
    assert member.status_code == 303 and (await client.get(member.headers["location"])).status_code == 200

    client.cookies.clear()
    hidden = await client.get(f"/cart/add?source=events&item={ticket.id}&quantity=1")
    absent = await client.get(f"/cart/add?source=events&item={ABSENT}&quantity=1")
    assert hidden.status_code == absent.status_code == 404
    assert hidden.content == absent.content and "location" not in hidden.headers
    assert "kiln supper" not in hidden.text and str(ticket.id) not in hidden.text
    assert (await client.get(f"/events/{event.slug}/tickets?q-{ticket.id}=1")).status_code == 404
    token = await _token(client)
    for item in (str(ticket.id), ABSENT):
        posted = await client.post("/cart/add", data={"source": "events", "item": item, "quantity": "1",
                                                      "_csrf_token": token})
        assert posted.status_code == 404 and "location" not in posted.headers
    bought = await client.post(f"/events/{event.slug}/tickets", data=_form(event, ticket, token, 1, "Eve"))
    assert bought.status_code == 404
    async with async_sessionmaker(engine, expire_on_commit=False)() as session:
        assert (await session.execute(select(func.count()).select_from(OrderLine))).scalar_one() == 0
