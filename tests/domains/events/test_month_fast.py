"""The fast paths of the month grid and the whole-site feed (bench/events.py) give what the general
paths give, on both databases:

- ``briefs_in_window`` (plain columns) gives the same dates, in the same order, showing the same
  fields as ``in_window`` (ORM events);
- ``grid_cells`` makes the bytes templates/events/month.html rendered item by item before;
- ``/events.ics`` (VEVENTs reused by version) is byte for byte icalendar's own serialisation of the
  same events, and stays so after an edit, a new exception (EXDATE) and a cancellation, which it
  shows at once; the month grid drops the excepted date and shows the new title.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import icalendar
import pytest
from jinja2 import Environment
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import selectinload

from domains.events import ical
from domains.events.models import Event
from domains.events.services.events import CalendarForm, EventForm, EventService
from domains.events.views import grid_cells, listed_views

pytestmark = pytest.mark.anyio

# Next month's first Monday and on: every date below falls in one month, away from today's edges.
FIRST = (date.today().replace(day=1) + timedelta(days=32)).replace(day=1)
MONTH = f"{FIRST:%Y-%m}"
BASE = "http://127.0.0.1:8000"  # the test client's site address (settings.base_url)

# The month grid's item loop as templates/events/month.html had it, rendered with the site's
# Jinja settings (autoescape, trim_blocks, lstrip_blocks): the reference grid_cells must match.
OLD_ITEMS = """<ul>{% for e in items %}
          <li class="cal-{{ e["calendar"]["slug"] }}{% if e["status"] %} event-{{ e["status"]|lower }}{% endif %}"><a href="{{ e["url"] }}">{% if not e["all_day"] %}<time datetime="{{ e["start_iso"] }}">{{ e["time"] }}</time> {% endif %}{{ e["title"] }}</a>{% if e["status"] %} ({{ e["status"]|lower }}){% endif %}</li>
        {% endfor %}</ul>"""  # noqa: E501 - the template's line as it was


def _form(**extra: str) -> EventForm:
    values = {"tz": "Europe/London", "start_date": FIRST.isoformat(), "start_time": "18:00", "end_time": "20:00",
              "calendar": "workshops", **extra}
    return EventForm(**values)


async def _seed(engine: AsyncEngine) -> None:
    async with async_sessionmaker(engine, expire_on_commit=False)() as session, session.begin():
        service = EventService(session)
        await service.save_calendar(CalendarForm(name="Workshops", slug="workshops", colour="#aa3300"))
        await service.save_calendar(CalendarForm(name="Market days", slug="market", colour="#0033aa"))
        await service.save(_form(title="Bread & <butter> \"club\"", slug="bread-club", tags="bread, co-op",
                                 rrule=f"FREQ=WEEKLY;UNTIL={FIRST + timedelta(days=60):%Y%m%d}T235959Z",
                                 exdates=(FIRST + timedelta(days=7)).isoformat()))
        await service.save(_form(title="Cider evening", slug="cider", tz="America/New_York", status="cancelled",
                                 start_date=(FIRST + timedelta(days=3)).isoformat(), tags="cider"))
        await service.save(_form(title="Apple day", slug="apple-day", all_day="1", calendar="market",
                                 start_date=(FIRST + timedelta(days=5)).isoformat(), status="postponed"))
        await service.save(_form(title="Open-ended stitching", slug="stitching", rrule="FREQ=MONTHLY",
                                 start_date=(FIRST + timedelta(days=2)).isoformat(), start_time="10:00",
                                 end_time="12:00", place_name="Library room"))
        await service.save(_form(title="Hidden supper", slug="hidden", visibility="unlisted"))
        await service.save(_form(title="Members' meeting", slug="members-meeting", visibility="members"))
        await service.save(_form(title="Late bread", slug="late-bread", start_time="23:30", end_time="23:59",
                                 tz="Pacific/Auckland", start_date=(FIRST + timedelta(days=9)).isoformat()))


def _window() -> tuple[datetime, datetime]:
    return (datetime.combine(FIRST, datetime.min.time(), tzinfo=UTC) - timedelta(days=1),
            datetime.combine(FIRST + timedelta(days=31), datetime.min.time(), tzinfo=UTC) + timedelta(days=2))


async def test_briefs_and_grid_cells_match_the_general_path(engine: AsyncEngine) -> None:
    await _seed(engine)
    env = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
    old = env.from_string(OLD_ITEMS)
    start, end = _window()
    async with async_sessionmaker(engine, expire_on_commit=False)() as session:
        service = EventService(session)
        for filters in ({}, {"calendar": "market"}, {"tag": "bread"}, {"tag": "nothing"}):
            general = await service.in_window(start, end, limit=2000, **filters)
            fast = await service.briefs_in_window(start, end, limit=2000, **filters)
            assert [(i.event.id, i.occurrence) for i in fast] == [(i.event.id, i.occurrence) for i in general]
            assert listed_views(fast) == listed_views(general)  # every field lists and pages show
            cells = grid_cells(fast)
            days = sorted({i.occurrence.start_local.day for i in general})
            assert sorted(cells) == days
            for day in days:
                items = listed_views([i for i in general if i.occurrence.start_local.day == day], when=False)
                assert f"<ul>{cells[day]}</ul>" == old.render(items=items), (filters, day)
        everything = await service.briefs_in_window(start, end)
        titles = {item.event.title for item in everything}
        assert titles == {'Bread & <butter> "club"', "Cider evening", "Apple day", "Open-ended stitching",
                          "Late bread"}  # not the unlisted or the members' event
        # the excepted week is not a date; the weeks either side are
        bread = [i.occurrence.start_local.date() for i in everything if i.event.slug == "bread-club"]
        assert FIRST + timedelta(days=7) not in bread and {FIRST, FIRST + timedelta(days=14)} <= set(bread)
        # a limit keeps the earliest dates
        assert [i.occurrence for i in await service.briefs_in_window(start, end, limit=3)] == \
            [i.occurrence for i in everything[:3]]


def _uids(body: bytes) -> list[str]:
    return [c["uid"] for c in icalendar.Calendar.from_ical(body).walk("VEVENT")]


async def _same_as_icalendar(engine: AsyncEngine, body: bytes) -> None:
    """``body`` is icalendar's serialisation of its events, in its order, stamped with the newest change."""
    uids = _uids(body)
    async with async_sessionmaker(engine, expire_on_commit=False)() as session:
        rows = {ical.uid_of(e, BASE): e for e in (await session.execute(
            select(Event).options(selectinload(Event.calendar)))).scalars()}
    events = [rows[uid] for uid in uids]
    stamp = max(e.updated_at for e in events)
    assert body == ical.feed_uncached(events, name="Rose Ash events", base_url=BASE, now=stamp)


async def test_the_feed_is_icalendars_bytes_and_follows_edits(client: Any, engine: AsyncEngine) -> None:
    await _seed(engine)
    first = await client.get("/events.ics", params={"n": "1"})
    assert first.status_code == 200
    assert len(_uids(first.content)) == 5  # public ones, cancelled too; not unlisted or members-only
    await _same_as_icalendar(engine, first.content)
    again = await client.get("/events.ics", params={"n": "2"})  # from the serialised VEVENTs
    assert again.content == first.content
    month = (await client.get(f"/events/month/{MONTH}", params={"n": "1"})).text
    assert "Bread &amp; &lt;butter&gt; &#34;club&#34;" in month and "event-cancelled" in month

    # an edit: a new title and a second exception; then a cancellation
    excepted = [FIRST + timedelta(days=7), FIRST + timedelta(days=14)]
    async with async_sessionmaker(engine, expire_on_commit=False)() as session, session.begin():
        service = EventService(session)
        found = await service.get("bread-club")
        assert found is not None
        sequence = found.sequence
        await service.save(_form(title="Sourdough club", slug="bread-club", tags="bread, co-op",
                                 rrule=f"FREQ=WEEKLY;UNTIL={FIRST + timedelta(days=60):%Y%m%d}T235959Z",
                                 exdates="\n".join(d.isoformat() for d in excepted)), event=found)
    edited = await client.get("/events.ics", params={"n": "3"})
    await _same_as_icalendar(engine, edited.content)
    vevent = next(c for c in icalendar.Calendar.from_ical(edited.content).walk("VEVENT")
                  if c["summary"] == "Sourdough club")
    assert vevent["sequence"] > sequence  # EXDATE changed the dates: RFC 5545 §3.8.7.4
    assert {d.dt.date() for x in ([vevent["exdate"]] if not isinstance(vevent["exdate"], list)
                                  else vevent["exdate"]) for d in x.dts} == set(excepted)
    month = (await client.get(f"/events/month/{MONTH}", params={"n": "2"})).text
    assert "Sourdough club" in month and "Bread &amp;" not in month
    for day in excepted:  # neither excepted week shows the series on its day
        cell = re.search(rf'href="/events/day/{day.isoformat()}".*?</td>', month, re.S)
        assert cell is not None and "Sourdough club" not in cell.group(0)

    async with async_sessionmaker(engine, expire_on_commit=False)() as session, session.begin():
        service = EventService(session)
        found = await service.get("stitching")
        assert found is not None
        await service.save(_form(title="Open-ended stitching", slug="stitching", rrule="FREQ=MONTHLY",
                                 start_date=(FIRST + timedelta(days=2)).isoformat(), start_time="10:00",
                                 end_time="12:00", place_name="Library room", status="cancelled"), event=found)
    cancelled = await client.get("/events.ics", params={"n": "4"})
    await _same_as_icalendar(engine, cancelled.content)
    statuses = {c["summary"]: str(c["status"]) for c in icalendar.Calendar.from_ical(cancelled.content).walk("VEVENT")}
    assert statuses["Open-ended stitching"] == "CANCELLED"  # stays in the feed, cancelled
    assert len(statuses) == 5

    # a deleted event leaves the feed
    async with async_sessionmaker(engine, expire_on_commit=False)() as session, session.begin():
        service = EventService(session)
        gone = await service.get("late-bread")
        assert gone is not None
        await service.delete(gone)
    after = await client.get("/events.ics", params={"n": "5"})
    assert "Late bread" not in after.text and len(_uids(after.content)) == 4


async def test_bad_filters_and_months_are_refused(client: Any, engine: AsyncEngine) -> None:
    await _seed(engine)
    assert (await client.get("/events.ics", params={"calendar": "no-such"})).status_code == 404
    assert (await client.get(f"/events/month/{MONTH}", params={"tag": "a\x01b"})).status_code == 404
    for bad in ("2026-13", "26-01", "2026-1", "x"):
        assert (await client.get(f"/events/month/{bad}")).status_code == 404, bad
    # a tag nobody uses: an empty grid and an empty feed, not an error
    empty = await client.get(f"/events/month/{MONTH}", params={"tag": "nothing"})
    assert empty.status_code == 200 and "<li class=\"cal-" not in empty.text
    feed = await client.get("/events.ics", params={"tag": "nothing"})
    assert feed.status_code == 200 and _uids(feed.content) == []
    market = await client.get("/events.ics", params={"calendar": "market"})
    assert [c["summary"] for c in icalendar.Calendar.from_ical(market.content).walk("VEVENT")] == ["Apple day"]
