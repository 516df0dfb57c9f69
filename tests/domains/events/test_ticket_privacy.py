"""A ticket page at ``/events/tickets/<secret>`` is a capability link: whoever holds it sees the
ticket (event, date, attendee's name, code); the dietary needs and the booking's answer only the
signed-in member who booked, or staff. A different member and an anonymous holder see neither."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from domains.events.booking_models import Position
from tests.domains.events.test_booking_extras import KEY, _as, _event, _member

pytestmark = pytest.mark.anyio


async def test_only_the_booker_and_staff_see_dietary_needs_and_answers(client: Any, engine: AsyncEngine) -> None:
    await _event(engine, capacity=5, options={"ask_dietary": True, "question": "Allergies?"})
    await _member(client, engine, "staff", admin=True)
    await _member(client, engine, "other")
    await _member(client, engine, "ann")
    page = await client.get("/events/bread-workshop/book")
    assert page.status_code == 200, page.text[:300]
    from tests.helpers.web import CSRF_FIELD

    token = CSRF_FIELD.search(page.text)
    assert token
    booked = await client.post("/events/bread-workshop/book", data={
        "occurrence": KEY, "quantity": "1", "name": "Ann", "email": "ann@example.org", "_csrf_token": token.group(1),
        "attendee_1": "Ann Attendee", "dietary_1": "no peanuts", "answer": "Sesame too"})
    assert booked.status_code == 303, booked.text[:500]
    async with AsyncSession(engine) as session:
        secret = (await session.execute(select(Position.secret))).scalar_one()
    url = f"/events/tickets/{secret}"

    async def ticket_as(username: str | None) -> str:
        if username:
            await _as(client, username)
        else:
            client.cookies.clear()
        response = await client.get(url)
        assert response.status_code == 200, (username, response.status_code)
        return str(response.text)

    for viewer in (None, "other"):
        shown = await ticket_as(viewer)
        assert "Bread workshop" in shown and "Ann Attendee" in shown and secret in shown  # the ticket itself
        assert "no peanuts" not in shown and "Sesame too" not in shown and "Dietary" not in shown, viewer
        assert "ann@example.org" not in shown, viewer
    for viewer in ("ann", "staff"):
        shown = await ticket_as(viewer)
        assert "Dietary needs: no peanuts" in shown and "Sesame too" in shown, viewer
    client.cookies.clear()
    assert (await client.get("/events/tickets/not-a-ticket")).status_code == 404
