"""Bookings (issue 18 items 4 and 5, Pretix's model, design/domains.md §3).

A **quota** is the capacity of one date of an event (``occurrence`` = its local start, the key of
services/recurrence.py), with ``taken`` places counted in the same row: a booking takes places
with one conditional UPDATE (``taken + n <= capacity``), never by reading, comparing in Python
and writing, so concurrent bookings cannot overbook. A **booking** is one person's request for
``quantity`` places: ``confirmed``, ``waiting`` (the waiting list, in ``created_at`` order) or
``cancelled``. Each confirmed place is a **position** (a ticket) with a ``secret`` of 192 random
bits, shown as a QR code, that staff redeem at the door; a redemption's ``nonce`` makes a retried
scan one check-in (the ``checkin`` table, unique on ticket and nonce).

Booking questions (per event, :class:`BookingOptions`): every place is named; dietary needs per
attendee and one free-text answer per booking when the event asks. The answers wait on the booking
(``attendees``) until its places are confirmed, then each position carries its own.

A waiting booking that is **offered** freed places holds them in the quota (``taken``) until
``offer_expires_at``: accepting confirms it with a compare-and-set on the booking's state, an offer
that lapses is cancelled by the sweep (services/offers.py) and its places go to the next in line.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final
from uuid import UUID

from advanced_alchemy.base import UUIDv7AuditBase
from advanced_alchemy.types import DateTimeUTC, JsonB
from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

__all__ = ["BOOKING_STATES", "CANCELLED", "CONFIRMED", "DEFAULT_CANCEL_HOURS", "WAITING", "Booking",
           "BookingOptions", "CheckIn", "EventQuota", "Position", "TicketType"]

CONFIRMED: Final = "confirmed"
WAITING: Final = "waiting"
CANCELLED: Final = "cancelled"
BOOKING_STATES: Final = (CONFIRMED, WAITING, CANCELLED)
DEFAULT_CANCEL_HOURS: Final = 24


class BookingOptions(UUIDv7AuditBase):
    """What an event's booking form asks and until when members may cancel (one row per event;
    an event without one uses the defaults)."""

    __tablename__ = "events_booking_options"
    __table_args__ = (CheckConstraint("cancel_until_hours >= 0", name="cancel_hours_positive"),)

    event_id: Mapped[UUID] = mapped_column(ForeignKey("events_event.id", ondelete="CASCADE"), unique=True,
                                           index=True)
    ask_dietary: Mapped[bool] = mapped_column(Boolean, default=False)
    question: Mapped[str] = mapped_column(String(200), default="")  # the free-text question's label; "" = none
    question_required: Mapped[bool] = mapped_column(Boolean, default=False)
    # Members may cancel until this many hours before the date starts (0: until it starts).
    cancel_until_hours: Mapped[int] = mapped_column(Integer, default=DEFAULT_CANCEL_HOURS)


class EventQuota(UUIDv7AuditBase):
    __tablename__ = "events_quota"
    __table_args__ = (
        UniqueConstraint("event_id", "occurrence", name="uq_events_quota_date"),
        CheckConstraint("taken >= 0 AND taken <= capacity", name="within_capacity"),
    )

    event_id: Mapped[UUID] = mapped_column(ForeignKey("events_event.id", ondelete="CASCADE"), index=True)
    occurrence: Mapped[str] = mapped_column(String(15))
    capacity: Mapped[int] = mapped_column(Integer)
    taken: Mapped[int] = mapped_column(Integer, default=0)


class TicketType(UUIDv7AuditBase):
    """A priced ticket for one date of an event, sold through the cart (services/tickets.py).

    Its places come from the date's :class:`EventQuota`, shared with free bookings and every other
    ticket type of that date (Pretix's quota shared across items). A paid ticket is a cart line whose
    item id is this row's id; its booking and positions exist only once the order is paid."""

    __tablename__ = "events_ticket_type"
    __table_args__ = (
        CheckConstraint("price_minor > 0", name="price_positive"),
        UniqueConstraint("event_id", "occurrence", "name", name="uq_events_ticket_type_name"),
    )

    event_id: Mapped[UUID] = mapped_column(ForeignKey("events_event.id", ondelete="CASCADE"), index=True)
    occurrence: Mapped[str] = mapped_column(String(15))  # the date's key (services/recurrence.py)
    name: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text, default="")
    price_minor: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Booking(UUIDv7AuditBase):
    __tablename__ = "events_booking"
    __table_args__ = (
        CheckConstraint("quantity >= 1", name="quantity_positive"),
        CheckConstraint("state IN ('confirmed', 'waiting', 'cancelled')", name="state_known"),
        # One live free booking per member and date (two tabs booking at once cannot both win). Paid
        # bookings (an order's) are outside it: a member may buy tickets beside their free place, or
        # in two orders, and each paid booking still carries their user id (their tickets page).
        Index("uq_events_booking_member_date", "event_id", "occurrence", "user_id", unique=True,
              postgresql_where=text("state <> 'cancelled' AND user_id IS NOT NULL AND order_id IS NULL"),
              sqlite_where=text("state <> 'cancelled' AND user_id IS NOT NULL AND order_id IS NULL")),
        # One live place per fediverse account and date: parallel Joins of one account (the worker
        # runs several inbox jobs at once) cannot both win (federation/activitypub/events.py).
        Index("uq_events_booking_remote_date", "event_id", "occurrence", "remote_actor", unique=True,
              postgresql_where=text("state <> 'cancelled' AND remote_actor IS NOT NULL"),
              sqlite_where=text("state <> 'cancelled' AND remote_actor IS NOT NULL")),
    )

    event_id: Mapped[UUID] = mapped_column(ForeignKey("events_event.id", ondelete="CASCADE"), index=True)
    occurrence: Mapped[str] = mapped_column(String(15), index=True)
    user_id: Mapped[UUID | None] = mapped_column(ForeignKey("account_user.id", ondelete="SET NULL"), index=True,
                                                 default=None)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    quantity: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(10), index=True)
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    # One {"name", "dietary"} per place, as booked (positions copy them when confirmed).
    attendees: Mapped[list[dict[str, str]]] = mapped_column(JsonB, default=list)
    answer: Mapped[str] = mapped_column(Text, default="")
    # An offer of freed places to a waiting booking: the mailed link's secret and its end.
    offer_secret: Mapped[str | None] = mapped_column(String(64), unique=True, index=True, default=None)
    offer_expires_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None, index=True)
    # A fediverse account's booking (its ``Join``): the actor's URI, for the index above, and its
    # server's host, whose accounts together may hold only a share of a date's places.
    remote_actor: Mapped[str | None] = mapped_column(String(2048), default=None)
    remote_host: Mapped[str | None] = mapped_column(String(255), default=None)
    # A paid booking: the cart order that paid for it (no FK: the cart owns its table) and its
    # ticket type. Made when the order is paid; cancelled when the order is cancelled or refunded.
    order_id: Mapped[UUID | None] = mapped_column(default=None, index=True)
    ticket_type_id: Mapped[UUID | None] = mapped_column(ForeignKey("events_ticket_type.id", ondelete="SET NULL"),
                                                        default=None)

    @property
    def offered(self) -> bool:
        """A waiting booking holding offered places (until accepted, declined or lapsed)."""
        return self.state == WAITING and self.offer_expires_at is not None

    positions: Mapped[list[Position]] = relationship(back_populates="booking", lazy="raise",
                                                     order_by="Position.created_at")


class Position(UUIDv7AuditBase):
    """One place of a confirmed booking: a ticket."""

    __tablename__ = "events_position"

    booking_id: Mapped[UUID] = mapped_column(ForeignKey("events_booking.id", ondelete="CASCADE"), index=True)
    secret: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    attendee: Mapped[str] = mapped_column(String(200), default="")
    dietary: Mapped[str] = mapped_column(String(200), default="")
    cancelled: Mapped[bool] = mapped_column(default=False)

    booking: Mapped[Booking] = relationship(back_populates="positions", lazy="raise")


class CheckIn(UUIDv7AuditBase):
    """A redemption at the door (Pretix's check-in): entry or exit, once per ``nonce``."""

    __tablename__ = "events_checkin"
    __table_args__ = (
        CheckConstraint("kind IN ('entry', 'exit')", name="kind_known"),
        UniqueConstraint("position_id", "nonce", name="uq_events_checkin_nonce"),
    )

    position_id: Mapped[UUID] = mapped_column(ForeignKey("events_position.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(5))
    nonce: Mapped[str | None] = mapped_column(String(190), default=None)
    by_user_id: Mapped[UUID | None] = mapped_column(ForeignKey("account_user.id", ondelete="SET NULL"), default=None)
    at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
