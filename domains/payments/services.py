"""What other domains call: the providers on offer and the webhook URL to give them.

``available_providers(settings)`` (registry.py), ``webhook_url(settings, name)``, and
``request_refresh(session, provider, provider_id)`` to have a checkout re-fetched and emitted on
``payments.updated`` by a durable job (the payer's return redirect, a reconciliation sweep).
"""

from __future__ import annotations

from typing import Any

from domains.payments.registry import available_providers
from domains.payments.webhooks import request_refresh

__all__ = ["available_providers", "request_refresh", "webhook_url"]


def webhook_url(settings: Any, provider: str) -> str:
    """Where ``provider`` posts its webhooks: ``<BASE_URL>/payments/webhook/<provider>``."""
    return f"{str(settings.base_url).rstrip('/')}/payments/webhook/{provider}"
