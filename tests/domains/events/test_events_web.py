"""Events through HTTP: staff create and edit events and calendars with the real forms; visitors see
the list, the month grid, the event page and the iCalendar feeds (parsed back by two parsers)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import icalendar
import pytest
import vobject
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from domains.account.models import User
from domains.events.models import Event
from tests.helpers.web import CSRF_FIELD, signup

pytestmark = pytest.mark.anyio

NEXT_WEEK = date.today() + timedelta(days=7)


async def _staff(client: Any, engine: AsyncEngine, username: str = "ada") -> None:
    assert (await signup(client, username)).status_code == 303
    async with async_sessionmaker(engine)() as session, session.begin():
        user = (await session.execute(select(User).where(User.username == username))).scalar_one()
        user.is_admin = True


async def _token(client: Any, page: str) -> str:
    response = await client.get(page)
    assert response.status_code == 200, (page, response.status_code, response.text[:300])
    match = CSRF_FIELD.search(response.text)
    assert match
    return match.group(1)


def _form(**overrides: str) -> dict[str, str]:
    return {"title": "Bread workshop", "tz": "Europe/London", "start_date": NEXT_WEEK.isoformat(),
            "start_time": "18:00", "end_date": "", "end_time": "20:00", "place_name": "The bakehouse",
            "place_address": "1 Mill Lane", "tags": "food, Baking", "status": "scheduled", "visibility": "public",
            "description": "Bring an *apron*. <script>alert(1)</script>", **overrides}


async def _create(client: Any, **overrides: str) -> Any:
    token = await _token(client, "/events/admin/new")
    return await client.post("/events/admin/", data={**_form(**overrides), "_csrf_token": token})


async def _event(engine: AsyncEngine, slug: str) -> Event:
    async with AsyncSession(engine) as session:
        return (await session.execute(select(Event).where(Event.slug == slug))).scalar_one()


async def test_staff_create_an_event_that_visitors_find_everywhere(client: Any, engine: AsyncEngine) -> None:
    await _staff(client, engine)
    response = await _create(client)
    assert response.status_code == 303, response.text[:800]
    assert response.headers["location"] == "/events/admin/bread-workshop"
    client.cookies.clear()  # a visitor

    page = await client.get("/events/bread-workshop")
    assert page.status_code == 200
    assert "Bread workshop" in page.text and "18:00\u201320:00 (Europe/London)" in page.text
    # In the default calendar (called "Events") the breadcrumb is one "Events", not "Events · Events".
    assert '<p class="muted"><a href="/events/">Events</a></p>' in page.text
    assert '>Events</a> · <a href="/events/calendar/' not in page.text
    assert "<script>alert(1)</script>" not in page.text and "<em>apron</em>" in page.text
    assert "event:" in page.headers["surrogate-key"] and page.headers.get("etag")
    assert "set-cookie" not in page.headers

    listing = await client.get("/events/")
    assert listing.status_code == 200 and "Bread workshop" in listing.text
    assert "Bread workshop" in (await client.get("/events/?tag=baking")).text
    assert "Bread workshop" not in (await client.get("/events/?tag=music")).text

    month = await client.get(f"/events/month/{NEXT_WEEK:%Y-%m}")
    assert month.status_code == 200 and "<table class=\"month-grid\">" in month.text
    assert '<th scope="col">' in month.text and "Bread workshop" in month.text

    embed = await client.get("/embed/events?limit=3")
    assert embed.status_code == 200 and "Bread workshop" in embed.text


async def test_the_feeds_parse_back_with_stable_uids_and_a_growing_sequence(client: Any, engine: AsyncEngine) -> None:
    await _staff(client, engine)
    assert (await _create(client, rrule="FREQ=WEEKLY;COUNT=6", exdates=(NEXT_WEEK + timedelta(days=14)).isoformat())
            ).status_code == 303
    first = await client.get("/events.ics")
    assert first.status_code == 200 and first.headers["content-type"].startswith("text/calendar")
    assert first.headers["cache-control"].startswith("public") and first.headers.get("etag")
    cal = icalendar.Calendar.from_ical(first.content)
    (vevent,) = cal.walk("VEVENT")
    uid = str(vevent["UID"])
    assert uid.startswith("event-") and int(vevent["SEQUENCE"]) == 0
    assert vevent["DTSTART"].dt.tzinfo is not None and str(vevent["DTSTART"].params["TZID"]) == "Europe/London"
    assert vevent["RRULE"]["COUNT"] == [6] and len(cal.walk("VTIMEZONE")) == 1
    # A second, independent parser agrees (vobject expands the series itself).
    parsed = vobject.readOne(first.text)
    dates = list(parsed.vevent.getrruleset())
    assert len(dates) == 5 and parsed.vevent.uid.value == uid

    # Moving the event bumps SEQUENCE and keeps the UID; a title change alone does not bump it.
    token = await _token(client, "/events/admin/bread-workshop")
    moved = await client.post("/events/admin/bread-workshop", data={
        **_form(rrule="FREQ=WEEKLY;COUNT=6", start_time="19:00", end_time="21:00"), "_csrf_token": token})
    assert moved.status_code == 303, moved.text[:500]
    token = await _token(client, "/events/admin/bread-workshop")
    renamed = await client.post("/events/admin/bread-workshop", data={
        **_form(title="Bread workshop!", slug="bread-workshop", rrule="FREQ=WEEKLY;COUNT=6", start_time="19:00",
                end_time="21:00"), "_csrf_token": token})
    assert renamed.status_code == 303
    again = icalendar.Calendar.from_ical((await client.get("/events/bread-workshop.ics")).content)
    (vevent,) = again.walk("VEVENT")
    assert str(vevent["UID"]) == uid and int(vevent["SEQUENCE"]) == 1 and str(vevent["SUMMARY"]) == "Bread workshop!"
    # Cancelled events stay in the feed, marked so.
    token = await _token(client, "/events/admin/bread-workshop")
    await client.post("/events/admin/bread-workshop", data={**_form(status="cancelled", start_time="19:00",
                                                                      end_time="21:00", rrule="FREQ=WEEKLY;COUNT=6"),
                                                           "_csrf_token": token})
    (vevent,) = icalendar.Calendar.from_ical((await client.get("/events.ics")).content).walk("VEVENT")
    assert str(vevent["STATUS"]) == "CANCELLED" and int(vevent["SEQUENCE"]) == 2


@pytest.mark.parametrize(("overrides", "field", "message"), [
    ({"title": ""}, "title", "Give the event a title"),
    ({"end_date": (NEXT_WEEK - timedelta(days=1)).isoformat()}, "end_date", "ends before it starts"),
    ({"tz": "Mars/Olympus"}, "tz", "not a time zone we know"),
    ({"start_date": "2026-13-40"}, "start_date", "YYYY-MM-DD"),
    ({"start_time": "25:99"}, "start_time", "HH:MM"),
    ({"start_date": "2027-03-28", "start_time": "01:30", "end_time": "03:30"}, "start_time", "does not exist"),
    ({"start_date": "2026-10-25", "start_time": "01:15", "end_time": "01:45"}, "dst", "happens twice"),
    ({"rrule": "FREQ=SECONDLY"}, "rrule", "daily, weekly"),
    ({"rrule": "FREQ=DAILY;COUNT=100000"}, "rrule", "more than 1,000"),
    ({"latitude": "95", "longitude": "0"}, "latitude", "Between -90 and 90"),
    ({"latitude": "51.5"}, "longitude", "both coordinates"),
    ({"online_url": "javascript:alert(1)"}, "online_url", "http(s) address"),
    ({"status": "maybe"}, "status", "Scheduled, cancelled or postponed"),
    ({"slug": "month"}, "slug", "reserved"),
    ({"calendar": "no-such"}, "calendar", "no such calendar"),
])
async def test_bad_input_is_named_and_nothing_is_written(client: Any, engine: AsyncEngine, overrides: dict[str, str],
                                                         field: str, message: str) -> None:
    await _staff(client, engine)
    response = await _create(client, **overrides)
    assert response.status_code == 422, response.text[:300]
    assert message in response.text and f'id="e-{field}"' in response.text
    async with AsyncSession(engine) as session:
        assert (await session.execute(select(Event))).first() is None


async def test_an_ambiguous_time_is_saved_once_the_person_chooses(client: Any, engine: AsyncEngine) -> None:
    await _staff(client, engine)
    later = await _create(client, start_date="2026-10-25", start_time="01:15", end_time="01:45", dst="later")
    assert later.status_code == 303, later.text[:500]
    event = await _event(engine, "bread-workshop")
    assert event.starts_at.astimezone(UTC).strftime("%H:%M") == "01:15"  # GMT: the second 01:15
    assert event.ends_at > event.starts_at


async def test_a_taken_slug_is_a_409_with_a_suggestion(client: Any, engine: AsyncEngine) -> None:
    await _staff(client, engine)
    assert (await _create(client)).status_code == 303
    again = await _create(client)
    assert again.status_code == 409 and "bread-workshop-2" in again.text


async def test_the_admin_is_for_staff_only_and_unlisted_events_stay_off_lists(client: Any, engine: AsyncEngine
                                                                               ) -> None:
    assert (await client.get("/events/admin/")).status_code in (302, 303, 401, 404)
    assert (await signup(client, "bob")).status_code == 303
    assert (await client.get("/events/admin/")).status_code == 403  # a member, not staff
    await _staff(client, engine, "ada")
    assert (await _create(client, title="Quiet meeting", visibility="unlisted")).status_code == 303
    members = await _create(client, title="Members night", visibility="members")
    assert members.status_code == 303  # members-only events: tests/domains/events/test_booking_extras.py
    client.cookies.clear()
    assert (await client.get("/events/members-night")).status_code == 404
    assert (await client.get("/events/quiet-meeting")).status_code == 200
    assert "Quiet meeting" not in (await client.get("/events/")).text
    assert b"Quiet meeting" not in (await client.get("/events.ics")).content
    assert (await client.get("/events/no-such-thing")).status_code == 404
    assert (await client.get("/events/month/2026-13")).status_code == 404
    assert (await client.get("/events/?from=yesterday")).status_code == 404


async def test_calendars_group_events_and_have_their_own_feed(client: Any, engine: AsyncEngine) -> None:
    await _staff(client, engine)
    token = await _token(client, "/events/admin/calendars")
    made = await client.post("/events/admin/calendars", data={"name": "Market days", "colour": "#aa3300",
                                                               "_csrf_token": token})
    assert made.status_code == 303
    bad = await client.post("/events/admin/calendars", data={"name": "X", "colour": "red", "_csrf_token": token})
    assert bad.status_code == 422 and "#RRGGBB" in bad.text
    assert (await _create(client, calendar="market-days", title="Saturday market")).status_code == 303
    page = await client.get("/events/calendar/market-days")
    assert page.status_code == 200 and "Saturday market" in page.text
    event_page = await client.get("/events/saturday-market")
    assert '<a href="/events/">Events</a> · <a href="/events/calendar/market-days">Market days</a>' in event_page.text
    feed = icalendar.Calendar.from_ical((await client.get("/events/calendar/market-days.ics")).content)
    assert str(feed["X-WR-CALNAME"]) == "Market days" and len(feed.walk("VEVENT")) == 1
    assert (await client.get("/events/calendar/nope")).status_code == 404


async def test_the_list_places_a_series_by_its_local_dates(client: Any, engine: AsyncEngine) -> None:
    await _staff(client, engine)
    assert (await _create(client, rrule="FREQ=DAILY;COUNT=3")).status_code == 303
    event = await _event(engine, "bread-workshop")
    assert event.series_ends_at is not None
    assert event.series_ends_at - event.ends_at == timedelta(days=2) or event.series_ends_at > event.ends_at
    listing = (await client.get("/events/")).text
    assert listing.count('class="event-title"') == 3
    assert datetime.now(UTC).year <= int(NEXT_WEEK.year)


async def test_whole_site_feed_orders_by_first_date_in_its_window_and_filters_by_tag(client: Any,
                                                                                      engine: AsyncEngine) -> None:
    """The feed's query reads a series' expanding columns and the tags only where they are used
    (controllers._feed_events): a series still places by its first date in the window, and a tag
    filter still keeps one-off events and series alike."""
    await _staff(client, engine)
    today = date.today()
    made = [await _create(client, title="Choir", slug="choir", start_date=(today - timedelta(days=400)).isoformat(),
                          rrule="FREQ=WEEKLY", exdates=(today - timedelta(days=393)).isoformat(), tags="music, choir"),
            await _create(client, title="Spring fair", slug="spring-fair",
                          start_date=(today - timedelta(days=100)).isoformat(), tags="music"),
            await _create(client, title="Old fair", slug="old-fair",
                          start_date=(today - timedelta(days=370)).isoformat(), tags="music"),
            await _create(client, tags="food")]
    assert [response.status_code for response in made] == [303] * 4, [r.text[:300] for r in made]
    client.cookies.clear()

    def summaries(body: bytes) -> list[str]:
        return [str(v["SUMMARY"]) for v in icalendar.Calendar.from_ical(body).walk("VEVENT")]

    # The series began before the window (a year back): it comes first, by its dates in the window,
    # with its excluded date and its rule intact; the fair that ended before the window is left out.
    whole = await client.get("/events.ics")
    assert summaries(whole.content) == ["Choir", "Spring fair", "Bread workshop"]
    choir = icalendar.Calendar.from_ical(whole.content).walk("VEVENT")[0]
    assert choir["RRULE"]["FREQ"] == ["WEEKLY"] and "EXDATE" in choir
    assert choir["DTSTART"].dt.date() == today - timedelta(days=400)
    assert summaries((await client.get("/events.ics?tag=music")).content) == ["Choir", "Spring fair"]
    assert summaries((await client.get("/events.ics?tag=choir")).content) == ["Choir"]
    assert summaries((await client.get("/events.ics?tag=food")).content) == ["Bread workshop"]
    assert summaries((await client.get("/events.ics?tag=nothing")).content) == []
