"""``send_mail``: a durable ``mail.send`` job, queued in the caller's transaction.

The job builds the message and sends it through the configured transport. A temporary failure
(4xx, server down) is raised again so the queue retries it with its backoff; a permanent one
(5xx) is recorded in the mail log and the job ends: the same answer would come back.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Final
from uuid import UUID

import msgspec
from advanced_alchemy.mixins.uuid import uuid7  # type: ignore[attr-defined]  # what the models' ids use
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.jobs import JobContext, PermanentFailure, job_handler
from app.mail.message import OutgoingMail, build_message, check_mail, message_id_left, new_message_id, valid_address
from app.mail.models import FAILED, QUEUED, SENT, MailLog
from app.mail.transport import MailPermanentError, MailTemporaryError, open_transport

__all__ = ["KIND", "MailJob", "last_failure", "send_job", "send_mail"]

KIND: Final = "mail.send"
MAX_ANSWER: Final = 1000

log = logging.getLogger("rose_ash.mail")


class MailJob(msgspec.Struct, frozen=True, kw_only=True):
    mail: OutgoingMail
    log_id: UUID
    message_key: str


async def send_mail(session: AsyncSession, mail: OutgoingMail, *, unique_key: str | None = None) -> None:
    """Queue ``mail`` in ``session``'s transaction: it is sent if and only if the caller commits.

    Raises ``ValueError`` at once for a mail that could never be built (bad address, a line break
    in a header value, a missing template). ``unique_key`` de-duplicates while a job with that key
    is queued or running (e.g. ``"verify:<user id>"``: a second click does not send twice).
    """
    check_mail(mail)
    # The Message-ID's left part now, so every retry sends the same id (its host comes from the
    # worker's settings); the log row's id rides in the payload so the job can update it.
    key = message_id_left()
    entry = MailLog(id=uuid7(), to_address=valid_address(mail.to) or mail.to, subject=mail.subject[:1000],
                    tag=mail.tag, status=QUEUED, message_id=key)
    job = await send_job.enqueue(session, MailJob(mail=mail, log_id=entry.id, message_key=key),
                                 unique_key=unique_key)
    if job.payload.get("log_id") == str(entry.id):  # a new job, not one already queued under unique_key
        session.add(entry)
        await session.flush()


async def _record(ctx: JobContext, log_id: UUID, **values: object) -> None:
    async with ctx.sessionmaker() as session, session.begin():
        await session.execute(update(MailLog).where(MailLog.id == log_id).values(**values))


@job_handler(KIND, backoff_base=30.0, backoff_cap=3600.0, max_attempts=12)
async def send_job(ctx: JobContext, job: MailJob) -> None:
    message_id = new_message_id(ctx.settings, job.message_key)
    try:
        message = build_message(job.mail, ctx.settings, message_id=message_id)
    except ValueError as exc:  # cannot happen for a mail send_mail accepted, unless a template changed
        await _record(ctx, job.log_id, status=FAILED, smtp_code=None, smtp_answer=str(exc)[:MAX_ANSWER],
                      attempts=ctx.attempt)
        raise PermanentFailure(str(exc)) from exc
    try:
        async with open_transport(ctx.settings) as transport:
            await transport.send(message)
    except MailPermanentError as exc:
        log.warning("mail %s to %s refused: %s", message_id, job.mail.to, exc)
        await _record(ctx, job.log_id, status=FAILED, smtp_code=exc.code, smtp_answer=exc.text[:MAX_ANSWER],
                      attempts=ctx.attempt)
        return
    except MailTemporaryError as exc:
        await _record(ctx, job.log_id, status=FAILED if ctx.is_last_attempt else QUEUED,
                      smtp_code=exc.code or None, smtp_answer=exc.text[:MAX_ANSWER], attempts=ctx.attempt)
        raise
    await _record(ctx, job.log_id, status=SENT, sent_at=datetime.now(UTC), attempts=ctx.attempt,
                  message_id=message_id, smtp_code=None, smtp_answer="")


async def last_failure(session: AsyncSession, address: str) -> MailLog | None:
    """The newest failed mail to ``address`` (e.g. to tell a member their address bounces).

    Compared without case: RFC 5321 lets a local part be case-sensitive, no mailbox people use is.
    """
    canonical = (valid_address(address) or address).lower()
    entry: MailLog | None = await session.scalar(
        select(MailLog).where(func.lower(MailLog.to_address) == canonical, MailLog.status == FAILED)
        .order_by(MailLog.created_at.desc()).limit(1)
    )
    return entry
