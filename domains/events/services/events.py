"""The events service: calendars and events, their rules, and the occurrences in a window.

A save checks everything first (title, slug, zone, times that exist in the zone, end after start,
the repeat rule, place and links) and writes nothing when any of it is wrong: the form comes back
with 422 and every problem named. A local time that falls in a daylight-saving gap or overlap is
refused with both readings offered (``dst`` = ``earlier``/``later`` picks one), never shifted
silently. Every change writes its ``edge.purge`` job in the same transaction.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Final
from urllib.parse import urlsplit
from uuid import UUID

import msgspec
from sqlalchemy import ColumnElement, Text, cast, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from app.forms import InputProblems
from app.markdown import render_markdown
from domains.events import keys
from domains.events.models import PUBLIC, SCHEDULED, STATUSES, VISIBILITIES, Event, EventCalendar
from domains.events.services.recurrence import (
    Occurrence,
    RuleProblem,
    check_rule,
    local_kind,
    occurrences,
    to_utc,
    zone,
)
from domains.events.topics import emit_event_changed
from fragments.purge import emit_purge

__all__ = ["Brief", "BriefListed", "CalendarBrief", "CalendarForm", "EventForm", "EventService", "Listed",
           "SlugTaken", "json_list", "slugify"]

SLUG_RE: Final = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,118}[a-z0-9])?$")
COLOUR_RE: Final = re.compile(r"^#[0-9a-fA-F]{6}$")
MAX_DESCRIPTION: Final = 50_000
MAX_TAGS: Final = 20
# The longest single occurrence (a festival); longer things are a series.
MAX_DURATION: Final = timedelta(days=31)
RESERVED_SLUGS: Final = frozenset({"new", "admin", "month", "calendar", "tag", "past", "embed", "checkin", "calendars",
                                       "members", "tickets"})


def slugify(text: str, fallback: str = "event") -> str:
    from domains.blog.schemas import slugify as blog_slugify

    return blog_slugify(text, fallback)[:120].strip("-") or fallback


class SlugTaken(InputProblems):
    pass


class EventForm(msgspec.Struct, kw_only=True):
    """The event form as typed (every field a string; checked by :meth:`EventService.save`)."""

    title: str = ""
    slug: str = ""
    calendar: str = ""
    description: str = ""
    tz: str = "Europe/London"
    all_day: str = ""
    start_date: str = ""
    start_time: str = ""
    end_date: str = ""
    end_time: str = ""
    dst: str = ""  # "earlier"/"later": which reading of a time the clocks pass twice
    rrule: str = ""
    exdates: str = ""
    place_name: str = ""
    place_address: str = ""
    latitude: str = ""
    longitude: str = ""
    online_url: str = ""
    organiser: str = ""
    tags: str = ""
    status: str = SCHEDULED
    visibility: str = PUBLIC
    capacity: str = ""  # places per date; empty: no bookings


class CalendarForm(msgspec.Struct, kw_only=True):
    name: str = ""
    slug: str = ""
    colour: str = "#2f6f4f"
    description: str = ""


@dataclass(frozen=True, slots=True)
class CalendarBrief:
    """A calendar as lists and grids show it beside each date."""

    name: str
    slug: str
    colour: str


@dataclass(frozen=True, slots=True)
class Brief:
    """What the month grid and the week and day pages show of an event, read as plain columns
    (``EventService.briefs_in_window``): the attributes views.listed_view reads of an Event. Loading
    a month's few hundred events as ORM objects (every column, identity map, attribute
    instrumentation) cost more than placing their dates."""

    id: UUID
    title: str
    slug: str
    all_day: bool
    tz: str
    status: str
    place_name: str
    tags: tuple[str, ...]
    rrule: str
    calendar: CalendarBrief


@dataclass(frozen=True, slots=True)
class Listed:
    """One occurrence of an event, as lists, grids and feeds show it."""

    event: Event
    occurrence: Occurrence


@dataclass(frozen=True, slots=True)
class BriefListed:
    """One occurrence of an event read as a :class:`Brief` (the month grid, the week and day pages)."""

    event: Brief
    occurrence: Occurrence


@lru_cache(maxsize=4096)
def json_list(text: str) -> tuple[str, ...]:
    """A JSON list of strings (tags, excluded dates) as read from its column cast to text: the same
    few texts repeat across a page's rows, so each is decoded once per process."""
    found = json.loads(text) if text else []
    return tuple(str(x) for x in found) if isinstance(found, list) else ()


def _clean(text: str, limit: int, name: str, errors: dict[str, str]) -> str:
    value = " ".join(text.split())
    if len(value) > limit:
        errors[name] = f"At most {limit} characters."
    return value


def _date(raw: str, name: str, errors: dict[str, str], *, required: bool = True) -> date | None:
    if not raw.strip():
        if required:
            errors[name] = "Give a date."
        return None
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        errors[name] = "A date as YYYY-MM-DD."
        return None


def _time(raw: str, name: str, errors: dict[str, str]) -> time | None:
    if not raw.strip():
        errors[name] = "Give a time."
        return None
    try:
        return time.fromisoformat(raw.strip()).replace(tzinfo=None)
    except ValueError:
        errors[name] = "A time as HH:MM."
        return None


def _coordinate(raw: str, name: str, limit: float, errors: dict[str, str]) -> float | None:
    if not raw.strip():
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        errors[name] = "A number in decimal degrees."
        return None
    if not -limit <= value <= limit or value != value:  # NaN is not a coordinate
        errors[name] = f"Between -{limit:g} and {limit:g}."
        return None
    return value


def _overlapping(start: datetime, end: datetime, *, include_members: bool, listed_only: bool
                 ) -> list[ColumnElement[bool]]:
    """Conditions for the events with a date that may overlap [start, end) (a series' row only
    bounds it: its dates are placed afterwards), visible to the reader, unlisted ones only when
    not ``listed_only``."""
    visibilities = ["public"] + (["members"] if include_members else []) + ([] if listed_only else ["unlisted"])
    return [Event.visibility.in_(visibilities), Event.starts_at < end,
            or_(Event.ends_at > start, Event.series_ends_at > start,
                (Event.rrule != "") & Event.series_ends_at.is_(None))]


class EventService:
    def __init__(self, session: AsyncSession, *, base_url: str = "") -> None:
        self.session = session
        self.base_url = base_url

    # -- calendars ---------------------------------------------------------------------------------
    async def calendars(self) -> list[EventCalendar]:
        return list((await self.session.execute(select(EventCalendar).order_by(EventCalendar.name))).scalars())

    async def calendar(self, slug: str) -> EventCalendar | None:
        stmt = select(EventCalendar).where(EventCalendar.slug == slug)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def save_calendar(self, form: CalendarForm, *, calendar: EventCalendar | None = None) -> EventCalendar:
        errors: dict[str, str] = {}
        name = _clean(form.name, 120, "name", errors)
        if not name:
            errors["name"] = "Give the calendar a name."
        slug = form.slug.strip().lower() or slugify(name, "calendar")
        if not SLUG_RE.match(slug):
            errors["slug"] = "Use lower-case letters, digits and hyphens (at most 120)."
        colour = form.colour.strip() or "#2f6f4f"
        if not COLOUR_RE.match(colour):
            errors["colour"] = "A colour as #RRGGBB."
        if len(form.description) > 2000:
            errors["description"] = "At most 2,000 characters."
        if "slug" not in errors:
            other = await self.calendar(slug)
            if other is not None and (calendar is None or other.id != calendar.id):
                errors["slug"] = f"Another calendar uses “{slug}”."
                raise SlugTaken(errors, status=409)
        if errors:
            raise InputProblems(errors)
        if calendar is None:
            calendar = EventCalendar(name=name, slug=slug)
            self.session.add(calendar)
        calendar.name, calendar.slug, calendar.colour = name, slug, colour.lower()
        calendar.description = form.description.strip()
        await self.session.flush()
        await emit_purge(self.session, {keys.EVENTS, keys.calendar(slug)})
        return calendar

    async def default_calendar(self) -> EventCalendar:
        """The first calendar, made ("Events") when there is none, so an event always has one."""
        found = (await self.session.execute(select(EventCalendar).order_by(EventCalendar.created_at).limit(1))
                 ).scalar_one_or_none()
        if found is None:
            found = EventCalendar(name="Events", slug="events", colour="#2f6f4f", description="")
            self.session.add(found)
            await self.session.flush()
        return found

    # -- events --------------------------------------------------------------------------------------
    async def get(self, slug: str) -> Event | None:
        stmt = select(Event).where(Event.slug == slug).options(selectinload(Event.calendar))
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def get_visible(self, slug: str, *, member: bool = False) -> Event | None:
        """The event at ``slug`` if this reader may see it: public and unlisted ones for everyone,
        members-only ones for members; otherwise None (it looks absent)."""
        found = await self.get(slug)
        if found is None or (found.visibility == "members" and not member):
            return None
        return found

    async def admin_list(self) -> list[Event]:
        stmt = select(Event).options(selectinload(Event.calendar)).order_by(Event.starts_at.desc())
        return list((await self.session.execute(stmt)).scalars())

    async def in_window(self, start: datetime, end: datetime, *, calendar: str = "", tag: str = "",
                        listed_only: bool = True, include_members: bool = False,
                        limit: int = 500) -> list[Listed]:
        """Every occurrence overlapping [start, end), in start order: public (and, for members,
        members-only) events; ``listed_only`` leaves unlisted ones out of lists and feeds."""
        stmt = (select(Event).options(selectinload(Event.calendar))
                .where(*_overlapping(start, end, include_members=include_members, listed_only=listed_only))
                .order_by(Event.starts_at))
        if calendar:
            stmt = stmt.where(Event.calendar.has(EventCalendar.slug == calendar))
        rows = list((await self.session.execute(stmt)).scalars())
        found: list[Listed] = []
        for event in rows:
            if tag and tag not in event.tags:
                continue
            for occ in occurrences(start_local=event.starts_local, end_local=event.ends_local, tz=event.tz,
                                   rule=event.rrule, exdates=event.exdates, window_start=start, window_end=end,
                                   limit=limit):
                found.append(Listed(event, occ))
        found.sort(key=lambda item: (item.occurrence.starts_at, item.event.title))
        return found[:limit]

    async def briefs_in_window(self, start: datetime, end: datetime, *, calendar: str = "", tag: str = "",
                               limit: int = 2000) -> list[BriefListed]:
        """``in_window`` (listed public events) with each event as a :class:`Brief`: one query of
        the columns a grid shows, joined to its calendar, no ORM objects. The same dates in the
        same order as ``in_window`` gives (tests/domains/events/test_month_fast.py compares them)."""
        stmt = (select(Event.id, Event.title, Event.slug, Event.all_day, Event.tz, Event.status, Event.place_name,
                       cast(Event.tags, Text), Event.rrule, cast(Event.exdates, Text), Event.starts_local,
                       Event.ends_local, EventCalendar.name, EventCalendar.slug, EventCalendar.colour)
                .join(EventCalendar, EventCalendar.id == Event.calendar_id)
                .where(*_overlapping(start, end, include_members=False, listed_only=True))
                .order_by(Event.starts_at))
        if calendar:
            stmt = stmt.where(EventCalendar.slug == calendar)
        calendars: dict[tuple[str, str, str], CalendarBrief] = {}
        found: list[BriefListed] = []
        for (event_id, title, slug, all_day, tz, status, place_name, tags_text, rule, exdates_text, starts_local,
             ends_local, cal_name, cal_slug, cal_colour) in await (await self.session.connection()).execute(stmt):
            tags = json_list(tags_text or "")
            if tag and tag not in tags:
                continue
            cal = calendars.get((cal_name, cal_slug, cal_colour))
            if cal is None:
                cal = calendars[(cal_name, cal_slug, cal_colour)] = CalendarBrief(cal_name, cal_slug, cal_colour)
            brief = Brief(event_id, title, slug, all_day, tz, status, place_name, tags, rule, cal)
            for occ in occurrences(start_local=starts_local, end_local=ends_local, tz=tz, rule=rule,
                                   exdates=list(json_list(exdates_text or "")), window_start=start,
                                   window_end=end, limit=limit):
                found.append(BriefListed(brief, occ))
        found.sort(key=lambda item: (item.occurrence.starts_at, item.event.title))
        return found[:limit]

    async def next_occurrences(self, event: Event, *, after: datetime | None = None, limit: int = 10
                               ) -> list[Occurrence]:
        start = after or datetime.now(UTC)
        return list(occurrences(start_local=event.starts_local, end_local=event.ends_local, tz=event.tz,
                                rule=event.rrule, exdates=event.exdates, window_start=start,
                                window_end=start + timedelta(days=366 * 2), limit=limit))

    async def save(self, form: EventForm, *, event: Event | None = None) -> Event:
        """Create or update an event from the form; InputProblems (nothing written) when anything is wrong."""
        errors: dict[str, str] = {}
        editing = event is not None
        title = _clean(form.title, 200, "title", errors)
        if not title:
            errors["title"] = "Give the event a title."
        slug = form.slug.strip().lower() or slugify(title)
        if slug in RESERVED_SLUGS:
            errors["slug"] = f"“{slug}” is reserved: choose another slug."
        elif not SLUG_RE.match(slug):
            errors["slug"] = "Use lower-case letters, digits and hyphens (at most 120), not starting or ending with -."
        if len(form.description) > MAX_DESCRIPTION:
            errors["description"] = f"At most {MAX_DESCRIPTION:,} characters."
        tz_name = form.tz.strip() or "UTC"
        try:
            tzinfo = zone(tz_name)
        except RuleProblem as exc:
            errors["tz"] = str(exc)
            tzinfo = None
        all_day = bool(form.all_day)
        start_day = _date(form.start_date, "start_date", errors)
        end_day = _date(form.end_date, "end_date", errors, required=False) or start_day
        start_at: time | None
        end_at: time | None
        if all_day:
            start_at, end_at = time(0, 0), time(0, 0)
        else:
            start_at = _time(form.start_time, "start_time", errors)
            end_at = _time(form.end_time, "end_time", errors)
        start_local = end_local = None
        if start_day and end_day and start_at is not None and end_at is not None:
            start_local = datetime.combine(start_day, start_at)
            end_local = datetime.combine(end_day, end_at) + (timedelta(days=1) if all_day else timedelta(0))
        folds = {"start": 0, "end": 0}
        if tzinfo is not None and start_local is not None and end_local is not None and not all_day:
            for name, local in (("start", start_local), ("end", end_local)):
                kind = local_kind(local, tzinfo)
                if kind == "gap":
                    errors[f"{name}_time"] = (f"{local:%H:%M} does not exist on {local:%d %B %Y} in {tz_name}: "
                                              "the clocks go forward over it. Choose a time outside the gap.")
                elif kind == "ambiguous":
                    if form.dst in ("earlier", "later"):
                        folds[name] = 0 if form.dst == "earlier" else 1
                    else:
                        first = to_utc(local, tzinfo, fold=0).astimezone(tzinfo)
                        second = to_utc(local, tzinfo, fold=1).astimezone(tzinfo)
                        errors["dst"] = (f"{local:%H:%M} happens twice on {local:%d %B %Y} in {tz_name} (clocks go "
                                         f"back): choose the earlier (UTC{first:%z}) or the later (UTC{second:%z}).")
        starts_at = ends_at = None
        if tzinfo is not None and start_local is not None and end_local is not None:
            starts_at = to_utc(start_local, tzinfo, fold=folds["start"])
            ends_at = to_utc(end_local, tzinfo, fold=folds["end"])
            if ends_at < starts_at:
                errors["end_time" if not all_day and end_day == start_day else "end_date"] = \
                    "The event ends before it starts."
            elif ends_at - starts_at > MAX_DURATION:
                errors["end_date"] = "One date lasts at most 31 days: make longer things a repeating series."
        exdates: list[datetime] = []
        for raw in form.exdates.replace(",", "\n").split():
            try:
                day = date.fromisoformat(raw.strip()[:10])
            except ValueError:
                errors["exdates"] = f"“{raw[:40]}” is not a date (YYYY-MM-DD)."
                break
            if start_local is not None:
                exdates.append(datetime.combine(day, start_local.time()))
        rule = form.rrule.strip().removeprefix("RRULE:").removeprefix("rrule:")
        series_end_local: datetime | None = None
        if rule and start_local is not None and end_local is not None:
            if len(rule) > 500:
                errors["rrule"] = "At most 500 characters."
            else:
                try:
                    series_end_local = check_rule(rule, start_local, exdates)
                except RuleProblem as exc:
                    errors["rrule"] = str(exc)
        elif exdates:
            errors["exdates"] = "Exceptions need a repeat rule."
        place_name = _clean(form.place_name, 200, "place_name", errors)
        place_address = _clean(form.place_address, 400, "place_address", errors)
        latitude = _coordinate(form.latitude, "latitude", 90, errors)
        longitude = _coordinate(form.longitude, "longitude", 180, errors)
        if (latitude is None) != (longitude is None) and "latitude" not in errors and "longitude" not in errors:
            errors["longitude" if longitude is None else "latitude"] = "Give both coordinates, or neither."
        online_url = form.online_url.strip()
        if online_url and (urlsplit(online_url).scheme not in ("http", "https") or not urlsplit(online_url).netloc
                           or len(online_url) > 500):
            errors["online_url"] = "An http(s) address of at most 500 characters."
        organiser = _clean(form.organiser, 200, "organiser", errors)
        tags = list(dict.fromkeys(t.strip().lower()[:40] for t in form.tags.split(",") if t.strip()))
        if len(tags) > MAX_TAGS:
            errors["tags"] = f"At most {MAX_TAGS} tags."
        if form.status not in STATUSES:
            errors["status"] = "Scheduled, cancelled or postponed."
        if form.visibility not in VISIBILITIES:
            errors["visibility"] = "Public, members only or unlisted."
        capacity: int | None = None
        if form.capacity.strip():
            try:
                capacity = int(form.capacity.strip())
                if not 1 <= capacity <= 100_000:
                    raise ValueError
            except ValueError:
                errors["capacity"] = "A whole number of places from 1 to 100,000, or empty for no bookings."
        if event is not None and capacity != event.capacity and "capacity" not in errors:
            from domains.events.services.bookings import capacity_problem

            if problem := await capacity_problem(self.session, event, capacity):
                errors["capacity"] = problem
        cal = await self.calendar(form.calendar) if form.calendar else await self.default_calendar()
        if cal is None:
            errors["calendar"] = "There is no such calendar."
        if "slug" not in errors:
            owner = (await self.session.execute(select(Event.id).where(Event.slug == slug))).scalar()
            if owner is not None and (event is None or owner != event.id):
                errors["slug"] = f"Another event uses “{slug}”."
                raise SlugTaken({**errors}, status=409)
        if editing and not errors and event is not None and (
                start_local != event.starts_local or end_local != event.ends_local or tz_name != event.tz
                or rule != event.rrule or sorted(x.isoformat() for x in exdates) != sorted(event.exdates)):
            from domains.events.services.bookings import live_bookings

            if held := await live_bookings(self.session, event):
                errors["start_date"] = (
                    f"{held} booking{'s hold' if held != 1 else ' holds'} places on this event's dates: moving "
                    "its dates would strand their tickets. Keep the dates (set the status to postponed or "
                    "cancelled to tell people), or cancel those bookings first.")
        if errors:
            raise InputProblems(errors)
        assert cal is not None and start_local is not None and end_local is not None
        assert starts_at is not None and ends_at is not None and tzinfo is not None
        old_calendar = None
        if event is None:
            event = Event(title=title, slug=slug, calendar_id=cal.id, tz=tz_name, starts_local=start_local,
                          ends_local=end_local, starts_at=starts_at, ends_at=ends_at)
            self.session.add(event)
        else:
            moved = (event.starts_at, event.ends_at, event.rrule, sorted(event.exdates), event.place_name,
                     event.place_address, event.status) != (starts_at, ends_at, rule,
                                                            sorted(x.isoformat() for x in exdates), place_name,
                                                            place_address, form.status)
            if moved:  # RFC 5545 §3.8.7.4: a significant change bumps SEQUENCE
                event.sequence += 1
            event.revision += 1
            if event.calendar_id != cal.id:
                old_calendar = (await self.session.get(EventCalendar, event.calendar_id))
        event.title, event.slug, event.calendar_id, event.tz = title, slug, cal.id, tz_name
        event.description_md, event.description_html = form.description, render_markdown(form.description)
        event.all_day, event.starts_local, event.ends_local = all_day, start_local, end_local
        event.starts_at, event.ends_at, event.rrule = starts_at, ends_at, rule
        event.exdates = [x.isoformat() for x in exdates]
        event.series_ends_at = (to_utc(series_end_local + (end_local - start_local), tzinfo)
                                if series_end_local is not None else None)
        event.place_name, event.place_address = place_name, place_address
        event.latitude, event.longitude, event.online_url = latitude, longitude, online_url
        event.organiser, event.tags, event.status, event.visibility = organiser, tags, form.status, form.visibility
        if editing and capacity != event.capacity:
            from domains.events.services.bookings import set_capacity

            await set_capacity(self.session, event, capacity)
        event.capacity = capacity
        await self.session.flush()
        purge = keys.showing(event.id, cal.slug)
        if old_calendar is not None:
            purge.add(keys.calendar(old_calendar.slug))
        await emit_purge(self.session, purge)
        await emit_event_changed(self.session, event.id, "saved")  # federation (topics.py)
        await self.session.refresh(event, ["calendar"])
        return event

    async def delete(self, event: Event) -> None:
        cal = await self.session.get(EventCalendar, event.calendar_id)
        await self.session.delete(event)
        await self.session.flush()
        await emit_purge(self.session, keys.showing(event.id, cal.slug if cal else ""))
        await emit_event_changed(self.session, event.id, "deleted")
