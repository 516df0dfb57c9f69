"""The payments domain's topic: ``payments.updated`` carries a checkout as its provider has it now.

Emitted by the webhook job (domains/payments/webhooks.py) after re-fetching the checkout, never
from a webhook body. The cart subscribes one job kind and moves its order on the record
(idempotently: a replayed or late webhook emits the same truth again)::

    from domains.payments.hooks import payments_updated
    from domains.payments.schemas import PaymentRecord

    @job_handler("cart.payment-updated")
    async def on_payment(ctx: JobContext, record: PaymentRecord) -> None: ...

    payments_updated.subscribe(on_payment)

Payments never imports the cart.
"""

from __future__ import annotations

from app.events import Topic
from domains.payments.schemas import PaymentRecord

__all__ = ["payments_updated"]

payments_updated: Topic[PaymentRecord] = Topic("payments.updated", PaymentRecord)
