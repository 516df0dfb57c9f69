"""The payments skeleton: which providers are offered, pay on collection, and the webhook route."""

from __future__ import annotations

import msgspec
import pytest
from sqlalchemy import func, select

from app.jobs import Job
from app.settings import Settings
from domains.payments.collection import CollectionProvider
from domains.payments.provider import PaymentProvider
from domains.payments.registry import available_providers
from domains.payments.schemas import PaymentError, PaymentStatus

pytestmark = pytest.mark.anyio


def test_only_collection_without_sumup_settings(settings: Settings) -> None:
    assert list(available_providers(settings)) == ["collection"]
    half = msgspec.structs.replace(settings, sumup_api_key="sup_sk_test")  # no merchant code
    assert list(available_providers(half)) == ["collection"]


def test_sumup_offered_first_when_configured(settings: Settings) -> None:
    configured = msgspec.structs.replace(settings, sumup_api_key="sup_sk_test", sumup_merchant_code="MC1")
    providers = available_providers(configured)
    assert list(providers) == ["sumup", "collection"]
    assert all(isinstance(p, PaymentProvider) for p in providers.values())
    assert "sup_sk_test" not in repr(providers["sumup"])


def test_sumup_api_url_setting() -> None:
    assert Settings.from_env({}, data_dir="/tmp/x", secret_key="k" * 32).sumup_api_url == "https://api.sumup.com"
    env = {"ROSE_ASH_SUMUP_API_URL": "http://127.0.0.1:8111/", "ROSE_ASH_SECRET_KEY": "k" * 32}
    assert Settings.from_env(env, data_dir="/tmp/x").sumup_api_url == "http://127.0.0.1:8111"


async def test_collection_is_pending_without_a_url() -> None:
    provider = CollectionProvider()
    record = await provider.create(
        reference="RA-2026-000001",
        amount_minor=1250,
        currency="EUR",
        description="Order",
        return_url="http://x/",
        webhook_url="http://x/hook",
    )
    assert (record.status, record.payment_url, record.amount_minor) == (PaymentStatus.PENDING, None, 1250)
    assert (await provider.fetch("RA-2026-000001")).status is PaymentStatus.PENDING
    assert (await provider.cancel("RA-2026-000001")).status is PaymentStatus.CANCELLED
    with pytest.raises(PaymentError, match="at the counter") as caught:
        await provider.refund("RA-2026-000001")
    assert caught.value.retryable is False
    assert provider.parse_webhook(b'{"event_type":"CHECKOUT_STATUS_CHANGED","id":"x"}', {}) is None


async def test_webhook_route_unknown_provider_404_known_204(client, db_session) -> None:  # type: ignore[no-untyped-def]
    body = b'{"event_type":"CHECKOUT_STATUS_CHANGED","id":"abc"}'
    assert (await client.post("/payments/webhook/nope", content=body)).status_code == 404
    # Pay on collection receives no webhooks: answered (SumUp's contract), nothing queued.
    response = await client.post("/payments/webhook/collection", content=body)
    assert response.status_code == 204 and response.content == b""
    assert await db_session.scalar(select(func.count()).select_from(Job)) == 0
