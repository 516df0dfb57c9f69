"""Public event pages and feeds: the public route class (no session, ETag/304, Surrogate-Key).

- ``/events/``                       upcoming dates (filters: ``calendar``, ``tag``, ``from``)
- ``/events/past``                   the archive
- ``/events/month/<YYYY-MM>``        the month grid (a real table with headings)
- ``/events/calendar/<slug>``        one calendar's upcoming dates (``.ics``: its feed)
- ``/events/<slug>``                 an event with its next dates (``.ics``: that event alone)
- ``/events.ics``                    every public event (``?calendar=``, ``?tag=``)

Times are shown in each event's own zone, named beside them. Members-only events are not public
pages: they look absent here (bookings, a later slice, bring the member views).
"""

from __future__ import annotations

import calendar as calmod
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final
from urllib.parse import urlencode

from litestar import Request, Response
from litestar.exceptions import NotFoundException
from sqlalchemy.ext.asyncio import AsyncSession

from app.caching import CachePolicy, conditional_response
from app.settings import Settings
from domains.events import ical, keys
from domains.events.models import Event
from domains.events.services.events import COLOUR_RE as COLOUR
from domains.events.services.events import SLUG_RE as SLUG
from domains.events.services.events import EventService, Listed
from domains.events.services.recurrence import zone
from domains.events.views import day_groups, event_view, listed_view
from fragments.pages import public_get, render_page

__all__ = ["public_handlers"]

LIST_DAYS: Final = 92
LIST_LIMIT: Final = 100
ARCHIVE_DAYS: Final = 366
MONTH_RE_LEN: Final = 7
NOT_FOUND: Final = "We couldn't find that event."


def _today() -> datetime:
    now = datetime.now(UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def _filters(request: Request[Any, Any, Any]) -> dict[str, str]:
    found = {k: str(request.query_params.get(k, ""))[:120].strip() for k in ("calendar", "tag")
             if request.query_params.get(k)}
    if any(ord(c) < 0x20 or ord(c) == 0x7F for v in found.values() for c in v):
        raise NotFoundException("No events are tagged with control characters.")
    return found


def _start(request: Request[Any, Any, Any]) -> datetime:
    raw = str(request.query_params.get("from", ""))[:10]
    if not raw:
        return _today()
    try:
        return datetime.combine(date.fromisoformat(raw), datetime.min.time(), tzinfo=UTC)
    except ValueError as exc:
        raise NotFoundException("That is not a date (YYYY-MM-DD).") from exc


@public_get("/events/", name="events:index")
async def events_index(request: Request[Any, Any, Any], db_session: AsyncSession) -> Response[bytes]:
    service = EventService(db_session)
    filters = _filters(request)
    start = _start(request)
    found = await service.in_window(start, start + timedelta(days=LIST_DAYS), calendar=filters.get("calendar", ""),
                                    tag=filters.get("tag", ""), limit=LIST_LIMIT + 1)
    later = None
    if len(found) > LIST_LIMIT:
        found = found[:LIST_LIMIT]
        later = f"/events/?{urlencode({**filters, 'from': found[-1].occurrence.start_local.date().isoformat()})}"
    elif not found or found[-1].occurrence.starts_at < start + timedelta(days=LIST_DAYS):
        later = f"/events/?{urlencode({**filters, 'from': (start + timedelta(days=LIST_DAYS)).date().isoformat()})}"
    calendars = await service.calendars()
    keyset = {keys.EVENTS, *(keys.calendar(c) for c in [filters.get("calendar", "")] if c)}
    return await render_page(request, "events/index.html", {
        "groups": day_groups(found), "calendars": calendars, "filters": filters, "later": later,
        "heading": "Upcoming events", "feed": "/events.ics" + (f"?{urlencode(filters)}" if filters else ""),
        "month": start.strftime("%Y-%m"),
    }, keys=sorted(keyset))


@public_get("/events/past", name="events:past")
async def events_past(request: Request[Any, Any, Any], db_session: AsyncSession) -> Response[bytes]:
    service = EventService(db_session)
    end = datetime.now(UTC)
    found = await service.in_window(end - timedelta(days=ARCHIVE_DAYS), end, limit=1000)
    found = [item for item in found if item.occurrence.ends_at <= end][::-1][:LIST_LIMIT]
    return await render_page(request, "events/index.html", {
        "groups": day_groups(found), "calendars": await service.calendars(), "filters": {}, "later": None,
        "heading": "Past events", "feed": "/events.ics", "month": end.strftime("%Y-%m"), "past": True,
    }, keys=(keys.EVENTS,))


@public_get("/events/month/", name="events:this-month")
async def this_month(request: Request[Any, Any, Any], db_session: AsyncSession) -> Response[bytes]:
    return await _month_page(request, db_session, f"{datetime.now(UTC):%Y-%m}")


def _month(ym: str) -> date:
    try:
        first = date.fromisoformat(ym + "-01") if len(ym) == MONTH_RE_LEN else None
    except ValueError:
        first = None
    if first is None or not 1900 < first.year < 2200:
        raise NotFoundException("No such month: use YYYY-MM.")
    return first


@public_get("/events/month/{ym:str}", name="events:month")
async def events_month(request: Request[Any, Any, Any], db_session: AsyncSession, ym: str) -> Response[bytes]:
    return await _month_page(request, db_session, ym)


async def _month_page(request: Request[Any, Any, Any], db_session: AsyncSession, ym: str) -> Response[bytes]:
    first = _month(ym)
    last_day = calmod.monthrange(first.year, first.month)[1]
    filters = _filters(request)
    # A day either side covers every zone; each date is then placed by its own local day.
    window_start = datetime.combine(first, datetime.min.time(), tzinfo=UTC) - timedelta(days=1)
    window_end = datetime.combine(first.replace(day=last_day), datetime.min.time(), tzinfo=UTC) + timedelta(days=2)
    service = EventService(db_session)
    found = await service.in_window(window_start, window_end, calendar=filters.get("calendar", ""),
                                    tag=filters.get("tag", ""), limit=2000)
    by_day: dict[int, list[dict[str, Any]]] = {}
    for item in found:
        day = item.occurrence.start_local.date()
        if (day.year, day.month) == (first.year, first.month):
            by_day.setdefault(day.day, []).append(listed_view(item))
    weeks = calmod.Calendar(firstweekday=0).monthdayscalendar(first.year, first.month)
    previous = (first - timedelta(days=1)).replace(day=1)
    following = first.replace(day=last_day) + timedelta(days=1)
    query = f"?{urlencode(filters)}" if filters else ""
    return await render_page(request, "events/month.html", {
        "title": first.strftime("%B %Y"), "weeks": weeks, "by_day": by_day, "ym": ym,
        "previous": f"/events/month/{previous:%Y-%m}{query}", "next": f"/events/month/{following:%Y-%m}{query}",
        "weekdays": [calmod.day_abbr[i] for i in range(7)], "weekday_names": [calmod.day_name[i] for i in range(7)],
        "calendars": await service.calendars(), "filters": filters,
        "today": datetime.now(UTC).date(), "year": first.year, "month_number": first.month,
    }, keys=sorted({keys.EVENTS, *(keys.calendar(c) for c in [filters.get("calendar", "")] if c)}))


def _ics(request: Request[Any, Any, Any], events: list[Event], *, name: str, base_url: str,
         surrogate: Sequence[str]) -> Response[bytes]:
    stamp = max((e.updated_at for e in events), default=datetime(2000, 1, 1, tzinfo=UTC))
    body = ical.feed(events, name=name, base_url=base_url, now=stamp)
    return conditional_response(request, body, CachePolicy.PUBLIC, surrogate_keys=surrogate,
                                media_type=ical.ICS_TYPE)


async def _feed_events(service: EventService, *, calendar: str = "", tag: str = "") -> list[Event]:
    """The events a feed lists: those with a date from a year ago on (series whole), cancelled too."""
    now = datetime.now(UTC)
    found = await service.in_window(now - timedelta(days=366), now + timedelta(days=366 * 2), calendar=calendar,
                                    tag=tag, limit=5000)
    return list({item.event.id: item.event for item in found}.values())


@public_get("/events.ics", name="events:feed")
async def events_feed(request: Request[Any, Any, Any], db_session: AsyncSession, settings: Settings) -> Response[bytes]:
    filters = _filters(request)
    service = EventService(db_session)
    events = await _feed_events(service, calendar=filters.get("calendar", ""), tag=filters.get("tag", ""))
    name = "Rose Ash events" + (f" · {filters['tag']}" if "tag" in filters else "")
    if "calendar" in filters:
        found = await service.calendar(filters["calendar"])
        if found is None:
            raise NotFoundException("No such calendar.")
        name = found.name
    surrogate = sorted({keys.EVENTS, *(keys.calendar(c) for c in [filters.get("calendar", "")] if c)})
    return _ics(request, events, name=name, base_url=settings.base_url, surrogate=surrogate)


@public_get("/events/calendar/{slug:str}", name="events:calendar")
async def calendar_page(request: Request[Any, Any, Any], db_session: AsyncSession, settings: Settings,
                        slug: str) -> Response[bytes]:
    service = EventService(db_session)
    wanted = slug.removesuffix(".ics")
    found = await service.calendar(wanted)
    if found is None:
        raise NotFoundException("No such calendar.")
    if slug.endswith(".ics"):
        events = await _feed_events(service, calendar=found.slug)
        return _ics(request, events, name=found.name, base_url=settings.base_url,
                    surrogate=sorted({keys.EVENTS, keys.calendar(found.slug)}))
    start = _today()
    listed = await service.in_window(start, start + timedelta(days=LIST_DAYS), calendar=found.slug, limit=LIST_LIMIT)
    return await render_page(request, "events/index.html", {
        "groups": day_groups(listed), "calendars": await service.calendars(), "filters": {"calendar": found.slug},
        "later": None, "heading": found.name, "description": found.description,
        "feed": f"/events/calendar/{found.slug}.ics", "month": start.strftime("%Y-%m"),
    }, keys=sorted({keys.EVENTS, keys.calendar(found.slug)}))


@public_get("/events/{slug:str}", name="events:event")
async def event_page(request: Request[Any, Any, Any], db_session: AsyncSession, settings: Settings,
                     slug: str) -> Response[bytes]:
    service = EventService(db_session)
    event = await service.get_visible(slug.removesuffix(".ics"))
    if event is None:
        raise NotFoundException(NOT_FOUND)
    surrogate = sorted({keys.event(event.id), keys.calendar(event.calendar.slug)})
    if slug.endswith(".ics"):
        return _ics(request, [event], name=event.title, base_url=settings.base_url, surrogate=surrogate)
    upcoming = await service.next_occurrences(event, limit=10)
    return await render_page(request, "events/event.html", {
        "event": event_view(event, settings.base_url), "upcoming": [listed_view(Listed(event, o)) for o in upcoming],
        "zone_name": zone(event.tz).key,
    }, keys=surrogate)


@public_get("/events/calendars.css", name="events:calendar-colours")
async def calendar_colours(request: Request[Any, Any, Any], db_session: AsyncSession) -> Response[bytes]:
    """Each calendar's colour as a class (``.cal-<slug>``): pages carry no inline styles (CSP)."""
    rows = await EventService(db_session).calendars()
    body = "".join(f".cal-{c.slug} {{ --cal: {c.colour}; }}\n" for c in rows
                   if COLOUR.match(c.colour) and SLUG.match(c.slug))
    return conditional_response(request, body, CachePolicy.PUBLIC, surrogate_keys=(keys.EVENTS,),
                                media_type="text/css")


public_handlers = [calendar_colours, events_index, events_past, this_month, events_month, events_feed, calendar_page,
                   event_page]
