"""``newsletter.send-batch``: one durable job per batch of a campaign's recipients.

Exactly-once per recipient, as far as SMTP allows. Each recipient moves
``queued → sending → sent | failed`` by conditional UPDATEs, each committed on its own:

1. *claim*: ``queued → sending`` (only while the campaign is sending), committed before any byte
   goes to the SMTP server, so no other run can pick the address up;
2. *send* over the batch's one SMTP connection;
3. *record*, in the first transaction after the server's answer (the one that claims the next
   recipient, so a message costs one commit): 250 → ``sent``; 5xx → ``failed`` with the answer
   (RFC 5321 §4.2.1: permanent, never retried); 4xx or a lost connection → back to ``queued``
   (the server did not take the message: RFC 5321 §4.1.1.4, responsibility passes only with the
   250 after the data), the campaign notes when it will try again, and the job retries with backoff.

The one window SMTP cannot close is a crash between the server's 250 and the commit of step 3
(RFC 1047). A recipient found still ``sending`` when its batch runs again is therefore marked
``failed`` ("interrupted") and not sent again: nobody gets two copies; the campaign page counts them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from uuid import UUID

import anyio
from sqlalchemy import CursorResult, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.jobs import JobContext, RetryLater, backoff_delay, job_handler
from domains.account.newsletters.models import (
    CLAIMED,
    CONFIRMED,
    DELIVERED,
    FAILED,
    QUEUED,
    SENDING,
    SENT,
    UNSUBSCRIBED,
    Campaign,
    NewsletterList,
    Recipient,
    Subscription,
)
from domains.account.newsletters.schemas import SendBatch

__all__ = ["SEND_BATCH", "send_batch"]

SEND_BATCH = "newsletter.send-batch"
INTERRUPTED = "interrupted while sending; delivery unknown, so not sent again"
log = logging.getLogger("domains.account.newsletters")


def _now() -> datetime:
    return datetime.now(UTC)


# SQLite has one writer: the batches running in this process take turns here rather than in
# SQLite's busy handler, which sleeps in steps of up to 100 ms (most of a send's time otherwise).
_sqlite_writer = anyio.Lock()


@asynccontextmanager
async def _write(maker: Any) -> AsyncIterator[AsyncSession]:
    """One short transaction of this job's (committed on leaving the block)."""
    bind = maker.kw.get("bind")
    if bind is not None and bind.dialect.name == "sqlite":
        async with _sqlite_writer, maker() as session, session.begin():
            yield session
    else:
        async with maker() as session, session.begin():
            yield session


@asynccontextmanager
async def _write_on(conn: AsyncConnection | None, maker: Any) -> AsyncIterator[AsyncConnection | AsyncSession]:
    """One short transaction on the batch's own connection (``conn``), or a session's when there is none."""
    if conn is None:
        async with _write(maker) as session:
            yield session
    elif conn.dialect.name == "sqlite":
        async with _sqlite_writer, conn.begin():
            yield conn
    else:
        async with conn.begin():
            yield conn


def _rowcount(result: Any) -> int:
    return cast("CursorResult[Any]", result).rowcount


# An SMTP outage can last: retry for about two days (backoff capped at 30 minutes).
@job_handler(SEND_BATCH, backoff_base=30.0, backoff_cap=1800.0, max_attempts=100)
async def send_batch(ctx: JobContext, payload: SendBatch) -> None:
    from app.mail import MailTemporaryError

    settings = ctx.settings
    maker = ctx.sessionmaker
    cid, batch = payload.campaign_id, payload.batch
    async with _write(maker) as session:
        row = (await session.execute(select(Campaign, NewsletterList).join(
            NewsletterList, NewsletterList.id == Campaign.list_id).where(Campaign.id == cid))).first()
        if row is None or row[0].status != SENDING:
            return  # deleted or paused: resuming enqueues the batch again
        campaign, lst = row
        # A claim left by a run that died between claim and record: see the module docstring.
        await session.execute(update(Recipient).where(
            Recipient.campaign_id == cid, Recipient.batch == batch, Recipient.status == CLAIMED,
        ).values(status=FAILED, error=INTERRUPTED))
        # Addresses that left the list (or were removed) since the campaign was queued.
        gone = ~exists().where(Subscription.id == Recipient.subscription_id, Subscription.status == CONFIRMED)
        await session.execute(update(Recipient).where(
            Recipient.campaign_id == cid, Recipient.batch == batch, Recipient.status == QUEUED,
            or_(Recipient.subscription_id.is_(None), gone),
        ).values(status=UNSUBSCRIBED))
        todo = (await session.execute(select(Recipient.id, Recipient.email, Recipient.name, Recipient.subscription_id)
                                      .where(Recipient.campaign_id == cid, Recipient.batch == batch,
                                             Recipient.status == QUEUED).order_by(Recipient.id))).all()
    if todo:
        try:
            if not await _send_all(settings, maker, campaign, lst, todo):
                return  # paused meanwhile: resuming enqueues the batch again
        except MailTemporaryError as exc:
            delay = backoff_delay(ctx.attempt, 30.0, 1800.0)
            await _waiting(maker, cid, _now() + timedelta(seconds=delay), str(exc))
            log.warning("newsletter %s batch %d: SMTP unavailable (%s); retrying in %.0fs", cid, batch, exc, delay)
            raise RetryLater(delay, f"SMTP unavailable: {exc}") from exc
    await _finish_if_done(maker, cid)


async def _send_all(settings: Any, maker: Any, campaign: Campaign, lst: NewsletterList, todo: Sequence[Any]) -> bool:
    """Send to each queued recipient of ``todo`` over one connection; False if the campaign was paused.

    The answer to each send is written in the transaction that claims the next recipient (one
    commit per message); at once when pacing sleeps in between; and on the way out whatever
    happens (``finally``, and the write is shielded from cancellation).
    """
    from app.mail import BatchTemplate, MailPermanentError, open_transport
    from domains.account.newsletters.mailing import issue_copy, issue_template

    rate = int(getattr(settings, "mail_rate", 0) or 0)
    spacing = 60.0 / rate if rate > 0 else 0.0
    try:
        template: BatchTemplate | ValueError = issue_template(settings, campaign, lst)
    except ValueError as exc:  # the issue itself cannot be a mail (as before: each recipient fails with why)
        template = exc
    answer: tuple[UUID, dict[str, Any]] | None = None
    # One connection for the batch's claims: a transaction per message without checking a
    # connection out of the pool (and, on SQLite, the pool's ROLLBACK on its return) each time.
    bind = maker.kw.get("bind")
    try:
        async with (bind.connect() if bind is not None else nullcontext()) as conn, \
                open_transport(settings) as transport:
            next_slot = time.monotonic()
            for rid, email, name, sid in todo:
                if spacing:
                    if answer is not None:
                        await _record(maker, answer[0], **answer[1])
                        answer = None
                    await anyio.sleep(max(0.0, next_slot - time.monotonic()))
                    next_slot = max(next_slot + spacing, time.monotonic())
                claim = await _claim(maker, campaign.id, rid, answer, conn)
                answer = None
                if claim == "stop":
                    return False
                if claim == "skip":
                    continue  # unsubscribed meanwhile (or another run holds it)
                try:
                    if isinstance(template, ValueError):
                        raise template
                    message = issue_copy(template, settings, email, name, sid, rid)
                except ValueError as exc:  # an address or name the mail kernel refuses
                    answer = (rid, {"status": FAILED, "error": f"not sent: {exc}"[:2000]})
                    continue
                try:
                    await transport.send_raw(*message)
                except MailPermanentError as exc:
                    answer = (rid, {"status": FAILED, "error": str(exc)[:2000]})
                    continue
                except BaseException:
                    await _release(maker, rid)  # not taken by the server: queued again
                    raise
                answer = (rid, {"status": DELIVERED, "sent_at": _now()})
                if campaign.retry_at is not None:
                    campaign.retry_at = None
                    await _clear_waiting(maker, campaign.id)
    finally:
        if answer is not None:
            await _record(maker, answer[0], **answer[1])
    return True


async def _claim(maker: Any, cid: UUID, rid: UUID, answer: tuple[UUID, dict[str, Any]] | None = None,
                 conn: AsyncConnection | None = None) -> str:
    """Record ``answer`` (the previous send's) and claim ``rid``, in one transaction: ``claimed``;
    ``skip`` (the recipient is no longer queued); ``stop`` (the campaign is not sending)."""
    async with _write_on(conn, maker) as session:
        if answer is not None:
            await session.execute(update(Recipient).where(Recipient.id == answer[0], Recipient.status == CLAIMED)
                                  .values(**answer[1]))
        sending = exists().where(Campaign.id == cid, Campaign.status == SENDING)
        res = await session.execute(update(Recipient).where(
            Recipient.id == rid, Recipient.status == QUEUED, sending,
        ).values(status=CLAIMED, attempts=Recipient.attempts + 1))
        if _rowcount(res) == 1:
            return "claimed"
        status = await session.scalar(select(Campaign.status).where(Campaign.id == cid))
        return "skip" if status == SENDING else "stop"


async def _record(maker: Any, rid: UUID, **values: Any) -> None:
    # Shielded: once the server has answered, the answer is written even if the worker is stopping.
    with anyio.CancelScope(shield=True):
        async with _write(maker) as session:
            await session.execute(update(Recipient).where(Recipient.id == rid, Recipient.status == CLAIMED)
                                  .values(**values))


async def _release(maker: Any, rid: UUID) -> None:
    with anyio.CancelScope(shield=True):
        async with _write(maker) as session:
            await session.execute(update(Recipient).where(Recipient.id == rid, Recipient.status == CLAIMED)
                                  .values(status=QUEUED))


async def _waiting(maker: Any, cid: UUID, retry_at: datetime, error: str) -> None:
    async with _write(maker) as session:
        await session.execute(update(Campaign).where(Campaign.id == cid)
                              .values(retry_at=retry_at, last_error=error[:2000]))


async def _clear_waiting(maker: Any, cid: UUID) -> None:
    async with _write(maker) as session:
        await session.execute(update(Campaign).where(Campaign.id == cid).values(retry_at=None, last_error=""))


async def _finish_if_done(maker: Any, cid: UUID) -> None:
    async with _write(maker) as session:
        open_ = await session.scalar(select(func.count()).select_from(Recipient).where(
            Recipient.campaign_id == cid, Recipient.status.in_((QUEUED, CLAIMED))))
        if not open_:
            await session.execute(update(Campaign).where(Campaign.id == cid, Campaign.status == SENDING)
                                  .values(status=SENT, finished_at=_now(), retry_at=None, last_error=""))
