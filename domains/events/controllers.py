"""Public event pages and feeds: the public route class (no session, ETag/304, Surrogate-Key).

- ``/events/``                       upcoming dates (filters: ``calendar``, ``tag``, ``from``)
- ``/events/past``                   the archive
- ``/events/month/<YYYY-MM>``        the month grid (a real table with headings)
- ``/events/week/<YYYY>-W<ww>``      one ISO 8601 week, a section a day (Monday first)
- ``/events/day/<YYYY-MM-DD>``       one day's dates
- ``/events/calendar/<slug>``        one calendar's upcoming dates (``.ics``: its feed)
- ``/events/<slug>``                 an event with its next dates (``.ics``: that event alone)
- ``/events.ics``                    every public event (``?calendar=``, ``?tag=``)
- ``/events/me/<token>.ics``         a member's bookings (feeds.py: a revocable token, ``private``,
                                     ``noindex``); ``/account/bookings/calendar`` shows, regenerates
                                     and revokes its link (a member page)

Times are shown in each event's own zone, named beside them. Members-only events are not public
pages: they look absent here (bookings, a later slice, bring the member views).
"""

from __future__ import annotations

import calendar as calmod
import dataclasses
import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final
from urllib.parse import urlencode
from uuid import UUID

import msgspec
from litestar import Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.response import Redirect, Template
from sqlalchemy import Row, Select, Text, case, cast, null, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.caching import CachePolicy, conditional_response
from app.forms import parse_form, see_other
from app.responses import PRIVATE
from app.settings import Settings
from domains.account.models import User
from domains.events import feeds, ical, keys
from domains.events.booking_models import Booking
from domains.events.models import Event, EventCalendar
from domains.events.services.bookings import BookingService
from domains.events.services.events import COLOUR_RE as COLOUR
from domains.events.services.events import SLUG_RE as SLUG
from domains.events.services.events import EventService, Listed, json_list
from domains.events.services.recurrence import occurrences, zone
from domains.events.services.tickets import on_sale
from domains.events.views import day_groups, event_view, grid_cells, listed_view
from fragments.pages import public_get, render_page

__all__ = ["feed_member_handlers", "public_handlers"]

LIST_DAYS: Final = 92
LIST_LIMIT: Final = 100
ARCHIVE_DAYS: Final = 366
FEED_EVENTS: Final = 5000
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
    found = await service.briefs_in_window(window_start, window_end, calendar=filters.get("calendar", ""),
                                           tag=filters.get("tag", ""), limit=2000)
    shown = [item for item in found if (item.occurrence.start_local.year, item.occurrence.start_local.month)
             == (first.year, first.month)]
    weeks = calmod.Calendar(firstweekday=0).monthdayscalendar(first.year, first.month)
    previous = (first - timedelta(days=1)).replace(day=1)
    following = first.replace(day=last_day) + timedelta(days=1)
    query = f"?{urlencode(filters)}" if filters else ""
    return await render_page(request, "events/month.html", {
        "title": first.strftime("%B %Y"), "weeks": weeks, "cells": grid_cells(shown), "ym": ym,
        "previous": f"/events/month/{previous:%Y-%m}{query}", "next": f"/events/month/{following:%Y-%m}{query}",
        "weekdays": [calmod.day_abbr[i] for i in range(7)], "weekday_names": [calmod.day_name[i] for i in range(7)],
        "calendars": await service.calendars(), "filters": filters,
        "today": datetime.now(UTC).date(), "year": first.year, "month_number": first.month,
        "week_links": [week_path(date(first.year, first.month, next(d for d in w if d))) for w in weeks],
        "query": query,
    }, keys=sorted({keys.EVENTS, *(keys.calendar(c) for c in [filters.get("calendar", "")] if c)}))


WEEK_RE: Final = re.compile(r"^(\d{4})-W(\d{2})$")


def _week(raw: str) -> date:
    """The Monday of ISO 8601 week ``YYYY-Www`` (404 for a week that does not exist, e.g. W53 of most years)."""
    found = WEEK_RE.match(raw)
    try:
        monday = date.fromisocalendar(int(found.group(1)), int(found.group(2)), 1) if found else None
    except ValueError:
        monday = None
    if monday is None or not 1900 < monday.year < 2200:
        raise NotFoundException("No such week: use YYYY-Www (ISO 8601), e.g. 2026-W50.")
    return monday


def _day(raw: str) -> date:
    try:
        day = date.fromisoformat(raw) if len(raw) == 10 else None
    except ValueError:
        day = None
    if day is None or not 1900 < day.year < 2200:
        raise NotFoundException("No such day: use YYYY-MM-DD.")
    return day


def week_path(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"/events/week/{year:04d}-W{week:02d}"


@public_get("/events/week/{week:str}", name="events:week")
async def events_week(request: Request[Any, Any, Any], db_session: AsyncSession, week: str) -> Response[bytes]:
    monday = _week(week)
    days = [monday + timedelta(days=i) for i in range(7)]
    year, number, _ = monday.isocalendar()
    title = f"Week {number}, {year}"
    return await _days_page(request, db_session, days, template="events/week.html", context={
        "title": title, "subtitle": f"{days[0].day} {days[0]:%B} \u2013 {days[-1].day} {days[-1]:%B %Y}",
        "previous": week_path(monday - timedelta(days=7)), "next": week_path(monday + timedelta(days=7)),
        "month": f"/events/month/{monday:%Y-%m}", "action": f"/events/week/{year:04d}-W{number:02d}"})


@public_get("/events/day/{day:str}", name="events:day")
async def events_day(request: Request[Any, Any, Any], db_session: AsyncSession, day: str) -> Response[bytes]:
    wanted = _day(day)
    return await _days_page(request, db_session, [wanted], template="events/day.html", context={
        "title": f"{wanted:%A} {wanted.day} {wanted:%B %Y}",
        "previous": f"/events/day/{wanted - timedelta(days=1)}", "next": f"/events/day/{wanted + timedelta(days=1)}",
        "week": week_path(wanted), "month": f"/events/month/{wanted:%Y-%m}", "action": f"/events/day/{wanted}"})


async def _days_page(request: Request[Any, Any, Any], db_session: AsyncSession, days: list[date], *,
                     template: str, context: dict[str, Any]) -> Response[bytes]:
    """The dates starting on each of ``days`` (in each event's own zone, as the month grid places
    them), a section a day; the month view's surrogate keys, so the same saves purge it."""
    filters = _filters(request)
    # A day either side covers every zone; each date is then placed by its own local day.
    window_start = datetime.combine(days[0], datetime.min.time(), tzinfo=UTC) - timedelta(days=1)
    window_end = datetime.combine(days[-1], datetime.min.time(), tzinfo=UTC) + timedelta(days=2)
    service = EventService(db_session)
    found = await service.briefs_in_window(window_start, window_end, calendar=filters.get("calendar", ""),
                                           tag=filters.get("tag", ""), limit=2000)
    by_day: dict[date, list[dict[str, Any]]] = {d: [] for d in days}
    for item in found:
        local_day = item.occurrence.start_local.date()
        if local_day in by_day:
            by_day[local_day].append(listed_view(item))
    query = f"?{urlencode(filters)}" if filters else ""
    return await render_page(request, template, {
        **context, **{k: context[k] + query for k in ("previous", "next")},
        "days": [{"iso": d.isoformat(), "label": f"{d:%A} {d.day} {d:%B}", "short": f"{d:%a} {d.day}",
                  "url": f"/events/day/{d}{query}", "items": by_day[d]} for d in days],
        "calendars": await service.calendars(), "filters": filters, "today": datetime.now(UTC).date().isoformat(),
    }, keys=sorted({keys.EVENTS, *(keys.calendar(c) for c in [filters.get("calendar", "")] if c)}))


def _ics(request: Request[Any, Any, Any], events: Sequence[Event | ical.Shown], *, name: str, base_url: str,
         surrogate: Sequence[str]) -> Response[bytes]:
    stamp = max((e.updated_at for e in events), default=datetime(2000, 1, 1, tzinfo=UTC))
    body = ical.feed(events, name=name, base_url=base_url, now=stamp)
    return conditional_response(request, body, CachePolicy.PUBLIC, surrogate_keys=surrogate,
                                media_type=ical.ICS_TYPE)


# The Shown fields read as they are (the query selects them in this order), before tags, rrule, exdates.
SHOWN_HEAD: Final = tuple(f.name for f in dataclasses.fields(ical.Shown))[:-3]
# Ids per query when loading the events a process has not serialised yet (SQLite allows 32,766
# bound parameters; PostgreSQL 65,535).
LOAD_CHUNK: Final = 1000


async def _feed_events(service: EventService, base_url: str, *, calendar: str = "", tag: str = ""
                       ) -> tuple[list[ical.Parts], datetime]:
    """The serialised VEVENTs a feed lists and its DTSTAMP (its newest change): the events with a
    date from a year ago on (series whole), cancelled too, in the order of their first such date.

    One query reads, per event, only its version (ical.Version) and the columns that place it (and
    its tags, for a tag filter): a one-off event's row says when it is (the query keeps only those in the window); a
    series (whose row only bounds it) is asked for its first date in the window, which the
    recurrence cache answers without walking the series. Each event's VEVENT is then the one this
    process serialised for that version; only events it has not seen at their version are loaded
    whole (one more query) and serialised. A whole-site feed of thousands of events spent most of
    its time loading every shown column and hashing them into the cache's key."""
    now = datetime.now(UTC)
    start, end = now - timedelta(days=366), now + timedelta(days=366 * 2)
    listed = Event.visibility == "public"  # members-only and unlisted events are in no feed
    window = (listed, Event.starts_at < end,
              or_(Event.ends_at > start, Event.series_ends_at > start,
                  (Event.rrule != "") & Event.series_ends_at.is_(None)))
    # Only a series needs the columns that expand it, and only a tag filter the tags: every other
    # row sends NULL there. Most rows are one-off events, and decoding values the driver then
    # throws away was about half of this query's time (2,000 rows of 13 columns).
    series = Event.rrule != ""
    stmt = (select(Event.id, Event.updated_at, Event.revision, Event.sequence, Event.status, Event.title,
                   Event.starts_at, cast(Event.tags, Text) if tag else null(), Event.rrule,
                   case((series, Event.starts_local)), case((series, Event.ends_local)), case((series, Event.tz)),
                   case((series, cast(Event.exdates, Text))))
            .where(*window).order_by(Event.starts_at))
    if calendar:
        stmt = stmt.where(Event.calendar.has(EventCalendar.slug == calendar))
    firsts: list[tuple[datetime, str, int, ical.Version]] = []
    for at, (event_id, updated_at, revision, sequence, status, title, starts_at, tags_text, rule, starts_local,
             ends_local, tz, exdates_text) in enumerate(await _rows(service.session, stmt)):
        if tag and tag not in json_list(tags_text or ""):
            continue
        if rule:
            first = next(occurrences(start_local=starts_local, end_local=ends_local, tz=tz, rule=rule,
                                     exdates=list(json_list(exdates_text or "")), window_start=start,
                                     window_end=end, limit=1), None)
            if first is None:
                continue
            starts_at = first.starts_at
        # A one-off event's row is its one date, in the window by the query's conditions.
        firsts.append((starts_at, title, at, ical.Version(event_id, updated_at, revision, sequence, status)))
    firsts.sort(key=lambda row: row[:3])
    versions = [version for *_, version in firsts[:FEED_EVENTS]]
    known = ical.known_parts(base_url)
    found = [(version, known.get(version)) for version in versions]
    missing = [version.id for version, parts in found if parts is None]
    loaded: dict[UUID, ical.Parts] = {}
    for chunk in range(0, len(missing), LOAD_CHUNK):
        ids = missing[chunk:chunk + LOAD_CHUNK]
        # Visibility asked again: an event made members-only since the first query is left out
        # (its versions row said public; what is shown must say so too).
        for row in await _rows(service.session, _shown_columns().where(Event.id.in_(ids), listed)):
            *head, tags_text, rule, exdates_text, revision = row
            shown = ical.Shown(**dict(zip(SHOWN_HEAD, head, strict=True)), tags=json_list(tags_text or ""),
                               rrule=rule, exdates=json_list(exdates_text or ""))
            # Kept under the version just read (it may be newer than the first query's, if the event
            # was saved in between: this feed then shows the newer one).
            loaded[shown.id] = ical.remember_parts(
                ical.Version(shown.id, shown.updated_at, revision, shown.sequence, shown.status), shown, base_url)
    parts = [made if made is not None else loaded[version.id] for version, made in found
             if made is not None or version.id in loaded]  # an event deleted in between is left out
    stamp = max((version.updated_at for version in versions), default=datetime(2000, 1, 1, tzinfo=UTC))
    return parts, stamp


async def _rows(session: AsyncSession, stmt: Select[Any]) -> Sequence[Row[Any]]:
    """The rows of a plain-column select run on the session's connection (Core): the ORM's result
    layer adds a per-row cost and nothing here needs it."""
    return (await (await session.connection()).execute(stmt)).all()


def _shown_columns() -> Select[Any]:
    """Every column an event's VEVENT shows (ical.Shown, in its order) and its revision."""
    return select(Event.id, Event.tz, Event.all_day, Event.starts_local, Event.ends_local, Event.starts_at,
                  Event.ends_at, Event.title, Event.description_html, Event.place_name, Event.place_address,
                  Event.online_url, Event.latitude, Event.longitude, Event.slug, Event.status, Event.sequence,
                  Event.updated_at, cast(Event.tags, Text), Event.rrule, cast(Event.exdates, Text), Event.revision)


def _feed_response(request: Request[Any, Any, Any], parts: list[ical.Parts], stamp: datetime, *, name: str,
                   surrogate: Sequence[str]) -> Response[bytes]:
    body = ical.feed_of_parts(parts, name=name, now=stamp)
    return conditional_response(request, body, CachePolicy.PUBLIC, surrogate_keys=surrogate,
                                media_type=ical.ICS_TYPE)


@public_get("/events.ics", name="events:feed")
async def events_feed(request: Request[Any, Any, Any], db_session: AsyncSession, settings: Settings) -> Response[bytes]:
    filters = _filters(request)
    service = EventService(db_session)
    parts, stamp = await _feed_events(service, settings.base_url, calendar=filters.get("calendar", ""),
                                      tag=filters.get("tag", ""))
    name = "Rose Ash events" + (f" · {filters['tag']}" if "tag" in filters else "")
    if "calendar" in filters:
        found = await service.calendar(filters["calendar"])
        if found is None:
            raise NotFoundException("No such calendar.")
        name = found.name
    surrogate = sorted({keys.EVENTS, *(keys.calendar(c) for c in [filters.get("calendar", "")] if c)})
    return _feed_response(request, parts, stamp, name=name, surrogate=surrogate)


@public_get("/events/calendar/{slug:str}", name="events:calendar")
async def calendar_page(request: Request[Any, Any, Any], db_session: AsyncSession, settings: Settings,
                        slug: str) -> Response[bytes]:
    service = EventService(db_session)
    wanted = slug.removesuffix(".ics")
    found = await service.calendar(wanted)
    if found is None:
        raise NotFoundException("No such calendar.")
    if slug.endswith(".ics"):
        parts, stamp = await _feed_events(service, settings.base_url, calendar=found.slug)
        return _feed_response(request, parts, stamp, name=found.name,
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
        "zone_name": zone(event.tz).key, "tickets": await on_sale(db_session, event),
    }, keys=surrogate)


@public_get("/events/calendars.css", name="events:calendar-colours")
async def calendar_colours(request: Request[Any, Any, Any], db_session: AsyncSession) -> Response[bytes]:
    """Each calendar's colour as a class (``.cal-<slug>``): pages carry no inline styles (CSP)."""
    rows = await EventService(db_session).calendars()
    body = "".join(f".cal-{c.slug} {{ --cal: {c.colour}; }}\n" for c in rows
                   if COLOUR.match(c.colour) and SLUG.match(c.slug))
    return conditional_response(request, body, CachePolicy.PUBLIC, surrogate_keys=(keys.EVENTS,),
                                media_type="text/css")


# -- a member's bookings as a calendar feed (feeds.py) --------------------------------------------

FEED_HEADERS: Final = {"Cache-Control": "private", "X-Robots-Tag": "noindex"}
FEED_DAYS: Final = 366  # bookings of dates from a year ago on


@get("/events/me/{token:str}", name="events:my-feed", cache_control=None)
async def my_feed(db_session: AsyncSession, settings: Settings, token: str) -> Response[bytes]:
    """The token is the only key (calendar apps have no session): ``private`` so no shared cache
    keeps it, ``noindex``; an unknown or revoked token is the same 404 as any missing page."""
    owner = await feeds.feed_owner(db_session, token.removesuffix(".ics"), settings.secret_key) \
        if token.endswith(".ics") else None
    if owner is None:
        raise NotFoundException("No such calendar feed.")
    since = (datetime.now(UTC) - timedelta(days=FEED_DAYS)).strftime("%Y%m%dT%H%M%S")
    rows: list[tuple[Booking, Event]] = [
        (b, e) for b, e in await BookingService(db_session).for_member(owner) if b.occurrence >= since]
    body = ical.bookings_feed(rows, name="My bookings", base_url=settings.base_url)
    return Response(body, media_type=ical.ICS_TYPE, headers=FEED_HEADERS)


class FeedAction(msgspec.Struct, kw_only=True):
    action: str = ""


@get("/account/bookings/calendar", name="events:my-feed-settings", cache_control=PRIVATE)
async def my_feed_settings(request: Request[User, Any, Any], db_session: AsyncSession,
                           settings: Settings) -> Template:
    token = await feeds.current_token(db_session, request.user, settings.secret_key)
    url = f"{settings.base_url}/events/me/{token}.ics" if token else ""
    return Template("events/my_feed.html", context={
        "url": url, "webcal": "webcal://" + url.split("://", 1)[-1] if url else ""})


@post("/account/bookings/calendar", status_code=303)
async def my_feed_change(request: Request[User, Any, Any], db_session: AsyncSession,
                         settings: Settings) -> Redirect:
    form = await parse_form(request, FeedAction)
    if form.action == "revoke":
        await feeds.revoke(db_session, request.user)
        message = "Your bookings feed is switched off: its old address no longer works."
    elif form.action == "regenerate":
        await feeds.regenerate(db_session, request.user, settings.secret_key)
        message = "Your bookings feed has a new address; any old one no longer works."
    else:
        raise NotFoundException("No such action.")
    return see_other("/account/bookings/calendar", request, message)


feed_member_handlers = [my_feed_settings, my_feed_change]

public_handlers = [calendar_colours, events_index, events_past, this_month, events_month, events_week, events_day,
                   events_feed, calendar_page, event_page, my_feed]
