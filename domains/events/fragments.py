"""Events fragments: the next dates (``events.upcoming``, embeddable at ``/embed/events`` with
``limit``, ``calendar`` and ``tag``) and one event as a card (``events.event-card``), through the
fragment registry (design/fragments.md §4), so a partner site shows the co-op's events with one
snippet and the blog or a market page can place them too; and the member's next bookings on their
dashboard (``me.dashboard-bookings``, personal).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from app.caching import CachePolicy
from domains.events import keys
from domains.events.booking_models import CANCELLED, CONFIRMED
from domains.events.services.events import EventService, Listed
from domains.events.views import listed_view, when_text
from fragments.registry import FragmentContext, FragmentData, fragment

__all__ = ["my_next_bookings", "upcoming"]

WINDOW = timedelta(days=366)


def _card(item: Listed, link_base: str) -> dict[str, Any]:
    view = listed_view(item)
    view["url"] = link_base + view["url"] if link_base else view["url"]
    return view


@fragment("events.upcoming", title="Upcoming events", embed="events", params={"limit": "5"})
async def upcoming(ctx: FragmentContext) -> FragmentData:
    """The co-op's next events (limit: up to 20; calendar and tag narrow them)."""
    limit = ctx.int_param("limit", 5, maximum=20)
    calendar = ctx.params.get("calendar", "")[:120]
    tag = ctx.params.get("tag", "")[:40]
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    found = await EventService(ctx.db).in_window(now, now + WINDOW, calendar=calendar, tag=tag, limit=limit)
    items = [_card(item, ctx.link_base) for item in found]
    seed = f"{limit};{calendar};{tag};" + ",".join(f"{i.event.id}:{i.event.revision}:{i.occurrence.key}"
                                                   for i in found)
    return FragmentData({"items": items, "calendar": calendar, "tag": tag}, seed=seed,
                        keys=tuple(sorted({keys.EVENTS, *([keys.calendar(calendar)] if calendar else [])})))


@fragment("events.event-card", title="Event card", embed="event-card", params={"slug": "workshop"})
async def event_card(ctx: FragmentContext) -> FragmentData:
    """One event's next date as a card (?slug= names the event)."""
    slug = ctx.params.get("slug", "")[:191]
    service = EventService(ctx.db)
    event = await service.get_visible(slug) if slug else None
    if event is None:
        return FragmentData({"item": None}, keys=(keys.EVENTS,), seed=f"none;{slug}")
    upcoming = await service.next_occurrences(event, limit=1)
    item = _card(Listed(event, upcoming[0]), ctx.link_base) if upcoming else None
    return FragmentData({"item": item}, keys=(keys.event(event.id),),
                        seed=f"{event.id}:{event.revision}:{upcoming[0].key if upcoming else ''}")


# -- the member's dashboard (/account) -------------------------------------------------------------
DASHBOARD_BOOKINGS = 5


@fragment("me.dashboard-bookings", policy=CachePolicy.PERSONAL, title="Your next bookings",
          template="fragments/me/dashboard-bookings.html", inline_timeout=1.0)
async def my_next_bookings(ctx: FragmentContext) -> FragmentData:
    """The signed-in member's next booked dates (booked or waiting), soonest first, with their tickets."""
    from domains.events.services.bookings import BookingService

    user = ctx.user
    if user is None:
        return FragmentData({"user": None})
    service = BookingService(ctx.db)
    # Keys are local wall-clock times; one two days old is past in every zone, so it costs no recurrence.
    surely_past = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y%m%dT%H%M%S")
    upcoming = []
    for booking, event in reversed(await service.for_member(user)):  # newest date first: reversed, soonest
        if booking.state == CANCELLED or booking.occurrence < surely_past:
            continue
        occ = await service.date_of(event, booking.occurrence)
        if occ is None:  # past (or no longer a date of the event): /account/tickets lists those
            continue
        upcoming.append({"title": event.title, "url": event.path, "when": when_text(event, occ),
                         "state": booking.state, "quantity": booking.quantity,
                         "tickets": [{"url": f"/events/tickets/{p.secret}", "attendee": p.attendee}
                                     for p in booking.positions if not p.cancelled]
                         if booking.state == CONFIRMED else []})
        if len(upcoming) == DASHBOARD_BOOKINGS:
            break
    return FragmentData({"user": user, "bookings": upcoming})
