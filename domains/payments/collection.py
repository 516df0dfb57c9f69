"""Pay on collection: no money moves online, so there is nothing to ask anybody.

The provider is stateless. ``create`` answers a ``PENDING`` record with no ``payment_url`` and
``fetch`` answers ``PENDING`` for whatever it is asked (it knows nothing else): a collection
order leaves ``payment_pending`` only by a staff action in the order state machine (the cart
domain's "mark paid" when the customer pays at the counter), never through this provider.
There are no webhooks; refunds and cancellation are the shop's own business at the counter.
"""

from __future__ import annotations

from collections.abc import Mapping

from domains.payments.schemas import PaymentError, PaymentRecord, PaymentStatus

__all__ = ["COLLECTION", "CollectionProvider"]

COLLECTION = "collection"


class CollectionProvider:
    name = COLLECTION
    label = "Pay on collection"

    async def create(
        self, *, reference: str, amount_minor: int, currency: str, description: str, return_url: str, webhook_url: str
    ) -> PaymentRecord:
        if amount_minor < 0:
            raise PaymentError("The amount to pay cannot be negative.")
        # The reference is the id: there is no other party to number the payment.
        return PaymentRecord(
            provider=COLLECTION,
            provider_id=reference,
            reference=reference,
            status=PaymentStatus.PENDING,
            amount_minor=amount_minor,
            currency=currency,
        )

    async def fetch(self, provider_id: str) -> PaymentRecord:
        # Stateless: the amount lives on the order, which the cart domain owns.
        return PaymentRecord(
            provider=COLLECTION,
            provider_id=provider_id,
            reference=provider_id,
            status=PaymentStatus.PENDING,
            amount_minor=0,
            currency="",
        )

    async def cancel(self, provider_id: str) -> PaymentRecord:
        record = await self.fetch(provider_id)
        return PaymentRecord(
            provider=COLLECTION,
            provider_id=provider_id,
            reference=provider_id,
            status=PaymentStatus.CANCELLED,
            amount_minor=record.amount_minor,
            currency=record.currency,
        )

    async def refund(self, provider_id: str, amount_minor: int | None = None) -> PaymentRecord:
        raise PaymentError("A payment made on collection is refunded at the counter, not online.")

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> str | None:
        return None  # nobody sends us webhooks for cash at the counter
