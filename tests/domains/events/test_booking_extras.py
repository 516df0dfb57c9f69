"""Booking questions, expiring waiting-list offers, the cancellation cutoff, members-only events and
the HTML booking mails (issue 18 item 4 and item 1's ``members`` visibility). Both databases; the
offer races run on each (PostgreSQL: real concurrent transactions)."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.forms import InputProblems
from app.jobs import Job
from app.mail.message import OutgoingMail, render_bodies
from app.settings import Settings
from domains.account.models import User
from domains.account.services import TokenService
from domains.events.booking_models import CANCELLED, CONFIRMED, WAITING, Booking, BookingOptions, EventQuota, Position
from domains.events.models import Event
from domains.events.services.bookings import BookingService
from domains.events.services.events import EventForm, EventService
from domains.events.services.options import save_options
from tests.helpers.web import CSRF_FIELD, login, signup

pytestmark = pytest.mark.anyio

DAY = date.today() + timedelta(days=10)
KEY = f"{DAY:%Y%m%d}T180000"


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


async def _token(client: Any, page: str) -> str:
    response = await client.get(page)
    assert response.status_code == 200, (page, response.status_code, response.text[:300])
    found = CSRF_FIELD.search(response.text)
    assert found
    return found.group(1)


async def _event(engine: AsyncEngine, capacity: int = 3, *, options: dict[str, Any] | None = None,
                 **extra: str) -> Event:
    fields: dict[str, str] = {"title": "Bread workshop", "tz": "Europe/London", "start_date": DAY.isoformat(),
                              "start_time": "18:00", "end_time": "20:00", "capacity": str(capacity), **extra}
    async with async_sessionmaker(engine, expire_on_commit=False)() as session, session.begin():
        event = await EventService(session).save(EventForm(**fields))
        if options is not None:
            await save_options(session, event, {"ask_dietary": False, "question": "", "question_required": False,
                                                "cancel_until_hours": 24, **options})
        return event


async def _count(engine: AsyncEngine, model: Any) -> int:
    async with AsyncSession(engine) as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def _mail_jobs(engine: AsyncEngine, tag: str) -> list[dict[str, Any]]:
    async with AsyncSession(engine) as session:
        jobs = (await session.execute(select(Job).where(Job.kind == "mail.send").order_by(Job.created_at))
                ).scalars().all()
        return [j.payload["mail"] for j in jobs if j.payload["mail"]["tag"] == tag]


# -- 1. booking questions ----------------------------------------------------------------------------

async def test_staff_set_the_questions_members_answer_them_and_staff_see_the_answers(
        client: Any, engine: AsyncEngine) -> None:
    await _member(client, engine, "ada", admin=True)
    token = await _token(client, "/events/admin/new")
    form = {"title": "Supper club", "tz": "Europe/London", "start_date": DAY.isoformat(), "start_time": "18:00",
            "end_time": "20:00", "capacity": "4", "status": "scheduled", "visibility": "public",
            "ask_dietary": "1", "question": "Anything we should know?", "question_required": "1",
            "cancel_until_hours": "48", "_csrf_token": token}
    bad = await client.post("/events/admin/", data={**form, "cancel_until_hours": "-3", "title": ""})
    assert bad.status_code == 422 and 'id="e-cancel_until_hours"' in bad.text and 'id="e-title"' in bad.text
    assert await _count(engine, Event) == 0 and await _count(engine, BookingOptions) == 0  # nothing written
    made = await client.post("/events/admin/", data=form)
    assert made.status_code == 303, made.text[:500]
    edit = await client.get("/events/admin/supper-club")
    assert 'value="Anything we should know?"' in edit.text and 'name="ask_dietary" value="1" checked' in edit.text
    assert 'value="48"' in edit.text

    await _member(client, engine, "ann")
    page = await client.get("/events/supper-club/book")
    assert "Anything we should know?" in page.text and 'name="dietary_2"' in page.text
    token = CSRF_FIELD.search(page.text)
    assert token
    base = {"occurrence": KEY, "quantity": "2", "name": "Ann", "email": "ann@example.org",
            "_csrf_token": token.group(1)}
    for data, field, message in [
        ({"attendee_1": "Ann"}, "attendees", "attendee 2 has no name"),
        ({"attendee_1": "Ann", "attendee_2": "Bo", "attendee_3": "Cy"}, "attendees", "3 attendees named for 2"),
        ({"attendee_1": "A" * 201, "attendee_2": "Bo"}, "attendee_1", "at most 200 characters"),
        ({"attendee_1": "Ann", "attendee_2": "Bo", "dietary_2": "x" * 201}, "dietary_2", "at most 200"),
        ({"attendee_1": "Ann", "attendee_2": "Bo", "answer": ""}, "answer", "Answer “Anything we should know?”"),
        ({"attendee_1": "Ann", "attendee_2": "Bo", "answer": "y" * 1001}, "answer", "At most 1,000 characters"),
    ]:
        refused = await client.post("/events/supper-club/book", data={**base, "answer": "fine", **data})
        assert refused.status_code == 422, (data, refused.status_code)
        assert message in refused.text and f'id="e-{field}"' in refused.text, (data, field)
    assert await _count(engine, Booking) == 0 and await _count(engine, Position) == 0

    booked = await client.post("/events/supper-club/book", data={
        **base, "attendee_1": "Ann", "dietary_1": "vegan", "attendee_2": "Bo <b>", "dietary_2": "",
        "answer": "We arrive late <i>ish</i>"})
    assert booked.status_code == 303
    async with AsyncSession(engine) as session:
        positions = (await session.execute(select(Position).order_by(Position.created_at))).scalars().all()
        assert [(p.attendee, p.dietary) for p in positions] == [("Ann", "vegan"), ("Bo <b>", "")]
        booking = (await session.execute(select(Booking))).scalar_one()
        assert booking.answer == "We arrive late <i>ish</i>"
    ticket = await client.get(f"/events/tickets/{positions[0].secret}")
    assert "Dietary needs: vegan" in ticket.text and "We arrive late &lt;i&gt;ish&lt;/i&gt;" in ticket.text
    mine = await client.get("/account/bookings")
    assert "Bo &lt;b&gt;" in mine.text and "<b>" not in mine.text.split("Your bookings", 1)[1]

    # Staff: the attendee list and the check-in answer show the answers; members cannot see them.
    assert (await client.get("/events/supper-club/attendees")).status_code in (403, 404)
    await _as(client, "ada")
    listing = await client.get(f"/events/supper-club/attendees?date={KEY}")
    assert listing.status_code == 200 and "private" in listing.headers["cache-control"]
    assert "<td>vegan</td>" in listing.text and "Bo &lt;b&gt;" in listing.text
    assert "We arrive late &lt;i&gt;ish&lt;/i&gt;" in listing.text and "2 attendees, 0 checked in" in listing.text
    async with AsyncSession(engine) as session:
        event = (await session.execute(select(Event))).scalar_one()
        answer = await BookingService(session).redeem(event, positions[0].secret, occurrence=KEY)
    assert answer.status == "ok" and answer.position is not None
    assert answer.position["dietary"] == "vegan" and answer.position["answer"] == "We arrive late <i>ish</i>"


async def test_the_api_takes_attendees_with_dietary_needs_and_names_bad_input(
        client: Any, engine: AsyncEngine) -> None:
    await _event(engine, capacity=5, options={"ask_dietary": True, "question": "Allergies?"})
    await _member(client, engine, "ada")
    async with async_sessionmaker(engine)() as session, session.begin():
        ada = (await session.execute(select(User).where(User.username == "ada"))).scalar_one()
        _row, secret = await TokenService(session).issue(ada, "bookings", ["events"])
    client.cookies.clear()
    headers = {"Authorization": f"Bearer {secret}"}
    url = "/api/events/bread-workshop/bookings"
    for body, key in [
        ({"quantity": 2, "attendees": [{"name": "Ada"}]}, "attendees"),
        ({"quantity": 1, "attendees": [{"name": "Ada"}, {"name": "Bea"}]}, "attendees"),
        ({"quantity": 2}, "attendees"),
        ({"quantity": 1, "attendees": [{"name": "Ada", "dietary": "n" * 201}]}, "dietary_1"),
        ({"quantity": 1, "attendees": [{"name": " "}]}, "attendees"),
    ]:
        refused = await client.post(url, json={"name": "Ada", "email": "ada@example.org", **body}, headers=headers)
        assert refused.status_code == 422, (body, refused.text)
        assert f"{key}: " in refused.json()["detail"], (body, refused.json())
    unknown = await client.post(url, json={"name": "Ada", "email": "ada@example.org",
                                           "attendees": [{"name": "Ada", "diet": "x"}]}, headers=headers)
    assert unknown.status_code == 400
    assert await _count(engine, Booking) == 0
    made = await client.post(url, json={"name": "Ada", "email": "ada@example.org", "quantity": 2,
                                        "attendees": [{"name": "Ada", "dietary": "no nuts"}, "Bea"],
                                        "answer": "Peanuts"}, headers=headers)
    assert made.status_code == 201, made.text
    body = made.json()
    assert [(p["attendee_name"], p["dietary"]) for p in body["positions"]] == [("Ada", "no nuts"), ("Bea", "")]
    assert body["answer"] == "Peanuts"


# -- 2. expiring waiting-list offers -------------------------------------------------------------------

async def test_a_freed_place_is_offered_accepted_or_lapses_to_the_next_in_line(
        client: Any, engine: AsyncEngine, settings: Settings) -> None:
    await _event(engine, capacity=1)
    for name in ("ann", "ben", "cat"):
        await _member(client, engine, name)
        token = await _token(client, "/events/bread-workshop/book")
        assert (await client.post("/events/bread-workshop/book", data={
            "occurrence": KEY, "quantity": "1", "name": name, "email": f"{name}@example.org", "attendee_1": name,
            "_csrf_token": token})).status_code == 303

    await _as(client, "ann")
    page = await client.get("/account/bookings")
    cancel = re.search(r'action="(/account/bookings/[0-9a-f-]+/cancel)"', page.text)
    token = CSRF_FIELD.search(page.text)
    assert cancel and token
    assert (await client.post(cancel.group(1), data={"_csrf_token": token.group(1)})).status_code == 303
    async with AsyncSession(engine) as session:
        rows = {b.name: b for b in (await session.execute(select(Booking))).scalars()}
        quota = (await session.execute(select(EventQuota))).scalar_one()
    # Ben's place is held for him (the quota counts it), not confirmed; cat still waits.
    assert rows["ann"].state == CANCELLED and rows["ben"].state == WAITING and rows["ben"].offered
    assert rows["cat"].state == WAITING and not rows["cat"].offered and quota.taken == 1
    ben_expires = rows["ben"].offer_expires_at
    assert ben_expires is not None
    assert timedelta(hours=23, minutes=59) < ben_expires - datetime.now(UTC) <= timedelta(hours=24)
    (offer_mail,) = await _mail_jobs(engine, "events-offer")
    assert offer_mail["to"] == "ben@example.org"
    offer_url = offer_mail["context"]["offer_url"]
    assert offer_url.endswith(f"/account/bookings/offer/{rows['ben'].offer_secret}")
    assert len(await _mail_jobs(engine, "events-cancelled")) == 1

    # A new member who books now joins the waiting list: the offered place is not up for grabs.
    await _member(client, engine, "dan")
    token = await _token(client, "/events/bread-workshop/book")
    assert (await client.post("/events/bread-workshop/book", data={
        "occurrence": KEY, "quantity": "1", "name": "dan", "email": "dan@example.org", "attendee_1": "dan",
        "_csrf_token": token})).status_code == 303
    path = "/account/bookings/offer/" + str(rows["ben"].offer_secret)
    assert (await client.get(path)).status_code == 404  # another member's offer looks absent

    # Ben does not answer: the sweep lapses his offer and offers the place to cat.
    async with async_sessionmaker(engine)() as session, session.begin():
        lapsed = await BookingService(session, base_url=settings.base_url).sweep_offers(
            now=ben_expires + timedelta(seconds=1))
    assert lapsed == 1
    async with AsyncSession(engine) as session:
        rows = {b.name: b for b in (await session.execute(select(Booking))).scalars()}
        quota = (await session.execute(select(EventQuota))).scalar_one()
    assert rows["ben"].state == CANCELLED and rows["cat"].offered and rows["dan"].state == WAITING
    assert not rows["dan"].offered and quota.taken == 1
    assert len(await _mail_jobs(engine, "events-lapsed")) == 1

    await _as(client, "ben")
    late = await client.get(path)
    assert late.status_code == 200 and "no longer open" in late.text
    token = CSRF_FIELD.search(late.text)
    assert token is None  # no accept button on a lapsed offer
    refused = await client.post(path, data={"_csrf_token": await _token(client, "/events/bread-workshop/book")})
    assert refused.status_code == 303
    assert "no longer open" in (await client.get("/account/bookings")).text

    await _as(client, "cat")
    mine = await client.get("/account/bookings")
    assert "places offered to you" in mine.text and "accept them by" in mine.text
    cat_path = f"/account/bookings/offer/{rows['cat'].offer_secret}"
    token_value = await _token(client, cat_path)
    assert (await client.post(cat_path, data={"_csrf_token": token_value})).status_code == 303
    assert (await client.post(cat_path, data={"_csrf_token": token_value})).status_code == 303  # a double click
    async with AsyncSession(engine) as session:
        cat = (await session.execute(select(Booking).where(Booking.name == "cat"))).scalar_one()
        positions = (await session.execute(select(Position).where(Position.booking_id == cat.id))).scalars().all()
        quota = (await session.execute(select(EventQuota))).scalar_one()
    assert cat.state == CONFIRMED and len(positions) == 1 and quota.taken == 1
    confirmed = await _mail_jobs(engine, "events-confirmed")
    assert [m["to"] for m in confirmed] == ["ann@example.org", "cat@example.org"]


async def _full_with_an_offer(engine: AsyncEngine, capacity: int) -> tuple[Event, Booking]:
    """A full date whose one freed place is offered to the first waiting booking."""
    event = await _event(engine, capacity=capacity)
    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with maker() as session, session.begin():
        service = BookingService(session)
        first = [await service.book(event, KEY, user=None, name=f"F{i}", email=f"f{i}@example.org", quantity=1)
                 for i in range(capacity)]
        await service.book(event, KEY, user=None, name="W", email="w@example.org", quantity=1)
    async with maker() as session, session.begin():
        found = await session.get(Event, event.id)
        booking = await session.get(Booking, first[0].id)
        assert found is not None and booking is not None
        await BookingService(session).cancel(booking, found)
    async with maker() as session:
        waiting = (await session.execute(select(Booking).where(Booking.name == "W"))).scalar_one()
    assert waiting.offered
    return event, waiting


async def _retrying(work: Any) -> Any:
    for attempt in range(30):
        try:
            return await work()
        except Exception as exc:  # SQLite's single writer answers "database is locked" under a pile-up
            if "locked" not in str(exc) or attempt == 29:
                raise
            await asyncio.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


async def test_concurrent_accepts_and_bookings_confirm_once_and_never_overbook(
        engine: AsyncEngine, db_kind: str) -> None:
    """Ten accepts of one offer race twenty new bookings for the same date: the offer is confirmed
    once with one ticket, every newcomer waits, and the quota never passes its capacity."""
    event, offered = await _full_with_an_offer(engine, capacity=3)
    maker = async_sessionmaker(engine, expire_on_commit=False)

    async def accept() -> str:
        async def work() -> str:
            async with maker() as session, session.begin():
                booking = await session.get(Booking, offered.id)
                found = await session.get(Event, event.id)
                assert booking is not None and found is not None
                await BookingService(session).accept(booking, found)
                return booking.state
        return str(await _retrying(work))

    async def newcomer(i: int) -> str:
        async def work() -> str:
            async with maker() as session, session.begin():
                found = await session.get(Event, event.id)
                assert found is not None
                made = await BookingService(session).book(found, KEY, user=None, name=f"N{i}",
                                                          email=f"n{i}@example.org", quantity=1)
                return made.state
        return str(await _retrying(work))

    results = await asyncio.gather(*(accept() for _ in range(10)), *(newcomer(i) for i in range(20)))
    assert results[:10] == [CONFIRMED] * 10  # every accept sees it confirmed: one by winning, the rest after
    assert results[10:] == [WAITING] * 20
    async with AsyncSession(engine) as session:
        quota = (await session.execute(select(EventQuota))).scalar_one()
        tickets = (await session.execute(select(func.count()).select_from(Position).where(
            Position.booking_id == offered.id))).scalar_one()
        live = (await session.execute(select(func.count()).select_from(Position).where(
            Position.cancelled.is_(False)))).scalar_one()
    assert tickets == 1 and quota.taken == quota.capacity == 3 and live == 3


async def _accept_against_the_sweep(engine: AsyncEngine) -> None:
    async with AsyncSession(engine) as session, session.begin():
        for model in (Position, Booking, EventQuota, BookingOptions, Event):
            await session.execute(model.__table__.delete())  # type: ignore[attr-defined]
    event, offered = await _full_with_an_offer(engine, capacity=2)
    maker = async_sessionmaker(engine, expire_on_commit=False)
    # The offer lapses "now" for the sweep, while the accept still sees it open (its own clock):
    # whichever commits its compare-and-set first decides.
    assert offered.offer_expires_at is not None
    sweep_at = offered.offer_expires_at + timedelta(seconds=1)

    async def accept() -> str:
        async def work() -> str:
            async with maker() as session, session.begin():
                booking = await session.get(Booking, offered.id)
                found = await session.get(Event, event.id)
                assert booking is not None and found is not None
                try:
                    await BookingService(session).accept(booking, found)
                except InputProblems as exc:
                    assert "no longer open" in exc.errors["form"]
                    return "refused"
                return "accepted"
        return str(await _retrying(work))

    async def sweep() -> int:
        async def work() -> int:
            async with maker() as session, session.begin():
                return await BookingService(session).sweep_offers(now=sweep_at)
        return int(await _retrying(work))

    outcome, lapsed = await asyncio.gather(accept(), sweep())
    async with AsyncSession(engine) as session:
        booking = await session.get(Booking, offered.id)
        quota = (await session.execute(select(EventQuota))).scalar_one()
        held = (await session.execute(select(func.coalesce(func.sum(Booking.quantity), 0)).where(
            (Booking.state == CONFIRMED) | ((Booking.state == WAITING) & Booking.offer_expires_at.is_not(None)))
        )).scalar_one()
    assert booking is not None
    assert (outcome, lapsed, booking.state) in (("accepted", 0, CONFIRMED), ("refused", 1, CANCELLED))
    assert quota.taken == held <= quota.capacity  # every held place is accounted for exactly once


async def test_an_accept_racing_the_sweep_has_exactly_one_outcome(engine: AsyncEngine, db_kind: str) -> None:
    """At the instant an offer lapses, an accept and the sweep run together: either the member is
    confirmed and nothing lapsed, or the offer lapsed and the place went on; never both, never lost."""
    for _round in range(4 if db_kind == "postgresql" else 2):
        await _accept_against_the_sweep(engine)


# -- 3. the cancellation cutoff -------------------------------------------------------------------------

async def test_members_cannot_cancel_after_the_cutoff_and_see_until_when_they_can(
        client: Any, engine: AsyncEngine) -> None:
    soon = (datetime.now(UTC) + timedelta(hours=10)).replace(second=0, microsecond=0)
    later = soon + timedelta(hours=1)
    fields = {"tz": "UTC", "start_date": soon.date().isoformat(), "start_time": soon.strftime("%H:%M"),
              "end_date": later.date().isoformat(), "end_time": later.strftime("%H:%M")}
    event = await _event(engine, capacity=2, **fields)  # the default cutoff: 24 hours before
    key = f"{soon:%Y%m%dT%H%M%S}"
    await _member(client, engine, "ann")
    token = await _token(client, "/events/bread-workshop/book")
    assert (await client.post("/events/bread-workshop/book", data={
        "occurrence": key, "quantity": "1", "name": "Ann", "email": "ann@example.org", "attendee_1": "Ann",
        "_csrf_token": token})).status_code == 303
    page = await client.get("/account/bookings")
    assert "Cancellation closed on" in page.text and "/cancel" not in page.text
    async with AsyncSession(engine) as session:
        booking = (await session.execute(select(Booking))).scalar_one()
    # A cancel posted anyway (an old tab) is refused with the reason, and nothing changes.
    refused = await client.post(f"/account/bookings/{booking.id}/cancel",
                                data={"_csrf_token": await _token(client, "/events/bread-workshop/book")})
    assert refused.status_code == 303
    shown = await client.get("/account/bookings")
    assert "Cancellation closed on" in shown.text and "24 hours before the start" in shown.text
    async with AsyncSession(engine) as session:
        again = (await session.execute(select(Booking))).scalar_one()
        quota = (await session.execute(select(EventQuota))).scalar_one()
    assert again.state == CONFIRMED and quota.taken == 1 and len(await _mail_jobs(engine, "events-cancelled")) == 0

    # Staff set the cutoff to 0 (until the start): now the member can cancel, and sees until when.
    async with async_sessionmaker(engine)() as session, session.begin():
        found = await session.get(Event, event.id)
        assert found is not None
        await save_options(session, found, {"ask_dietary": False, "question": "", "question_required": False,
                                            "cancel_until_hours": 0})
    page = await client.get("/account/bookings")
    assert f"You can cancel until {soon:%a} {soon.day} {soon:%B %Y}, {soon:%H:%M} (UTC)" in page.text
    cancel = re.search(r'action="(/account/bookings/[0-9a-f-]+/cancel)"', page.text)
    token_match = CSRF_FIELD.search(page.text)
    assert cancel and token_match
    assert (await client.post(cancel.group(1), data={"_csrf_token": token_match.group(1)})).status_code == 303
    async with AsyncSession(engine) as session:
        assert (await session.execute(select(Booking.state))).scalar_one() == CANCELLED


# -- 4. members-only events -------------------------------------------------------------------------------

async def test_members_only_events_exist_for_members_and_look_absent_to_everyone_else(
        client: Any, engine: AsyncEngine) -> None:
    await _member(client, engine, "ada", admin=True)
    token = await _token(client, "/events/admin/new")
    base = {"tz": "Europe/London", "start_date": DAY.isoformat(), "start_time": "18:00", "end_time": "20:00",
            "status": "scheduled", "calendar": "", "_csrf_token": token}
    assert (await client.post("/events/admin/", data={**base, "title": "Open day", "visibility": "public"})
            ).status_code == 303
    assert (await client.post("/events/admin/", data={**base, "title": "Secret supper", "capacity": "5",
                                                      "visibility": "members"})).status_code == 303
    ym = f"{DAY:%Y-%m}"
    public_surfaces = ["/events/", f"/events/month/{ym}", "/events.ics", "/events/calendar/events",
                       "/events/calendar/events.ics", "/embed/events?limit=20", "/f/events/upcoming?limit=20"]
    absent = await client.get("/events/no-such-supper")
    for who in ("anonymous", "member", "staff"):
        if who == "anonymous":
            client.cookies.clear()
        elif who == "member":
            await _member(client, engine, "bob")
        for path in public_surfaces:  # shared, edge-cached answers: never with the members' event
            response = await client.get(path)
            assert response.status_code == 200, (who, path, response.status_code)
            assert "Open day" in response.text, (who, path)
            assert "Secret supper" not in response.text and "secret-supper" not in response.text, (who, path)
            assert "private" not in response.headers.get("cache-control", ""), (who, path)
        for path in ("/events/secret-supper", "/events/secret-supper.ics"):
            page = await client.get(path)
            assert page.status_code == 404 and page.text == absent.text.replace("no-such-supper", "secret-supper")
        card = await client.get("/f/events/event-card?slug=secret-supper")
        nothing = await client.get("/f/events/event-card?slug=no-such-supper")
        assert "Secret supper" not in card.text and card.status_code == nothing.status_code
    client.cookies.clear()
    for path in ("/events/members", "/events/members/secret-supper", "/events/secret-supper/book"):
        response = await client.get(path)
        assert response.status_code in (302, 303, 401), (path, response.status_code)  # sign in first
        assert "Secret supper" not in response.text

    await _as(client, "bob")
    listing = await client.get("/events/members")
    assert listing.status_code == 200 and "Secret supper" in listing.text and "Open day" not in listing.text
    assert "private" in listing.headers["cache-control"]
    page = await client.get("/events/members/secret-supper")
    assert page.status_code == 200 and "Secret supper" in page.text and "private" in page.headers["cache-control"]
    assert (await client.get("/events/members/open-day")).status_code == 404  # public ones have their own page
    assert (await client.get("/events/members/no-such-supper")).status_code == 404
    token = await _token(client, "/events/secret-supper/book")
    assert (await client.post("/events/secret-supper/book", data={
        "occurrence": KEY, "quantity": "1", "name": "Bob", "email": "bob@example.org", "attendee_1": "Bob",
        "_csrf_token": token})).status_code == 303
    bookings = (await client.get("/account/bookings")).text
    assert "Secret supper" in bookings
    # Every link a member follows to it leads to the members' page, never the public 404.
    assert 'href="/events/members/secret-supper"' in bookings and 'href="/events/secret-supper"' not in bookings
    dashboard = (await client.get("/account")).text
    assert 'href="/events/members/secret-supper"' in dashboard and 'href="/events/secret-supper"' not in dashboard


# -- 5. HTML booking mails -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["confirmed", "waiting", "offer", "cancelled", "lapsed"])
def test_every_booking_mail_has_an_escaped_html_part(kind: str, settings: Settings) -> None:
    context = {"name": "Ann <b>", "title": "Bread & <script>x</script>", "when": "Tue 8 December 2026, 18:00",
               "quantity": 2, "tickets": [{"attendee": "Ann <b>", "url": "https://coop.test/events/tickets/abc"}],
               "event_url": "https://coop.test/events/bread", "bookings_url": "https://coop.test/account/bookings",
               "offer_url": "https://coop.test/account/bookings/offer/xyz", "offer_until": "Wed 9 December 2026"}
    mail = OutgoingMail(to="ann@example.org", to_name="Ann", subject="Subject", template=f"events/{kind}",
                        tag=f"events-{kind}", context=context)
    text, html = render_bodies(mail, settings)
    assert html is not None and "<script>" not in html and "Bread &amp; &lt;script&gt;" in html
    assert "Bread & <script>x</script>" in text  # the text part is plain text
    if kind == "offer":
        assert 'href="https://coop.test/account/bookings/offer/xyz"' in html and "Wed 9 December 2026" in html
    if kind == "confirmed":
        assert 'href="https://coop.test/events/tickets/abc"' in html and "Ann &lt;b&gt;" in html
