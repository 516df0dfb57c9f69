"""What templates and fragments show of events and their dates (plain data, built in one place)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from markupsafe import Markup, escape

from domains.events.models import CANCELLED, POSTPONED, Event
from domains.events.services.events import Brief, BriefListed, Listed
from domains.events.services.recurrence import Occurrence

__all__ = ["day_groups", "event_view", "grid_cells", "listed_view", "listed_views", "when_text"]


def _clock(moment: datetime) -> str:
    return moment.strftime("%H:%M")


def when_text(event: Event | Brief, occ: Occurrence) -> str:
    """``Tue 8 December 2026, 18:00-20:00 (Europe/London)`` (an en dash); all-day dates without times."""
    start, end = occ.start_local, occ.end_local
    day = f"{start:%a} {start.day} {start:%B %Y}"
    if event.all_day:
        last = end.date().toordinal() - 1
        if last <= start.date().toordinal():
            return day
        final = date.fromordinal(last)
        return f"{day} \u2013 {final:%a} {final.day} {final:%B %Y}"
    if start.date() == end.date():
        return f"{day}, {_clock(start)}\u2013{_clock(end)} ({event.tz})"
    return f"{day}, {_clock(start)} \u2013 {end:%a} {end.day} {end:%B %Y}, {_clock(end)} ({event.tz})"


def _status(event: Event | Brief) -> str:
    return {CANCELLED: "Cancelled", POSTPONED: "Postponed"}.get(event.status, "")


def listed_view(item: Listed | BriefListed, *, when: bool = True) -> dict[str, Any]:
    """One date as lists show it. ``when=False`` leaves out the ``when`` text for views that never
    show it (the month grid, the week and day pages show the time alone): formatting it for every
    date of a month was a fifth of the month page's time."""
    event, occ = item.event, item.occurrence
    return {
        "title": event.title, "slug": event.slug, "url": f"/events/{event.slug}",
        **({"when": when_text(event, occ)} if when else {}),
        "time": "" if event.all_day else _clock(occ.start_local), "all_day": event.all_day,
        "start_iso": occ.starts_at.isoformat(), "end_iso": occ.ends_at.isoformat(), "tz": event.tz,
        "place": event.place_name, "status": _status(event), "tags": list(event.tags),
        "calendar": {"name": event.calendar.name, "slug": event.calendar.slug, "colour": event.calendar.colour},
        "series": bool(event.rrule), "key": occ.key,
    }


def listed_views(items: Sequence[Listed | BriefListed], *, when: bool = True) -> list[dict[str, Any]]:
    """``listed_view`` of each item, the event's own fields read once per event rather than once per
    date (a month of a weekly series repeats them; ORM attribute reads add up over hundreds)."""
    shared: dict[object, dict[str, Any]] = {}
    views: list[dict[str, Any]] = []
    for item in items:
        event, occ = item.event, item.occurrence
        common = shared.get(event.id)
        if common is None:
            common = shared[event.id] = {
                "title": event.title, "slug": event.slug, "url": f"/events/{event.slug}", "all_day": event.all_day,
                "tz": event.tz, "place": event.place_name, "status": _status(event), "tags": list(event.tags),
                "calendar": {"name": event.calendar.name, "slug": event.calendar.slug,
                             "colour": event.calendar.colour},
                "series": bool(event.rrule)}
        view = {**common, "tags": list(common["tags"]), "calendar": dict(common["calendar"]),
                "time": "" if common["all_day"] else _clock(occ.start_local),
                "start_iso": occ.starts_at.isoformat(), "end_iso": occ.ends_at.isoformat(), "key": occ.key}
        if when:
            view["when"] = when_text(event, occ)
        views.append(view)
    return views


@lru_cache(maxsize=8192)
def _grid_parts(calendar_slug: str, status: str, slug: str, title: str) -> tuple[str, str]:
    """An event's list item in the month grid around its time, escaped once per process for its
    content (a grid repeats a weekly series four or five times, and every request the same events)."""
    state = status.lower()
    head = (f'          <li class="cal-{escape(calendar_slug)}{f" event-{escape(state)}" if status else ""}">'
            f'<a href="{escape(f"/events/{slug}")}">')
    tail = f'{escape(title)}</a>{f" ({escape(state)})" if status else ""}</li>\n'
    return head, tail


def grid_cells(items: Sequence[BriefListed]) -> dict[int, Markup]:
    """The month grid's list items of each day of the month (``{day: markup}``), the bytes
    templates/events/month.html used to render item by item (tests/domains/events/test_month_fast.py
    renders both): a month holds hundreds of dates, and escaping their fields in the template was
    most of the page's time. The time and its ``datetime`` (ISO digits, ``-``, ``:``, ``+``, ``T``)
    need no escaping."""
    cells: dict[int, list[str]] = {}
    for item in items:
        event, occ = item.event, item.occurrence
        head, tail = _grid_parts(event.calendar.slug, _status(event), event.slug, event.title)
        clock = "" if event.all_day else (f'<time datetime="{occ.starts_at.isoformat()}">'
                                          f"{occ.start_local:%H:%M}</time> ")
        cells.setdefault(occ.start_local.day, []).append(head + clock + tail)
    return {day: Markup("".join(parts)) for day, parts in cells.items()}  # noqa: S704 - each part escaped above


def day_groups(items: Sequence[Listed]) -> list[dict[str, Any]]:
    """Dates grouped by their local day, in order: ``[{"day": "Tue 8 December 2026", "items": [...]}]``."""
    groups: list[dict[str, Any]] = []
    for item in items:
        start = item.occurrence.start_local
        label = f"{start:%A} {start.day} {start:%B %Y}"
        if not groups or groups[-1]["day"] != label:
            groups.append({"day": label, "iso": start.date().isoformat(), "items": []})
        groups[-1]["items"].append(listed_view(item))
    return groups


def event_view(event: Event, base_url: str) -> dict[str, Any]:
    map_link = ""
    if event.latitude is not None and event.longitude is not None:
        map_link = (f"https://www.openstreetmap.org/?mlat={event.latitude:.6f}&mlon={event.longitude:.6f}"
                    f"#map=17/{event.latitude:.6f}/{event.longitude:.6f}")
    elif event.place_address:
        map_link = "https://www.openstreetmap.org/search?query=" + quote(event.place_address)
    host_url = base_url.split("://", 1)[-1]
    return {
        "id": str(event.id), "title": event.title, "slug": event.slug, "description_html": event.description_html,
        "tz": event.tz, "all_day": event.all_day, "place_name": event.place_name,
        "place_address": event.place_address, "map_link": map_link, "online_url": event.online_url,
        "organiser": event.organiser, "tags": list(event.tags), "status": _status(event),
        "calendar": {"name": event.calendar.name, "slug": event.calendar.slug, "colour": event.calendar.colour},
        "series": bool(event.rrule), "rrule": event.rrule, "capacity": event.capacity,
        "ics": f"/events/{event.slug}.ics", "webcal": f"webcal://{host_url}/events/{event.slug}.ics",
        "url": f"{base_url}/events/{event.slug}",
    }
