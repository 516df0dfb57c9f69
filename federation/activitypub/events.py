"""Events federation: the ``events`` service actor publishes the co-op's events (issue 18 item 7).

A **public** event goes out to the actor's followers as a ``Create`` of an AS2 ``Event`` in
Mobilizon's vocabulary (framasoft/mobilizon docs/contribute/activity_pub.md; design/federation.md
§7): ``name``, ``startTime``/``endTime``, ``timezone``, ``location`` (a ``Place`` with a schema.org
``PostalAddress`` and coordinates), ``joinMode``, ``maximumAttendeeCapacity``,
``remainingAttendeeCapacity``, ``ical:status``, ``category``, ``url`` and sanitised ``content``.
Mastodon shows an ``Event`` as a converted post: its ``name`` and a link to ``url``, so both are
always filled; the date and the place head the ``content`` for readers that show only that. There is
no ``summary``, as Mobilizon and Gancio send none: Mastodon-style clients (Pleroma, Misskey, our own
hub) read a ``summary`` as a content warning and fold the post behind it. An edit while public sends
``Update`` (ActivityPub §7.3); deleting the event, or making it unlisted or members-only, sends
``Delete`` with a ``Tombstone`` (§7.4); public again is a fresh ``Create`` of the same object. Members
and unlisted events never leave the instance.

The object's id is ``/ap/objects/<event id>``: stable across edits (a slug may change), served as
AS2 to ``Accept: application/activity+json`` and redirected to the event's page otherwise
(routes.object_view). Driven by the events domain's durable topic (domains/events/topics.py),
as the market's products are (market.py).

**Participation** (Mobilizon's ``Join``/``Leave``): a remote account's ``Join`` of an event that
takes bookings books one free place on its next date, a booking with no member and no address
(services/bookings.py :func:`book_for_remote`), recorded here with the account and the ``Join``'s
id, and is answered with ``Accept``; a full, cancelled, past or non-booking event is answered with
``Reject`` and nothing is booked (remote accounts never wait on the waiting list: they would never
hear that they were promoted). An account holds at most one live place a date, and the accounts of
one server at most ``ROSE_ASH_EVENTS_REMOTE_SHARE`` percent of a date's places (at least one): over
that, ``Reject`` (book_for_remote); a ``limit``-ed server's Joins are rejected. ``Leave``, or
``Undo`` of the ``Join``, cancels the booking, which returns the place and promotes the waiting
list like any cancellation.
"""

from __future__ import annotations

import html
import logging
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from app.forms import InputProblems
from app.jobs import JobContext, job_handler
from domains.events import topics
from domains.events.booking_models import CANCELLED as BOOKING_CANCELLED
from domains.events.booking_models import Booking
from domains.events.models import CANCELLED, POSTPONED, PUBLIC, SCHEDULED, Event
from domains.events.services.bookings import (
    REMOTE_ALREADY,
    REMOTE_CLOSED,
    REMOTE_SHARE,
    BookingService,
    book_for_remote,
)
from domains.events.services.recurrence import Occurrence, occurrences
from domains.events.topics import EventChanged
from domains.events.views import when_text
from federation.activitypub.as2 import id_of, public_addressing
from federation.activitypub.contexts import event_context
from federation.activitypub.core import Federation
from federation.activitypub.event_models import EventJoin
from federation.activitypub.models import URI, Activity, Actor, APObject
from federation.activitypub.moderation import blocked_hosts
from federation.activitypub.outbox import Outbox, note_document
from federation.activitypub.sanitize import sanitize_html
from federation.activitypub.urls import host_of

__all__ = ["EventJoin", "event_fields", "join_event", "leave_event"]

log = logging.getLogger("rose_ash.federation.events")

KIND: Final = "activitypub.events-event"
ACTOR: Final = "events"
# Mobilizon's event categories (framasoft/mobilizon lib/mobilizon/events/categories.ex): a tag
# naming one (``food-drink`` -> FOOD_DRINK) becomes the category; otherwise Mobilizon's default.
CATEGORIES: Final = frozenset({
    "ARTS", "BOOK_CLUBS", "BUSINESS", "CAUSES", "COMEDY", "CRAFTS", "FOOD_DRINK", "HEALTH", "MUSIC",
    "AUTO_BOAT_AIR", "COMMUNITY", "FAMILY_EDUCATION", "FASHION_BEAUTY", "FILM_MEDIA", "GAMES",
    "LANGUAGE_CULTURE", "LEARNING", "LGBTQ", "MOVEMENTS_POLITICS", "NETWORKING", "PARTY",
    "PERFORMING_VISUAL_ARTS", "PETS", "PHOTOGRAPHY", "OUTDOORS_ADVENTURE", "SPIRITUALITY_RELIGION_BELIEFS",
    "SCIENCE_TECH", "SPORTS", "THEATRE", "MEETING"})
DEFAULT_CATEGORY: Final = "MEETING"
# RFC 5545 §3.8.1.11 STATUS values, as Mobilizon publishes them under ``ical:status``.
ICAL_STATUS: Final = {SCHEDULED: "CONFIRMED", CANCELLED: "CANCELLED", POSTPONED: "TENTATIVE"}


def _next_date(event: Event) -> Occurrence | None:
    """The date a ``Join`` books and the document shows: the next one to start, else the first."""
    now = datetime.now(UTC)
    upcoming = list(occurrences(start_local=event.starts_local, end_local=event.ends_local, tz=event.tz,
                                rule=event.rrule, exdates=event.exdates, window_start=now,
                                window_end=now + timedelta(days=366 * 2), limit=1))
    return upcoming[0] if upcoming and upcoming[0].starts_at > now else None


def _first_date(event: Event) -> Occurrence:
    found = list(occurrences(start_local=event.starts_local, end_local=event.ends_local, tz=event.tz,
                             rule=event.rrule, exdates=event.exdates, window_start=event.starts_at,
                             window_end=event.ends_at + timedelta(days=1), limit=1))
    if found:
        return found[0]
    return Occurrence(start_local=event.starts_local, end_local=event.ends_local, starts_at=event.starts_at,
                      ends_at=event.ends_at)


def _category(tags: list[str]) -> str:
    for tag in tags:
        name = tag.upper().replace("-", "_").replace(" ", "_")
        if name in CATEGORIES:
            return name
    return DEFAULT_CATEGORY


def _place(event: Event) -> dict[str, Any] | None:
    """schema.org's ``Place`` with a ``PostalAddress`` (Mobilizon's ``location``); our address is one
    free-text line, so it is the ``streetAddress``."""
    if not (event.place_name or event.place_address or event.latitude is not None):
        return None
    place: dict[str, Any] = {"type": "Place", "name": event.place_name or event.place_address}
    if event.place_address:
        place["address"] = {"type": "PostalAddress", "streetAddress": event.place_address}
    if event.latitude is not None and event.longitude is not None:
        place["latitude"], place["longitude"] = event.latitude, event.longitude
    return place


def event_fields(event: Event, *, base_url: str, remaining: int | None) -> dict[str, Any]:
    """The ``Event`` object's own fields (not id, actor or addressing): what followers are told.

    ``remaining`` is the places left on the date shown (None: the event takes no bookings)."""
    from zoneinfo import ZoneInfo

    occ = _next_date(event) or _first_date(event)
    tz = ZoneInfo(event.tz)
    url = f"{base_url}/events/{event.slug}"
    when = when_text(event, occ)
    line = " · ".join(p for p in (when, event.place_name, "Cancelled" if event.status == CANCELLED else
                                  "Postponed" if event.status == POSTPONED else "") if p)
    title = html.escape(event.title)
    # Readers that show only ``content`` still get the title, the date, the place and a link. Not in
    # ``summary``: that is a content warning to Mastodon-style clients (see the module docstring).
    head = f'<p><a href="{html.escape(url, quote=True)}">{title}</a></p><p>{html.escape(line)}</p>'
    fields: dict[str, Any] = {
        "name": event.title,
        "content": sanitize_html(head + event.description_html),
        "mediaType": "text/html",
        "url": url,
        "startTime": occ.starts_at.astimezone(tz).isoformat(),
        "endTime": occ.ends_at.astimezone(tz).isoformat(),
        "timezone": event.tz,
        "ical:status": ICAL_STATUS.get(event.status, "CONFIRMED"),
        "category": _category(list(event.tags)),
        "joinMode": "free" if event.capacity is not None and event.status == SCHEDULED else "restricted",
        "isOnline": bool(event.online_url) and not event.place_name and not event.place_address,
        "anonymousParticipationEnabled": False,
        "commentsEnabled": False,
        "repliesModerationOption": "closed",
        "draft": False,
        "tag": [{"type": "Hashtag", "href": f"{base_url}/events/?tag={t}", "name": f"#{t.replace('-', '')}"}
                for t in event.tags],
    }
    if place := _place(event):
        fields["location"] = place
    if event.online_url:  # Mobilizon's online address: a Link attachment named "Website"
        fields["attachment"] = [{"type": "Link", "mediaType": "text/html", "name": "Website",
                                 "href": event.online_url}]
    if event.capacity is not None:
        fields["maximumAttendeeCapacity"] = event.capacity
        left = event.capacity if remaining is None else remaining
        fields["remainingAttendeeCapacity"] = left
        fields["participantCount"] = event.capacity - left
    return fields


async def _remaining(fed: Federation, event: Event) -> int | None:
    if event.capacity is None:
        return None
    occ = _next_date(event)
    if occ is None:
        return 0
    return (await BookingService(fed.session).left(event, [occ.key]))[occ.key]


def _apply(obj: APObject, fields: dict[str, Any]) -> None:
    # ``summary`` emptied too: objects published before it left the Event shape lose it on re-render.
    obj.name, obj.summary, obj.content, obj.url = fields["name"], "", fields["content"], fields["url"]
    obj.raw = {k: v for k, v in fields.items() if k not in ("name", "content", "url")}


async def _send(fed: Federation, actor: Actor, obj: APObject, kind: str) -> None:
    """``Create`` or ``Update`` of the Event to the actor's followers, with Mobilizon's context."""
    outbox = Outbox(fed)
    obj.raw = note_document(obj)
    activity = await outbox._record(actor, {"@context": event_context(), "type": kind, "to": obj.to, "cc": obj.cc,
                                            "object": obj.raw})
    await outbox._send(actor, activity, await outbox._followers(actor))


async def _load(fed: Federation, event_id: UUID) -> Event | None:
    return (await fed.session.execute(select(Event).where(Event.id == event_id)
                                      .options(selectinload(Event.calendar)))).scalar_one_or_none()


@job_handler(KIND)
async def federate_event(ctx: JobContext, change: EventChanged) -> None:
    client = ctx.services.get("federation_client") if ctx.services else None
    async with ctx.sessionmaker() as session, session.begin():
        fed = Federation(session, ctx.settings, client)
        try:
            await publish(fed, UUID(change.event_id))
        finally:
            await fed.aclose()


async def publish(fed: Federation, event_id: UUID) -> str:
    """Tell the events actor's followers the event's state; what was sent (``Create``, ``Update``,
    ``Delete`` or ``""`` when nothing they see changed, so a retried job sends nothing twice)."""
    event = await _load(fed, event_id)
    ap_id = fed.urls.object(event_id)
    existing = await fed.session.scalar(select(APObject).where(APObject.ap_id == ap_id))
    actor = await fed.local_service_actor(ACTOR)
    if event is None or event.visibility != PUBLIC:
        if existing is not None and not existing.deleted:
            await Outbox(fed).delete_note(actor, existing)
            return "Delete"
        return ""
    fields = event_fields(event, base_url=fed.settings.base_url, remaining=await _remaining(fed, event))
    if existing is None:
        to, cc = public_addressing("public", actor.followers_url)
        obj = APObject(id=event.id, ap_id=ap_id, type="Event", local=True, attributed_to=actor.uri, in_reply_to="",
                       visibility="public", to=to, cc=cc, mentions=[], published=event.created_at or datetime.now(UTC))
        _apply(obj, fields)
        fed.session.add(obj)
        await fed.session.flush()
        await _send(fed, actor, obj, "Create")
        return "Create"
    before = note_document(existing)
    if existing.deleted:  # public again after a withdrawal: a new Create of the same object
        existing.deleted = False
        _apply(existing, fields)
        existing.updated = datetime.now(UTC)
        await _send(fed, actor, existing, "Create")
        return "Create"
    _apply(existing, fields)
    if note_document(existing) == before:
        return ""
    existing.updated = datetime.now(UTC)
    await _send(fed, actor, existing, "Update")
    return "Update"


async def _refresh_places(fed: Federation, event: Event) -> None:
    """Keep the stored document's places current after a Join or Leave (what a dereference shows),
    without an Update to every follower for each place taken."""
    obj = await fed.session.get(APObject, event.id)
    if obj is None or obj.deleted or not obj.local:
        return
    fields = event_fields(event, base_url=fed.settings.base_url, remaining=await _remaining(fed, event))
    raw = dict(obj.raw or {})
    for name in ("remainingAttendeeCapacity", "participantCount", "maximumAttendeeCapacity", "joinMode"):
        if name in fields:
            raw[name] = fields[name]
    obj.raw = raw


async def _answer(fed: Federation, actor: Actor, remote: Actor, join: dict[str, Any], kind: str,
                  reason: str = "") -> None:
    """``Accept``/``Reject`` of the ``Join`` (embedded, as Mobilizon answers participations)."""
    outbox = Outbox(fed)
    data: dict[str, Any] = {"type": kind, "to": [remote.uri], "object": join}
    if reason:
        data["content"] = f"<p>{html.escape(reason)}</p>"
    activity = await outbox._record(actor, data)
    await outbox._send(actor, activity, [remote])


async def _local_event(fed: Federation, object_id: str) -> Event | None:
    """The public event a Join or Leave names by its AP id (or its page URL), or None."""
    if not object_id:
        return None
    obj = await fed.session.scalar(select(APObject).where(APObject.ap_id == object_id, APObject.local,
                                                          APObject.type == "Event"))
    if obj is None:
        obj = await fed.session.scalar(select(APObject).where(APObject.url == object_id, APObject.local,
                                                              APObject.type == "Event"))
    if obj is None or obj.deleted:
        return None
    event = await _load(fed, obj.id)
    return event if event is not None and event.visibility == PUBLIC else None


async def _live_join(fed: Federation, actor_uri: str, event_id: UUID) -> tuple[EventJoin, Booking] | None:
    row = (await fed.session.execute(
        select(EventJoin, Booking).join(Booking, Booking.id == EventJoin.booking_id)
        .where(EventJoin.actor_uri == actor_uri, EventJoin.event_id == event_id,
               Booking.state != BOOKING_CANCELLED))).tuples().first()
    return (row[0], row[1]) if row is not None else None


async def join_event(fed: Federation, activity: Activity) -> str:
    """Answer a remote ``Join``: book a place and ``Accept``, or ``Reject`` (nothing booked).
    Returns the answer's type (``""``: the object is not one of our events, nothing is sent)."""
    raw = activity.raw
    object_id = id_of(raw.get("object"))
    local_obj = await fed.session.scalar(select(APObject).where(APObject.ap_id == object_id, APObject.local,
                                                                APObject.type == "Event"))
    event = await _local_event(fed, object_id)
    if event is None and local_obj is None:
        log.info("Join %s of %s: not one of our events", activity.ap_id, object_id)
        return ""
    actor = await fed.local_service_actor(ACTOR)
    remote = await fed.remote_actor(activity.actor_uri)
    join = {"id": activity.ap_id, "type": "Join", "actor": remote.uri, "object": object_id}
    if event is None:
        await _answer(fed, actor, remote, join, "Reject", "This event is no longer published.")
        return "Reject"
    if await _live_join(fed, remote.uri, event.id) is not None:
        await _answer(fed, actor, remote, join, "Accept")  # a repeated Join: the same answer, one place
        return "Accept"
    host = host_of(remote.uri)
    # A limited server (Mastodon's "silence") has its follows wait for approval; a place has no
    # approval step, so its Joins are refused (a suspended server never reaches the inbox).
    if await blocked_hosts(fed.session, {host}, "limit"):
        await _answer(fed, actor, remote, join, "Reject", "This event does not take places from your server.")
        return "Reject"
    occ = _next_date(event)
    name = f"{remote.name or remote.username} (@{remote.username}@{remote.domain})" if remote.username else remote.uri
    # One server's accounts share a quota whatever port they come from (host_of keeps the port).
    server = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    booking: Booking | str = REMOTE_CLOSED
    if occ is not None:
        booking = await book_for_remote(fed.session, event, occ.key, name=name, actor_uri=remote.uri, host=server,
                                        share_percent=fed.settings.events_remote_share)
    if booking == REMOTE_ALREADY:  # a parallel Join of this account won the place: the same answer
        await _answer(fed, actor, remote, join, "Accept")
        return "Accept"
    if not isinstance(booking, Booking):
        why = ("This event takes no bookings." if event.capacity is None else
               "This event is cancelled." if event.status == CANCELLED else
               "This event has no upcoming date." if occ is None or booking == REMOTE_CLOSED else
               "Accounts of your server hold all the places this event gives one server."
               if booking == REMOTE_SHARE else "This event is full.")
        await _answer(fed, actor, remote, join, "Reject", why)
        return "Reject"
    fed.session.add(EventJoin(booking_id=booking.id, event_id=event.id, actor_uri=remote.uri,
                              join_id=activity.ap_id[:URI]))
    await fed.session.flush()
    await _refresh_places(fed, event)
    await _answer(fed, actor, remote, join, "Accept")
    return "Accept"


async def leave_event(fed: Federation, actor_uri: str, object_id: str, join_id: str) -> bool:
    """A remote ``Leave`` (or ``Undo`` of its ``Join``): cancel its booking, which returns the place
    and promotes the waiting list. Whether a booking was cancelled (a repeat finds none)."""
    rows: list[tuple[EventJoin, Booking]] = []
    query = (select(EventJoin, Booking).join(Booking, Booking.id == EventJoin.booking_id)
             .where(EventJoin.actor_uri == actor_uri, Booking.state != BOOKING_CANCELLED))
    if join_id:
        rows = [(j, b) for j, b in (await fed.session.execute(query.where(EventJoin.join_id == join_id))).tuples()]
    if not rows and object_id:
        obj = await fed.session.scalar(select(APObject).where(APObject.ap_id == object_id, APObject.local))
        if obj is not None:
            rows = [(j, b) for j, b in (await fed.session.execute(query.where(EventJoin.event_id == obj.id))).tuples()]
    cancelled = False
    for joined, booking in rows:
        event = await _load(fed, joined.event_id)
        if event is None:
            continue
        try:
            await BookingService(fed.session, base_url=fed.settings.base_url).cancel(booking, event)
        except InputProblems as exc:  # the date has begun: the place is kept, as for a member
            log.info("Leave by %s of %s refused: %s", actor_uri, event.slug, exc)
            continue
        cancelled = True
        await _refresh_places(fed, event)
    return cancelled


topics.subscribe(KIND)
