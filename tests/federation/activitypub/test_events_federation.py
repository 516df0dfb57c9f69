"""Events federation (issue 18 item 7): the ``events`` actor's AS2 ``Event`` in Mobilizon's
vocabulary, Create/Update/Delete driven by the events topic, dereference with content negotiation,
and a remote ``Join`` (Accept with a booking, Reject when full) and ``Leave`` (the place returns and
the waiting list is promoted), through the real worker and inbox processor."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.jobs import JobContext, Worker
from app.safe_http import SafeClient
from domains.events.booking_models import CANCELLED, CONFIRMED, WAITING, Booking
from domains.events.models import Event
from domains.events.services.bookings import BookingService
from domains.events.services.events import EventForm, EventService
from federation.activitypub.core import Federation
from federation.activitypub.events import EventJoin, event_fields
from federation.activitypub.models import Activity, Actor, Follow
from federation.activitypub.processor import _apply

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8000"
EVENTS = f"{BASE}/ap/actors/events"
REMOTE = "https://remote.example/users/bob"
OTHER = "https://remote.example/users/carol"
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"
DAY = date.today() + timedelta(days=10)


def _form(**changes: str) -> EventForm:
    values = {"title": "Cider pressing", "slug": "cider-pressing", "tz": "Europe/London",
              "start_date": DAY.isoformat(), "start_time": "18:00", "end_time": "20:00",
              "place_name": "The orchard", "place_address": "1 Mill Lane, Bristol BS1 1AA",
              "latitude": "51.45", "longitude": "-2.58", "tags": "food-drink, apples",
              "description": "Bring *jars*. <script>alert(1)</script>", "capacity": "1", **changes}
    return EventForm(**values)


async def _remote(session: AsyncSession, uri: str, name: str) -> None:
    session.add(Actor(uri=uri, local=False, type="Person", username=name, name=name.title(),
                      domain="remote.example", inbox=f"{uri}/inbox", shared_inbox="https://remote.example/inbox",
                      fetched_at=datetime.now(UTC)))


def test_event_document_shape() -> None:
    """Mobilizon's fields, from an event row alone (no database)."""
    from domains.events.models import EventCalendar

    start = datetime.combine(DAY, datetime.min.time()).replace(hour=18)
    event = Event(id=uuid.uuid4(), title="Cider <pressing>", slug="cider", tz="Europe/London", all_day=False,
                  starts_local=start, ends_local=start + timedelta(hours=2),
                  starts_at=start.replace(tzinfo=UTC), ends_at=(start + timedelta(hours=2)).replace(tzinfo=UTC),
                  rrule="", exdates=[], place_name="The orchard", place_address="1 Mill Lane", latitude=51.45,
                  longitude=-2.58, online_url="", tags=["food-drink", "apples"], status="cancelled",
                  visibility="public", capacity=12, description_html="<p>Hi<script>x()</script></p>")
    event.calendar = EventCalendar(name="Workshops", slug="workshops")
    doc = event_fields(event, base_url=BASE, remaining=5)
    assert doc["name"] == "Cider <pressing>" and doc["url"] == f"{BASE}/events/cider"
    assert doc["timezone"] == "Europe/London"
    assert datetime.fromisoformat(doc["startTime"]) == event.starts_at
    assert datetime.fromisoformat(doc["endTime"]) == event.ends_at
    assert doc["location"] == {"type": "Place", "name": "The orchard", "latitude": 51.45, "longitude": -2.58,
                               "address": {"type": "PostalAddress", "streetAddress": "1 Mill Lane"}}
    assert doc["ical:status"] == "CANCELLED" and doc["joinMode"] == "restricted"  # cancelled: no joining
    assert (doc["maximumAttendeeCapacity"], doc["remainingAttendeeCapacity"], doc["participantCount"]) == (12, 5, 7)
    assert doc["category"] == "FOOD_DRINK"
    assert {t["name"] for t in doc["tag"]} == {"#fooddrink", "#apples"}
    assert "<script>" not in doc["content"] and "Cider &lt;pressing&gt;" in doc["content"]
    # no summary: Mastodon-style clients would fold the post behind it as a content warning; the
    # date, place and status head the content instead
    assert "summary" not in doc
    assert "Cancelled" in doc["content"] and "The orchard" in doc["content"]
    event.status, event.capacity = "scheduled", None
    plain = event_fields(event, base_url=BASE, remaining=None)
    assert plain["ical:status"] == "CONFIRMED" and "maximumAttendeeCapacity" not in plain
    assert plain["joinMode"] == "restricted"  # no bookings: a Join is rejected
    event.capacity = 3
    assert event_fields(event, base_url=BASE, remaining=None)["joinMode"] == "free"


async def test_event_lifecycle_and_participation(client: Any, db_session: AsyncSession, settings: Any) -> None:
    await _remote(db_session, REMOTE, "bob")
    await _remote(db_session, OTHER, "carol")
    db_session.add(Follow(follower=REMOTE, followee=EVENTS, state="accepted"))
    await db_session.commit()

    sent: list[tuple[str, dict[str, Any]]] = []

    def peer(request: httpx.Request) -> httpx.Response:
        sent.append((str(request.url), json.loads(request.content)))
        return httpx.Response(202)

    maker = async_sessionmaker(db_session.bind, expire_on_commit=False)
    federation_client = SafeClient(allow_private=True, transport=httpx.MockTransport(peer))
    worker = Worker(maker, context=JobContext(sessionmaker=maker, settings=settings,
                                              services={"federation_client": federation_client}))

    async def save(**changes: str) -> None:
        async with maker() as session, session.begin():
            service = EventService(session, base_url=BASE)
            await service.save(_form(**changes), event=await service.get("cider-pressing"))
        await worker.run_once()

    def kinds() -> list[str]:
        return [doc["type"] for _, doc in sent]

    # an unlisted event never leaves the instance
    await save(visibility="unlisted")
    assert kinds() == []

    # made public: a Create of an Event to the follower, with Mobilizon's context
    await save()
    assert kinds() == ["Create"]
    create = sent[0][1]
    assert sent[0][0] == "https://remote.example/inbox" and create["actor"] == EVENTS
    event_doc = create["object"]
    assert event_doc["type"] == "Event" and event_doc["attributedTo"] == EVENTS
    assert PUBLIC in event_doc["to"] and event_doc["name"] == "Cider pressing"
    assert event_doc["url"] == f"{BASE}/events/cider-pressing" and event_doc["joinMode"] == "free"
    assert event_doc["maximumAttendeeCapacity"] == 1 and event_doc["remainingAttendeeCapacity"] == 1
    assert event_doc["location"]["address"]["streetAddress"] == "1 Mill Lane, Bristol BS1 1AA"
    assert "<em>jars</em>" in event_doc["content"] and "<script>" not in event_doc["content"]
    assert not event_doc.get("summary") and not event_doc.get("sensitive")  # never a content warning
    assert any(isinstance(c, dict) and c.get("joinMode") == {"@id": "mz:joinMode", "@type": "mz:joinModeType"}
               for c in create["@context"])

    # dereferenceable at its id: AS2 for AS2, the event's page for a browser
    path = event_doc["id"].removeprefix(BASE)
    r = await client.get(path, headers={"Accept": "application/activity+json"})
    assert r.status_code == 200 and r.json()["type"] == "Event" and r.json()["startTime"] == event_doc["startTime"]
    r = await client.get(path, headers={"Accept": "text/html"}, follow_redirects=False)
    assert r.status_code in (302, 303, 307) and r.headers["location"] == f"{BASE}/events/cider-pressing"

    # an edit: Update of the same object; a re-run with nothing changed sends nothing
    sent.clear()
    await save(title="Cider pressing day")
    assert kinds() == ["Update"] and sent[0][1]["object"]["id"] == event_doc["id"]
    assert sent[0][1]["object"]["name"] == "Cider pressing day"
    sent.clear()
    await save(title="Cider pressing day")
    assert kinds() == []

    async def inbound(kind: str, actor: str, obj: Any) -> str:
        aid = f"https://remote.example/activities/{uuid.uuid4()}"
        async with maker() as session, session.begin():
            activity = Activity(ap_id=aid, direction="in", type=kind, actor_uri=actor, raw={
                "id": aid, "type": kind, "actor": actor, "object": obj}, trusted=True, state="received",
                verification="test", signer=actor, recipient=f"{EVENTS}/inbox")
            session.add(activity)
            await session.flush()
            fed = Federation(session, settings, federation_client)
            try:
                await _apply(fed, activity.id)
            finally:
                await fed.aclose()
            assert activity.state == "processed", activity.error
        await worker.run_once()  # deliveries
        return aid

    # bob joins: one place booked for him (no member, no address), answered Accept
    sent.clear()
    join = await inbound("Join", REMOTE, event_doc["id"])
    assert [(doc["type"], doc["to"]) for _, doc in sent] == [("Accept", [REMOTE])]
    assert sent[0][1]["object"]["id"] == join and sent[0][1]["object"]["type"] == "Join"
    async with maker() as session:
        [(booking, joined)] = (await session.execute(select(Booking, EventJoin).join(
            EventJoin, EventJoin.booking_id == Booking.id))).tuples().all()
        assert booking.state == CONFIRMED and booking.user_id is None and booking.email == ""
        assert "bob@remote.example" in booking.name and joined.actor_uri == REMOTE
    r = await client.get(path, headers={"Accept": "application/activity+json"})
    assert r.json()["remainingAttendeeCapacity"] == 0 and r.json()["participantCount"] == 1

    # a repeated Join: the same answer, still one place
    sent.clear()
    await inbound("Join", REMOTE, event_doc["id"])
    assert kinds() == ["Accept"]
    # carol: the one place is taken, Reject, nothing booked
    sent.clear()
    await inbound("Join", OTHER, event_doc["id"])
    assert [(doc["type"], doc["to"]) for _, doc in sent] == [("Reject", [OTHER])]
    assert "full" in sent[0][1]["content"]
    async with maker() as session:
        assert (await session.scalar(select(func.count()).select_from(Booking))) == 1

    # someone waits through the site; bob leaves: his place goes to them
    async with maker() as session, session.begin():
        event = await EventService(session).get("cider-pressing")
        assert event is not None
        key = (await BookingService(session).dates(event, limit=1))[0].key
        waiting = await BookingService(session, base_url=BASE).book(event, key, user=None, name="Dee",
                                                                  email="dee@example.org", quantity=1)
        assert waiting.state == WAITING
    await inbound("Leave", REMOTE, event_doc["id"])
    async with maker() as session:
        states = dict((await session.execute(select(Booking.name, Booking.state))).tuples().all())
        # the freed place is offered to Dee (held for her until she accepts or the offer lapses)
        offered = await session.scalar(select(Booking.offer_expires_at).where(Booking.name == "Dee"))
        assert states["Dee"] == WAITING and offered is not None
        assert [s for n, s in states.items() if n != "Dee"] == [CANCELLED]
    # a second Leave finds nothing to cancel
    await inbound("Leave", REMOTE, event_doc["id"])

    # members-only/unlisted again (or deleted): Delete with a Tombstone
    sent.clear()
    await save(title="Cider pressing day", visibility="unlisted")
    assert kinds() == ["Delete"] and sent[0][1]["object"]["type"] == "Tombstone"
    assert sent[0][1]["object"]["formerType"] == "Event"
    r = await client.get(path, headers={"Accept": "application/activity+json"})
    assert r.status_code == 410
    # a Join of a withdrawn event is rejected
    sent.clear()
    await inbound("Join", OTHER, event_doc["id"])
    assert kinds() == ["Reject"]
    # public again: a fresh Create of the same object; deleting it: Delete
    sent.clear()
    await save(title="Cider pressing day")
    assert kinds() == ["Create"] and sent[0][1]["object"]["id"] == event_doc["id"]
    sent.clear()
    async with maker() as session, session.begin():
        found = await EventService(session).get("cider-pressing")
        assert found is not None
        await session.execute(delete(EventJoin))
        await session.execute(delete(Booking))
        await EventService(session).delete(found)
    await worker.run_once()
    assert kinds() == ["Delete"]
