"""The webhook path end to end, on both databases: the fake's hosted page posts SumUp's webhook to
the app, the app answers an empty 2xx and queues a job, the worker re-fetches the checkout from the
fake over real HTTP and emits ``payments.updated`` with what SumUp says (never what the body says)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from urllib.parse import urlsplit

import httpx
import msgspec
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.jobs import DEAD, DONE, Job, JobContext, Worker, job_handler
from app.settings import Settings
from domains.payments.hooks import payments_updated
from domains.payments.registry import available_providers
from domains.payments.schemas import PaymentRecord, PaymentStatus
from domains.payments.services import request_refresh, webhook_url
from domains.payments.webhooks import PAYMENT_REFRESH
from tests.fakes.sumup import API_KEY, MERCHANT_CODE, FakeSumUp

pytestmark = pytest.mark.anyio

SEEN: list[PaymentRecord] = []


@job_handler("tests.payments-seen")
async def seen(ctx: JobContext, record: PaymentRecord) -> None:
    SEEN.append(record)


@pytest.fixture
async def setup(
    settings: Settings, engine: AsyncEngine, sumup_fake: FakeSumUp
) -> AsyncIterator[tuple[AsyncTestClient, async_sessionmaker[AsyncSession], Settings]]:
    from app import create_app

    configured = msgspec.structs.replace(
        settings, sumup_api_key=API_KEY, sumup_merchant_code=MERCHANT_CODE, sumup_api_url=sumup_fake.public_url
    )
    SEEN.clear()
    payments_updated.subscribe(seen)
    async with AsyncTestClient(app=create_app(configured), base_url="http://127.0.0.1:8000") as client:

        async def deliver(url: str, body: bytes) -> int:  # the fake's webhook, into the app under test
            response = await client.post(urlsplit(url).path, content=body, headers={"Content-Type": "application/json"})
            return response.status_code

        sumup_fake.deliver = deliver
        try:
            yield client, async_sessionmaker(engine, expire_on_commit=False), configured
        finally:
            payments_updated.unsubscribe(seen)


async def run_jobs(maker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
    worker = Worker(maker, context=JobContext(sessionmaker=maker, settings=settings))
    while await worker.run_once():
        pass


async def refresh_jobs(maker: async_sessionmaker[AsyncSession]) -> list[Job]:
    async with maker() as session:
        return list((await session.scalars(select(Job).where(Job.kind == PAYMENT_REFRESH))).all())


async def checkout(settings: Settings, reference: str = "RA-2026-000007") -> PaymentRecord:
    provider = available_providers(settings)["sumup"]
    return await provider.create(
        reference=reference,
        amount_minor=2450,
        currency="EUR",
        description="Order",
        return_url=f"{settings.base_url}/cart/done",
        webhook_url=webhook_url(settings, "sumup"),
    )


async def test_paid_on_the_hosted_page_reaches_subscribers(setup, sumup_fake: FakeSumUp) -> None:  # type: ignore[no-untyped-def]
    _client, maker, settings = setup
    record = await checkout(settings)
    assert sumup_fake.checkouts[record.provider_id]["return_url"] == "http://127.0.0.1:8000/payments/webhook/sumup"
    async with httpx.AsyncClient() as browser:
        page = await browser.post(f"{sumup_fake.public_url}/pay/{record.provider_id}", data={"action": "pay"})
    assert page.status_code == 303 and page.headers["location"] == "http://127.0.0.1:8000/cart/done"
    assert [status for _, _, status in sumup_fake.webhooks] == [204]  # fast, empty
    assert SEEN == []  # nothing is believed until the job has re-fetched
    await run_jobs(maker, settings)
    assert [(r.provider_id, r.status, r.amount_minor, r.reference) for r in SEEN] == [
        (record.provider_id, PaymentStatus.PAID, 2450, "RA-2026-000007")
    ]
    assert [job.state for job in await refresh_jobs(maker)] == [DONE]


async def test_dashboard_envelope_too(setup, sumup_fake: FakeSumUp) -> None:  # type: ignore[no-untyped-def]
    _client, maker, settings = setup
    sumup_fake.envelope = "dashboard"
    record = await checkout(settings)
    async with httpx.AsyncClient() as browser:
        await browser.post(f"{sumup_fake.public_url}/pay/{record.provider_id}", data={"action": "fail"})
    assert sumup_fake.webhooks[0][1]["event_type"] == "checkout.status.updated"
    await run_jobs(maker, settings)
    assert [(r.provider_id, r.status) for r in SEEN] == [(record.provider_id, PaymentStatus.FAILED)]


async def test_forged_webhook_claiming_paid_emits_the_truth(setup, sumup_fake: FakeSumUp) -> None:  # type: ignore[no-untyped-def]
    client, maker, settings = setup
    record = await checkout(settings)
    forged = {
        "id": "evt_forged",
        "event_type": "checkout.status.updated",
        "timestamp": "2026-12-07T05:00:00Z",
        "payload": {"checkout_id": record.provider_id, "reference": record.reference, "status": "PAID"},
    }
    response = await client.post("/payments/webhook/sumup", json=forged)
    assert response.status_code == 204 and response.content == b""
    await run_jobs(maker, settings)
    assert [(r.provider_id, r.status) for r in SEEN] == [(record.provider_id, PaymentStatus.PENDING)]
    assert sumup_fake.checkouts[record.provider_id]["status"] == "PENDING"


async def test_unknown_checkout_webhook_is_answered_and_emits_nothing(setup, sumup_fake: FakeSumUp) -> None:  # type: ignore[no-untyped-def]
    client, maker, settings = setup
    body = {"event_type": "CHECKOUT_STATUS_CHANGED", "id": "00000000-0000-0000-0000-00000000beef"}
    response = await client.post("/payments/webhook/sumup", json=body)
    assert response.status_code == 204 and response.content == b""
    await run_jobs(maker, settings)
    assert SEEN == []
    assert [job.state for job in await refresh_jobs(maker)] == [DONE]  # not retried: SumUp said 404
    assert ("get", "00000000-0000-0000-0000-00000000beef") in sumup_fake.calls


async def test_junk_and_unknown_events_queue_nothing(setup, sumup_fake: FakeSumUp) -> None:  # type: ignore[no-untyped-def]
    client, maker, _settings = setup
    for body in (b"", b"not json", b"[]", b'{"event_type":"PAYOUT.CREATED","id":"x"}', b'{"id":"x"}'):
        response = await client.post("/payments/webhook/sumup", content=body)
        assert response.status_code == 204, body
    assert (await client.post("/payments/webhook/paypal", content=b"{}")).status_code == 404
    too_big = b'{"event_type":"CHECKOUT_STATUS_CHANGED","id":"x","pad":"' + b"a" * 70_000 + b'"}'
    assert (await client.post("/payments/webhook/sumup", content=too_big)).status_code == 413
    assert await refresh_jobs(maker) == []


async def test_replayed_webhook(setup, sumup_fake: FakeSumUp) -> None:  # type: ignore[no-untyped-def]
    client, maker, settings = setup
    record = await checkout(settings)
    async with httpx.AsyncClient() as browser:
        await browser.post(f"{sumup_fake.public_url}/pay/{record.provider_id}", data={"action": "pay"})
    webhook = sumup_fake.webhooks[0][1]
    # SumUp's retries while the first is still queued: one job.
    for _ in range(3):
        assert (await client.post("/payments/webhook/sumup", json=webhook)).status_code == 204
    assert len(await refresh_jobs(maker)) == 1
    await run_jobs(maker, settings)
    # A replay after it ran: re-fetched again, the same truth again (the order's transition is idempotent).
    assert (await client.post("/payments/webhook/sumup", json=webhook)).status_code == 204
    await run_jobs(maker, settings)
    assert len(SEEN) == 2 and SEEN[0] == SEEN[1] and SEEN[0].status is PaymentStatus.PAID


async def test_sumup_down_the_job_is_retried_then_emits(setup, sumup_fake: FakeSumUp) -> None:  # type: ignore[no-untyped-def]
    _client, maker, settings = setup
    record = await checkout(settings)
    sumup_fake.pay(record.provider_id)
    sumup_fake.fail_next("get", status=500)
    async with maker() as session, session.begin():
        await request_refresh(session, "sumup", record.provider_id)  # e.g. the payer's return redirect
    await run_jobs(maker, settings)
    assert SEEN == []
    [job] = await refresh_jobs(maker)
    assert job.state not in (DONE, DEAD) and job.attempts == 1 and "HTTP 500" in (job.last_error or "")
    due = job.next_run_at + timedelta(seconds=1)  # SumUp is back by the time the retry is due
    later = Worker(maker, context=JobContext(sessionmaker=maker, settings=settings), clock=lambda: due)
    assert await later.run_once() >= 1
    await run_jobs(maker, settings)
    assert [(r.provider_id, r.status) for r in SEEN] == [(record.provider_id, PaymentStatus.PAID)]


async def test_a_flood_of_webhooks_from_one_address_is_refused(setup, sumup_fake: FakeSumUp) -> None:  # type: ignore[no-untyped-def]
    """Each webhook costs a job and a provider call: past 60 a minute from one address, 429."""
    client, maker, _settings = setup
    answers = []
    for n in range(62):
        body = {"event_type": "CHECKOUT_STATUS_CHANGED", "id": f"00000000-0000-0000-0000-{n:012d}"}
        answers.append((await client.post("/payments/webhook/sumup", json=body)).status_code)
    assert answers[:60] == [204] * 60 and answers[60:] == [429, 429]
    assert len(await refresh_jobs(maker)) == 60
