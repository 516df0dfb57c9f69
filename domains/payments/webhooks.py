"""``POST /payments/webhook/<provider>``: a provider's poke, answered at once, acted on by a job.

SumUp signs nothing (design/domains.md §5), so the body is only a hint of *which* checkout
changed: the route answers an empty 204 straight away (SumUp retries after 1 min, 5 min, 20 min
and 2 h until it gets a 2xx) and enqueues a durable ``payments.refresh`` job, which re-fetches the
checkout from the provider and emits what the provider says on ``payments.updated``
(domains/payments/hooks.py). A forged body therefore changes nothing the provider does not
confirm; an unknown checkout (the provider answers 404) emits nothing; a replay emits the same
truth again, which the order's idempotent transitions absorb.

An unknown provider is a 404; a body that names no checkout (an event type we do not handle, a
malformed body) is still a 204, as SumUp asks, and nothing is queued.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
from litestar import Request, post
from litestar.datastructures import CacheControlHeader
from litestar.exceptions import NotFoundException
from sqlalchemy.ext.asyncio import AsyncSession

from app.jobs import JobContext, job_handler
from app.limits import PAYMENT_WEBHOOK, limited
from app.settings import Settings
from domains.payments.hooks import payments_updated
from domains.payments.registry import available_providers
from domains.payments.schemas import PaymentError, PaymentUpdate

__all__ = ["PAYMENT_REFRESH", "payment_webhook", "refresh_payment", "request_refresh"]

log = logging.getLogger("rose_ash.payments.webhooks")

PAYMENT_REFRESH = "payments.refresh"
MAX_WEBHOOK_BYTES = 64 * 1024


@job_handler(PAYMENT_REFRESH, backoff_base=30.0, backoff_cap=3600.0, max_attempts=10)
async def refresh_payment(ctx: JobContext, payload: PaymentUpdate) -> None:
    """Re-fetch one checkout and emit it on ``payments.updated`` (retried while the provider is down)."""
    shared = ctx.services.get("http") if ctx.services else None
    providers = available_providers(ctx.settings, http=shared if isinstance(shared, httpx.AsyncClient) else None)
    provider = providers.get(payload.provider)
    if provider is None:
        log.warning(
            "payment refresh for %s %s: that provider is not configured any more", payload.provider, payload.provider_id
        )
        return
    try:
        record = await provider.fetch(payload.provider_id)
    except PaymentError as exc:
        if exc.retryable:
            raise  # the worker retries with backoff
        log.warning("payment refresh for %s %s ignored: %s", payload.provider, payload.provider_id, exc)
        return  # an unknown checkout (a forged or stray webhook): nothing to tell anybody
    async with ctx.sessionmaker() as session, session.begin():
        await payments_updated.emit(session, record)
    log.info("payment %s %s (%s) is %s", record.provider, record.provider_id, record.reference, record.status)


async def request_refresh(session: AsyncSession, provider: str, provider_id: str) -> None:
    """Queue a re-fetch of ``provider_id`` in ``session``'s transaction (the webhook, the payer's
    return and a reconciliation sweep all come through here); one queued job per checkout."""
    await refresh_payment.enqueue(
        session,
        PaymentUpdate(provider=provider, provider_id=provider_id),
        unique_key=f"{PAYMENT_REFRESH}:{provider}:{provider_id}",
    )


@post(
    "/payments/webhook/{provider:str}",
    name="payments:webhook",
    status_code=204,
    request_max_body_size=MAX_WEBHOOK_BYTES,
    include_in_schema=False,
    opt={"exclude_from_auth": True, "skip_session": True, "exclude_from_csrf": True},
    cache_control=CacheControlHeader(no_store=True),
    guards=[limited(PAYMENT_WEBHOOK)],
)
async def payment_webhook(
    provider: str, request: Request[Any, Any, Any], db_session: AsyncSession, settings: Settings
) -> None:
    found = available_providers(settings).get(provider)
    if found is None:
        raise NotFoundException("No such payment provider.")
    provider_id = found.parse_webhook(await request.body(), request.headers)
    if provider_id is not None:
        await request_refresh(db_session, found.name, provider_id)
