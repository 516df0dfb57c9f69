"""Per-member rate limits on the Mastodon API's costly calls, counted in the app's limiter storage
(app/limits.py: Redis when configured, so a limit holds across every process).

These limits are the API's own (named and sized here, as Mastodon's are in its
``config/initializers/rack_attack.rb``), so they count in their own namespaces beside the app's
named limits, keyed by the member rather than the client address: one member behind many
addresses cannot multiply a budget, and members behind one address do not share one.
"""

from __future__ import annotations

from typing import Any, Final

from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.strategies import MovingWindowRateLimiter
from litestar import Request
from litestar.exceptions import ClientException

from app.limits import app_limiter
from federation.mastodon.api import user_of

__all__ = ["MEDIA_UPLOADS", "SEARCH_RESOLVE", "spend"]

# Mastodon's own: 30 media uploads per 30 minutes per account (rack_attack.rb, throttle/media).
MEDIA_UPLOADS: Final = RateLimitItemPerMinute(30, 30, namespace="mastodon-media")
# Each search with resolve=true may fetch an account from another server (a remote request and a
# signature key): 30 per 5 minutes is many searches typed by hand, few for a crawler.
SEARCH_RESOLVE: Final = RateLimitItemPerMinute(30, 5, namespace="mastodon-resolve")


async def spend(request: Request[Any, Any, Any], item: RateLimitItem, what: str) -> None:
    """Count one of the member's ``item``; none left: 429 with ``Retry-After`` (the window)."""
    windows = MovingWindowRateLimiter(app_limiter(request).storage)
    if not await windows.hit(item, str(user_of(request).id)):
        minutes = item.get_expiry() // 60
        raise ClientException(f"Too many {what}: at most {item.amount} every {minutes} minutes. Try again later.",
                              status_code=429, headers={"Retry-After": str(item.get_expiry())})
