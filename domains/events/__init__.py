"""The events domain: calendars, events and their dates, feeds and widgets (issue 18).

Laid out as the market is (domains/market/__init__.py).

``models.py``     ``EventCalendar`` (name, slug, colour), ``Event`` (wall-clock ``starts_local``/
                  ``ends_local`` in an IANA ``tz`` plus the UTC instants; ``rrule``/``exdates`` for a
                  series; place, online link, organiser, tags, ``status``, ``visibility``;
                  ``sequence`` for RFC 5545, ``revision`` for ETags).
``services/``     ``recurrence.py`` (occurrences through python-dateutil, rule checks, DST rules),
                  ``events.py`` ``EventService`` (calendars, save with every check, ``in_window``,
                  ``next_occurrences``).
``controllers.py``  public pages and iCalendar feeds; ``admin.py`` staff pages; ``ical.py`` the
                  RFC 5545 writer; ``views.py`` what templates show; ``fragments.py``
                  ``events.upcoming`` (embed ``/embed/events``) and ``events.event-card``;
                  ``keys.py`` surrogate keys; ``cli.py`` ``rose-ash events create``.

``booking_models.py`` + ``services/bookings.py`` + ``booking_web.py``: free bookings against a
per-date quota (one conditional UPDATE), booking questions (names per place, dietary needs, a
staff question; ``services/options.py`` with the cancellation cutoff), the waiting list with
expiring offers (``jobs.py`` sweeps lapsed ones), tickets with secrets and QR codes, Pretix's
check-in (redeem API, the door page, the attendee list), ``/account/bookings``, the bookings API.
``members_web.py``: members-only events, on private pages only.

``booking_models.TicketType`` + ``services/tickets.py``: priced tickets per date, sold through the
cart as a line source (domains/cart/sources.py); tickets are issued when the order is paid and
cancelled when it is cancelled or refunded.

Not built yet (issue 18 items 7, 8): federation of events and the account dashboard.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.kit import Domain, NavEntry, ServiceActor

if TYPE_CHECKING:
    import click
    from litestar.types import ControllerRouterHandler


def _routes() -> list[ControllerRouterHandler]:
    from litestar import Router

    from app import access
    from domains.events.admin import admin_handlers
    from domains.events.booking_web import (
        api_handlers,
        checkin_api_handlers,
        member_handlers,
        staff_handlers,
        ticket_handlers,
    )
    from domains.events.controllers import feed_member_handlers, public_handlers

    return [Router(path="/", opt=access.public(), route_handlers=[
        *public_handlers,
        *ticket_handlers,
        Router(path="/", opt=access.session(), route_handlers=[*member_handlers, *feed_member_handlers]),
        Router(path="/", opt=access.admin(), route_handlers=[*admin_handlers, *staff_handlers]),
        # Check-in at the door and bookings by API: tokens with the "events" scope.
        Router(path="/", opt=access.token("events"), route_handlers=[*checkin_api_handlers, *api_handlers]),
    ])]


def _cli() -> list[click.Command]:
    from domains.events.cli import events_group

    return [events_group]


domain = Domain(
    name="events",
    routes=_routes,
    cli=_cli,
    models=("domains.events.models", "domains.events.booking_models", "domains.events.feed_models"),
    setup=("domains.events.fragments", "domains.events.jobs", "domains.events.services.tickets"),
    machine_routes=(r"^/events/[^/]+/checkin/redeem$",),  # token-authenticated (Pretix's redeem API)
    nav=(NavEntry("/events/", "Events", 30),),
    admin=(NavEntry("/events/admin/", "Events", 40), NavEntry("/events/admin/calendars", "Calendars", 41)),
    actor=ServiceActor("events"),
)

__all__ = ["domain"]
