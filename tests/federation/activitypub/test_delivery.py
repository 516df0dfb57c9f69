"""Delivery: shared-inbox grouping, status rules, Retry-After, backoff, circuit breaker, double knock."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.jobs import DEAD, DONE, QUEUED, Job, JobContext, Worker
from app.safe_http import SafeClient
from domains.account.models import User
from domains.account.schemas import SignupInput
from domains.account.services import AccountService
from federation.activitypub.core import Federation
from federation.activitypub.delivery import (
    BREAKER_THRESHOLD,
    GIVE_UP_AFTER,
    MAX_ATTEMPTS,
    bypasses_breaker,
    retry_after_seconds,
    retry_delay,
)
from federation.activitypub.models import Actor, Delivery, Follow, Host
from federation.activitypub.outbox import Outbox

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8000"


def test_backoff_spans_about_two_days() -> None:
    total = sum(retry_delay(n) for n in range(1, MAX_ATTEMPTS))
    assert 1.5 * 86400 < total < 3 * 86400
    assert 15 <= retry_delay(1) <= 26
    assert retry_delay(3, scale=0.01) < 2


def test_retry_after_parsing() -> None:
    assert retry_after_seconds("120") == 120
    future = (datetime.now(UTC) + timedelta(seconds=90)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    parsed = retry_after_seconds(future)
    assert parsed is not None and 80 < parsed <= 90
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None


def test_breaker_bypass_types() -> None:
    assert bypasses_breaker({"type": "Follow"}) and bypasses_breaker({"type": "Accept"})
    assert bypasses_breaker({"type": "Undo", "object": {"type": "Follow"}})
    assert not bypasses_breaker({"type": "Create"}) and not bypasses_breaker({"type": "Undo", "object": {}})


async def _setup(session: AsyncSession, settings: Any, followers: int = 6) -> str:
    user = await AccountService(session).signup(SignupInput(username="alice", email="alice@example.org",
                                                            password="correct horse battery staple"))
    async with Federation(session, settings) as fed:
        me = await fed.local_actor_for_user(user)
    for i in range(followers):
        host = f"peer{i % 2}.example"  # two hosts with a shared inbox each, plus one without
        uri = f"https://{host}/users/u{i}"
        shared = f"https://{host}/inbox" if i < followers - 1 else ""
        session.add(Actor(uri=uri, local=False, username=f"u{i}", domain=host, inbox=f"{uri}/inbox",
                          shared_inbox=shared, fetched_at=datetime.now(UTC)))
        session.add(Follow(follower=uri, followee=me.uri, state="accepted"))
    uri = me.uri
    await session.execute(delete(Job).where(Job.kind == "edge.purge"))  # the sign-up's, of the member list
    await session.commit()
    return uri


def _worker(session: AsyncSession, settings: Any, handler: Callable[[httpx.Request], httpx.Response],
            clock: Callable[[], datetime] | None = None) -> Worker:
    maker = async_sessionmaker(session.bind, expire_on_commit=False)
    ctx = JobContext(sessionmaker=maker, settings=settings, services={
        "federation_client": SafeClient(allow_private=True, transport=httpx.MockTransport(handler))})
    return Worker(maker, context=ctx, **({"clock": clock} if clock else {}))


async def _post(session: AsyncSession, settings: Any, me: str, text: str = "hello") -> None:
    async with Federation(session, settings) as fed:
        actor = await fed.local_actor(me)
        assert actor is not None
        await Outbox(fed).post_note(actor, text)
    await session.commit()


async def test_fan_out_groups_on_shared_inboxes(db_session: AsyncSession, settings: Any) -> None:
    me = await _setup(db_session, settings)
    await _post(db_session, settings, me)
    inboxes = sorted((await db_session.scalars(select(Delivery.inbox))).all())
    assert inboxes == ["https://peer0.example/inbox", "https://peer1.example/inbox",
                       "https://peer1.example/users/u5/inbox"]
    got: list[httpx.Request] = []

    def ok(request: httpx.Request) -> httpx.Response:
        got.append(request)
        return httpx.Response(202)

    await _worker(db_session, settings, ok).run_once()
    assert len(got) == 3 and all(json.loads(r.content)["type"] == "Create" for r in got)
    db_session.expire_all()
    assert {d.state for d in (await db_session.scalars(select(Delivery))).all()} == {"delivered"}
    assert {h.signature_spec for h in (await db_session.scalars(select(Host))).all()} == {"cavage"}


@pytest.mark.parametrize(("status", "final_state", "job_state"), [
    (410, "failed", DEAD), (404, "failed", DEAD), (400, "failed", DEAD), (403, "failed", DEAD),
    (500, "pending", QUEUED), (502, "pending", QUEUED), (408, "pending", QUEUED), (429, "pending", QUEUED),
])
async def test_status_rules(db_session: AsyncSession, settings: Any, status: int, final_state: str,
                            job_state: str) -> None:
    me = await _setup(db_session, settings, followers=1)
    await _post(db_session, settings, me)
    await _worker(db_session, settings, lambda r: httpx.Response(status)).run_once()
    db_session.expire_all()
    delivery = (await db_session.scalars(select(Delivery))).one()
    assert (delivery.state, delivery.last_status, delivery.tries) == (final_state, status, 1)
    job = (await db_session.scalars(select(Job).where(Job.kind == "ap.deliver"))).one()
    assert job.state == job_state


async def test_retry_after_is_honoured_and_network_errors_retry(db_session: AsyncSession, settings: Any) -> None:
    me = await _setup(db_session, settings, followers=1)
    await _post(db_session, settings, me)
    before = datetime.now(UTC)
    await _worker(db_session, settings, lambda r: httpx.Response(429, headers={"Retry-After": "3600"})).run_once()
    db_session.expire_all()
    job = (await db_session.scalars(select(Job).where(Job.kind == "ap.deliver"))).one()
    assert timedelta(minutes=59) < job.next_run_at - before < timedelta(minutes=61)

    def boom(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    later = datetime.now(UTC) + timedelta(hours=2)
    await _worker(db_session, settings, boom, clock=lambda: later).run_once()
    db_session.expire_all()
    delivery = (await db_session.scalars(select(Delivery))).one()
    assert delivery.state == "pending" and delivery.tries == 2 and "ConnectError" in delivery.last_error

    def ok(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200)

    await _worker(db_session, settings, ok, clock=lambda: later + timedelta(days=1)).run_once()
    db_session.expire_all()
    assert (await db_session.scalars(select(Delivery))).one().state == "delivered"
    assert (await db_session.scalars(select(Job).where(Job.kind == "ap.deliver"))).one().state == DONE


async def test_double_knock_is_remembered_per_host(db_session: AsyncSession, settings: Any) -> None:
    me = await _setup(db_session, settings, followers=1)
    seen: list[str] = []

    def rfc_only(request: httpx.Request) -> httpx.Response:
        spec = "rfc9421" if "signature-input" in request.headers else "cavage"
        seen.append(spec)
        return httpx.Response(202 if spec == "rfc9421" else 401)

    await _post(db_session, settings, me, "one")
    await _worker(db_session, settings, rfc_only).run_once()
    assert seen == ["cavage", "rfc9421"]
    db_session.expire_all()
    assert (await db_session.scalars(select(Host))).one().signature_spec == "rfc9421"
    seen.clear()
    await _post(db_session, settings, me, "two")
    await _worker(db_session, settings, rfc_only).run_once()
    assert seen == ["rfc9421"]


async def test_circuit_breaker_parks_a_failing_host(db_session: AsyncSession, settings: Any) -> None:
    me = await _setup(db_session, settings, followers=1)
    db_session.add(Host(host="peer0.example", consecutive_failures=BREAKER_THRESHOLD,
                        unavailable_until=datetime.now(UTC) + timedelta(hours=1)))
    await db_session.commit()
    calls: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(202)

    await _post(db_session, settings, me)
    for hours in (0, 2, 4):  # the worker's clock passes each snooze; the breaker's hour does not end
        later = datetime.now(UTC) + timedelta(hours=hours)
        assert await _worker(db_session, settings, record, clock=lambda t=later: t).run_once() == 1
    assert calls == []  # a Create waits while the host is marked unavailable...
    db_session.expire_all()
    assert (await db_session.scalars(select(Delivery))).one().state == "pending"
    job = (await db_session.scalars(select(Job).where(Job.kind == "ap.deliver"))).one()
    assert (job.state, job.attempts) == (QUEUED, 0)  # ...and waiting spends none of its attempts
    assert job.last_error is not None and "peer0.example is marked unavailable" in job.last_error
    # ...but Follow/Accept/Undo(Follow) are always attempted
    remote = (await db_session.scalars(select(Actor).where(Actor.local.is_(False)))).one()
    async with Federation(db_session, settings) as fed:
        actor = await fed.local_actor(me)
        assert actor is not None
        await Outbox(fed).follow(actor, remote)
    await db_session.commit()
    await _worker(db_session, settings, record).run_once()
    assert [json.loads(r.content)["type"] for r in calls] == ["Follow"]


async def test_a_parked_delivery_is_given_up_after_the_whole_schedule(db_session: AsyncSession, settings: Any) -> None:
    me = await _setup(db_session, settings, followers=1)
    db_session.add(Host(host="peer0.example", consecutive_failures=BREAKER_THRESHOLD,
                        unavailable_until=datetime.now(UTC) + timedelta(hours=1)))
    await db_session.commit()
    await _post(db_session, settings, me)
    scale = float(settings.federation_retry_scale)
    await db_session.execute(update(Delivery).values(created_at=datetime.now(UTC) - GIVE_UP_AFTER * scale
                                                     - timedelta(minutes=1)))
    await db_session.commit()
    calls: list[httpx.Request] = []
    await _worker(db_session, settings, lambda r: calls.append(r) or httpx.Response(202)).run_once()
    assert calls == []
    db_session.expire_all()
    delivery = (await db_session.scalars(select(Delivery))).one()
    assert delivery.state == "failed" and "stayed unavailable" in delivery.last_error
    assert (await db_session.scalars(select(Job.state).where(Job.kind == "ap.deliver"))).one() == DONE


async def test_fan_out_is_one_job_and_failures_retry_one_by_one(db_session: AsyncSession, settings: Any) -> None:
    me = await _setup(db_session, settings, followers=8)
    db_session.add(Host(host="peer2.example", consecutive_failures=BREAKER_THRESHOLD,
                        unavailable_until=datetime.now(UTC) + timedelta(hours=1)))
    db_session.add(Actor(uri="https://peer2.example/users/p", local=False, username="p", domain="peer2.example",
                         inbox="https://peer2.example/users/p/inbox", fetched_at=datetime.now(UTC)))
    db_session.add(Follow(follower="https://peer2.example/users/p", followee=me, state="accepted"))
    await db_session.commit()
    await _post(db_session, settings, me)
    jobs = (await db_session.scalars(select(Job.kind))).all()
    assert jobs == ["ap.fanout"]  # four inboxes, one job
    answers = {"https://peer0.example/inbox": 202, "https://peer1.example/inbox": 500,
               "https://peer1.example/users/u7/inbox": 410}
    got: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        got.append(str(request.url))
        return httpx.Response(answers[str(request.url)])

    await _worker(db_session, settings, answer).run_once()
    assert sorted(got) == sorted(answers)  # the parked host was not tried
    db_session.expire_all()
    by_inbox = {d.inbox: d for d in (await db_session.scalars(select(Delivery))).all()}
    assert {i: (d.state, d.tries, d.last_status) for i, d in by_inbox.items()} == {
        "https://peer0.example/inbox": ("delivered", 1, 202),
        "https://peer1.example/inbox": ("pending", 1, 500),
        "https://peer1.example/users/u7/inbox": ("failed", 1, 410),
        "https://peer2.example/users/p/inbox": ("pending", 0, None),
    }
    retries = {j.payload["delivery_id"]: j for j in (await db_session.scalars(
        select(Job).where(Job.kind == "ap.deliver"))).all()}
    assert set(retries) == {str(by_inbox["https://peer1.example/inbox"].id),
                            str(by_inbox["https://peer2.example/users/p/inbox"].id)}
    assert all(j.state == QUEUED and j.max_attempts == MAX_ATTEMPTS - 1 for j in retries.values())
    assert (await db_session.scalars(select(Job.state).where(Job.kind == "ap.fanout"))).one() == DONE
    hosts = {h.host: h for h in (await db_session.scalars(select(Host))).all()}
    assert hosts["peer1.example"].consecutive_failures == 1 and hosts["peer0.example"].signature_spec == "cavage"

    # Later (the worker's clock moves; the breaker's hour is over), each retry runs on its own.
    hosts["peer2.example"].unavailable_until = datetime.now(UTC) - timedelta(minutes=1)
    await db_session.commit()
    answers.update({"https://peer1.example/inbox": 202, "https://peer2.example/users/p/inbox": 202})
    got.clear()
    later = datetime.now(UTC) + timedelta(hours=2)
    await _worker(db_session, settings, answer, clock=lambda: later).run_once()
    assert sorted(got) == ["https://peer1.example/inbox", "https://peer2.example/users/p/inbox"]
    db_session.expire_all()
    assert {d.inbox: (d.state, d.tries) for d in (await db_session.scalars(select(Delivery))).all()} == {
        "https://peer0.example/inbox": ("delivered", 1), "https://peer1.example/inbox": ("delivered", 2),
        "https://peer1.example/users/u7/inbox": ("failed", 1), "https://peer2.example/users/p/inbox": ("delivered", 1)}


async def test_fan_out_counts_one_breaker_failure_per_host(db_session: AsyncSession, settings: Any) -> None:
    me = await _setup(db_session, settings, followers=0)
    for i in range(4):  # one server without a shared inbox: four inboxes on one host
        uri = f"https://solo.example/users/s{i}"
        db_session.add(Actor(uri=uri, local=False, username=f"s{i}", domain="solo.example", inbox=f"{uri}/inbox",
                             fetched_at=datetime.now(UTC)))
        db_session.add(Follow(follower=uri, followee=me, state="accepted"))
    await db_session.commit()
    await _post(db_session, settings, me)
    await _worker(db_session, settings, lambda r: httpx.Response(503)).run_once()
    db_session.expire_all()
    assert (await db_session.scalars(select(Host.consecutive_failures))).one() == 1
    assert {(d.state, d.tries) for d in (await db_session.scalars(select(Delivery))).all()} == {("pending", 1)}


async def test_a_fan_out_that_died_hands_each_inbox_its_own_job(db_session: AsyncSession, settings: Any) -> None:
    me = await _setup(db_session, settings)
    await _post(db_session, settings, me)
    sent: list[str] = []

    def crash(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("the worker died mid-send")

    await _worker(db_session, settings, crash).run_once()
    db_session.expire_all()
    assert (await db_session.scalars(select(Job.state).where(Job.kind == "ap.fanout"))).one() == QUEUED

    def ok(request: httpx.Request) -> httpx.Response:
        sent.append(str(request.url))
        return httpx.Response(202)

    later = datetime.now(UTC) + timedelta(hours=1)
    await _worker(db_session, settings, ok, clock=lambda: later).run_once()
    db_session.expire_all()
    assert sorted(sent) == ["https://peer0.example/inbox", "https://peer1.example/inbox",
                            "https://peer1.example/users/u5/inbox"]  # each once
    assert len((await db_session.scalars(select(Job).where(Job.kind == "ap.deliver"))).all()) == 3
    assert {d.state for d in (await db_session.scalars(select(Delivery))).all()} == {"delivered"}


async def test_deliveries_of_a_signer_that_is_gone_fail_instead_of_waiting_forever(
        db_session: AsyncSession, settings: Any) -> None:
    me = await _setup(db_session, settings)
    await _post(db_session, settings, me)
    await db_session.execute(update(User).values(is_active=False))
    await db_session.execute(delete(Actor).where(Actor.uri == me))
    await db_session.commit()
    calls: list[httpx.Request] = []
    await _worker(db_session, settings, lambda r: calls.append(r) or httpx.Response(202)).run_once()
    db_session.expire_all()
    assert calls == []
    rows = (await db_session.scalars(select(Delivery))).all()
    assert len(rows) == 3 and all(d.state == "failed" and "no signing key" in d.last_error for d in rows)
