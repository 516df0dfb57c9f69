"""The personal bookings feed's table (feeds.py explains the token scheme)."""

from __future__ import annotations

from uuid import UUID

from advanced_alchemy.base import UUIDv7AuditBase
from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

__all__ = ["BookingFeed"]


class BookingFeed(UUIDv7AuditBase):
    __tablename__ = "events_booking_feed"

    user_id: Mapped[UUID] = mapped_column(ForeignKey("account_user.id", ondelete="CASCADE"), unique=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of the token
