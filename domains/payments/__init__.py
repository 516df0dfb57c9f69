"""The payments domain: who takes the money for an order, behind one protocol (issue 17 item 4).

``schemas.py``     ``PaymentStatus``, ``PaymentRecord`` (a checkout as its provider has it now:
                   integer minor units + currency), ``PaymentError`` (a sentence a person
                   understands; ``retryable``), ``PaymentUpdate`` (the refresh job's payload).
``provider.py``    the ``PaymentProvider`` protocol: ``create``, ``fetch``, ``cancel``, ``refund``,
                   ``parse_webhook``.
``registry.py``    ``available_providers(settings)``: ``"collection"`` always, ``"sumup"`` when
                   ``ROSE_ASH_SUMUP_API_KEY`` and ``ROSE_ASH_SUMUP_MERCHANT_CODE`` are set.
``collection.py``  pay on collection (stateless; staff mark such orders paid in the order FSM).
``sumup.py``       SumUp Hosted Checkout (design/domains.md §5).
``hooks.py``       the ``payments.updated`` topic (payload ``PaymentRecord``) the cart subscribes to.
``webhooks.py``    ``POST /payments/webhook/<provider>`` and the ``payments.refresh`` job that
                   re-fetches the checkout and emits it.
``services.py``    ``webhook_url``, ``request_refresh`` for other domains.

Orders depend on this package; it never imports them. An order moves only on ``fetch()`` results.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.kit import Domain

if TYPE_CHECKING:
    from litestar.types import ControllerRouterHandler


def _routes() -> list[ControllerRouterHandler]:
    from litestar import Router

    from app import access
    from domains.payments.webhooks import payment_webhook

    # No signature exists (SumUp signs nothing): the body is only a hint, re-fetched by a job.
    return [Router(path="/", opt=access.machine(), route_handlers=[payment_webhook])]


domain = Domain(
    name="payments",
    routes=_routes,
    setup=("domains.payments.webhooks",),
    machine_routes=(r"^/payments/webhook/",),
)

__all__ = ["domain"]
