"""Remote Joins cannot use up an event: one live place per account and date even when its Joins
are processed in parallel (a partial unique index), one server's accounts hold at most
``ROSE_ASH_EVENTS_REMOTE_SHARE`` percent of a date's places, and a ``limit``-ed server's Join is
rejected. Through the real inbox processor, each Join in its own transaction as the worker runs them."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import msgspec
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.jobs import JobContext, Worker
from app.safe_http import SafeClient
from app.settings import Settings
from domains.events.booking_models import CANCELLED, Booking, EventQuota
from domains.events.services.bookings import REMOTE_ALREADY, book_for_remote, remote_share_places
from domains.events.services.events import EventForm, EventService
from federation.activitypub.core import Federation
from federation.activitypub.events import EventJoin  # subscribes the publishing job to the events topic
from federation.activitypub.models import Activity, Actor, APObject, DomainBlock
from federation.activitypub.processor import _apply

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8000"
EVENTS = f"{BASE}/ap/actors/events"
DAY = date.today() + timedelta(days=10)


def _actor(host: str, name: str) -> str:
    return f"https://{host}/users/{name}"


class Rig:
    def __init__(self, db_session: AsyncSession, settings: Settings) -> None:
        self.maker = async_sessionmaker(db_session.bind, expire_on_commit=False)
        self.settings = settings
        self.client = SafeClient(allow_private=True, transport=httpx.MockTransport(lambda r: httpx.Response(202)))
        self.worker = Worker(self.maker, context=JobContext(sessionmaker=self.maker, settings=settings,
                                                           services={"federation_client": self.client}))
        self.object_id = ""

    async def event(self, capacity: int) -> None:
        form = EventForm(title="Cider pressing", slug="cider", tz="Europe/London", start_date=DAY.isoformat(),
                         start_time="18:00", end_time="20:00", description="Apples.", capacity=str(capacity))
        async with self.maker() as session, session.begin():
            await EventService(session, base_url=BASE).save(form, event=None)
        await self.worker.run_once()  # publishes the Event (its AP object is what a Join names)
        async with self.maker() as session:
            self.object_id = (await session.scalars(select(APObject.ap_id).where(APObject.type == "Event"))).one()

    async def remotes(self, *uris: str) -> None:
        async with self.maker() as session, session.begin():
            for uri in uris:
                host, name = uri.split("/")[2], uri.rsplit("/", 1)[1]
                session.add(Actor(uri=uri, local=False, type="Person", username=name, name=name,
                                  domain=host.split(":")[0], inbox=f"{uri}/inbox", fetched_at=datetime.now(UTC)))

    async def join(self, actor: str) -> str:
        """One Join processed in its own transaction; the answer's type and reason."""
        aid = f"https://{actor.split('/')[2]}/activities/{uuid.uuid4()}"
        async with self.maker() as session, session.begin():
            activity = Activity(ap_id=aid, direction="in", type="Join", actor_uri=actor, raw={
                "id": aid, "type": "Join", "actor": actor, "object": self.object_id}, trusted=True,
                state="received", verification="test", signer=actor, recipient=f"{EVENTS}/inbox")
            session.add(activity)
            await session.flush()
            fed = Federation(session, self.settings, self.client)
            try:
                await _apply(fed, activity.id)
            finally:
                await fed.aclose()
            assert activity.state == "processed", activity.error
        async with self.maker() as session:
            answer = (await session.execute(select(Activity.type, Activity.raw).where(
                Activity.direction == "out", Activity.type.in_(("Accept", "Reject")))
                .order_by(Activity.created_at.desc()))).tuples().all()
            found = [(kind, raw) for kind, raw in answer if (raw.get("object") or {}).get("id") == aid]
            assert len(found) == 1, found
            return f"{found[0][0]} {found[0][1].get('content', '')}".strip()

    async def live(self, **where: Any) -> list[Booking]:
        async with self.maker() as session:
            query = select(Booking).where(Booking.state != CANCELLED)
            for name, value in where.items():
                query = query.where(getattr(Booking, name) == value)
            return list((await session.scalars(query)).all())

    async def taken(self) -> int:
        async with self.maker() as session:
            return int((await session.scalar(select(func.sum(EventQuota.taken)))) or 0)


async def test_parallel_joins_of_one_account_take_one_place(db_session: AsyncSession, settings: Settings) -> None:
    rig = Rig(db_session, msgspec.structs.replace(settings, events_remote_share=100))  # only the index limits
    await rig.event(capacity=8)
    bob = _actor("remote.example", "bob")
    await rig.remotes(bob)
    answers = await asyncio.gather(*(rig.join(bob) for _ in range(4)))  # the worker runs 4 inbox jobs at once
    assert [a.split()[0] for a in answers] == ["Accept"] * 4  # every Join gets the first one's answer
    [booking] = await rig.live(remote_actor=bob)
    assert booking.remote_host == "remote.example" and booking.user_id is None
    assert await rig.taken() == 1  # the losers' places were returned with their savepoints
    async with rig.maker() as session:
        assert (await session.scalar(select(func.count()).select_from(EventJoin))) == 1


async def test_racing_bookings_hit_the_index(db_session: AsyncSession, settings: Settings) -> None:
    """book_for_remote itself (no read-before-write): the index decides, nothing half-written."""
    rig = Rig(db_session, settings)
    await rig.event(capacity=8)
    bob = _actor("remote.example", "bob")

    async def book() -> object:
        async with rig.maker() as session, session.begin():
            event = await EventService(session).get("cider")
            assert event is not None
            key = event.starts_local.strftime("%Y%m%dT%H%M%S")
            return await book_for_remote(session, event, key, name="Bob", actor_uri=bob, host="remote.example",
                                         share_percent=100)

    results = await asyncio.gather(*(book() for _ in range(4)))
    assert sum(isinstance(r, Booking) for r in results) == 1
    assert [r for r in results if not isinstance(r, Booking)] == [REMOTE_ALREADY] * 3
    assert len(await rig.live(remote_actor=bob)) == 1 and await rig.taken() == 1


async def test_one_server_holds_at_most_its_share(db_session: AsyncSession, settings: Settings) -> None:
    rig = Rig(db_session, settings)  # default share 25%: 2 of 8 places
    assert settings.events_remote_share == 25
    await rig.event(capacity=8)
    farm = [_actor("farm.example", f"sock{i}") for i in range(5)]
    await rig.remotes(*farm, _actor("farm.example:8443", "sock9"), _actor("good.example", "ann"),
                      _actor("good.example", "ben"))
    answers = await asyncio.gather(*(rig.join(a) for a in farm))
    assert sorted(a.split()[0] for a in answers) == ["Accept"] * 2 + ["Reject"] * 3
    assert all("your server" in a for a in answers if a.startswith("Reject"))
    assert len(await rig.live(remote_host="farm.example")) == 2
    # another port of the same server shares its quota
    assert (await rig.join(_actor("farm.example:8443", "sock9"))).startswith("Reject")
    # another server still gets places, up to its own share
    assert (await rig.join(_actor("good.example", "ann"))).startswith("Accept")
    assert (await rig.join(_actor("good.example", "ben"))).startswith("Accept")
    assert len(await rig.live(remote_host="good.example")) == 2
    assert await rig.taken() == 4


async def test_share_is_at_least_one_place_and_configurable(db_session: AsyncSession, settings: Settings) -> None:
    assert [remote_share_places(c, 25) for c in (1, 3, 4, 8, 10)] == [1, 1, 1, 2, 2]
    assert remote_share_places(10, 100) == 10
    rig = Rig(db_session, msgspec.structs.replace(settings, events_remote_share=50))
    await rig.event(capacity=2)
    a, b = _actor("one.example", "a"), _actor("one.example", "b")
    await rig.remotes(a, b)
    assert (await rig.join(a)).startswith("Accept")
    assert (await rig.join(b)).startswith("Reject")
    for bad in ("0", "101", "ten", "-5"):
        with pytest.raises(ValueError, match="EVENTS_REMOTE_SHARE"):
            Settings.from_env({"ROSE_ASH_EVENTS_REMOTE_SHARE": bad}, data_dir=settings.data_dir,
                              secret_key=settings.secret_key)
    assert Settings.from_env({"ROSE_ASH_EVENTS_REMOTE_SHARE": "40"}, data_dir=settings.data_dir,
                             secret_key=settings.secret_key).events_remote_share == 40


async def test_limited_server_join_is_rejected(db_session: AsyncSession, settings: Settings) -> None:
    rig = Rig(db_session, settings)
    await rig.event(capacity=8)
    quiet = _actor("social.quiet.example", "q")
    await rig.remotes(quiet)
    async with rig.maker() as session, session.begin():
        session.add(DomainBlock(domain="quiet.example", severity="limit"))
    answer = await rig.join(quiet)
    assert answer.startswith("Reject") and "your server" in answer
    assert await rig.live() == [] and await rig.taken() == 0
