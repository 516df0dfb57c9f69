"""Rate limits: named moving windows counted by the ``limits`` library.

With Redis configured the counts live in Redis (under the instance's namespace), so a limit holds
across every app process (scale out) rather than per process; otherwise they live in this process.
A moving window rather than a fixed one: a client cannot spend two windows' worth of hits across
a window boundary.

Each limit has a name; its rate comes from the settings (``limits_from_settings``), so an
operator tunes it by environment and a test by ``Settings``. Handlers hit a limit by name and
answer 429 with ``Retry-After`` when it is spent (``check`` does both for HTML forms).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from limits import RateLimitItem, RateLimitItemPerHour, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from litestar.connection import ASGIConnection
from litestar.exceptions import TooManyRequestsException
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard

from app.settings import Settings

# The named limits. Each counts per key (a client address, a remote host) in its own window.
INBOX: Final = "inbox"  # ActivityPub inbox POSTs per client address
AUTH_FORMS: Final = "auth-forms"  # sign-in and sign-up POSTs per client address, one budget for both
OAUTH_REGISTRATION: Final = "oauth-registration"  # RFC 7591 client registrations per client address
KEY_REFETCH: Final = "ap-key-refetch"  # re-fetches of a remote signing key per source host
ACCOUNT_MAIL: Final = "account-mail"  # account mails (reset, verification) per email address
PAYMENT_WEBHOOK: Final = "payment-webhook"  # payment provider webhooks per client address

# The limits no operator tunes.
FIXED_LIMITS: Final[Mapping[str, RateLimitItem]] = {
    KEY_REFETCH: RateLimitItemPerMinute(20, namespace=KEY_REFETCH),
    # Per address, whoever asks: nobody can flood a mailbox with reset or verification mails.
    ACCOUNT_MAIL: RateLimitItemPerHour(5, namespace=ACCOUNT_MAIL),
    # Webhooks are unsigned pokes that each cost a job and a provider API call: a provider sends a
    # few a minute, a flood from one address is refused (429, and the provider retries later).
    PAYMENT_WEBHOOK: RateLimitItemPerMinute(60, namespace=PAYMENT_WEBHOOK),
}


def limits_from_settings(settings: Settings) -> dict[str, RateLimitItem]:
    """Every named limit and its rate."""
    return {
        INBOX: RateLimitItemPerMinute(settings.federation_inbox_rate_limit, namespace=INBOX),
        AUTH_FORMS: RateLimitItemPerMinute(settings.auth_rate_limit, namespace=AUTH_FORMS),
        OAUTH_REGISTRATION: RateLimitItemPerHour(settings.oauth_registration_rate_limit,
                                                 namespace=OAUTH_REGISTRATION),
        **FIXED_LIMITS,
    }


class Limiter:
    """The named limits over one storage."""

    def __init__(self, storage: Storage, limits: Mapping[str, RateLimitItem]) -> None:
        for name, item in limits.items():
            if item.amount < 1:
                raise ValueError(f"the {name} limit must allow at least one hit")
        self.storage = storage
        self.limits = dict(limits)
        self._windows = MovingWindowRateLimiter(storage)

    async def hit(self, name: str, key: str) -> bool:
        """Count one hit of ``key`` against the limit ``name``; False when none is left."""
        return await self._windows.hit(self.limits[name], key)

    def retry_after(self, name: str) -> str:
        """``Retry-After`` for a spent limit: its whole window, after which every earlier hit has
        left it (the oldest may leave sooner; a client waiting this long is never refused again)."""
        return str(self.limits[name].get_expiry())

    async def check(self, name: str, key: str) -> None:
        """Count a hit, or raise 429 (the app's error page says "Too many attempts...")."""
        if not await self.hit(name, key):
            raise TooManyRequestsException(headers={"Retry-After": self.retry_after(name)})


def make_limiter(settings: Settings) -> Limiter:
    """Redis when configured (shared by every process), else this process's memory."""
    storage: Storage
    if settings.redis_url:
        # redis-py's asyncio client (the app already depends on redis), not the default coredis.
        storage = RedisStorage(f"async+{settings.redis_url}", implementation="redispy",
                               key_prefix=f"{settings.redis_namespace}:limits")
    else:
        storage = MemoryStorage()
    return Limiter(storage, limits_from_settings(settings))


# For work outside requests (jobs, the CLI): the fixed limits, counted in this process.
PROCESS_LIMITER: Final = Limiter(MemoryStorage(), FIXED_LIMITS)


def app_limiter(connection: ASGIConnection[Any, Any, Any, Any]) -> Limiter:
    """The app's limiter (``create_app`` keeps it in the app state)."""
    limiter: Limiter = connection.app.state["limiter"]
    return limiter


def client_address(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    return connection.client.host if connection.client else "unknown"


def limited(name: str) -> Guard:
    """A route guard that counts each request against ``name`` per client address."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        await app_limiter(connection).check(name, client_address(connection))

    guard.__name__ = f"limited_{name.replace('-', '_')}"
    return guard
