"""The ``PaymentProvider`` protocol: what an order needs from whoever takes the money.

Each method answers a :class:`~domains.payments.schemas.PaymentRecord` (the checkout as the
provider has it after the call) or raises :class:`~domains.payments.schemas.PaymentError`.
The order state machine moves **only on these records** (design/domains.md §5): a webhook is a
poke that makes a job call :meth:`PaymentProvider.fetch`; it is never believed by itself.

``create`` is idempotent per ``reference`` (the order's number): calling it again for the same
reference (a retry after a timeout, a double submit) answers the checkout already made, whatever
its status. So a new attempt after a ``FAILED``/``EXPIRED``/``CANCELLED`` checkout needs a new
reference (e.g. ``RA-2026-000123-2``): SumUp refuses a reference twice. The same reference with
another amount or currency is a ``PaymentError`` (nothing is created).

Statuses: ``EXPIRED`` and ``CANCELLED`` both mean "will never be paid" (SumUp reports a checkout
we deactivated as ``EXPIRED``; ``cancel`` answers ``CANCELLED``). ``PAID``, ``PARTIALLY_REFUNDED``
and ``REFUNDED`` all mean the money arrived; ``refunded_minor`` says how much went back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from domains.payments.schemas import PaymentRecord

__all__ = ["PaymentProvider"]


@runtime_checkable
class PaymentProvider(Protocol):
    name: str  # the registry key and the webhook path segment: /payments/webhook/<name>
    label: str  # what the payer sees in the checkout's payment choice

    async def create(
        self, *, reference: str, amount_minor: int, currency: str, description: str, return_url: str, webhook_url: str
    ) -> PaymentRecord:
        """Open a checkout for ``amount_minor`` ``currency``; ``return_url`` is where the payer
        comes back to, ``webhook_url`` where the provider pokes us."""
        ...

    async def fetch(self, provider_id: str) -> PaymentRecord:
        """The checkout as the provider has it now (404 → ``PaymentError`` with ``not_found``)."""
        ...

    async def cancel(self, provider_id: str) -> PaymentRecord:
        """Stop an unpaid checkout from being paid; a paid one is answered unchanged."""
        ...

    async def refund(self, provider_id: str, amount_minor: int | None = None) -> PaymentRecord:
        """Give back ``amount_minor`` (everything not yet refunded when ``None``)."""
        ...

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> str | None:
        """The provider id a webhook body names (to re-fetch), or ``None`` if it is not ours or malformed."""
        ...
