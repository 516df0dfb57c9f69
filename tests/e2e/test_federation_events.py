"""The events actor federating between two real instances (issue 18 item 7): bob on B follows
``events@A``; staff on A create an event with one place; its ``Create``
of an ``Event`` reaches B; bob's ``Join`` (signed and delivered by B's real outbox) books the place
on A, a booking with no local account, and B receives the ``Accept``; carol's ``Join`` of the full
event gets a ``Reject`` and books nothing; bob's ``Leave`` gives the place back.
Uses the helpers of test_federation_two_instances.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from tests.conftest import DB_KINDS
from tests.e2e.test_federation_two_instances import ENV, _eventually, _form, _host, _session, _signup
from tests.helpers.server import AppServer, app_server

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

DAY = date.today() + timedelta(days=12)


@pytest.fixture(scope="module", params=DB_KINDS)
def peers(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, AppServer]]:
    tmp: Path = tmp_path_factory.mktemp(f"events-federation-{request.param}")
    with ExitStack() as stack:
        urls: list[str | None] = [None, None]
        if request.param == "postgresql":
            from tests.helpers.pg import pg_database

            urls = [stack.enter_context(pg_database("efed_a")), stack.enter_context(pg_database("efed_b"))]
        a = stack.enter_context(app_server(tmp, name="a", database_url=urls[0], extra_env=ENV))
        b = stack.enter_context(app_server(tmp, name="b", database_url=urls[1], extra_env=ENV))
        _signup(b, "bob")
        _signup(b, "carol")
        yield {"a": a, "b": b}


async def _rows(server: AppServer, sql: str, **params: Any) -> list[Any]:
    url = server.env.get("ROSE_ASH_DATABASE_URL") or f"sqlite+aiosqlite:///{server.data_dir / 'rose-ash.sqlite3'}"
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(text(sql), params)).all())
    finally:
        await engine.dispose()


def _doc(raw: Any) -> dict[str, Any]:
    found: dict[str, Any] = raw if isinstance(raw, dict) else json.loads(raw)
    return found


def _send(b: AppServer, username: str, kind: str, target: str, obj: str) -> str:
    """``kind`` (Join, Leave) of ``obj`` from ``username`` on B to the actor ``target``, through B's
    outbox: recorded, signed and delivered by B's worker like every activity. Returns its id."""
    from app.settings import Settings

    settings = Settings.from_env(b.env)

    async def work(session: AsyncSession) -> str:
        from domains.account.models import User
        from federation.activitypub.core import Federation
        from federation.activitypub.outbox import Outbox

        fed = Federation(session, settings)
        try:
            user = (await session.scalars(select(User).where(User.username == username))).one()
            me = await fed.local_actor_for_user(user)
            them = await fed.remote_actor(target)
            outbox = Outbox(fed)
            activity = await outbox._record(me, {"type": kind, "object": obj, "to": [target]})
            await outbox._send(me, activity, [them])
            return activity.ap_id
        finally:
            await fed.aclose()

    return b.in_process(work)


async def test_events_actor_create_join_accept_reject_leave(peers: dict[str, AppServer]) -> None:
    a, b = peers["a"], peers["b"]
    events_uri = f"{a.base_url}/ap/actors/events"
    bob, carol = await _session(b, "bob"), await _session(b, "carol")
    try:
        await _form(bob, "/social/follow", {"handle": f"events@{_host(a)}"})
        await _form(carol, "/social/follow", {"handle": f"events@{_host(a)}"})

        async def accepted() -> bool:
            rows = await _rows(a, "SELECT state FROM ap_follow WHERE followee = :uri", uri=events_uri)
            return [r[0] for r in rows] == ["accepted", "accepted"]

        await _eventually(accepted, what="bob and carol following events@A")

        async def create(session: AsyncSession) -> str:
            # The service, as the staff form uses it (the CLI takes no --capacity yet); its save
            # writes the events topic's job in the same transaction, which A's worker runs.
            from domains.events.services.events import EventForm, EventService

            event = await EventService(session, base_url=a.base_url).save(EventForm(
                title="Cider pressing", tz="Europe/London", start_date=DAY.isoformat(), start_time="18:00",
                end_time="20:00", place_name="The orchard", capacity="1"))
            return f"{a.base_url}/events/{event.slug}"

        public_url = a.in_process(create)
        assert public_url == f"{a.base_url}/events/cider-pressing"

        async def on_b() -> list[Any]:
            return await _rows(b, "SELECT ap_id, raw FROM ap_object WHERE url = :url AND type = 'Event'",
                               url=public_url)

        [(event_id, raw)] = await _eventually(on_b, what="the events actor's Create on B")
        doc = _doc(raw)
        assert doc["attributedTo"] == events_uri and doc["name"] == "Cider pressing"
        assert doc["timezone"] == "Europe/London" and doc["startTime"].startswith(f"{DAY}T18:00")
        assert doc["location"]["name"] == "The orchard" and doc["maximumAttendeeCapacity"] == 1
        assert doc["joinMode"] == "free"

        # bob joins: the place is booked on A for him (no account there) and B gets the Accept
        join = _send(b, "bob", "Join", events_uri, event_id)

        async def booked() -> list[Any]:
            return await _rows(a, "SELECT b.name, b.state, b.user_id, j.actor_uri FROM events_booking b "
                                  "JOIN ap_event_join j ON j.booking_id = b.id")

        [(name, state, user_id, actor)] = await _eventually(booked, what="bob's booking on A")
        assert state == "confirmed" and user_id is None and actor == f"{b.base_url}/@bob" and "bob" in name

        async def answer(join_id: str) -> Any:
            rows = await _rows(b, "SELECT type, raw FROM ap_activity WHERE direction = 'in' AND actor_uri = :a "
                                  "AND type IN ('Accept', 'Reject')", a=events_uri)
            found = [(kind, _doc(r)) for kind, r in rows if _doc(r)["object"].get("id") == join_id]
            return found[0] if found else None

        kind, accept = await _eventually(lambda: answer(join), what="the Accept on B")
        assert kind == "Accept" and accept["object"]["type"] == "Join" and accept["object"]["object"] == event_id

        # carol: the event is full, a Reject, nothing booked
        refused = _send(b, "carol", "Join", events_uri, event_id)
        kind, reject = await _eventually(lambda: answer(refused), what="the Reject on B")
        assert kind == "Reject" and "full" in reject.get("content", "")
        assert len(await booked()) == 1
        # the Reject answers her Join: her follow of the events actor on B stays
        follows = await _rows(b, "SELECT follower, state FROM ap_follow WHERE followee = :uri", uri=events_uri)
        assert sorted(follows) == [(f"{b.base_url}/@bob", "accepted"), (f"{b.base_url}/@carol", "accepted")]

        # bob leaves: his booking is cancelled on A
        _send(b, "bob", "Leave", events_uri, event_id)

        async def cancelled() -> bool:
            return [r[1] for r in await booked()] == ["cancelled"]

        await _eventually(cancelled, what="bob's Leave on A")
    finally:
        await bob.aclose()
        await carol.aclose()
