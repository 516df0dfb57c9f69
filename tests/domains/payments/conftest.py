"""The fake SumUp served on 127.0.0.1 for the payments tests (tests/fakes/sumup.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from domains.payments.sumup import SumUpProvider
from tests.fakes.sumup import API_KEY, MERCHANT_CODE, FakeSumUp, serve


@pytest.fixture
async def sumup_fake() -> AsyncIterator[FakeSumUp]:
    fake = FakeSumUp()
    async with serve(fake):
        yield fake


@pytest.fixture
def sumup(sumup_fake: FakeSumUp) -> SumUpProvider:
    """The real provider over real HTTP to the fake (a short timeout for the hung-request tests)."""
    return SumUpProvider(api_key=API_KEY, merchant_code=MERCHANT_CODE, api_url=sumup_fake.public_url, timeout=1.0)
