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
from domains.events.booking_models import CANCELLED as BOOKING_CANCELLED
from domains.events.booking_models import WAITING, Booking
from domains.events.models import CANCELLED, POSTPONED, Event

__all__ = ["ICS_TYPE", "bookings_feed", "feed", "uid_of"]

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


def bookings_feed(rows: Sequence[tuple[Booking, Event]], *, name: str, base_url: str,
                  now: datetime | None = None) -> bytes:
    """A member's bookings as RFC 5545 (their personal feed, domains/events/feeds.py): one
    ``VEVENT`` per booked date, UID ``booking-<id>@host`` (stable; distinct from the public feed's
    event UIDs, so both can be subscribed). A waiting-list booking is ``TENTATIVE``; a cancelled
    booking, or a booking of a cancelled event, stays as ``CANCELLED`` so calendar apps remove it."""
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", name)
    cal.add("refresh-interval", timedelta(hours=1), parameters={"VALUE": "DURATION"})
    cal.add("x-published-ttl", timedelta(hours=1))
    stamp = (now or datetime.now(UTC)).replace(microsecond=0)
    host = urlsplit(base_url).hostname or "localhost"
    for booking, event in rows:
        try:
            start = datetime.strptime(booking.occurrence, "%Y%m%dT%H%M%S")
        except ValueError:
            continue
        end = start + (event.ends_local - event.starts_local)
        tz = ZoneInfo(event.tz)
        out = VEvent()
        out.add("uid", f"booking-{booking.id}@{host}")
        out.add("dtstamp", stamp)
        if event.all_day:
            out.add("dtstart", start.date())
            out.add("dtend", end.date())
        else:
            out.add("dtstart", start.replace(tzinfo=tz))
            out.add("dtend", end.replace(tzinfo=tz))
        places = f"{booking.quantity} place{'s' if booking.quantity != 1 else ''}"
        out.add("summary", event.title)
        state = ("on the waiting list" if booking.state == WAITING else
                 "cancelled" if booking.state == BOOKING_CANCELLED else "booked")
        out.add("description", f"{places}, {state}. Your tickets: {base_url}/account/bookings")
        location = ", ".join(p for p in (event.place_name, event.place_address) if p) or event.online_url
        if location:
            out.add("location", location)
        out.add("url", f"{base_url}/events/{event.slug}")
        status = ("CANCELLED" if booking.state == BOOKING_CANCELLED or event.status == CANCELLED else
                  "TENTATIVE" if booking.state == WAITING or event.status == POSTPONED else "CONFIRMED")
        out.add("status", status)
        # A booking's own changes (confirmed, cancelled) and its event's count as revisions.
        out.add("sequence", event.sequence + (1 if booking.state != WAITING else 0)
                + (1 if booking.state == BOOKING_CANCELLED else 0))
        out.add("last-modified", max(booking.updated_at, event.updated_at).astimezone(UTC))
        cal.add_component(out)
    cal.add_missing_timezones()
    body: bytes = cal.to_ical()
    return body
