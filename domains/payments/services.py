"""What other domains call: the providers on offer and the webhook URL to give them.

``available_providers(settings)`` (registry.py), ``webhook_url(settings, name)``, and
``request_refresh(session, provider, provider_id)`` to have a checkout re-fetched and emitted on
``payments.updated`` by a durable job (the payer's return redirect, a reconciliation sweep);
``payment_instructions(settings, number)``: how to pay an order placed with "pay later".
"""

from __future__ import annotations

from typing import Any

from domains.payments.registry import available_providers
from domains.payments.webhooks import request_refresh

__all__ = ["available_providers", "payment_instructions", "request_refresh", "webhook_url"]


def webhook_url(settings: Any, provider: str) -> str:
    """Where ``provider`` posts its webhooks: ``<BASE_URL>/payments/webhook/<provider>``."""
    return f"{str(settings.base_url).rstrip('/')}/payments/webhook/{provider}"


def payment_instructions(settings: Any, number: str = "") -> str:
    """How to pay an order placed with pay on collection ("pay later"), which no provider collects:
    ``ROSE_ASH_PAYMENT_INSTRUCTIONS`` as configured ("{number}" becomes the order's number), else
    a default naming the co-op's contact address (``CART_STAFF_EMAIL``, else the From address
    unless it is a no-reply one). Shown at checkout and on the order page, so a buyer of tickets,
    which nobody collects, is never left without a way to pay."""
    quoted = f"your order number {number}" if number else "your order number"
    custom = str(getattr(settings, "payment_instructions", "") or "").strip()
    if custom:
        return custom.replace("{number}", number or "(your order number)")
    contact = str(getattr(settings, "cart_staff_email", "") or "").split(",")[0].strip()
    if not contact:
        sender = str(getattr(settings, "mail_from", "") or "")
        address = sender.rsplit("<", 1)[-1].rstrip(">").strip()
        contact = "" if not address or address.split("@")[0].lower() in {"noreply", "no-reply", "donotreply"} \
            else address
    if contact:
        return (f"To pay, write to {contact} quoting {quoted}: we answer with our bank details, "
                "or you pay in cash or by card when you next see us.")
    return (f"To pay, contact the co-op quoting {quoted}: pay by bank transfer, or in cash or by card "
            "when you next see us.")
