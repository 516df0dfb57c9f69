"""iCalendar feeds (RFC 5545), built with ``icalendar`` (design/domains.md §4).

One ``VEVENT`` per event: a series is its first date plus its ``RRULE`` and ``EXDATE``s, which
every calendar app expands (the rules are the RFC 5545 subset services/recurrence.py accepts).
``UID`` is stable (``event-<uuid>@<host>``) and ``SEQUENCE`` grows on every change of time or
place, so subscribed calendars replace what they hold; cancelled events stay in the feed with
``STATUS:CANCELLED``, so they disappear from people's calendars rather than linger. Times carry
their ``TZID`` and the feed its ``VTIMEZONE``s; all-day events are ``DATE`` values.

A feed of thousands of events spent most of its time inside ``icalendar`` building and
serialising the same components on every request, so each event's ``VEVENT`` is serialised once
per process for its content (a key of every field it shows: an edited event makes a new key, and
nothing needs invalidating) and each ``VTIMEZONE`` once per zone. The document is then the
calendar's properties, the ``VTIMEZONE``s and the ``VEVENT``s concatenated (RFC 5545 §3.4 and
§3.6: ``VCALENDAR`` wraps its properties and then its components), the same bytes icalendar
writes for the whole calendar, with the ``VTIMEZONE``s in a fixed (sorted) order rather than
icalendar's set order, so every worker answers the same bytes and the same ETag.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Final, NamedTuple
from urllib.parse import urlsplit
from uuid import UUID
from zoneinfo import ZoneInfo

from icalendar import Calendar, Timezone, vRecur
from icalendar import Event as VEvent

from app.markdown import plain_text
from domains.events.booking_models import CANCELLED as BOOKING_CANCELLED
from domains.events.booking_models import WAITING, Booking
from domains.events.models import CANCELLED, POSTPONED, Event

__all__ = ["ICS_TYPE", "Parts", "Shown", "Version", "bookings_feed", "feed", "feed_of_parts", "known_parts",
           "remember_parts", "uid_of"]

ICS_TYPE: Final = "text/calendar"  # the response adds "; charset=utf-8"
PRODID: Final = "-//Rose Ash//Events//EN"
STATUS: Final = {CANCELLED: "CANCELLED", POSTPONED: "TENTATIVE"}
CACHED_VEVENTS: Final = 8192  # a few KB each: room for every event of a large site, per process
# DTSTAMP is the feed's (its newest change), not the event's: the cached VEVENT is made with this
# placeholder and its line is replaced per feed (DTSTAMP is a whole line of fixed width, RFC 5545
# §3.8.7.2, so folding is unaffected).
_PLACEHOLDER: Final = datetime(1970, 1, 1, tzinfo=UTC)
END_CALENDAR: Final = b"END:VCALENDAR\r\n"


def uid_of(event: Event, base_url: str) -> str:
    return f"event-{event.id}@{urlsplit(base_url).hostname or 'localhost'}"


@dataclass(frozen=True, slots=True)
class Shown:
    """Every field of an event its VEVENT shows: with the site's address, the cache key. A feed
    may select just these columns rather than load whole events (a large feed's rows cost more to
    load as ORM objects than their cached VEVENTs cost to join)."""

    id: UUID
    tz: str
    all_day: bool
    starts_local: datetime
    ends_local: datetime
    starts_at: datetime
    ends_at: datetime
    title: str
    description_html: str
    place_name: str
    place_address: str
    online_url: str
    latitude: float | None
    longitude: float | None
    slug: str
    status: str
    sequence: int
    updated_at: datetime
    tags: tuple[str, ...]
    rrule: str
    exdates: tuple[str, ...]

    @classmethod
    def of(cls, event: Event) -> Shown:
        return cls(event.id, event.tz, event.all_day, event.starts_local, event.ends_local,
                   event.starts_at, event.ends_at, event.title, event.description_html, event.place_name,
                   event.place_address, event.online_url, event.latitude, event.longitude, event.slug,
                   event.status, event.sequence, event.updated_at, tuple(event.tags), event.rrule,
                   tuple(event.exdates))


def _vevent(event: Event | Shown, base_url: str, stamp: datetime) -> VEvent:
    out = VEvent()
    out.add("uid", f"event-{event.id}@{urlsplit(base_url).hostname or 'localhost'}")
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


@lru_cache(maxsize=CACHED_VEVENTS)
def _vevent_parts(shown: Shown, base_url: str) -> tuple[bytes, bytes, frozenset[str]]:
    """The event's serialised VEVENT split around its DTSTAMP line, and the TZIDs it uses."""
    component = _vevent(shown, base_url, _PLACEHOLDER)
    body: bytes = component.to_ical()
    # With the CRLF before it: a folded line goes on with a space, so only a real line matches.
    line = b"\r\n" + _stamp_line(_PLACEHOLDER)
    head, found, tail = body.partition(line)
    if not found:  # pragma: no cover - icalendar always writes the DTSTAMP we added
        raise RuntimeError("VEVENT without its DTSTAMP line")
    head += b"\r\n"
    holder = Calendar()
    holder.add_component(component)
    return head, tail, frozenset(holder.get_used_tzids() - {"UTC"})


@lru_cache(maxsize=64)
def _stamp_line(stamp: datetime) -> bytes:
    """``DTSTAMP:...\r\n`` exactly as icalendar writes it in a VEVENT."""
    probe = VEvent()
    probe.add("dtstamp", stamp)
    lines: bytes = probe.to_ical()
    return lines.removeprefix(b"BEGIN:VEVENT\r\n").removesuffix(b"END:VEVENT\r\n")


@lru_cache(maxsize=256)
def _vtimezone(tzid: str) -> bytes:
    """The VTIMEZONE of ``tzid`` as ``add_missing_timezones`` makes it; empty for a zone icalendar
    cannot describe (it leaves those out too)."""
    try:
        body: bytes = Timezone.from_tzid(tzid).to_ical()
    except ValueError:
        return b""
    return body


def feed(events: Sequence[Event | Shown], *, name: str, base_url: str, now: datetime | None = None,
         refresh: timedelta = timedelta(hours=1)) -> bytes:
    """The RFC 5545 document of ``events`` (each once, series as RRULEs), with its VTIMEZONEs."""
    parts = [_vevent_parts(event if isinstance(event, Shown) else Shown.of(event), base_url) for event in events]
    return feed_of_parts(parts, name=name, now=now, refresh=refresh)


Parts = tuple[bytes, bytes, frozenset[str]]


class Version(NamedTuple):
    """Which version of an event a serialised VEVENT is: its id and the columns that change with
    every save (``updated_at``, which advanced_alchemy sets on every ORM change of the row;
    ``revision``, which the service bumps on every save) or that other writers change alone
    (``sequence``, ``status``). A whole-site feed reads just these per event and serialises (and
    loads every shown column of) only the events this process has not serialised at this version.
    A tuple, not a dataclass: thousands are hashed per feed, and a tuple hashes and compares in C."""

    id: UUID
    updated_at: datetime
    revision: int
    sequence: int
    status: str


# Serialised VEVENTs by site address and version, oldest first; an edited event makes a new version,
# and its old one ages out (first in, first out: lookups stay a single dict get).
_BY_VERSION: Final[dict[str, dict[Version, Parts]]] = {}


def known_parts(base_url: str) -> Mapping[Version, Parts]:
    """The serialised VEVENTs this process has made for the site at ``base_url``, by version."""
    return _BY_VERSION.get(base_url, {})


def remember_parts(version: Version, shown: Shown, base_url: str) -> Parts:
    """Serialise ``shown`` (the event at ``version``) and keep it for the next feeds."""
    made = _vevent_parts(shown, base_url)
    kept = _BY_VERSION.setdefault(base_url, {})
    kept[version] = made
    while len(kept) > CACHED_VEVENTS:
        del kept[next(iter(kept))]
    return made


def feed_of_parts(parts: Sequence[Parts], *, name: str, now: datetime | None = None,
                  refresh: timedelta = timedelta(hours=1)) -> bytes:
    """The RFC 5545 document of VEVENTs already serialised (``_vevent_parts``), with their VTIMEZONEs."""
    stamp = _stamp_line((now or datetime.now(UTC)).replace(microsecond=0))
    header = _header(name, refresh)
    used: set[str] = set()
    body: list[bytes] = []
    for head, tail, tzids in parts:
        used |= tzids
        body += (head, stamp, tail)
    return b"".join([header.removesuffix(END_CALENDAR), *(_vtimezone(tzid) for tzid in sorted(used)), *body,
                     END_CALENDAR])


@lru_cache(maxsize=256)
def _header(name: str, refresh: timedelta) -> bytes:
    """The calendar's own properties serialised (a feed's name: the site's, a calendar's or a tag's)."""
    body: bytes = _calendar(name, refresh).to_ical()
    return body


def _calendar(name: str, refresh: timedelta) -> Calendar:
    """The calendar's own properties, without components."""
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", name)
    # RFC 7986 §5.7 REFRESH-INTERVAL (and Apple's and Microsoft's older names for it).
    cal.add("refresh-interval", refresh, parameters={"VALUE": "DURATION"})
    cal.add("x-published-ttl", refresh)
    return cal


def feed_uncached(events: Sequence[Event | Shown], *, name: str, base_url: str, now: datetime | None = None,
                  refresh: timedelta = timedelta(hours=1)) -> bytes:
    """``feed`` built as one icalendar document (how it was made before the cache): tests compare
    the two byte for byte."""
    cal = _calendar(name, refresh)
    stamp = (now or datetime.now(UTC)).replace(microsecond=0)
    for event in events:
        cal.add_component(_vevent(event, base_url, stamp))
    # add_missing_timezones, in sorted rather than set order (as ``feed`` writes them).
    for at, tzid in enumerate(sorted(cal.get_missing_tzids())):
        cal.subcomponents.insert(at, Timezone.from_tzid(tzid))
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
