"""The real thing: ``rose-ash run`` with ``ROSE_ASH_SUMUP_*`` pointing at the fake, the payer
pressing Pay on the fake's hosted page, the fake posting SumUp's webhook to the server over HTTP,
and the server's in-process worker re-fetching the checkout (both on real loopback HTTP)."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.jobs import DONE, Job
from domains.payments.schemas import PaymentStatus
from domains.payments.sumup import SumUpProvider
from domains.payments.webhooks import PAYMENT_REFRESH
from tests.fakes.sumup import API_KEY, MERCHANT_CODE, FakeSumUp
from tests.helpers.server import app_server

pytestmark = pytest.mark.anyio


async def test_webhook_into_a_running_server(
    tmp_path: Path, server_database_url: str | None, sumup_fake: FakeSumUp, sumup: SumUpProvider
) -> None:
    env = {
        "ROSE_ASH_SUMUP_API_KEY": API_KEY,
        "ROSE_ASH_SUMUP_MERCHANT_CODE": MERCHANT_CODE,
        "ROSE_ASH_SUMUP_API_URL": sumup_fake.public_url,
    }
    with app_server(tmp_path, database_url=server_database_url, extra_env=env) as server:
        record = await sumup.create(
            reference="RA-2026-000099",
            amount_minor=990,
            currency="EUR",
            description="Jam",
            return_url=f"{server.base_url}/",
            webhook_url=f"{server.base_url}/payments/webhook/sumup",
        )
        async with httpx.AsyncClient() as browser:
            page = await browser.post(f"{sumup_fake.public_url}/pay/{record.provider_id}", data={"action": "pay"})
        assert page.status_code == 303 and page.headers["location"] == f"{server.base_url}/"
        assert [(url, status) for url, _, status in sumup_fake.webhooks] == [
            (f"{server.base_url}/payments/webhook/sumup", 204)
        ]

        async def states(session: AsyncSession) -> list[str]:
            return list((await session.scalars(select(Job.state).where(Job.kind == PAYMENT_REFRESH))).all())

        with anyio.fail_after(60):  # polling another process's database: no event to wait on
            while True:
                if await anyio.to_thread.run_sync(server.in_process, states) == [DONE]:
                    break
                await anyio.sleep(0.1)
        # The server's worker asked SumUp (the fake) itself, with the key from its environment.
        assert ("get", record.provider_id) in sumup_fake.calls
        assert sumup_fake.checkouts[record.provider_id]["status"] == "PAID"
        assert (await sumup.fetch(record.provider_id)).status is PaymentStatus.PAID
