"""Newsletter tables: lists, subscriptions, campaigns and each campaign's recipients.

Part of the account domain (it owns members and the lists they are on). State columns move only
through conditional UPDATEs naming the state they expect (the ``*_MOVES`` tables below and the
claim in services), never read-compare-write.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from advanced_alchemy.base import UUIDv7AuditBase
from advanced_alchemy.types import GUID, DateTimeUTC
from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

# List visibility (Ghost's newsletter ``visibility``): anyone may subscribe, or members only.
PUBLIC = "public"
MEMBERS = "members"
VISIBILITIES = (PUBLIC, MEMBERS)

# Subscription states.
PENDING = "pending"
CONFIRMED = "confirmed"
UNSUBSCRIBED = "unsubscribed"

# Campaign states.
DRAFT = "draft"
SENDING = "sending"
SENT = "sent"
PAUSED = "paused"
CAMPAIGN_MOVES = {DRAFT: {SENDING}, SENDING: {PAUSED, SENT}, PAUSED: {SENDING}}

# Recipient states. ``sending`` is the claim held while one SMTP transaction is in flight.
QUEUED = "queued"
CLAIMED = "sending"
DELIVERED = "sent"
FAILED = "failed"
RECIPIENT_STATES = (QUEUED, CLAIMED, DELIVERED, FAILED, UNSUBSCRIBED)


class NewsletterList(UUIDv7AuditBase):
    __tablename__ = "newsletter_list"

    name: Mapped[str] = mapped_column(String(100))
    slug: Mapped[str] = mapped_column(String(60), unique=True, index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    sender_name: Mapped[str] = mapped_column(String(100), default="")
    visibility: Mapped[str] = mapped_column(String(10), default=PUBLIC)
    subscribe_on_signup: Mapped[bool] = mapped_column(Boolean, default=False)
    # Ghost's newsletter id, so a second import of the same export updates instead of duplicating.
    ghost_id: Mapped[str | None] = mapped_column(String(40), default=None, unique=True)


class Subscription(UUIDv7AuditBase):
    """One address on one list: a member (``user_id``, mailed at their current address) or a bare
    address with a name (public form, CSV or Ghost import)."""

    __tablename__ = "newsletter_subscription"
    __table_args__ = (
        UniqueConstraint("list_id", "email", name="uq_newsletter_subscription_list_email"),
        Index("ix_newsletter_subscription_list_status", "list_id", "status"),
    )

    list_id: Mapped[UUID] = mapped_column(ForeignKey("newsletter_list.id", ondelete="CASCADE"))
    # Deleting a member deletes their subscriptions (issue 15 item 5), in the database too.
    user_id: Mapped[UUID | None] = mapped_column(
        ForeignKey("account_user.id", ondelete="CASCADE"), default=None, index=True)
    email: Mapped[str] = mapped_column(String(254))
    name: Mapped[str] = mapped_column(String(100), default="")
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    # SHA-256 of the double opt-in token mailed to the address (the token itself is never kept).
    token_hash: Mapped[str | None] = mapped_column(String(64), default=None, unique=True)
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    unsubscribed_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)


class Campaign(UUIDv7AuditBase):
    """One issue sent to one list: a published blog post or a standalone Markdown issue."""

    __tablename__ = "newsletter_campaign"

    list_id: Mapped[UUID] = mapped_column(ForeignKey("newsletter_list.id", ondelete="CASCADE"), index=True)
    author_id: Mapped[UUID | None] = mapped_column(
        ForeignKey("account_user.id", ondelete="SET NULL"), default=None, index=True)
    subject: Mapped[str] = mapped_column(String(200))
    # The blog post (read through BlogService.get_published; no foreign key across domains).
    post_id: Mapped[UUID | None] = mapped_column(GUID, default=None)
    markdown: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(10), default=DRAFT)
    # What every recipient gets, fixed when sending starts (a later edit of the post changes nothing).
    body_html: Mapped[str] = mapped_column(Text, default="")
    source_url: Mapped[str] = mapped_column(String(500), default="")
    batches: Mapped[int] = mapped_column(Integer, default=0)
    # While the SMTP server is unavailable: when the next try is due and what it answered.
    retry_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    last_error: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)


class Recipient(UUIDv7AuditBase):
    """One address of one campaign: written when sending starts, one row per distinct address, so
    an address on the list twice (or imported twice) is mailed once."""

    __tablename__ = "newsletter_recipient"
    __table_args__ = (
        UniqueConstraint("campaign_id", "email", name="uq_newsletter_recipient_campaign_email"),
        Index("ix_newsletter_recipient_batch", "campaign_id", "batch", "status"),
    )

    campaign_id: Mapped[UUID] = mapped_column(ForeignKey("newsletter_campaign.id", ondelete="CASCADE"))
    subscription_id: Mapped[UUID | None] = mapped_column(
        ForeignKey("newsletter_subscription.id", ondelete="SET NULL"), default=None, index=True)
    email: Mapped[str] = mapped_column(String(254))
    name: Mapped[str] = mapped_column(String(100), default="")
    batch: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default=QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The SMTP answer of a permanent failure (or why the send was abandoned).
    error: Mapped[str] = mapped_column(Text, default="")
    sent_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
