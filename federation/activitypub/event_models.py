"""The events federation's table: a fediverse account's place on an event (events.py)."""

from __future__ import annotations

from uuid import UUID

from advanced_alchemy.base import UUIDv7AuditBase
from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from federation.activitypub.models import URI

__all__ = ["EventJoin"]


class EventJoin(UUIDv7AuditBase):
    """A fediverse account's place on an event: its ``Join`` and the booking it made."""

    __tablename__ = "ap_event_join"

    booking_id: Mapped[UUID] = mapped_column(ForeignKey("events_booking.id", ondelete="CASCADE"), unique=True)
    event_id: Mapped[UUID] = mapped_column(ForeignKey("events_event.id", ondelete="CASCADE"), index=True)
    actor_uri: Mapped[str] = mapped_column(String(URI), index=True)
    join_id: Mapped[str] = mapped_column(String(URI), index=True)
