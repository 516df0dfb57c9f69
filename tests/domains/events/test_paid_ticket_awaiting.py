"""Unpaid ticket orders are visible, and "pay later" says how to pay (the new-user walk: until
paid, /account/tickets said "No upcoming tickets", the attendee list "Nobody is booked", and no
page said how to pay). Checkout and the order page list the attendees; a guest is offered sign in
and sign up at checkout; no stock code for tickets; no "Fulfil everything left" on a tickets-only
order; an unknown ticket at the door says what to do next. Both databases."""

from __future__ import annotations

import re
from typing import Any

import msgspec
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from app.settings import Settings
from domains.account.models import User
from domains.cart.models import Order
from domains.cart.services import CartService
from domains.events.booking_models import TicketType
from domains.events.models import Event
from domains.payments.services import payment_instructions
from tests.domains.events.test_paid_tickets import _ticketed
from tests.helpers.web import CSRF_FIELD, login, signup

pytestmark = pytest.mark.anyio

IDEM = re.compile(r'name="idempotency_key" value="([^"]+)"')
STAFF_MAIL = "coop@example.org"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, cart_staff_email=STAFF_MAIL)


def test_payment_instructions_default_names_the_contact_and_a_setting_replaces_them(settings: Settings) -> None:
    default = payment_instructions(settings, "RA-000123")
    assert STAFF_MAIL in default and "RA-000123" in default
    custom = msgspec.structs.replace(settings, payment_instructions="Bank transfer to Co-op, reference {number}.")
    assert payment_instructions(custom, "RA-000123") == "Bank transfer to Co-op, reference RA-000123."
    # No staff address and a no-reply sender: no made-up address, still a way to pay.
    bare = msgspec.structs.replace(settings, cart_staff_email="", mail_from="Rose Ash <noreply@example.org>")
    text = payment_instructions(bare, "RA-1")
    assert "noreply" not in text and "contact the co-op" in text and "RA-1" in text
    sender = msgspec.structs.replace(settings, cart_staff_email="", mail_from="Co-op <hello@example.org>")
    assert "hello@example.org" in payment_instructions(sender)


async def _names_to_cart(client: Any, event: Event, ticket: TicketType, *names: str) -> str:
    page = await client.get(f"/events/{event.slug}/tickets", params={f"q-{ticket.id}": str(len(names))})
    token = CSRF_FIELD.search(page.text)
    assert token
    added = await client.post(f"/events/{event.slug}/tickets", data={
        "_csrf_token": token.group(1), f"q-{ticket.id}": str(len(names)),
        **{f"a-{ticket.id}-{i}": n for i, n in enumerate(names, start=1)}})
    assert added.status_code == 303, added.text
    return token.group(1)


async def test_an_unpaid_ticket_order_shows_everywhere_with_how_to_pay(client: Any, engine: AsyncEngine,
                                                                      settings: Settings) -> None:
    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with maker() as session:
        event, ticket = await _ticketed(session, settings, capacity=20)
    # A guest at checkout is offered sign in and sign up (with the way back), and may go on as a guest.
    guest_csrf = await _names_to_cart(client, event, ticket, "Gus")
    assert (await client.post("/cart/checkout", data={"_csrf_token": guest_csrf})).status_code == 303
    guest = await client.get("/cart/checkout")
    assert 'href="/account/login?next=/cart/"' in guest.text and 'href="/account/signup?next=/cart/"' in guest.text
    assert "check out as a guest" in guest.text and "For Gus" in guest.text
    client.cookies.clear()

    assert (await signup(client, "mara")).status_code == 303
    csrf = await _names_to_cart(client, event, ticket, "Mara", "Ines")
    assert (await client.post("/cart/checkout", data={"_csrf_token": csrf})).status_code == 303
    form = await client.get("/cart/checkout")
    assert form.status_code == 200 and "For Mara, Ines" in form.text
    assert "/account/login?next" not in form.text  # a member is signed in already
    assert STAFF_MAIL in form.text  # pay later says how to pay
    key = IDEM.search(form.text)
    assert key
    placed = await client.post("/cart/place", data={"_csrf_token": csrf, "idempotency_key": key.group(1),
                                                    "email": "mara@example.org", "payment": "collection"})
    assert placed.status_code == 303, placed.text[:300]
    async with maker() as session:
        number = str((await session.execute(select(Order.number).where(Order.email == "mara@example.org")))
                     .scalar_one())
    order_page = await client.get(placed.headers["location"])
    assert "For Mara, Ines" in order_page.text and "TICKET-" not in order_page.text
    assert STAFF_MAIL in order_page.text and number in order_page.text
    # The member's tickets page: the order awaiting payment, not "nothing".
    mine = await client.get("/account/tickets")
    assert mine.status_code == 200
    assert f"2 tickets for {event.title}" in mine.text and "awaiting payment — order" in mine.text
    assert f'href="/account/orders/{number}"' in mine.text and STAFF_MAIL in mine.text

    # Staff: the attendee list shows the places held by the unpaid order, and asks no dietary column.
    client.cookies.clear()
    assert (await signup(client, "staff")).status_code == 303
    async with maker() as session, session.begin():
        await session.execute(update(User).where(User.username == "staff").values(is_admin=True))
    client.cookies.clear()
    assert (await login(client, "staff")).status_code == 303
    listed = await client.get(f"/events/{event.slug}/attendees", params={"date": ticket.occurrence})
    assert listed.status_code == 200 and "Nobody is booked" not in listed.text
    assert "Awaiting payment" in listed.text and number in listed.text and "Mara, Ines" in listed.text
    assert "Dietary needs" not in listed.text
    admin = await client.get(f"/cart/admin/orders/{number}")
    assert admin.status_code == 200 and "Fulfil everything left" not in admin.text
    # Once paid: tickets, and the order no longer waits anywhere.
    async with maker() as session:
        order = await CartService(session, settings).by_number(number)
        assert order is not None and await CartService(session, settings).mark_paid(order, actor="staff")
        await session.commit()
    after = await client.get(f"/events/{event.slug}/attendees", params={"date": ticket.occurrence})
    assert "Awaiting payment" not in after.text and "Mara" in after.text and "Ines" in after.text
    assert "Fulfil everything left" not in (await client.get(f"/cart/admin/orders/{number}")).text
    # The door: an unknown code says what to do next.
    door = await client.get(f"/events/{event.slug}/checkin")
    token = CSRF_FIELD.search(door.text)
    assert token
    unknown = await client.post(f"/events/{event.slug}/checkin", data={"_csrf_token": token.group(1),
                                                                       "secret": "not-a-ticket", "type": "entry"})
    assert "Unknown ticket" in unknown.text and "Check the code" in unknown.text
    assert f'href="/events/{event.slug}/attendees"' in unknown.text
