"""Helpers for federation tests."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from app.safe_http import SafeClient


def mock_federation_client(handler: Callable[[httpx.Request], httpx.Response]) -> SafeClient:
    """A guarded client that answers from ``handler`` instead of the network (loopback allowed)."""
    return SafeClient(allow_private=True, transport=httpx.MockTransport(handler))
