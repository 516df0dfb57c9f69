"""Which payment providers this instance offers, from its settings.

``"collection"`` (pay on collection) always, so ``make run`` works with no payment account;
``"sumup"`` only when both ``ROSE_ASH_SUMUP_API_KEY`` and ``ROSE_ASH_SUMUP_MERCHANT_CODE`` are
set (``ROSE_ASH_SUMUP_API_URL`` points it elsewhere, e.g. at tests/fakes/sumup.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from domains.payments.collection import CollectionProvider
from domains.payments.provider import PaymentProvider

if TYPE_CHECKING:
    import httpx

__all__ = ["available_providers", "sumup_configured"]


def sumup_configured(settings: Any) -> bool:
    return bool(getattr(settings, "sumup_api_key", "") and getattr(settings, "sumup_merchant_code", ""))


def available_providers(settings: Any, *, http: httpx.AsyncClient | None = None) -> dict[str, PaymentProvider]:
    """Provider name → provider, in the order a checkout offers them (SumUp first when configured).

    ``http`` is a client the SumUp provider uses instead of opening its own per call (tests).
    """
    providers: dict[str, PaymentProvider] = {}
    if sumup_configured(settings):
        from domains.payments.sumup import SumUpProvider

        providers["sumup"] = SumUpProvider(
            api_key=settings.sumup_api_key,
            merchant_code=settings.sumup_merchant_code,
            api_url=settings.sumup_api_url,
            http=http,
        )
    providers["collection"] = CollectionProvider()
    return providers
