"""Bookings, the waiting list, tickets and check-in (issue 18 items 4, 5 and 9), through HTTP and,
for the races, through the service in concurrent transactions. Both databases."""

from __future__ import annotations

import asyncio
import re
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.forms import InputProblems
from app.jobs import Job
from domains.account.models import User
from domains.account.services import TokenService
from domains.events.booking_models import CONFIRMED, WAITING, Booking, CheckIn, EventQuota, Position
from domains.events.models import Event
from domains.events.services.bookings import BookingService
from domains.events.services.events import EventForm, EventService
from tests.helpers.web import CSRF_FIELD, login, signup

pytestmark = pytest.mark.anyio

DAY = date.today() + timedelta(days=10)


async def _member(client: Any, engine: AsyncEngine, username: str, *, admin: bool = False) -> None:
    client.cookies.clear()
    assert (await signup(client, username)).status_code == 303
    if admin:
        async with async_sessionmaker(engine)() as session, session.begin():
            user = (await session.execute(select(User).where(User.username == username))).scalar_one()
            user.is_admin = True


async def _as(client: Any, username: str) -> None:
    client.cookies.clear()
    assert (await login(client, username)).status_code == 303


async def _event(engine: AsyncEngine, capacity: int = 3, **extra: str) -> Event:
    async with async_sessionmaker(engine, expire_on_commit=False)() as session, session.begin():
        return await EventService(session).save(EventForm(
            title="Bread workshop", tz="Europe/London", start_date=DAY.isoformat(), start_time="18:00",
            end_time="20:00", capacity=str(capacity), **extra))


def _key() -> str:
    return f"{DAY:%Y%m%d}T180000"


async def _book(client: Any, quantity: int = 1, **extra: str) -> Any:
    page = await client.get("/events/bread-workshop/book")
    assert page.status_code == 200, page.text[:300]
    token = CSRF_FIELD.search(page.text)
    assert token
    count = quantity if isinstance(quantity, int) else 1  # a bad quantity (a string) names one place
    names = {f"attendee_{i}": f"Guest {i}" for i in range(1, min(count, 10) + 1)}
    data = {"occurrence": _key(), "quantity": str(quantity), "name": "A Member", "email": "member@example.org",
            "_csrf_token": token.group(1), **names, **extra}
    return await client.post("/events/bread-workshop/book", data=data)


async def _states(engine: AsyncEngine) -> list[tuple[str, int]]:
    async with AsyncSession(engine) as session:
        rows = await session.execute(select(Booking.state, Booking.quantity).order_by(Booking.created_at))
        return [(s, q) for s, q in rows.tuples()]


async def _mails(engine: AsyncEngine, tag: str) -> int:
    async with AsyncSession(engine) as session:
        jobs = (await session.execute(select(Job).where(Job.kind == "mail.send"))).scalars().all()
        return sum(1 for j in jobs if j.payload["mail"]["tag"] == tag)


async def test_members_book_fill_the_date_wait_and_are_promoted(client: Any, engine: AsyncEngine) -> None:
    await _event(engine, capacity=3)
    await _member(client, engine, "ann")
    first = await _book(client, 2)
    assert first.status_code == 303 and first.headers["location"] == "/account/bookings"
    mine = await client.get("/account/bookings")
    assert mine.status_code == 200 and mine.text.count("/events/tickets/") == 2 and "booked" in mine.text
    assert await _mails(engine, "events-confirmed") == 1

    await _member(client, engine, "cat")
    assert (await _book(client, 1)).status_code == 303  # the last place: cat is booked
    await _member(client, engine, "ben")
    assert (await _book(client, 2)).status_code == 303  # full: ben waits
    assert await _states(engine) == [(CONFIRMED, 2), (CONFIRMED, 1), (WAITING, 2)]
    assert await _mails(engine, "events-waiting") == 1
    await _as(client, "cat")

    # Cat cancels: one place is not enough for ben's two, so he keeps waiting.
    page = await client.get("/account/bookings")
    cancel_path = re.search(r'action="(/account/bookings/[0-9a-f-]+/cancel)"', page.text)
    token = CSRF_FIELD.search(page.text)
    assert cancel_path and token
    # Another member cannot cancel it (it looks absent).
    await _member(client, engine, "dan")
    dan_token = CSRF_FIELD.search((await client.get("/events/bread-workshop/book")).text)
    assert dan_token
    assert (await client.post(cancel_path.group(1), data={"_csrf_token": dan_token.group(1)})).status_code == 404
    await _as(client, "cat")
    token = CSRF_FIELD.search((await client.get("/account/bookings")).text)
    assert token
    assert (await client.post(cancel_path.group(1), data={"_csrf_token": token.group(1)})).status_code == 303
    assert await _states(engine) == [(CONFIRMED, 2), ("cancelled", 1), (WAITING, 2)]

    # Ann cancels: three places free, ben's two are offered to him (held) and he accepts the offer.
    await _as(client, "ann")
    page = await client.get("/account/bookings")
    cancel_path = re.search(r'action="(/account/bookings/[0-9a-f-]+/cancel)"', page.text)
    token = CSRF_FIELD.search(page.text)
    assert cancel_path and token
    assert (await client.post(cancel_path.group(1), data={"_csrf_token": token.group(1)})).status_code == 303
    assert await _states(engine) == [("cancelled", 2), ("cancelled", 1), (WAITING, 2)]
    assert await _mails(engine, "events-offer") == 1
    await _as(client, "ben")
    page = await client.get("/account/bookings")
    offer = re.search(r'href="(/account/bookings/offer/[^"]+)"', page.text)
    assert offer
    token = CSRF_FIELD.search((await client.get(offer.group(1))).text)
    assert token
    assert (await client.post(offer.group(1), data={"_csrf_token": token.group(1)})).status_code == 303
    assert await _states(engine) == [("cancelled", 2), ("cancelled", 1), (CONFIRMED, 2)]
    async with AsyncSession(engine) as session:
        quota = (await session.execute(select(EventQuota))).scalar_one()
        assert (quota.capacity, quota.taken) == (3, 2)
        assert (await session.execute(select(func.count()).select_from(Position).where(
            Position.cancelled.is_(False)))).scalar_one() == 2


@pytest.mark.parametrize(("data", "field", "message"), [
    ({"quantity": "0"}, "quantity", "from 1 to 10"),
    ({"quantity": "11"}, "quantity", "from 1 to 10"),
    ({"quantity": "lots"}, "quantity", "from 1 to 10"),
    ({"occurrence": "20200101T180000"}, "occurrence", "past or not one of"),
    ({"occurrence": "garbage"}, "occurrence", "past or not one of"),
    ({"email": "not-an-address"}, "email", "email address"),
    ({"name": "  "}, "name", "Give the name"),
    ({"attendee_2": "b"}, "attendees", "2 attendees named for 1 place"),
    ({"quantity": "2", "attendee_1": "Ann"}, "attendees", "attendee 2 has no name"),
    ({"quantity": "4"}, "quantity", "This event has 3 places a date"),
])
async def test_bad_bookings_are_named_and_write_nothing(client: Any, engine: AsyncEngine, data: dict[str, str],
                                                        field: str, message: str) -> None:
    await _event(engine)
    await _member(client, engine, "ann")
    response = await _book(client, **data)
    assert response.status_code == 422 and message in response.text and f'id="e-{field}"' in response.text
    assert await _states(engine) == []


async def test_events_without_places_or_cancelled_take_no_bookings(client: Any, engine: AsyncEngine) -> None:
    async with async_sessionmaker(engine, expire_on_commit=False)() as session, session.begin():
        await EventService(session).save(EventForm(title="Talk", tz="Europe/London", start_date=DAY.isoformat(),
                                                   start_time="18:00", end_time="19:00"))
    await _event(engine, status="cancelled")
    await _member(client, engine, "ann")
    assert (await client.get("/events/talk/book")).status_code == 404
    refused = await _book(client)
    assert refused.status_code == 422 and "cancelled" in refused.text
    anonymous = client.cookies.clear() or await client.get("/events/bread-workshop/book")
    assert anonymous.status_code in (302, 303, 401)


async def test_tickets_and_check_in_follow_pretix(client: Any, engine: AsyncEngine) -> None:
    await _event(engine, capacity=5)
    other = await _event_named(engine, "other-night")
    await _member(client, engine, "ann")
    assert (await _book(client, 2, attendee_1="Ann", attendee_2="Ann's friend")).status_code == 303
    async with AsyncSession(engine) as session:
        secrets_ = list((await session.execute(select(Position.secret).order_by(Position.created_at))).scalars())
    assert len(secrets_) == 2 and all(len(s) >= 32 for s in secrets_)

    client.cookies.clear()
    ticket = await client.get(f"/events/tickets/{secrets_[0]}")
    assert ticket.status_code == 200 and "<svg" in ticket.text and "Ann" in ticket.text
    assert "no-store" in ticket.headers["cache-control"] and ticket.headers["x-robots-tag"] == "noindex"
    assert (await client.get("/events/tickets/not-a-ticket")).status_code == 404

    await _member(client, engine, "ada", admin=True)
    async with async_sessionmaker(engine)() as session, session.begin():
        ada = (await session.execute(select(User).where(User.username == "ada"))).scalar_one()
        _row, staff = await TokenService(session).issue(ada, "door", ["events"])
        _row, wrong = await TokenService(session).issue(ada, "api", ["api"])
        ann = (await session.execute(select(User).where(User.username == "ann"))).scalar_one()
        _row, member = await TokenService(session).issue(ann, "door", ["events"])
    client.cookies.clear()
    url = "/events/bread-workshop/checkin/redeem"

    def bearer(secret: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {secret}"}

    ok = await client.post(url, json={"secret": secrets_[0], "type": "entry", "nonce": "n-1"}, headers=bearer(staff))
    assert ok.status_code == 201 and ok.json()["status"] == "ok"
    assert ok.json()["position"]["attendee_name"] == "Ann"
    retried = await client.post(url, json={"secret": secrets_[0], "nonce": "n-1"}, headers=bearer(staff))
    assert retried.status_code == 201 and retried.json()["status"] == "ok"  # same scan, same answer
    again = await client.post(url, json={"secret": secrets_[0], "nonce": "n-2"}, headers=bearer(staff))
    assert again.status_code == 400 and again.json()["reason"] == "already_redeemed"
    out = await client.post(url, json={"secret": secrets_[0], "type": "exit", "nonce": "n-3"}, headers=bearer(staff))
    assert out.status_code == 201
    back_in = await client.post(url, json={"secret": secrets_[0], "nonce": "n-4"}, headers=bearer(staff))
    assert back_in.status_code == 201
    unknown = await client.post(url, json={"secret": "forged", "nonce": "n-5"}, headers=bearer(staff))
    assert unknown.status_code == 404 and unknown.json()["reason"] == "invalid"
    elsewhere = await client.post(f"/events/{other}/checkin/redeem", json={"secret": secrets_[1]},
                                  headers=bearer(staff))
    assert elsewhere.status_code == 404 and elsewhere.json()["reason"] == "invalid"
    assert (await client.post(url, json={"secret": secrets_[1]}, headers=bearer(member))).status_code == 404
    assert (await client.post(url, json={"secret": secrets_[1]}, headers=bearer(wrong))).status_code == 403
    assert (await client.post(url, json={"secret": secrets_[1]})).status_code == 401
    assert (await client.post(url, json={"secret": secrets_[1], "type": "sideways"},
                              headers=bearer(staff))).status_code == 400
    async with AsyncSession(engine) as session:
        assert (await session.execute(select(func.count()).select_from(CheckIn))).scalar_one() == 3

    # The door page: typed code, big answer, counts.
    await _as(client, "ada")
    page = await client.get("/events/bread-workshop/checkin")
    assert page.status_code == 200 and "1 of 2 checked in" in page.text
    token = CSRF_FIELD.search(page.text)
    nonce = re.search(r'name="nonce" value="([^"]+)"', page.text)
    assert token and nonce
    door = await client.post("/events/bread-workshop/checkin", data={
        "secret": secrets_[1], "nonce": nonce.group(1), "type": "entry", "_csrf_token": token.group(1)})
    assert door.status_code == 200 and "checkin-ok" in door.text and "Ann&#39;s friend" in door.text
    twice = await client.post("/events/bread-workshop/checkin", data={
        "secret": secrets_[1], "nonce": "x", "type": "entry", "_csrf_token": token.group(1)})
    assert twice.status_code == 422 and "Already checked in" in twice.text


async def _event_named(engine: AsyncEngine, slug: str) -> str:
    async with async_sessionmaker(engine, expire_on_commit=False)() as session, session.begin():
        made = await EventService(session).save(EventForm(title=slug, slug=slug, tz="Europe/London",
                                                          start_date=DAY.isoformat(), start_time="20:00",
                                                          end_time="21:00", capacity="5"))
        return made.slug


async def test_the_bookings_api_answers_201_or_409_with_the_waiting_list(client: Any, engine: AsyncEngine) -> None:
    await _event(engine, capacity=2)
    await _member(client, engine, "ada", admin=True)
    async with async_sessionmaker(engine)() as session, session.begin():
        ada = (await session.execute(select(User).where(User.username == "ada"))).scalar_one()
        _row, secret = await TokenService(session).issue(ada, "bookings", ["events"])
    client.cookies.clear()
    headers = {"Authorization": f"Bearer {secret}"}
    made = await client.post("/api/events/bread-workshop/bookings",
                             json={"name": "Zoe", "email": "zoe@example.org", "quantity": 2,
                                   "attendees": ["Zoe", {"name": "Zed"}]}, headers=headers)
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["waiting_list"] is False and len(body["positions"]) == 2 and body["occurrence"] == _key()
    await _member(client, engine, "yan")
    async with async_sessionmaker(engine)() as session, session.begin():
        yan = (await session.execute(select(User).where(User.username == "yan"))).scalar_one()
        _row, yan_secret = await TokenService(session).issue(yan, "bookings", ["events"])
    client.cookies.clear()
    full = await client.post("/api/events/bread-workshop/bookings",
                             json={"name": "Yan", "email": "yan@example.org"},
                             headers={"Authorization": f"Bearer {yan_secret}"})
    assert full.status_code == 409 and full.json()["waiting_list"] is True and full.json()["positions"] == []
    assert await _states(engine) == [(CONFIRMED, 2), (WAITING, 1)]  # the waiting entry was kept
    twice = await client.post("/api/events/bread-workshop/bookings",
                              json={"name": "Zoe", "email": "zoe@example.org"}, headers=headers)
    assert twice.status_code == 422 and "already booked this date" in twice.text  # one booking per member
    async with AsyncSession(engine) as session:  # booked as the token's member, who can cancel it
        assert (await session.execute(select(func.count()).select_from(Booking).where(Booking.user_id.is_(None)))
                ).scalar_one() == 0
    bad = await client.post("/api/events/bread-workshop/bookings",
                            json={"name": "X", "email": "nope", "quantity": 99}, headers=headers)
    assert bad.status_code == 422 and "quantity" in bad.text and "email" in bad.text
    unknown = await client.post("/api/events/bread-workshop/bookings", json={"nme": "X"}, headers=headers)
    assert unknown.status_code == 400
    assert (await client.post("/api/events/nope/bookings", json={"name": "X", "email": "x@example.org"},
                              headers=headers)).status_code == 404


async def test_concurrent_bookings_never_overbook(engine: AsyncEngine, db_kind: str) -> None:
    """50 people (20 on SQLite) race for the last 5 places: exactly 5 are booked, the rest wait."""
    racers = 50 if db_kind == "postgresql" else 20
    event = await _event(engine, capacity=5)
    maker = async_sessionmaker(engine, expire_on_commit=False)

    async def one(i: int) -> str:
        for attempt in range(20):
            try:
                async with maker() as session, session.begin():
                    found = await session.get(Event, event.id)
                    assert found is not None
                    booking = await BookingService(session).book(found, _key(), user=None, name=f"P{i}",
                                                                 email=f"p{i}@example.org", quantity=1)
                    return booking.state
            except Exception as exc:  # SQLite's single writer answers "database is locked" under a pile-up
                if "locked" not in str(exc) or attempt == 19:
                    raise
                await asyncio.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    states = await asyncio.gather(*(one(i) for i in range(racers)))
    assert states.count(CONFIRMED) == 5 and states.count(WAITING) == racers - 5
    async with AsyncSession(engine) as session:
        quota = (await session.execute(select(EventQuota))).scalar_one()
        assert quota.taken == 5 <= quota.capacity
        assert (await session.execute(select(func.count()).select_from(Position))).scalar_one() == 5


async def test_a_booking_larger_than_what_is_left_is_refused_not_parked(client: Any, engine: AsyncEngine) -> None:
    await _event(engine, capacity=3)
    await _member(client, engine, "ann")
    assert (await _book(client, 2)).status_code == 303
    await _member(client, engine, "ben")
    refused = await _book(client, 2)
    assert refused.status_code == 422 and "Only 1 place is left" in refused.text
    assert (await _book(client, 1)).status_code == 303
    await _member(client, engine, "cat")
    assert (await _book(client, 2)).status_code == 303  # full: the waiting list takes it
    assert await _states(engine) == [(CONFIRMED, 2), (CONFIRMED, 1), (WAITING, 2)]


async def test_dates_with_bookings_cannot_be_moved_from_under_them(client: Any, engine: AsyncEngine) -> None:
    await _event(engine, capacity=3)
    await _member(client, engine, "ann")
    assert (await _book(client, 1)).status_code == 303
    async with async_sessionmaker(engine, expire_on_commit=False)() as session:
        service = EventService(session)
        event = await service.get("bread-workshop")
        assert event is not None
        base = {"title": "Bread workshop", "slug": "bread-workshop", "tz": "Europe/London",
                "start_date": DAY.isoformat(), "end_time": "20:00", "capacity": "3"}
        with pytest.raises(InputProblems) as moved:
            await service.save(EventForm(**base, start_time="19:00"), event=event)
        assert "strand their tickets" in moved.value.errors["start_date"]
        await session.rollback()
    async with async_sessionmaker(engine, expire_on_commit=False)() as session, session.begin():
        service = EventService(session)
        event = await service.get("bread-workshop")
        assert event is not None
        kept = await service.save(EventForm(**base, start_time="18:00", status="postponed"), event=event)
        assert kept.status == "postponed"  # telling people is allowed; moving the dates is not


async def test_two_cancels_of_one_booking_return_its_places_once(engine: AsyncEngine) -> None:
    event = await _event(engine, capacity=2)
    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with maker() as session, session.begin():
        found = await session.get(Event, event.id)
        assert found is not None
        first = await BookingService(session).book(found, _key(), user=None, name="A", email="a@example.org",
                                                   quantity=1)
        await BookingService(session).book(found, _key(), user=None, name="B", email="b@example.org", quantity=1)
    # Two requests load the booking while it is confirmed, then both cancel it.
    one, two = maker(), maker()
    try:
        loaded = []
        for session in (one, two):
            booking, found = await session.get(Booking, first.id), await session.get(Event, event.id)
            assert booking is not None and booking.state == CONFIRMED and found is not None
            loaded.append((session, booking, found))
        for session, booking, found in loaded:
            await BookingService(session).cancel(booking, found)
            await session.commit()
    finally:
        await one.close()
        await two.close()
    async with AsyncSession(engine) as session:
        quota = (await session.execute(select(EventQuota))).scalar_one()
        assert quota.taken == 1  # B still holds its place


async def test_check_in_is_for_the_date_at_the_door(client: Any, engine: AsyncEngine) -> None:
    event = await _event(engine, capacity=5, rrule="FREQ=WEEKLY;COUNT=3")
    maker = async_sessionmaker(engine, expire_on_commit=False)
    later = f"{DAY + timedelta(days=7):%Y%m%d}T180000"
    async with maker() as session, session.begin():
        found = await session.get(Event, event.id)
        assert found is not None
        service = BookingService(session)
        now_booking = await service.book(found, _key(), user=None, name="Now", email="n@example.org", quantity=1)
        next_booking = await service.book(found, later, user=None, name="Later", email="l@example.org", quantity=1)
    async with maker() as session:
        secret_now = (await session.execute(select(Position.secret).where(Position.booking_id == now_booking.id))
                      ).scalar_one()
        secret_later = (await session.execute(select(Position.secret).where(
            Position.booking_id == next_booking.id))).scalar_one()
    async with maker() as session, session.begin():
        found = await session.get(Event, event.id)
        assert found is not None
        service = BookingService(session)
        wrong_day = await service.redeem(found, secret_later, nonce="a")
        assert (wrong_day.status, wrong_day.reason) == ("error", "invalid_time")
        assert wrong_day.position is not None and str((DAY + timedelta(days=7)).day) in wrong_day.position["date"]
        pasted = await service.redeem(found, f"http://127.0.0.1:8000/events/tickets/{secret_now}", nonce="b")
        assert pasted.status == "ok"
        # A used nonce replays only for its own ticket: a forged code with it is still unknown.
        forged = await service.redeem(found, "FORGED", nonce="b")
        assert (forged.status, forged.reason) == ("error", "invalid")
        chosen = await service.redeem(found, secret_later, nonce="c", occurrence=later)
        assert chosen.status == "ok"


async def test_feed_filters_with_control_characters_are_refused(client: Any, engine: AsyncEngine) -> None:
    await _event(engine)
    assert (await client.get("/events.ics?tag=x%0D%0ABEGIN:VEVENT")).status_code == 404
    css = await client.get("/events/calendars.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert ".cal-events { --cal: #2f6f4f; }" in css.text
