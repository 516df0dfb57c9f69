"""Durable delivery: one ``ap_delivery`` row and one ``ap.deliver`` job per target inbox.

Recipients are collapsed onto their shared inbox. Status rules (design/federation.md §6):
2xx done; 410 and other 4xx give up (except 401, 408, 429); 429/503 honour ``Retry-After``;
5xx and network errors retry. Backoff is Mastodon's ``n⁴ + 15 s`` plus jitter, 17 attempts,
about two days in total (``federation_retry_scale`` shrinks it for tests). A per-host circuit
breaker parks deliveries to a host that keeps failing, except Follow/Accept/Reject/Undo(Follow).
The signature spec that worked for a host (cavage, or RFC 9421 after a 401) is remembered in
``ap_host``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from uuid import UUID

import httpx
import msgspec
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.jobs import JobContext, PermanentFailure, RetryLater, enqueue, job_handler
from app.settings import Settings
from federation.activitypub.core import Federation, host_of
from federation.activitypub.models import Activity, Actor, Delivery, Host
from federation.activitypub.safe_fetch import BlockedAddressError, FetchError, SafeClient
from federation.activitypub.signatures import SignatureAuth, SpecMemory

log = logging.getLogger("rose_ash.federation.delivery")

MAX_ATTEMPTS = 17
BREAKER_THRESHOLD = 8
BREAKER_OPEN = timedelta(hours=1)
RETRYABLE_4XX = frozenset({401, 408, 429})
BYPASS_TYPES = frozenset({"Follow", "Accept", "Reject"})


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


async def deliver(session: AsyncSession, activity: Activity, signer: str, inboxes: Iterable[str]) -> list[Delivery]:
    """Record one delivery per inbox and enqueue its job, in the caller's transaction."""
    rows: list[Delivery] = []
    bypass = bypasses_breaker(activity.raw)
    for inbox in dict.fromkeys(inboxes):
        row = Delivery(activity_id=activity.id, inbox=inbox, host=host_of(inbox), signer=signer,
                       state="pending", bypass_availability=bypass)
        session.add(row)
        rows.append(row)
    await session.flush()
    for row in rows:
        await enqueue(session, "ap.deliver", DeliverPayload(delivery_id=str(row.id)),
                      unique_key=f"ap.deliver:{row.id}", max_attempts=MAX_ATTEMPTS)
    return rows


async def _host_row(session: AsyncSession, host: str) -> Host:
    """The host's row, created if missing (concurrent deliveries to one host race here)."""
    row = await session.scalar(select(Host).where(Host.host == host))
    if row is not None:
        return row
    values = {"host": host, "signature_spec": "", "consecutive_failures": 0}
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    await session.execute(insert(Host).values(**values).on_conflict_do_nothing(index_elements=["host"]))
    found = await session.scalar(select(Host).where(Host.host == host).execution_options(populate_existing=True))
    if found is None:  # pragma: no cover - the row exists after the upsert
        raise RuntimeError(f"no host row for {host}")
    return found


@job_handler("ap.deliver", max_attempts=MAX_ATTEMPTS)
async def deliver_job(ctx: JobContext, payload: DeliverPayload) -> None:
    settings: Settings = ctx.settings
    scale = float(getattr(settings, "federation_retry_scale", 1.0))
    client: SafeClient | None = ctx.services.get("federation_client") if ctx.services else None
    # 1. read what to send (short transaction; no network I/O inside it)
    async with ctx.sessionmaker() as session, session.begin():
        delivery = await session.get(Delivery, UUID(payload.delivery_id))
        if delivery is None or delivery.state != "pending":
            return
        activity = await session.get(Activity, delivery.activity_id)
        if activity is None:
            raise PermanentFailure("activity vanished")
        host = await _host_row(session, delivery.host)
        now = datetime.now(UTC)
        if host.unavailable_until and host.unavailable_until > now and not delivery.bypass_availability:
            delay = (host.unavailable_until - now).total_seconds()
            raise RetryLater(delay, f"{delivery.host} is marked unavailable")
        fed = Federation(session, settings, client)
        key_id, key = await fed.signing_key(delivery.signer)
        memory = SpecMemory()
        if host.signature_spec == "cavage":
            memory.set(delivery.host, "cavage")
        elif host.signature_spec == "rfc9421":
            memory.set(delivery.host, "rfc9421")
        body = msgspec.json.encode(activity.raw)
        inbox = delivery.inbox
    # 2. send
    auth = SignatureAuth(key_id, key, memory)
    status: int | None = None
    error = ""
    retry_after: float | None = None
    own = client is None
    sender = client or SafeClient(allow_private=settings.federation_allow_private_addresses)
    try:
        response = await sender.post(inbox, body, auth=auth)
        status = response.status_code
        retry_after = retry_after_seconds(response.headers.get("retry-after"))
        if status >= 400:
            error = f"HTTP {status}"
    except BlockedAddressError as exc:
        error = f"blocked: {exc}"
        status = None
    except (FetchError, httpx.HTTPError, TimeoutError, OSError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    finally:
        if own:
            await sender.aclose()
    # 3. record the outcome
    permanent = error.startswith("blocked") or (
        status is not None and 400 <= status < 500 and status not in RETRYABLE_4XX)
    ok = status is not None and status < 300
    async with ctx.sessionmaker() as session, session.begin():
        delivery = await session.get(Delivery, UUID(payload.delivery_id))
        host = await _host_row(session, host_of(inbox))
        if auth.used and ok:
            host.signature_spec = memory.get(host.host) or auth.used
        if delivery is not None:
            delivery.tries += 1
            delivery.last_status = status
            delivery.last_error = error
        if ok:
            host.consecutive_failures = 0
            host.unavailable_until = None
            host.last_success = datetime.now(UTC)
            if delivery is not None:
                delivery.state = "delivered"
                delivery.next_try = None
            return
        if not permanent:
            host.consecutive_failures += 1
            if host.consecutive_failures >= BREAKER_THRESHOLD:
                host.unavailable_until = datetime.now(UTC) + BREAKER_OPEN * scale
        last = ctx.is_last_attempt
        if permanent or last:
            if delivery is not None:
                delivery.state = "failed"
        else:
            delay = retry_after if retry_after is not None and status in (429, 503) else retry_delay(ctx.attempt, scale)
            if delivery is not None:
                delivery.next_try = datetime.now(UTC) + timedelta(seconds=delay)
    log.info("delivery %s to %s: %s", payload.delivery_id, inbox, error or status)
    if permanent:
        raise PermanentFailure(f"giving up on {inbox}: {error}")
    if last:
        raise PermanentFailure(f"giving up on {inbox} after {ctx.attempt} attempts: {error}")
    raise RetryLater(delay, f"{inbox}: {error}")
