"""A payer in Chromium with JavaScript off on the fake's hosted page, the fake running standalone
(``python -m tests.fakes.sumup --port N``, as a person would run it) and the app as ``rose-ash run``:
Pay → SumUp's webhook into the server → its worker re-fetches → back on our site."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
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
from tests.fakes.sumup import API_KEY, MERCHANT_CODE
from tests.helpers.cdp import chromium
from tests.helpers.server import REPO_ROOT, app_server, free_port

pytestmark = pytest.mark.anyio


@pytest.fixture
def standalone_fake(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    log = (tmp_path / "fake-sumup.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.sumup", "--port", str(port)],
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if (
                    httpx.get(f"{url}/v0.1/checkouts", headers={"Authorization": f"Bearer {API_KEY}"}).status_code
                    == 200
                ):
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "fake-sumup.log").read_text()
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


async def test_pay_without_javascript(
    tmp_path: Path, browser_binary: str, server_database_url: str | None, standalone_fake: str
) -> None:
    env = {
        "ROSE_ASH_SUMUP_API_KEY": API_KEY,
        "ROSE_ASH_SUMUP_MERCHANT_CODE": MERCHANT_CODE,
        "ROSE_ASH_SUMUP_API_URL": standalone_fake,
    }
    sumup = SumUpProvider(api_key=API_KEY, merchant_code=MERCHANT_CODE, api_url=standalone_fake)
    with app_server(tmp_path, database_url=server_database_url, extra_env=env) as server:
        record = await sumup.create(
            reference="RA-2026-000123",
            amount_minor=1575,
            currency="EUR",
            description="Honey and bread",
            return_url=f"{server.base_url}/healthz",
            webhook_url=f"{server.base_url}/payments/webhook/sumup",
        )
        assert record.payment_url is not None
        with chromium(tmp_path, browser_binary) as page:
            page.set_javascript(False)
            page.goto(record.payment_url)
            assert page.eval("document.querySelector('h1').textContent") == "Pay 15.75 EUR"
            assert page.eval("document.getElementById('status').textContent") == "PENDING"
            page.eval("document.querySelector('button[value=pay]').click()")
            page.wait_for(f"location.href === {f'{server.base_url}/healthz'!r}")  # back on our site

        async def states(session: AsyncSession) -> list[str]:
            return list((await session.scalars(select(Job.state).where(Job.kind == PAYMENT_REFRESH))).all())

        with anyio.fail_after(60):  # the server's worker, polled through its database
            while True:
                if await anyio.to_thread.run_sync(server.in_process, states) == [DONE]:
                    break
                await anyio.sleep(0.1)
    paid = await sumup.fetch(record.provider_id)
    assert (paid.status, paid.amount_minor, paid.reference) == (PaymentStatus.PAID, 1575, "RA-2026-000123")
