"""Week and day views (issue 18 item 2) and a member's personal bookings feed (item 6), through
HTTP on both databases: the views are public and edge-cached with the month view's keys and link
each other; the feed is at a token URL that is ``private`` and ``noindex``, parses back with two
parsers, and stops working (404) when revoked or regenerated."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

import icalendar
import pytest
import vobject
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from domains.events.feed_models import BookingFeed
from domains.events.services.events import EventForm, EventService
from tests.helpers.web import CSRF_FIELD, signup

pytestmark = pytest.mark.anyio

DAY = date.today() + timedelta(days=10)


async def _event(engine: AsyncEngine, **extra: str) -> None:
    async with async_sessionmaker(engine, expire_on_commit=False)() as session, session.begin():
        values = {"title": "Bread workshop", "tz": "Europe/London", "start_date": DAY.isoformat(),
                  "start_time": "18:00", "end_time": "20:00", "capacity": "3", "place_name": "The bakehouse", **extra}
        await EventService(session).save(EventForm(**values))


def _week(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year:04d}-W{week:02d}"


async def test_week_and_day_views(client: Any, engine: AsyncEngine) -> None:
    await _event(engine)
    await _event(engine, title="Hidden supper", slug="hidden-supper", visibility="unlisted")

    week = await client.get(f"/events/week/{_week(DAY)}")
    assert week.status_code == 200
    assert "Bread workshop" in week.text and "Hidden supper" not in week.text
    assert week.headers["cache-control"].startswith("public") and week.headers.get("etag")
    assert "set-cookie" not in week.headers
    assert set(week.headers["surrogate-key"].split()) >= {"events"}
    assert ' style="' not in week.text and week.text.count("<h2 id=\"d-") == 7  # a heading per day
    assert f'href="/events/day/{DAY.isoformat()}"' in week.text
    previous = _week(DAY - timedelta(days=7))
    assert f'href="/events/week/{previous}" rel="prev" hx-get="/events/week/{previous}"' in week.text
    assert 'hx-select="#events-period"' in week.text and 'id="events-period"' in week.text
    # the other weeks of the event's month do not show it
    assert "Bread workshop" not in (await client.get(f"/events/week/{_week(DAY + timedelta(days=7))}")).text

    day = await client.get(f"/events/day/{DAY.isoformat()}")
    assert day.status_code == 200 and "Bread workshop" in day.text and "18:00" in day.text
    assert day.headers["cache-control"].startswith("public") and "set-cookie" not in day.headers
    assert f'href="/events/week/{_week(DAY)}"' in day.text
    assert f'href="/events/day/{DAY + timedelta(days=1)}"' in day.text
    assert "Bread workshop" not in (await client.get(f"/events/day/{DAY + timedelta(days=1)}")).text
    # filters carry into the views and their links
    filtered = await client.get(f"/events/day/{DAY.isoformat()}?tag=music")
    assert "Bread workshop" not in filtered.text and "?tag=music" in filtered.text

    # the month grid links its weeks and days
    month = await client.get(f"/events/month/{DAY:%Y-%m}")
    assert f'href="/events/week/{_week(DAY)}"' in month.text
    assert f'href="/events/day/{DAY.isoformat()}"' in month.text

    # an edit purges them: they share the month view's "events" key, and show the change
    async with async_sessionmaker(engine)() as session, session.begin():
        service = EventService(session)
        found = await service.get("bread-workshop")
        assert found is not None
        await service.save(EventForm(title="Sourdough workshop", slug="bread-workshop", tz="Europe/London",
                                     start_date=DAY.isoformat(), start_time="18:00", end_time="20:00",
                                     capacity="3"), event=found)
    assert "Sourdough workshop" in (await client.get(f"/events/week/{_week(DAY)}")).text

    for bad in ("2026-W54", "2026-W00", "2026-13", "20x6-W01", "2027-W53"):
        assert (await client.get(f"/events/week/{bad}")).status_code == 404, bad
    for bad in ("2026-02-30", "2026-2-3", "tomorrow"):
        assert (await client.get(f"/events/day/{bad}")).status_code == 404, bad
    assert (await client.get("/events/week/2026-W53")).status_code == 200  # 2026 has 53 ISO weeks


async def _csrf(client: Any, page: str) -> str:
    response = await client.get(page)
    assert response.status_code == 200, (page, response.text[:300])
    found = CSRF_FIELD.search(response.text)
    assert found
    return found.group(1)


async def test_personal_bookings_feed(client: Any, engine: AsyncEngine) -> None:
    await _event(engine)
    assert (await signup(client, "maria")).status_code == 303
    token = await _csrf(client, "/events/bread-workshop/book")
    booked = await client.post("/events/bread-workshop/book", data={
        "occurrence": f"{DAY:%Y%m%d}T180000", "quantity": "2", "name": "Maria", "email": "maria@example.org",
        "attendee_1": "Maria", "attendee_2": "Ana",
        "_csrf_token": token})
    assert booked.status_code == 303, booked.text[:300]

    bookings = await client.get("/account/bookings")
    assert 'href="/account/bookings/calendar"' in bookings.text
    page = await client.get("/account/bookings/calendar")
    assert page.status_code == 200 and "/events/me/" not in page.text  # no feed until asked for
    made = await client.post("/account/bookings/calendar", data={"action": "regenerate",
                                                                 "_csrf_token": await _csrf(client, page.url.path)})
    assert made.status_code == 303
    page = await client.get("/account/bookings/calendar")
    found = re.search(r'value="(http://[^"]+/events/me/([A-Za-z0-9_-]+)\.ics)"', page.text)
    assert found, page.text[:2000]
    url, secret = found.group(1), found.group(2)
    assert len(secret) == 32 and f"webcal://{url.split('://', 1)[1]}" in page.text
    async with AsyncSession(engine) as session:  # only a digest is stored, never the token
        row = (await session.execute(select(BookingFeed))).scalar_one()
        assert secret not in row.digest

    client.cookies.clear()  # a calendar app: no session
    feed = await client.get(f"/events/me/{secret}.ics")
    assert feed.status_code == 200 and feed.headers["content-type"].startswith("text/calendar")
    assert feed.headers["cache-control"] == "private" and feed.headers["x-robots-tag"] == "noindex"
    assert "surrogate-key" not in feed.headers  # never kept by the edge
    (vevent,) = icalendar.Calendar.from_ical(feed.content).walk("VEVENT")
    assert str(vevent["SUMMARY"]) == "Bread workshop" and str(vevent["STATUS"]) == "CONFIRMED"
    start: Any = vevent["DTSTART"]
    assert str(start.params["TZID"]) == "Europe/London" and start.dt.hour == 18
    assert "2 places" in str(vevent["DESCRIPTION"]) and str(vevent["UID"]).startswith("booking-")
    parsed = vobject.readOne(feed.text)  # a second, independent parser
    assert parsed.vevent.summary.value == "Bread workshop" and parsed.vevent.uid.value == str(vevent["UID"])
    assert (await client.get(f"/events/me/{secret[:-1]}x.ics")).status_code == 404  # a forged token
    assert (await client.get(f"/events/me/{secret}")).status_code == 404

    # regenerate: the old URL is gone at once; revoke: the new one too
    from tests.helpers.web import login

    assert (await login(client, "maria")).status_code == 303
    page_path = "/account/bookings/calendar"
    again = await client.post(page_path, data={"action": "regenerate", "_csrf_token": await _csrf(client, page_path)})
    assert again.status_code == 303
    assert (await client.get(f"/events/me/{secret}.ics")).status_code == 404
    new = re.search(r"/events/me/([A-Za-z0-9_-]+)\.ics", (await client.get(page_path)).text)
    assert new and new.group(1) != secret
    assert (await client.get(f"/events/me/{new.group(1)}.ics")).status_code == 200
    revoked = await client.post(page_path, data={"action": "revoke", "_csrf_token": await _csrf(client, page_path)})
    assert revoked.status_code == 303
    assert (await client.get(f"/events/me/{new.group(1)}.ics")).status_code == 404
    assert "/events/me/" not in (await client.get(page_path)).text
    # an unknown action writes nothing
    assert (await client.post(page_path, data={"action": "drop", "_csrf_token": await _csrf(client, page_path)})
            ).status_code == 404
    # a visitor cannot manage anyone's feed
    client.cookies.clear()
    assert (await client.get(page_path)).status_code in (302, 303, 401, 403)
