"""A member's personal calendar feed of their bookings (issue 18 item 6), at a revocable token URL.

``/events/me/<token>.ics`` needs no session (calendar apps cannot log in), so the token is the only
key: 192 bits, never stored. The row holds only a random id and the SHA-256 of the token; the token
is ``HMAC-SHA256(secret_key, "events-feed:" + id)``, so it can be shown again on the member's page
while a copy of the database alone cannot be turned into working feed URLs. Revoking deletes the
row (the URL then answers 404 like any unknown token); regenerating deletes it and makes a new
one, so the old URL stops working at once. One feed per member.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from uuid import UUID

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from domains.account.models import User
from domains.events.feed_models import BookingFeed

__all__ = ["BookingFeed", "current_token", "feed_owner", "regenerate", "revoke"]

TOKEN_CHARS = 32  # base64url of 24 bytes: 192 bits


def _token(feed_id: UUID, secret_key: str) -> str:
    mac = hmac.new(secret_key.encode(), b"events-feed:" + feed_id.bytes, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:24]).decode()


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def current_token(session: AsyncSession, user: User, secret_key: str) -> str | None:
    """The member's feed token, or None when they have none (never made, or revoked)."""
    feed = await session.scalar(select(BookingFeed).where(BookingFeed.user_id == user.id))
    return _token(feed.id, secret_key) if feed is not None else None


async def regenerate(session: AsyncSession, user: User, secret_key: str) -> str:
    """A new token for the member; any previous one stops working in the same transaction."""
    await revoke(session, user)
    feed = BookingFeed(user_id=user.id, digest="")
    session.add(feed)
    await session.flush()  # the id the token is derived from
    token = _token(feed.id, secret_key)
    feed.digest = _digest(token)
    await session.flush()
    return token


async def revoke(session: AsyncSession, user: User) -> None:
    await session.execute(delete(BookingFeed).where(BookingFeed.user_id == user.id))
    await session.flush()


async def feed_owner(session: AsyncSession, token: str, secret_key: str) -> User | None:
    """The member whose live token ``token`` is, or None (malformed, revoked or never issued)."""
    if len(token) != TOKEN_CHARS or not token.isascii():
        return None
    feed = await session.scalar(select(BookingFeed).where(BookingFeed.digest == _digest(token)))
    # The digest matched; comparing the derived token too means a row written without the key
    # (a restored or tampered database) is not a way in.
    if feed is None or not hmac.compare_digest(_token(feed.id, secret_key), token):
        return None
    user = await session.get(User, feed.user_id)
    return user if user is not None and user.is_active else None
