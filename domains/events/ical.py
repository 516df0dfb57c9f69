"""iCalendar feeds (RFC 5545), built with ``icalendar`` (design/domains.md §4).

One ``VEVENT`` per event: a series is its first date plus its ``RRULE`` and ``EXDATE``s, which
every calendar app expands (the rules are the RFC 5545 subset services/recurrence.py accepts).
``UID`` is stable (``event-<uuid>@<host>``) and ``SEQUENCE`` grows on every change of time or
place, so subscribed calendars replace what they hold; cancelled events stay in the feed with
``STATUS:CANCELLED``, so they disappear from people's calendars rather than linger. Times carry
their ``TZID`` and the feed its ``VTIMEZONE``s; all-day events are ``DATE`` values.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Final
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from icalendar import Calendar, vRecur
from icalendar import Event as VEvent

from app.markdown import plain_text
from domains.events.models import CANCELLED, POSTPONED, Event

__all__ = ["ICS_TYPE", "feed", "uid_of"]

ICS_TYPE: Final = "text/calendar"  # the response adds "; charset=utf-8"
PRODID: Final = "-//Rose Ash//Events//EN"
STATUS: Final = {CANCELLED: "CANCELLED", POSTPONED: "TENTATIVE"}


def uid_of(event: Event, base_url: str) -> str:
    return f"event-{event.id}@{urlsplit(base_url).hostname or 'localhost'}"


def _vevent(event: Event, base_url: str, stamp: datetime) -> VEvent:
    out = VEvent()
    out.add("uid", uid_of(event, base_url))
    out.add("dtstamp", stamp)
    tz = ZoneInfo(event.tz)
    if event.all_day:
        out.add("dtstart", event.starts_local.date())
        out.add("dtend", event.ends_local.date())
    else:
        out.add("dtstart", event.starts_at.astimezone(tz))
        out.add("dtend", event.ends_at.astimezone(tz))
    out.add("summary", event.title)
    description = plain_text(event.description_html)
    if description:
        out.add("description", description)
    location = ", ".join(p for p in (event.place_name, event.place_address) if p) or event.online_url
    if location:
        out.add("location", location)
    if event.latitude is not None and event.longitude is not None:
        out.add("geo", (event.latitude, event.longitude))
    out.add("url", f"{base_url}/events/{event.slug}")
    out.add("status", STATUS.get(event.status, "CONFIRMED"))
    out.add("sequence", event.sequence)
    out.add("last-modified", event.updated_at.astimezone(UTC))
    if event.tags:
        out.add("categories", list(event.tags))
    if event.rrule:
        out.add("rrule", vRecur.from_ical(event.rrule))
        for raw in event.exdates:
            local = datetime.fromisoformat(raw)
            out.add("exdate", local.date() if event.all_day else local.replace(tzinfo=tz))
    return out


def feed(events: Sequence[Event], *, name: str, base_url: str, now: datetime | None = None,
         refresh: timedelta = timedelta(hours=1)) -> bytes:
    """The RFC 5545 document of ``events`` (each once, series as RRULEs), with its VTIMEZONEs."""
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", name)
    # RFC 7986 §5.7 REFRESH-INTERVAL (and Apple's and Microsoft's older names for it).
    cal.add("refresh-interval", refresh, parameters={"VALUE": "DURATION"})
    cal.add("x-published-ttl", refresh)
    stamp = (now or datetime.now(UTC)).replace(microsecond=0)
    for event in events:
        cal.add_component(_vevent(event, base_url, stamp))
    cal.add_missing_timezones()
    body: bytes = cal.to_ical()
    return body
