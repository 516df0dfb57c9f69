"""The cached feed (ical.feed) and the cached series expansion (recurrence) give exactly what the
uncached ways give: the same bytes, the same dates; an edit changes the cached VEVENT."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from icalendar import Calendar

from domains.events import ical
from domains.events.models import Event
from domains.events.services import recurrence
from domains.events.services.recurrence import occurrences, to_utc, zone

BASE = "https://coop.example"
STAMP = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def _event(n: int, *, tz: str = "Europe/London", rule: str = "", all_day: bool = False,
           exdates: list[str] | None = None, title: str = "") -> Event:
    start = datetime(2026, 3, 1 + n, 18, 0)
    end = start + (timedelta(days=1) if all_day else timedelta(hours=2))
    if all_day:
        start, end = start.replace(hour=0), end.replace(hour=0)
    zoneinfo = zone(tz)
    return Event(id=uuid.UUID(int=n + 1), title=title or f"Workshop {n}", slug=f"workshop-{n}",
                 description_md="", description_html=f"<p>Bring <strong>bread</strong> ({n}).</p>", tz=tz,
                 all_day=all_day, starts_local=start, ends_local=end, starts_at=to_utc(start, zoneinfo),
                 ends_at=to_utc(end, zoneinfo), rrule=rule, exdates=exdates or [], place_name="The barn",
                 place_address="1 Orchard Lane", latitude=50.43 if n % 2 else None,
                 longitude=-3.68 if n % 2 else None, online_url="", tags=["bread", "co-op"] if n % 3 else [],
                 status=["scheduled", "cancelled", "postponed"][n % 3], sequence=n, revision=1,
                 updated_at=STAMP - timedelta(hours=n))


def _events() -> list[Event]:
    return [
        _event(0),
        _event(1, tz="America/New_York", rule="FREQ=WEEKLY;UNTIL=20261231T235959",
               exdates=["2026-03-09T18:00:00", "2026-03-16T18:00:00"]),
        _event(2, tz="UTC"),
        _event(3, all_day=True),
        _event(4, tz="Europe/Paris", rule="FREQ=MONTHLY;COUNT=12"),
        _event(5, tz="Asia/Kolkata", rule="FREQ=DAILY", title="A very long title " * 8),
    ]


def test_cached_feed_is_byte_identical_to_icalendar() -> None:
    events = _events()
    for _ in range(2):  # the second time from the cache
        cached = ical.feed(events, name="Rose Ash events", base_url=BASE, now=STAMP)
        assert cached == ical.feed_uncached(events, name="Rose Ash events", base_url=BASE, now=STAMP)
    parsed = Calendar.from_ical(cached)
    assert [str(c["uid"]) for c in parsed.walk("VEVENT")] == [f"event-{e.id}@coop.example" for e in events]
    assert sorted(tz.tz_name for tz in parsed.timezones) == [
        "America/New_York", "Asia/Kolkata", "Europe/London", "Europe/Paris"]
    assert all(c.decoded("dtstamp") == STAMP for c in parsed.walk("VEVENT"))
    later = STAMP + timedelta(days=1)
    assert ical.feed(events, name="x", base_url=BASE, now=later) == ical.feed_uncached(
        events, name="x", base_url=BASE, now=later)
    empty = ical.feed([], name="Nothing", base_url=BASE, now=STAMP)
    assert empty == ical.feed_uncached([], name="Nothing", base_url=BASE, now=STAMP)
    assert empty.endswith(b"END:VCALENDAR\r\n") and b"BEGIN:VEVENT" not in empty


def test_an_edited_event_is_serialised_again() -> None:
    event = _event(7)
    before = ical.feed([event], name="x", base_url=BASE, now=STAMP)
    event.title = "Renamed workshop"
    event.sequence += 1
    after = ical.feed([event], name="x", base_url=BASE, now=STAMP)
    assert b"SUMMARY:Renamed workshop" in after and b"SUMMARY:Renamed workshop" not in before
    assert after == ical.feed_uncached([event], name="x", base_url=BASE, now=STAMP)
    # The same event under another site address has that address's UID.
    other = ical.feed([event], name="x", base_url="https://other.example", now=STAMP)
    assert f"UID:event-{event.id}@other.example".encode() in other


def _walked(rule: str, start: datetime, exdates: list[str], window: tuple[datetime, datetime],
            tz: str) -> list[tuple[datetime, datetime]]:
    """The dates by dateutil's own walk (no cache), for comparison."""
    excluded = {datetime.fromisoformat(x) for x in exdates}
    duration = timedelta(hours=2)
    found = []
    for when in recurrence._parse.__wrapped__(rule, start):
        if when in excluded:
            continue
        starts, ends = to_utc(when, zone(tz)), to_utc(when + duration, zone(tz))
        if starts >= window[1]:
            break
        if ends > window[0]:
            found.append((starts, ends))
    return found


def test_cached_series_gives_the_walked_dates() -> None:
    start = datetime(2026, 3, 3, 1, 30)  # 01:30 crosses the March and October changes in Europe/London
    rules = ["FREQ=WEEKLY;UNTIL=20270301", "FREQ=DAILY;COUNT=400", "FREQ=MONTHLY;BYMONTHDAY=31;COUNT=20"]
    exdates = ["2026-03-10T01:30:00", "2026-03-29T01:30:00"]
    for rule in rules:
        for offset in (-40, 0, 25, 200, 380, 800):
            window_start = datetime(2026, 3, 3, tzinfo=UTC) + timedelta(days=offset)
            window = (window_start, window_start + timedelta(days=33))
            got = [(o.starts_at, o.ends_at) for o in occurrences(
                start_local=start, end_local=start + timedelta(hours=2), tz="Europe/London", rule=rule,
                exdates=exdates, window_start=window[0], window_end=window[1])]
            assert got == _walked(rule, start, exdates, window, "Europe/London"), (rule, offset)
    # An open-ended rule is walked (never expanded whole) and still finds its dates.
    assert recurrence._series("FREQ=WEEKLY", start, ()) is None
    far = datetime(2031, 1, 1, tzinfo=UTC)
    found = list(occurrences(start_local=start, end_local=start + timedelta(hours=2), tz="Europe/London",
                             rule="FREQ=WEEKLY", exdates=[], window_start=far, window_end=far + timedelta(days=14)))
    assert len(found) == 2 and all(o.start_local.weekday() == start.weekday() for o in found)
