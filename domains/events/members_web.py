"""Members-only events (visibility ``members``), for signed-in members only (issue 18 item 1).

Every public surface (``/events/``, month, the event page, feeds, embeds, fragments) is a shared,
edge-cached response that never reads the session, and each of them asks
:meth:`EventService.in_window`/``get_visible`` without ``member``: a members-only event is never in
one, and its public page is the same 404 as an absent slug. Members see these events here, on
session pages answered ``private`` (never stored by the edge):

- ``/events/members``          the upcoming members-only dates
- ``/events/members/<slug>``   one members-only event with its dates and the booking link
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final

from litestar import Request, get
from litestar.exceptions import NotFoundException
from litestar.response import Template
from sqlalchemy.ext.asyncio import AsyncSession

from app.responses import PRIVATE
from domains.account.models import User
from domains.events.models import MEMBERS
from domains.events.services.events import EventService, Listed
from domains.events.views import day_groups, listed_view

__all__ = ["members_handlers"]

LIST_DAYS: Final = 366


@get("/events/members", name="events:members", cache_control=PRIVATE)
async def members_events(request: Request[User, Any, Any], db_session: AsyncSession) -> Template:
    start = datetime.now(UTC)
    found = await EventService(db_session).in_window(start, start + timedelta(days=LIST_DAYS), include_members=True,
                                                     limit=500)
    only = [item for item in found if item.event.visibility == MEMBERS][:100]
    return Template("events/members.html", context={"groups": day_groups(only)})


@get("/events/members/{slug:str}", name="events:members-event", cache_control=PRIVATE)
async def members_event(request: Request[User, Any, Any], db_session: AsyncSession, slug: str) -> Template:
    service = EventService(db_session)
    event = await service.get_visible(slug, member=True)
    if event is None or event.visibility != MEMBERS:  # public ones have their public page
        raise NotFoundException("We couldn't find that event.")
    upcoming = await service.next_occurrences(event, limit=10)
    return Template("events/members_event.html", context={
        "event": event, "upcoming": [listed_view(Listed(event, o)) for o in upcoming]})


members_handlers = [members_events, members_event]
