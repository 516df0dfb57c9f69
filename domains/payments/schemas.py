"""What the payments domain hands to the rest of the app: a provider-neutral payment record.

Money is integer minor units plus an ISO 4217 code (design/domains.md), whatever the provider's
wire format says (SumUp speaks floats in major units; the SumUp adapter converts at its edge).
"""

from __future__ import annotations

import enum

import msgspec

__all__ = ["PaymentError", "PaymentRecord", "PaymentStatus", "PaymentUpdate"]


class PaymentStatus(enum.StrEnum):
    PENDING = "pending"
    PAID = "paid"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    REFUNDED = "refunded"
    PARTIALLY_REFUNDED = "partially_refunded"


class PaymentRecord(msgspec.Struct, frozen=True):
    """One checkout as the provider has it now (``fetch`` is the only truth the order acts on).

    ``provider`` is the registry key (``"sumup"``, ``"collection"``); ``provider_id`` the
    provider's checkout id; ``reference`` ours (the order's number); ``payment_url`` where the
    payer goes to pay (SumUp's hosted page), ``None`` when there is nowhere to go.
    """

    provider: str
    provider_id: str
    reference: str
    status: PaymentStatus
    amount_minor: int
    currency: str
    refunded_minor: int = 0
    payment_url: str | None = None


class PaymentUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """The durable job a webhook poke becomes: re-fetch ``provider_id`` from ``provider``."""

    provider: str
    provider_id: str


class PaymentError(Exception):
    """A provider call that did not do what was asked.

    ``str(error)`` is a sentence a person understands (shown to staff or the payer as is);
    ``retryable`` says whether trying again later may succeed (SumUp down or slow) or not (a
    refund larger than what was paid, an unknown checkout, bad credentials). ``status`` is the
    provider's HTTP status when there was one; ``code`` its error code (e.g. ``NOT_FOUND``).
    """

    def __init__(
        self, message: str, *, retryable: bool = False, status: int | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.status = status
        self.code = code

    @property
    def not_found(self) -> bool:
        return self.status == 404
