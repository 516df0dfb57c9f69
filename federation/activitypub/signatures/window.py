"""The time window a signed request must fall in (both specs).

Mastodon's window: created (or Date) at most 1 h ahead; expiry = expires, else created + 5 min,
capped at created + 12 h; rejected once expiry is more than 1 h in the past.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from federation.activitypub.signatures.messages import SignatureError

CLOCK_SKEW = timedelta(hours=1)
DEFAULT_VALIDITY = timedelta(minutes=5)
MAX_VALIDITY = timedelta(hours=12)


def check_window(created: datetime, expires: datetime | None, now: datetime) -> None:
    if created > now + CLOCK_SKEW:
        raise SignatureError("Signed request date outside acceptable time window (in the future)")
    expiry = expires if expires is not None else created + DEFAULT_VALIDITY
    expiry = min(expiry, created + MAX_VALIDITY)
    if expiry < now - CLOCK_SKEW:
        raise SignatureError("Signed request date outside acceptable time window")


def from_timestamp(value: str | int, name: str) -> datetime:
    try:
        return datetime.fromtimestamp(int(str(value).split(".")[0]), tz=UTC)
    except (ValueError, OverflowError, OSError):
        raise SignatureError(f"Invalid {name} parameter") from None
