"""The events domain's tables: calendars and events (issue 18 items 1 and 6).

An event keeps its start and end as the wall-clock times a person entered (``starts_local``,
``ends_local``, naive) in an IANA zone (``tz``), plus the same instants in UTC (``starts_at``,
``ends_at``) for ordering and range queries. A series is the first occurrence plus an RFC 5545
``RRULE`` and its ``EXDATE``s (local date-times, ISO strings), expanded in the event's zone so a
weekly 18:00 workshop stays at 18:00 across a daylight-saving change (services/recurrence.py).

``sequence`` is RFC 5545 §3.8.7.4 SEQUENCE: bumped whenever the time or the place changes, so
calendar apps that subscribed to the feed replace their copy; ``revision`` is bumped on every save
(the ETag seed of pages and fragments).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final
from uuid import UUID

from advanced_alchemy.base import UUIDv7AuditBase
from advanced_alchemy.types import DateTimeUTC, JsonB
from sqlalchemy import Boolean, CheckConstraint, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

__all__ = ["CANCELLED", "MEMBERS", "POSTPONED", "PUBLIC", "SCHEDULED", "STATUSES", "UNLISTED", "VISIBILITIES",
           "Event", "EventCalendar"]

SCHEDULED: Final = "scheduled"
CANCELLED: Final = "cancelled"
POSTPONED: Final = "postponed"
STATUSES: Final = (SCHEDULED, CANCELLED, POSTPONED)

PUBLIC: Final = "public"
MEMBERS: Final = "members"
UNLISTED: Final = "unlisted"
VISIBILITIES: Final = (PUBLIC, MEMBERS, UNLISTED)


class EventCalendar(UUIDv7AuditBase):
    """A calendar such as "Workshops" or "Market days": a colour, a description, its events."""

    __tablename__ = "events_calendar"

    name: Mapped[str] = mapped_column(String(120))
    slug: Mapped[str] = mapped_column(String(120), unique=True, index=True)
    colour: Mapped[str] = mapped_column(String(7), default="#2f6f4f")
    description: Mapped[str] = mapped_column(Text, default="")

    events: Mapped[list[Event]] = relationship(back_populates="calendar", lazy="raise")


class Event(UUIDv7AuditBase):
    __tablename__ = "events_event"
    __table_args__ = (
        CheckConstraint("ends_at >= starts_at", name="ends_after_start"),
        CheckConstraint("status IN ('scheduled', 'cancelled', 'postponed')", name="status_known"),
        CheckConstraint("visibility IN ('public', 'members', 'unlisted')", name="visibility_known"),
    )

    calendar_id: Mapped[UUID] = mapped_column(ForeignKey("events_calendar.id", ondelete="RESTRICT"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(191), unique=True, index=True)
    description_md: Mapped[str] = mapped_column(Text, default="")
    description_html: Mapped[str] = mapped_column(Text, default="")
    tz: Mapped[str] = mapped_column(String(64))
    all_day: Mapped[bool] = mapped_column(Boolean, default=False)
    starts_local: Mapped[datetime] = mapped_column(DateTime(timezone=False))
    ends_local: Mapped[datetime] = mapped_column(DateTime(timezone=False))
    starts_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True), index=True)
    ends_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    # A series: RFC 5545 RRULE (without the "RRULE:" prefix) and excluded local start times.
    rrule: Mapped[str] = mapped_column(String(500), default="")
    exdates: Mapped[list[str]] = mapped_column(JsonB, default=list)
    # The last instant any occurrence ends (None: a rule without an end), for range queries.
    series_ends_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None, index=True)
    place_name: Mapped[str] = mapped_column(String(200), default="")
    place_address: Mapped[str] = mapped_column(String(400), default="")
    latitude: Mapped[float | None] = mapped_column(Float, default=None)
    longitude: Mapped[float | None] = mapped_column(Float, default=None)
    online_url: Mapped[str] = mapped_column(String(500), default="")
    organiser: Mapped[str] = mapped_column(String(200), default="")
    tags: Mapped[list[str]] = mapped_column(JsonB, default=list)
    status: Mapped[str] = mapped_column(String(12), default=SCHEDULED, index=True)
    visibility: Mapped[str] = mapped_column(String(10), default=PUBLIC, index=True)
    # Places per date (None: no bookings); services/bookings.py keeps each date's count.
    capacity: Mapped[int | None] = mapped_column(Integer, default=None)
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    revision: Mapped[int] = mapped_column(Integer, default=1)

    calendar: Mapped[EventCalendar] = relationship(back_populates="events", lazy="raise")

    @property
    def path(self) -> str:
        """The event's page: a members-only event lives in the members' section (private pages),
        since its public address answers 404 like an absent one."""
        return f"/events/members/{self.slug}" if self.visibility == MEMBERS else f"/events/{self.slug}"

    def as_dict(self) -> dict[str, Any]:
        return {"id": str(self.id), "title": self.title, "slug": self.slug}
