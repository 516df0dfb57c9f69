"""Issue 18's "Bad input" cases the other event tests leave out, each with a clear answer and
nothing written (both databases):

- a ticket whose booking was cancelled, at the door: Pretix's ``canceled``, no check-in;
- a replayed scan of the door page's form (the same nonce): the same answer, one check-in;
- a date a series leaves out (EXDATE), and a series' date that has passed: no booking, no quota row.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.forms import InputProblems
from domains.account.models import User
from domains.events.booking_models import Booking, CheckIn, EventQuota, Position
from domains.events.models import Event
from domains.events.services.bookings import BookingService
from domains.events.services.events import EventForm, EventService
from tests.helpers.web import CSRF_FIELD, signup

pytestmark = pytest.mark.anyio

DAY = date.today() + timedelta(days=10)


async def _event(engine: AsyncEngine, **extra: str) -> Event:
    async with async_sessionmaker(engine, expire_on_commit=False)() as session, session.begin():
        fields = {"title": "Bread workshop", "start_date": DAY.isoformat(), **extra}
        return await EventService(session).save(EventForm(
            tz="Europe/London", start_time="18:00", end_time="20:00", capacity="5", **fields))


async def _book_one(engine: AsyncEngine, event: Event, key: str) -> tuple[Booking, str]:
    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with maker() as session, session.begin():
        found = await session.get(Event, event.id)
        assert found is not None
        booking = await BookingService(session).book(found, key, user=None, name="Ann", email="ann@example.org",
                                                     quantity=1)
    async with maker() as session:
        secret = (await session.execute(select(Position.secret).where(Position.booking_id == booking.id))
                  ).scalar_one()
    return booking, secret


async def _count(engine: AsyncEngine, model: Any) -> int:
    async with AsyncSession(engine) as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def test_a_cancelled_ticket_is_refused_at_the_door_and_not_checked_in(engine: AsyncEngine) -> None:
    event = await _event(engine)
    booking, secret = await _book_one(engine, event, f"{DAY:%Y%m%d}T180000")
    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with maker() as session, session.begin():
        found, loaded = await session.get(Event, event.id), await session.get(Booking, booking.id)
        assert found is not None and loaded is not None
        await BookingService(session).cancel(loaded, found)
    async with maker() as session, session.begin():
        found = await session.get(Event, event.id)
        assert found is not None
        answer = await BookingService(session).redeem(found, secret, nonce="after-cancel")
        assert (answer.status, answer.reason, answer.http_status) == ("error", "canceled", 400)
        assert answer.position is not None and answer.position["attendee_name"] == "Ann"
        forced = await BookingService(session).redeem(found, secret, nonce="forced", force=True)
        assert (forced.status, forced.reason) == ("error", "canceled")  # force is for re-entry, not cancellation
    assert await _count(engine, CheckIn) == 0


async def test_a_replayed_door_form_gives_the_same_answer_and_one_check_in(client: Any, engine: AsyncEngine
                                                                          ) -> None:
    event = await _event(engine)
    _, secret = await _book_one(engine, event, f"{DAY:%Y%m%d}T180000")
    assert (await signup(client, "door")).status_code == 303
    async with async_sessionmaker(engine)() as session, session.begin():
        (await session.execute(select(User).where(User.username == "door"))).scalar_one().is_admin = True
    page = await client.get("/events/bread-workshop/checkin")
    assert page.status_code == 200
    assert "camera=(self)" in page.headers["permissions-policy"]  # the door page alone may use the camera
    token, nonce = CSRF_FIELD.search(page.text), re.search(r'name="nonce" value="([^"]+)"', page.text)
    assert token and nonce
    form = {"secret": secret, "nonce": nonce.group(1), "type": "entry", "_csrf_token": token.group(1)}
    first = await client.post("/events/bread-workshop/checkin", data=form)
    replayed = await client.post("/events/bread-workshop/checkin", data=form)  # a double tap, a resent POST
    for answer in (first, replayed):
        assert answer.status_code == 200 and "checkin-ok" in answer.text and "Ann" in answer.text
    assert await _count(engine, CheckIn) == 1
    fresh = await client.post("/events/bread-workshop/checkin", data={**form, "nonce": "another-scan"})
    assert fresh.status_code == 422 and "Already checked in" in fresh.text
    assert await _count(engine, CheckIn) == 1


async def test_an_excluded_or_past_date_of_a_series_takes_no_booking(engine: AsyncEngine) -> None:
    skipped = DAY + timedelta(days=7)
    event = await _event(engine, rrule="FREQ=WEEKLY;COUNT=3", exdates=skipped.isoformat())
    # dates 13 and 6 days ago passed; the third is tomorrow (not today: at 18:00 it would have begun)
    started = date.today() - timedelta(days=13)
    past = await _event(engine, title="Old series", start_date=started.isoformat(), rrule="FREQ=WEEKLY;COUNT=3")
    maker = async_sessionmaker(engine, expire_on_commit=False)
    for target, key in ((event, f"{skipped:%Y%m%d}T180000"), (past, f"{started:%Y%m%d}T180000"),
                        (past, f"{started + timedelta(days=7):%Y%m%d}T180000")):
        async with maker() as session, session.begin():
            found = await session.get(Event, target.id)
            assert found is not None
            with pytest.raises(InputProblems) as refused:
                await BookingService(session).book(found, key, user=None, name="Ann", email="ann@example.org",
                                                   quantity=1)
            assert "past or not one of this event's dates" in refused.value.errors["occurrence"], key
    assert await _count(engine, Booking) == 0 and await _count(engine, EventQuota) == 0
    # The series' next date still books (the refusals were about the dates, not the event).
    await _book_one(engine, past, f"{started + timedelta(days=14):%Y%m%d}T180000")
    assert await _count(engine, Booking) == 1
