"""events bookings: events_event.capacity, events_quota, events_booking, events_position, events_checkin

Revision ID: a7b8c9d0e1f2
Revises: f0e1d2c3b4a5
Create Date: 2026-12-07 06:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from advanced_alchemy.types import GUID, DateTimeUTC
from alembic import op

revision = "a7b8c9d0e1f2"
down_revision = "f0e1d2c3b4a5"
branch_labels = None
depends_on = None


def _audit() -> list[sa.Column[object]]:
    return [sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
            sa.Column("created_at", DateTimeUTC(timezone=True), nullable=False),
            sa.Column("updated_at", DateTimeUTC(timezone=True), nullable=False)]


def upgrade() -> None:
    with op.batch_alter_table("events_event") as batch:
        batch.add_column(sa.Column("capacity", sa.Integer(), nullable=True))
    op.create_table(
        "events_quota",
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("event_id", GUID(length=16), nullable=False),
        sa.Column("occurrence", sa.String(length=15), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("taken", sa.Integer(), nullable=False),
        *_audit(),
        sa.CheckConstraint("taken >= 0 AND taken <= capacity", name=op.f("ck_events_quota_within_capacity")),
        sa.ForeignKeyConstraint(["event_id"], ["events_event.id"], name=op.f("fk_events_quota_event_id_events_event"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events_quota")),
        sa.UniqueConstraint("event_id", "occurrence", name="uq_events_quota_date"),
    )
    op.create_index(op.f("ix_events_quota_event_id"), "events_quota", ["event_id"])
    op.create_table(
        "events_booking",
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("event_id", GUID(length=16), nullable=False),
        sa.Column("occurrence", sa.String(length=15), nullable=False),
        sa.Column("user_id", GUID(length=16), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("cancelled_at", DateTimeUTC(timezone=True), nullable=True),
        *_audit(),
        sa.CheckConstraint("quantity >= 1", name=op.f("ck_events_booking_quantity_positive")),
        sa.CheckConstraint("state IN ('confirmed', 'waiting', 'cancelled')",
                           name=op.f("ck_events_booking_state_known")),
        sa.ForeignKeyConstraint(["event_id"], ["events_event.id"],
                                name=op.f("fk_events_booking_event_id_events_event"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["account_user.id"],
                                name=op.f("fk_events_booking_user_id_account_user"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events_booking")),
    )
    for column in ("event_id", "occurrence", "user_id", "state"):
        op.create_index(op.f(f"ix_events_booking_{column}"), "events_booking", [column])
    live = sa.text("state <> 'cancelled' AND user_id IS NOT NULL")
    op.create_index("uq_events_booking_member_date", "events_booking", ["event_id", "occurrence", "user_id"],
                    unique=True, postgresql_where=live, sqlite_where=live)
    op.create_table(
        "events_position",
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("booking_id", GUID(length=16), nullable=False),
        sa.Column("secret", sa.String(length=64), nullable=False),
        sa.Column("attendee", sa.String(length=200), nullable=False),
        sa.Column("cancelled", sa.Boolean(), nullable=False),
        *_audit(),
        sa.ForeignKeyConstraint(["booking_id"], ["events_booking.id"],
                                name=op.f("fk_events_position_booking_id_events_booking"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events_position")),
    )
    op.create_index(op.f("ix_events_position_booking_id"), "events_position", ["booking_id"])
    op.create_index(op.f("ix_events_position_secret"), "events_position", ["secret"], unique=True)
    op.create_table(
        "events_checkin",
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("position_id", GUID(length=16), nullable=False),
        sa.Column("kind", sa.String(length=5), nullable=False),
        sa.Column("nonce", sa.String(length=190), nullable=True),
        sa.Column("by_user_id", GUID(length=16), nullable=True),
        sa.Column("at", DateTimeUTC(timezone=True), nullable=False),
        *_audit(),
        sa.CheckConstraint("kind IN ('entry', 'exit')", name=op.f("ck_events_checkin_kind_known")),
        sa.ForeignKeyConstraint(["position_id"], ["events_position.id"],
                                name=op.f("fk_events_checkin_position_id_events_position"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["by_user_id"], ["account_user.id"],
                                name=op.f("fk_events_checkin_by_user_id_account_user"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events_checkin")),
        sa.UniqueConstraint("position_id", "nonce", name="uq_events_checkin_nonce"),
    )
    op.create_index(op.f("ix_events_checkin_position_id"), "events_checkin", ["position_id"])


def downgrade() -> None:
    op.drop_table("events_checkin")
    op.drop_table("events_position")
    op.drop_table("events_booking")
    op.drop_table("events_quota")
    with op.batch_alter_table("events_event") as batch:
        batch.drop_column("capacity")
