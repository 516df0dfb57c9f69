"""One-time links mailed to members: password reset, invitation, address verification and change.

A link carries a random secret (256 bits, ``secrets.token_urlsafe(32)``); the table keeps only its
SHA-256 digest, so a copy of the database opens no account. Each purpose has its own lifetime. A
link is spent by a single conditional ``UPDATE … SET used_at = now WHERE used_at IS NULL AND
expires_at > now`` whose row count says whether this request won: never read, compare, then
write, which two requests racing on the same link could both pass.
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domains.account.models import MailToken, User


class Purpose(enum.StrEnum):
    RESET = "reset"  # "forgot password": choose a new one
    INVITE = "invite"  # `rose-ash users invite`: set a first password (imported and CLI members)
    VERIFY = "verify"  # confirm the address given at sign-up
    EMAIL_CHANGE = "email_change"  # make ``new_email`` the member's address


LIFETIMES: Final[dict[Purpose, timedelta]] = {
    Purpose.RESET: timedelta(hours=1),
    Purpose.INVITE: timedelta(days=7),
    Purpose.VERIFY: timedelta(days=3),
    Purpose.EMAIL_CHANGE: timedelta(hours=24),
}

# What token_urlsafe(32) makes: 43 characters of the URL-safe base64 alphabet. Anything else is
# refused before the database is asked (and never reaches a log or a query as a NUL or a megabyte).
_SECRET = re.compile(r"^[A-Za-z0-9_-]{43}$")


class LinkProblem(enum.StrEnum):
    """Why a link does nothing; each has its own page text (templates/account/link_invalid.html)."""

    UNKNOWN = "unknown"  # never issued, altered, or mistyped
    USED = "used"  # already followed, or superseded by a newer link
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class Link:
    token: MailToken
    user: User


def now_utc() -> datetime:
    return datetime.now(UTC)


def digest(secret: str) -> str:
    # 256 random bits: a fast hash is enough (as for access tokens), no salt or stretching needed.
    return hashlib.sha256(secret.encode()).hexdigest()


def well_formed(secret: str) -> bool:
    return _SECRET.match(secret) is not None


async def issue(db: AsyncSession, user: User, purpose: Purpose, *, new_email: str | None = None,
                lifetime: timedelta | None = None) -> str:
    """A new link for ``user``; returns the secret (it goes into the mail and nowhere else).

    Earlier unused links of the same purpose stop working: only the newest mail counts, so a
    member who asked twice cannot be caught out by the older mail lying in someone else's hands.
    """
    # Two links issued at once (two "forgot" jobs running side by side) must not both survive: the
    # member's row is locked first, so the second issuer waits and then retires the first's link.
    # (PostgreSQL: FOR UPDATE; SQLite has one writer at a time, and the UPDATE below makes this one.)
    await db.execute(select(User.id).where(User.id == user.id).with_for_update())
    now = now_utc()
    await db.execute(
        update(MailToken)
        .where(MailToken.user_id == user.id, MailToken.purpose == purpose.value, MailToken.used_at.is_(None))
        .values(used_at=now)
    )
    secret = secrets.token_urlsafe(32)
    db.add(MailToken(purpose=purpose.value, user_id=user.id, token_hash=digest(secret), new_email=new_email,
                     expires_at=now + (lifetime or LIFETIMES[purpose])))
    await db.flush()
    return secret


async def look(db: AsyncSession, secret: str, purposes: tuple[Purpose, ...]) -> Link | LinkProblem:
    """Read-only: what the link would do, to show its form. Changes nothing (mail scanners GET links)."""
    if not well_formed(secret):
        return LinkProblem.UNKNOWN
    row = (await db.execute(
        select(MailToken, User).join(User, User.id == MailToken.user_id)
        .where(MailToken.token_hash == digest(secret), MailToken.purpose.in_([p.value for p in purposes]))
    )).first()
    if row is None:
        return LinkProblem.UNKNOWN
    token, user = row
    if not user.is_active:
        return LinkProblem.UNKNOWN  # a suspended member's links open nothing, as if never sent
    if token.used_at is not None:
        return LinkProblem.USED
    if token.expires_at <= now_utc():
        return LinkProblem.EXPIRED
    return Link(token, user)


async def spend(db: AsyncSession, secret: str, purposes: tuple[Purpose, ...]) -> Link | LinkProblem:
    """Use the link once: one conditional UPDATE, and only the request whose UPDATE changed the row
    goes on. Anyone else (a second click, a racing tab) gets the reason it no longer works."""
    if not well_formed(secret):
        return LinkProblem.UNKNOWN
    now = now_utc()
    hashed = digest(secret)
    result = await db.execute(
        update(MailToken)
        .where(MailToken.token_hash == hashed, MailToken.purpose.in_([p.value for p in purposes]),
               MailToken.used_at.is_(None), MailToken.expires_at > now)
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        found = await look(db, secret, purposes)
        return found if isinstance(found, LinkProblem) else LinkProblem.USED
    row = (await db.execute(
        select(MailToken, User).join(User, User.id == MailToken.user_id).where(MailToken.token_hash == hashed)
        .execution_options(populate_existing=True)  # the UPDATE above bypassed the session's copies
    )).one()
    token, user = row
    if not user.is_active:
        return LinkProblem.UNKNOWN
    return Link(token, user)


async def retire_all(db: AsyncSession, user: User) -> None:
    """Every unused link of ``user`` stops working (their address changed: the old links went to
    the old address, which may no longer be theirs)."""
    await db.execute(
        update(MailToken).where(MailToken.user_id == user.id, MailToken.used_at.is_(None)).values(used_at=now_utc())
    )
