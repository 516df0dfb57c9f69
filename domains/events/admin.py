"""Staff pages under ``/events/admin/``: events (create, edit, delete) and calendars.

Declared admin-only where the package mounts them (``access.admin()``). A save that fails comes
back as the form with 422 (409 for a taken slug) and every problem named; nothing is written.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import Provide
from litestar.exceptions import NotFoundException
from litestar.response import Template
from sqlalchemy.ext.asyncio import AsyncSession

from app.forms import InputProblems, confirm_page, done, parse_form, see_other
from app.responses import PRIVATE
from app.settings import Settings
from domains.account.models import User
from domains.events.models import PUBLIC, SCHEDULED, Event
from domains.events.services.bookings import BookingService
from domains.events.services.events import CalendarForm, EventForm, EventService, SlugTaken, slugify
from domains.events.services.options import OptionsForm, check_options, options_values, save_options
from domains.events.services.tickets import create_ticket_type, price_text, set_on_sale, ticket_types
from domains.events.views import when_text

__all__ = ["admin_handlers"]

COMMON_ZONES = ("Europe/London", "Europe/Dublin", "Europe/Paris", "Europe/Berlin", "America/New_York",
                "America/Chicago", "America/Los_Angeles", "Australia/Sydney", "UTC")


def provide_events(db_session: AsyncSession, settings: Settings) -> EventService:
    return EventService(db_session, base_url=settings.base_url)


def _values(event: Event | None, default_calendar: str = "") -> dict[str, Any]:
    if event is None:
        return {"tz": "Europe/London", "status": SCHEDULED, "visibility": PUBLIC, "calendar": default_calendar}
    end = event.ends_local
    if event.all_day:
        from datetime import timedelta

        end = end - timedelta(days=1)
    return {"title": event.title, "slug": event.slug, "calendar": event.calendar.slug,
            "description": event.description_md, "tz": event.tz, "all_day": event.all_day,
            "start_date": event.starts_local.date().isoformat(),
            "start_time": "" if event.all_day else event.starts_local.strftime("%H:%M"),
            "end_date": end.date().isoformat(), "end_time": "" if event.all_day else end.strftime("%H:%M"),
            "rrule": event.rrule, "exdates": "\n".join(x[:10] for x in event.exdates),
            "place_name": event.place_name, "place_address": event.place_address,
            "latitude": "" if event.latitude is None else f"{event.latitude:.6f}",
            "longitude": "" if event.longitude is None else f"{event.longitude:.6f}",
            "online_url": event.online_url, "organiser": event.organiser, "tags": ", ".join(event.tags),
            "status": event.status, "visibility": event.visibility,
            "capacity": "" if event.capacity is None else str(event.capacity)}


def _shown(form: EventForm, exc: InputProblems, options: OptionsForm) -> dict[str, Any]:
    values: dict[str, Any] = {**msgspec.structs.asdict(options), **msgspec.structs.asdict(form)}
    values["all_day"] = bool(form.all_day)
    values["ask_dietary"], values["question_required"] = bool(options.ask_dietary), bool(options.question_required)
    if isinstance(exc, SlugTaken):
        values["suggested_slug"] = f"{(form.slug or slugify(form.title)).strip()}-2"
    return values


class EventsAdmin(Controller):
    path = "/events/admin"
    dependencies = {"events": Provide(provide_events, sync_to_thread=False)}
    cache_control = PRIVATE

    async def _save(self, request: Request[User, Any, Any], events: EventService, event: Event | None
                    ) -> tuple[Event | None, Template | None]:
        """Check the event and its booking options together; write both or nothing."""
        form = await parse_form(request, EventForm)
        options = await parse_form(request, OptionsForm)
        problems: dict[str, str] = {}
        values = check_options(options, problems)
        try:
            if problems:  # the event's own checks still run, so every problem is named at once
                try:
                    await events.save(form, event=event)
                except InputProblems as exc:
                    raise InputProblems({**exc.errors, **problems}, status=exc.status) from None
                raise InputProblems(problems)
            saved = await events.save(form, event=event)
        except InputProblems as exc:
            return None, await self._form(events, event, _shown(form, exc, options), exc.errors, status=exc.status)
        await save_options(events.session, saved, values)
        return saved, None

    async def _form(self, events: EventService, event: Event | None, values: dict[str, Any],
                    errors: dict[str, str] | None = None, status: int = 200) -> Template:
        action = f"/events/admin/{event.slug}" if event else "/events/admin/"
        return Template("events/admin/edit.html", status_code=status, context={
            "event": event, "values": values, "errors": errors or {}, "action": action,
            "calendars": await events.calendars(), "zones": COMMON_ZONES})

    @get("/", name="events:admin")
    async def index(self, events: EventService) -> Template:
        return Template("events/admin/list.html", context={"events": await events.admin_list()})

    @get("/new", name="events:admin-new")
    async def new(self, events: EventService) -> Template:
        calendars = await events.calendars()
        return await self._form(events, None, {**await options_values(events.session, None),
                                               **_values(None, calendars[0].slug if calendars else "")})

    @post("/", status_code=303)
    async def create(self, request: Request[User, Any, Any], events: EventService) -> Response[Any]:
        event, problem = await self._save(request, events, None)
        if problem is not None or event is None:
            assert problem is not None
            return problem
        return see_other(f"/events/admin/{event.slug}", request, "Event saved.")

    @get("/calendars", name="events:admin-calendars")
    async def calendars(self, events: EventService) -> Template:
        return Template("events/admin/calendars.html", context={
            "calendars": await events.calendars(), "values": {"colour": "#2f6f4f"}, "errors": {}})

    @post("/calendars", status_code=303)
    async def create_calendar(self, request: Request[User, Any, Any], events: EventService) -> Response[Any]:
        form = await parse_form(request, CalendarForm)
        try:
            await events.save_calendar(form)
        except InputProblems as exc:
            return Template("events/admin/calendars.html", status_code=exc.status, context={
                "calendars": await events.calendars(), "values": msgspec.structs.asdict(form), "errors": exc.errors})
        return see_other("/events/admin/calendars", request, "Calendar saved.")

    @get("/{slug:str}", name="events:admin-edit")
    async def edit(self, events: EventService, slug: str) -> Template:
        event = await _found(events, slug)
        return await self._form(events, event, {**await options_values(events.session, event), **_values(event)})

    @post("/{slug:str}", status_code=303)
    async def update(self, request: Request[User, Any, Any], events: EventService, slug: str) -> Response[Any]:
        event = await _found(events, slug)
        saved, problem = await self._save(request, events, event)
        if problem is not None or saved is None:
            assert problem is not None
            return problem
        return see_other(f"/events/admin/{saved.slug}", request, "Event saved.")

    @get("/{slug:str}/delete")
    async def delete_confirm(self, events: EventService, slug: str) -> Template:
        event = await _found(events, slug)
        return confirm_page(question=f"Delete the event “{event.title}”?",
                            detail="It goes from the site and from subscribed calendars. To keep it listed as "
                                   "called off, set its status to cancelled instead.",
                            action=f"/events/admin/{event.slug}/delete", cancel=f"/events/admin/{event.slug}")

    @post("/{slug:str}/delete", status_code=303)
    async def delete(self, request: Request[User, Any, Any], events: EventService, slug: str) -> Response[None]:
        event = await _found(events, slug)
        await events.delete(event)
        return done("/events/admin/", request, f"Deleted “{event.title}”.")


class TicketTypeForm(msgspec.Struct, kw_only=True):
    occurrence: str = ""
    name: str = ""
    price: str = ""  # minor units: "1500" is 15.00
    description: str = ""


class TicketsAdmin(Controller):
    """Priced ticket types per date, sold through the cart (domains/events/services/tickets.py)."""

    path = "/events/admin/{slug:str}/tickets"
    dependencies = {"events": Provide(provide_events, sync_to_thread=False)}
    cache_control = PRIVATE

    async def _page(self, events: EventService, settings: Settings, event: Event, values: dict[str, Any],
                    errors: dict[str, str] | None = None, status: int = 200) -> Template:
        service = BookingService(events.session)
        dates = await service.dates(event)
        whens = {d.key: when_text(event, d) for d in dates}
        types = []
        for t in await ticket_types(events.session, event):
            if t.occurrence not in whens:  # a past or changed date: still shown as a date, not its key
                occ = await service.date_of(event, t.occurrence)
                whens[t.occurrence] = when_text(event, occ) if occ is not None else _key_text(t.occurrence)
            types.append({"t": t, "price": price_text(t), "when": whens[t.occurrence]})
        return Template("events/admin/tickets.html", status_code=status, context={
            "event": event, "values": values, "errors": errors or {}, "currency": settings.market_currency,
            "dates": [{"key": d.key, "when": whens[d.key]} for d in dates], "types": types})

    @get("/", name="events:admin-tickets")
    async def page(self, events: EventService, settings: Settings, slug: str) -> Template:
        return await self._page(events, settings, await _found(events, slug), {})

    @post("/", status_code=303)
    async def create(self, request: Request[User, Any, Any], events: EventService, settings: Settings,
                     slug: str) -> Response[Any]:
        event = await _found(events, slug)
        form = await parse_form(request, TicketTypeForm)
        try:
            ticket = await create_ticket_type(events.session, event, occurrence=form.occurrence, name=form.name,
                                              price_minor=form.price, currency=settings.market_currency,
                                              description=form.description)
        except InputProblems as exc:
            return await self._page(events, settings, event, msgspec.structs.asdict(form), exc.errors,
                                    status=exc.status)
        return see_other(f"/events/admin/{event.slug}/tickets", request,
                         f"{ticket.name} tickets are on sale at {price_text(ticket)}.")

    @post("/{ticket_id:uuid}/sale", status_code=303)
    async def sale(self, request: Request[User, Any, Any], events: EventService, slug: str,
                   ticket_id: UUID) -> Response[Any]:
        """Take a ticket type off sale or put it back (``on=1``); tickets sold stay valid."""
        event = await _found(events, slug)
        form = await request.form()
        on = str(form.get("on", "")) == "1"
        ticket = await set_on_sale(events.session, event, ticket_id, on=on)
        if ticket is None:
            raise NotFoundException("No such ticket type.")
        return see_other(f"/events/admin/{event.slug}/tickets", request,
                         f"{ticket.name} tickets are {'on sale' if on else 'off sale'}.")


async def _found(events: EventService, slug: str) -> Event:
    event = await events.get(slug)
    if event is None:
        raise NotFoundException("No such event.")
    return event


admin_handlers = [EventsAdmin, TicketsAdmin]


def _key_text(key: str) -> str:
    """A date key (``20270112T180000``, the event's local time) as people write it."""
    try:
        return datetime.strptime(key, "%Y%m%dT%H%M%S").strftime("%a %-d %B %Y %H:%M")
    except ValueError:
        return key
