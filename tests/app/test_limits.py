"""app/limits.py: named moving windows (the ``limits`` library), in memory or shared through Redis."""

from __future__ import annotations

import time
import uuid
from typing import Any

import msgspec
import pytest
from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage

from app.limits import (
    ACCOUNT_MAIL,
    AUTH_FORMS,
    INBOX,
    KEY_REFETCH,
    OAUTH_REGISTRATION,
    PAYMENT_WEBHOOK,
    Limiter,
    make_limiter,
)
from app.settings import Settings
from tests.conftest import REDIS_URL, on_store
from tests.helpers.web import login

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(settings: Settings, store_kind: str) -> Settings:
    """Memory or Redis stores by the database leg (tests/conftest.py ``store_kind``)."""
    return on_store(settings, store_kind)


def _clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """A clock the test moves by hand (the in-process storage reads ``time.time``)."""
    now = [1_000_000.0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    return now


async def test_a_moving_window_counts_per_key(monkeypatch: pytest.MonkeyPatch) -> None:
    now = _clock(monkeypatch)
    limiter = Limiter(MemoryStorage(), {"t": RateLimitItemPerMinute(2, namespace="t")})
    assert [await limiter.hit("t", "a") for _ in range(3)] == [True, True, False]
    assert await limiter.hit("t", "b")  # another key has its own count
    now[0] += 30
    assert not await limiter.hit("t", "a")  # both hits are still inside the last minute
    now[0] += 31  # the first two hits have left the window (no fixed boundary resets it early)
    assert [await limiter.hit("t", "a") for _ in range(3)] == [True, True, False]


async def test_a_moving_window_has_no_boundary_to_burst_across(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fixed window would take two hits at 0:59 and two more at 1:00; a moving one refuses them."""
    now = _clock(monkeypatch)
    now[0] = 1_000_020.0 + 59  # one second before a minute boundary
    limiter = Limiter(MemoryStorage(), {"t": RateLimitItemPerMinute(2, namespace="t")})
    assert [await limiter.hit("t", "a") for _ in range(2)] == [True, True]
    now[0] += 1
    assert not await limiter.hit("t", "a")


async def test_a_spent_limit_raises_429_with_retry_after() -> None:
    from litestar.exceptions import TooManyRequestsException

    limiter = Limiter(MemoryStorage(), {"t": RateLimitItemPerMinute(1, namespace="t")})
    await limiter.check("t", "a")
    with pytest.raises(TooManyRequestsException) as raised:
        await limiter.check("t", "a")
    assert raised.value.headers == {"Retry-After": "60"}


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Limiter(MemoryStorage(), {"t": RateLimitItemPerMinute(0, namespace="t")})


def test_the_named_limits_come_from_the_settings() -> None:
    settings = Settings.from_env({}, federation_inbox_rate_limit=7, auth_rate_limit=5,
                                 oauth_registration_rate_limit=3)
    limits = make_limiter(settings).limits
    assert {name: (item.amount, item.get_expiry()) for name, item in limits.items()} == {
        INBOX: (7, 60), AUTH_FORMS: (5, 60), OAUTH_REGISTRATION: (3, 3600), KEY_REFETCH: (20, 60),
        ACCOUNT_MAIL: (5, 3600), PAYMENT_WEBHOOK: (60, 60)}


@pytest.mark.skipif(not REDIS_URL, reason="ROSE_ASH_TEST_REDIS_URL is not set")
async def test_limiters_on_one_redis_share_counts_within_their_namespace() -> None:
    namespace = f"rose-ash-test-{uuid.uuid4().hex[:8]}"
    settings = Settings.from_env({}, redis_url=REDIS_URL, redis_namespace=namespace, auth_rate_limit=2)
    one, two = make_limiter(settings), make_limiter(settings)
    other = make_limiter(msgspec.structs.replace(settings, redis_namespace=namespace + "-other"))
    assert [await one.hit(AUTH_FORMS, "a"), await two.hit(AUTH_FORMS, "a"), await one.hit(AUTH_FORMS, "a")] \
        == [True, True, False]
    assert await other.hit(AUTH_FORMS, "a")  # another instance on the same server counts apart


async def test_two_app_processes_share_the_sign_in_limit(settings: Settings, engine: Any) -> None:
    """Two apps behind one Redis (here: two apps on the suite's namespace) share the auth count."""
    from litestar.testing import AsyncTestClient

    from app import create_app

    limited = msgspec.structs.replace(settings, auth_rate_limit=2)
    base = "http://127.0.0.1:8000"
    async with AsyncTestClient(app=create_app(limited), base_url=base) as one, \
            AsyncTestClient(app=create_app(limited), base_url=base) as two:
        statuses = [(await login(c, "nobody", "wrong password here")).status_code for c in (one, two, one, two)]
        if settings.redis_url:
            assert statuses == [401, 401, 429, 429]
        else:  # each process counts for itself
            assert statuses == [401, 401, 401, 401]
        refused = await login(one, "nobody", "wrong password here")
    assert refused.headers["retry-after"] == "60"
    assert "Too many attempts" in refused.text
