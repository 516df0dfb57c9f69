"""Durable delivery: one ``ap_delivery`` row per target inbox, sent by one ``ap.fanout`` job
per activity (one ``ap.deliver`` job when there is a single inbox); each delivery that fails
and may be retried gets an ``ap.deliver`` job of its own.

Recipients are collapsed onto their shared inbox. Status rules (design/federation.md §6):
2xx done; 410 and other 4xx give up (except 401, 408, 429); 429/503 honour ``Retry-After``;
5xx and network errors retry. Backoff is Mastodon's ``n⁴ + 15 s`` plus jitter, 17 attempts,
about two days in total (``federation_retry_scale`` shrinks it for tests). A per-host circuit
breaker parks deliveries to a host that keeps failing, except Follow/Accept/Reject/Undo(Follow);
a parked delivery snoozes (no attempt spent) and is given up once it is older than the whole
retry schedule, as Mastodon stops delivering to a domain that stayed unavailable.
The signature spec that worked for a host (cavage, or RFC 9421 after a 401) is remembered in
``ap_host``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from uuid import UUID

import anyio
import httpx
import msgspec
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.jobs import JobContext, PermanentFailure, RetryLater, Snooze, enqueue, job_handler
from app.metrics import DELIVERY_FAILURES
from app.safe_http import BlockedAddressError, FetchError, SafeClient
from app.settings import Settings
from federation.activitypub.core import Federation
from federation.activitypub.models import Activity, Actor, Delivery, Host
from federation.activitypub.signatures import SignatureAuth, Spec, SpecMemory
from federation.activitypub.urls import host_of

log = logging.getLogger("rose_ash.federation.delivery")

MAX_ATTEMPTS = 17
BREAKER_THRESHOLD = 8
BREAKER_OPEN = timedelta(hours=1)
RETRYABLE_4XX = frozenset({401, 408, 429})
BYPASS_TYPES = frozenset({"Follow", "Accept", "Reject"})
# A delivery parked behind an open breaker is dropped once older than the full backoff (~2.8 days).
GIVE_UP_AFTER = timedelta(seconds=sum(n**4 + 15 for n in range(1, MAX_ATTEMPTS)))
FANOUT_CONCURRENCY = 32  # POSTs in flight per fan-out job (SafeClient caps each host at 8)


class DeliverPayload(msgspec.Struct, frozen=True):
    delivery_id: str


def retry_delay(attempt: int, scale: float = 1.0) -> float:
    """Mastodon's ``n⁴ + 15`` seconds plus jitter; attempt counts from 1."""
    n = max(attempt, 1)
    return (n**4 + 15 + random.uniform(0, 10 * n)) * scale


def retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def bypasses_breaker(activity: dict[str, object]) -> bool:
    kind = activity.get("type")
    if kind in BYPASS_TYPES:
        return True
    obj = activity.get("object")
    return kind == "Undo" and isinstance(obj, dict) and obj.get("type") == "Follow"


async def inboxes_for(session: AsyncSession, actors: Iterable[Actor]) -> list[str]:
    """Target inboxes for remote actors, collapsed onto shared inboxes, deduplicated."""
    found: dict[str, None] = {}
    for actor in actors:
        if actor.local or actor.gone:
            continue
        target = actor.shared_inbox or actor.inbox
        if target:
            found[target] = None
    return list(found)


class FanoutPayload(msgspec.Struct, frozen=True):
    activity_id: str


async def deliver(session: AsyncSession, activity: Activity, signer: str, inboxes: Iterable[str]) -> list[Delivery]:
    """Record one delivery per inbox and enqueue what sends them, in the caller's transaction.

    Many inboxes go out from one ``ap.fanout`` job (one read, concurrent POSTs, one write),
    so a post to thousands of followers does not cost a job and three transactions per inbox.
    Inboxes on blocked domains are left out.
    """
    # Imported here: the moderation module builds on the outbox, which imports this module.
    from federation.activitypub.moderation import blocked_hosts

    targets = list(dict.fromkeys(inboxes))
    blocked = await blocked_hosts(session, {host_of(inbox) for inbox in targets})
    rows: list[Delivery] = []
    bypass = bypasses_breaker(activity.raw)
    for inbox in targets:
        if host_of(inbox) in blocked:
            continue
        row = Delivery(activity_id=activity.id, inbox=inbox, host=host_of(inbox), signer=signer,
                       state="pending", bypass_availability=bypass)
        session.add(row)
        rows.append(row)
    await session.flush()
    if len(rows) > 1:
        await enqueue(session, "ap.fanout", FanoutPayload(activity_id=str(activity.id)),
                      unique_key=f"ap.fanout:{activity.id}", max_attempts=3)
    elif rows:
        await enqueue(session, "ap.deliver", DeliverPayload(delivery_id=str(rows[0].id)),
                      unique_key=f"ap.deliver:{rows[0].id}", max_attempts=MAX_ATTEMPTS)
    return rows


async def _host_rows(session: AsyncSession, hosts: Iterable[str]) -> dict[str, Host]:
    """The hosts' rows, created if missing (concurrent deliveries to one host race here)."""
    wanted = set(hosts)
    found = {h.host: h for h in (await session.scalars(select(Host).where(Host.host.in_(wanted)))).all()}
    missing = wanted - found.keys()
    if missing:
        insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        await session.execute(insert(Host).values([
            {"host": h, "signature_spec": "", "consecutive_failures": 0} for h in sorted(missing)
        ]).on_conflict_do_nothing(index_elements=["host"]))
        made = await session.scalars(select(Host).where(Host.host.in_(missing)).execution_options(
            populate_existing=True))
        found.update({h.host: h for h in made.all()})
    return found


def _spec_memory(hosts: Iterable[Host]) -> SpecMemory:
    specs: dict[str, Spec] = {"cavage": "cavage", "rfc9421": "rfc9421"}
    return SpecMemory({h.host: specs[h.signature_spec] for h in hosts if h.signature_spec in specs})


@dataclass
class Outcome:
    """What one POST to an inbox came to."""

    status: int | None = None
    error: str = ""
    retry_after: float | None = None
    spec: str | None = None  # the signature spec the inbox accepted

    @property
    def ok(self) -> bool:
        return self.status is not None and self.status < 300

    @property
    def permanent(self) -> bool:
        return self.error.startswith("blocked") or (
            self.status is not None and 400 <= self.status < 500 and self.status not in RETRYABLE_4XX)


async def _post(sender: SafeClient, inbox: str, body: bytes, auth: SignatureAuth) -> Outcome:
    try:
        response = await sender.post(inbox, body, auth=auth)
    except BlockedAddressError as exc:
        return Outcome(error=f"blocked: {exc}")
    except (FetchError, httpx.HTTPError, TimeoutError, OSError) as exc:
        return Outcome(error=f"{type(exc).__name__}: {exc}")
    status = response.status_code
    return Outcome(status=status, error=f"HTTP {status}" if status >= 400 else "",
                   retry_after=retry_after_seconds(response.headers.get("retry-after")),
                   spec=auth.used if status < 300 else None)


def _record(delivery: Delivery | None, host: Host, outcome: Outcome, *, last: bool, scale: float,
            count_failure: bool = True) -> float | None:
    """Apply an outcome to the delivery and its host; the retry delay, or None when settled.

    ``count_failure`` False: this host's failure was already counted for this send (a fan-out
    to several inboxes on one host is one failure for the circuit breaker, not one per inbox).
    """
    if outcome.spec:
        host.signature_spec = outcome.spec
    if delivery is not None:
        delivery.tries += 1
        delivery.last_status = outcome.status
        delivery.last_error = outcome.error
    if outcome.ok:
        host.consecutive_failures = 0
        host.unavailable_until = None
        host.last_success = datetime.now(UTC)
        if delivery is not None:
            delivery.state, delivery.next_try = "delivered", None
        return None
    DELIVERY_FAILURES.labels(host=host.host).inc()  # every failed attempt (app/metrics.py, /metrics)
    if not outcome.permanent and count_failure:
        host.consecutive_failures += 1
        if host.consecutive_failures >= BREAKER_THRESHOLD:
            host.unavailable_until = datetime.now(UTC) + BREAKER_OPEN * scale
    if outcome.permanent or last:
        if delivery is not None:
            delivery.state = "failed"
        return None
    tries = delivery.tries if delivery is not None else 1
    delay = outcome.retry_after if outcome.retry_after is not None and outcome.status in (429, 503) \
        else retry_delay(tries, scale)
    if delivery is not None:
        delivery.next_try = datetime.now(UTC) + timedelta(seconds=delay)
    return delay


def _client(ctx: JobContext, settings: Settings) -> tuple[SafeClient, bool]:
    client: SafeClient | None = ctx.services.get("federation_client") if ctx.services else None
    if client is not None:
        return client, False
    return SafeClient(allow_private=settings.federation_allow_private_addresses), True


@job_handler("ap.fanout", max_attempts=3)
async def fanout_job(ctx: JobContext, payload: FanoutPayload) -> None:
    """Send an activity to all its not-yet-tried inboxes at once; failures retry one by one."""
    settings: Settings = ctx.settings
    scale = float(getattr(settings, "federation_retry_scale", 1.0))
    now = datetime.now(UTC)
    # 1. read what to send (short transaction; no network I/O inside it)
    async with ctx.sessionmaker() as session, session.begin():
        activity = await session.get(Activity, UUID(payload.activity_id))
        if activity is None:
            raise PermanentFailure("activity vanished")
        rows = list((await session.scalars(select(Delivery).where(
            Delivery.activity_id == activity.id, Delivery.state == "pending", Delivery.tries == 0))).all())
        if not rows:
            return
        if ctx.attempt > 1:
            # An earlier run died part-way (crash, lost lease): rather than send to everyone
            # again, give each untried inbox a durable job of its own.
            for r in rows:
                await enqueue(session, "ap.deliver", DeliverPayload(delivery_id=str(r.id)),
                              unique_key=f"ap.deliver:{r.id}", max_attempts=MAX_ATTEMPTS)
            return
        hosts = await _host_rows(session, {r.host for r in rows})
        parked = {h for h, row in hosts.items() if row.unavailable_until and row.unavailable_until > now}
        fed = Federation(session, settings)
        try:
            signers = {signer: await fed.signing_key(signer) for signer in {r.signer for r in rows}}
        except KeyError as exc:  # the signer is gone (a deactivated member): nothing can be sent
            for r in rows:
                r.state, r.last_error = "failed", f"no signing key: {exc}"
            log.warning("fan-out of %s: %s", payload.activity_id, exc)
            return
        memory = _spec_memory(hosts.values())
        body = msgspec.json.encode(activity.raw)
        held = [r for r in rows if r.host in parked and not r.bypass_availability]
        sends = [(r.id, r.inbox, r.signer) for r in rows if r not in held]
        waiting = {r.id: hosts[r.host].unavailable_until for r in held}
    # 2. send, concurrently (the client also limits connections per host)
    outcomes: dict[UUID, Outcome] = {}
    sender, own = _client(ctx, settings)
    limiter = anyio.CapacityLimiter(FANOUT_CONCURRENCY)

    async def send(delivery_id: UUID, inbox: str, signer: str) -> None:
        async with limiter:
            key_id, key = signers[signer]
            outcomes[delivery_id] = await _post(sender, inbox, body, SignatureAuth(key_id, key, memory))

    try:
        async with anyio.create_task_group() as tg:
            for delivery_id, inbox, signer in sends:
                tg.start_soon(send, delivery_id, inbox, signer)
    finally:
        if own:
            await sender.aclose()
    # 3. record every outcome in one transaction; what may be retried gets a job of its own
    async with ctx.sessionmaker() as session, session.begin():
        deliveries = {d.id: d for d in (await session.scalars(select(Delivery).where(
            Delivery.id.in_([*outcomes, *waiting])))).all()}
        hosts = await _host_rows(session, {d.host for d in deliveries.values()})
        retry: dict[UUID, datetime] = {}
        counted: set[str] = set()
        for delivery_id, outcome in outcomes.items():
            delivery = deliveries.get(delivery_id)
            if delivery is None:
                continue
            delay = _record(delivery, hosts[delivery.host], outcome, last=False, scale=scale,
                            count_failure=delivery.host not in counted)
            if not outcome.ok and not outcome.permanent:
                counted.add(delivery.host)
            if delay is not None:
                retry[delivery_id] = datetime.now(UTC) + timedelta(seconds=delay)
        for delivery_id, until in waiting.items():
            if until is not None and delivery_id in deliveries:
                retry[delivery_id] = until
        for delivery_id, when in retry.items():
            await enqueue(session, "ap.deliver", DeliverPayload(delivery_id=str(delivery_id)), run_at=when,
                          unique_key=f"ap.deliver:{delivery_id}", max_attempts=MAX_ATTEMPTS - 1)
    delivered = sum(1 for o in outcomes.values() if o.ok)
    log.info("fan-out of %s: %d of %d inboxes took it, %d to retry, %d parked", payload.activity_id, delivered,
             len(outcomes), len(retry) - len(waiting), len(waiting))


@job_handler("ap.deliver", max_attempts=MAX_ATTEMPTS)
async def deliver_job(ctx: JobContext, payload: DeliverPayload) -> None:
    settings: Settings = ctx.settings
    scale = float(getattr(settings, "federation_retry_scale", 1.0))
    # 1. read what to send (short transaction; no network I/O inside it)
    async with ctx.sessionmaker() as session, session.begin():
        delivery = await session.get(Delivery, UUID(payload.delivery_id))
        if delivery is None or delivery.state != "pending":
            return
        activity = await session.get(Activity, delivery.activity_id)
        if activity is None:
            raise PermanentFailure("activity vanished")
        host = (await _host_rows(session, [delivery.host]))[delivery.host]
        now = datetime.now(UTC)
        if host.unavailable_until and host.unavailable_until > now and not delivery.bypass_availability:
            if now - delivery.created_at > GIVE_UP_AFTER * scale:
                delivery.state = "failed"
                delivery.last_error = f"{delivery.host} stayed unavailable; gave up after {GIVE_UP_AFTER * scale}"
                log.warning("delivery %s: %s", payload.delivery_id, delivery.last_error)
                return
            raise Snooze((host.unavailable_until - now).total_seconds(), f"{delivery.host} is marked unavailable")
        try:
            key_id, key = await Federation(session, settings).signing_key(delivery.signer)
        except KeyError as exc:  # the signer is gone (a deactivated member): nothing can be sent
            delivery.state, delivery.last_error = "failed", f"no signing key: {exc}"
            log.warning("delivery %s: %s", payload.delivery_id, exc)
            return
        memory = _spec_memory([host])
        body = msgspec.json.encode(activity.raw)
        inbox = delivery.inbox
    # 2. send
    sender, own = _client(ctx, settings)
    try:
        outcome = await _post(sender, inbox, body, SignatureAuth(key_id, key, memory))
    finally:
        if own:
            await sender.aclose()
    # 3. record the outcome
    async with ctx.sessionmaker() as session, session.begin():
        found = await session.get(Delivery, UUID(payload.delivery_id))
        host = (await _host_rows(session, [host_of(inbox)]))[host_of(inbox)]
        retry_in = _record(found, host, outcome, last=ctx.is_last_attempt, scale=scale)
    log.info("delivery %s to %s: %s", payload.delivery_id, inbox, outcome.error or outcome.status)
    if outcome.ok:
        return
    if retry_in is None:
        raise PermanentFailure(f"giving up on {inbox}: {outcome.error}" if outcome.permanent else
                               f"giving up on {inbox} after {ctx.attempt} attempts: {outcome.error}")
    raise RetryLater(retry_in, f"{inbox}: {outcome.error}")
