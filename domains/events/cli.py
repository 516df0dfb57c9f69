"""``rose-ash events ...``: the events' operator commands."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import click

from app.commands import fail, settings_from, with_session

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["events_group"]


@click.group(name="events")
def events_group() -> None:
    """Events: calendars and their dates."""


def _split(value: str, name: str) -> tuple[str, str]:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        fail({name: f"“{value}” is not an ISO date-time such as 2026-12-08T18:00"})
    if moment.tzinfo is not None:
        fail({name: "give the wall-clock time without an offset; --tz names the zone"})
    return moment.date().isoformat(), moment.strftime("%H:%M")


@events_group.command(name="create")
@click.option("--title", required=True)
@click.option("--start", required=True, help="Local start, ISO 8601 (2026-12-08T18:00).")
@click.option("--end", required=True, help="Local end, ISO 8601.")
@click.option("--tz", "tz", required=True, help="IANA time zone, e.g. Europe/London.")
@click.option("--calendar", default="", help="Calendar slug (default: the first calendar).")
@click.option("--rrule", default="", help="RFC 5545 repeat rule, e.g. FREQ=WEEKLY;COUNT=10.")
@click.option("--place", default="", help="Place name.")
@click.option("--capacity", type=int, default=None, help="Places (bookings come with a later release).")
@click.option("--price", type=int, default=None, help="Price in minor units (tickets come with a later release).")
@click.option("--description", default="")
@click.pass_context
def events_create(ctx: click.Context, title: str, start: str, end: str, tz: str, calendar: str, rrule: str,
                  place: str, capacity: int | None, price: int | None, description: str) -> None:
    """Create a public event; prints its public URL as the last line."""
    from app.forms import InputProblems
    from domains.events.services.events import EventForm, EventService

    if capacity is not None or price is not None:
        fail({"capacity": "bookings and tickets are not available yet: leave out --capacity and --price"})
    start_date, start_time = _split(start, "start")
    end_date, end_time = _split(end, "end")
    settings = settings_from(ctx)
    form = EventForm(title=title, start_date=start_date, start_time=start_time, end_date=end_date,
                     end_time=end_time, tz=tz, calendar=calendar, rrule=rrule, place_name=place,
                     description=description)

    async def work(session: AsyncSession) -> str:
        event = await EventService(session, base_url=settings.base_url).save(form)
        return event.slug

    try:
        slug = with_session(settings, work)
    except InputProblems as exc:
        fail(exc.errors)
    click.echo(f"{settings.base_url}/events/{slug}")
