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


def _check_price(price: str, capacity: str | None) -> int:
    """``--price``: a whole number of minor units, on an event with places (a ticket type sells the
    date's places; priced tickets are bought through the cart, issue 18 item 4)."""
    try:
        minor = int(price.strip())
    except ValueError:
        fail({"price": f"“{price}” is not a whole number of minor units (1250 for 12.50)"})
    if minor < 0:
        fail({"price": "a price cannot be negative"})
    if minor == 0:
        fail({"price": "a price of 0 is a free place: leave out --price"})
    if capacity is None:
        fail({"price": "a priced ticket needs places: give --capacity too"})
    return minor


@events_group.command(name="create")
@click.option("--title", required=True)
@click.option("--start", required=True, help="Local start, ISO 8601 (2026-12-08T18:00).")
@click.option("--end", required=True, help="Local end, ISO 8601.")
@click.option("--tz", "tz", required=True, help="IANA time zone, e.g. Europe/London.")
@click.option("--dst", type=click.Choice(["earlier", "later"]), default=None,
              help="For a time the clocks pass twice (autumn): which of the two is meant.")
@click.option("--calendar", default="", help="Calendar slug (default: the first calendar).")
@click.option("--rrule", default="", help="RFC 5545 repeat rule, e.g. FREQ=WEEKLY;COUNT=10.")
@click.option("--place", default="", help="Place name.")
@click.option("--capacity", default=None, metavar="N",
              help="Places per date (1 to 100,000): members book free places, a full date takes a waiting list.")
@click.option("--price", default=None, metavar="MINOR",
              help="Ticket price in minor units of the market's currency: each date sells its places as a "
                   "\"Standard\" ticket through the cart (needs --capacity).")
@click.option("--description", default="")
@click.pass_context
def events_create(ctx: click.Context, title: str, start: str, end: str, tz: str, dst: str | None, calendar: str,
                  rrule: str, place: str, capacity: str | None, price: str | None, description: str) -> None:
    """Create a public event; prints its public URL as the last line."""
    from app.forms import InputProblems
    from domains.events.services.events import EventForm, EventService

    # Strings, checked here and by EventService.save, so a bad value is named in our words (exit 1),
    # and every check runs before anything is written.
    if capacity is not None and not capacity.strip():
        fail({"capacity": "give a whole number of places from 1 to 100,000, or leave out --capacity"})
    price_minor = None if price is None else _check_price(price, capacity)
    start_date, start_time = _split(start, "start")
    end_date, end_time = _split(end, "end")
    settings = settings_from(ctx)
    form = EventForm(title=title, start_date=start_date, start_time=start_time, end_date=end_date,
                     end_time=end_time, tz=tz, calendar=calendar, rrule=rrule, place_name=place,
                     description=description, capacity=capacity or "", dst=dst or "")

    async def work(session: AsyncSession) -> str:
        event = await EventService(session, base_url=settings.base_url).save(form)
        if price_minor is not None:  # same transaction: a refused ticket type leaves no event behind
            from domains.events.services.tickets import create_ticket_types

            await create_ticket_types(session, event, name="Standard", price_minor=price_minor,
                                      currency=settings.market_currency)
        return event.slug

    try:
        slug = with_session(settings, work)
    except InputProblems as exc:
        if "dst" in exc.errors:  # the form's choice is the --dst option here
            exc.errors["dst"] += " Give --dst earlier or --dst later."
        fail(exc.errors)
    click.echo(f"{settings.base_url}/events/{slug}")
