"""events: booking questions, options per event (cutoff), waiting-list offers

Revision ID: 1a2b3c4d5e04
Revises: 1a2b3c4d5e01
Create Date: 2026-12-07 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from advanced_alchemy.types import GUID, DateTimeUTC, JsonB
from alembic import op

revision = "1a2b3c4d5e04"
down_revision = "1a2b3c4d5e01"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events_booking_options",
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("event_id", GUID(length=16), nullable=False),
        sa.Column("ask_dietary", sa.Boolean(), nullable=False),
        sa.Column("question", sa.String(length=200), nullable=False),
        sa.Column("question_required", sa.Boolean(), nullable=False),
        sa.Column("cancel_until_hours", sa.Integer(), nullable=False),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", DateTimeUTC(timezone=True), nullable=False),
        sa.CheckConstraint("cancel_until_hours >= 0",
                           name=op.f("ck_events_booking_options_cancel_hours_positive")),
        sa.ForeignKeyConstraint(["event_id"], ["events_event.id"],
                                name=op.f("fk_events_booking_options_event_id_events_event"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events_booking_options")),
    )
    op.create_index(op.f("ix_events_booking_options_event_id"), "events_booking_options", ["event_id"], unique=True)
    with op.batch_alter_table("events_booking") as batch:
        batch.add_column(sa.Column("attendees", JsonB, nullable=False, server_default="[]"))
        batch.add_column(sa.Column("answer", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("offer_secret", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("offer_expires_at", DateTimeUTC(timezone=True), nullable=True))
    op.create_index(op.f("ix_events_booking_offer_secret"), "events_booking", ["offer_secret"], unique=True)
    op.create_index(op.f("ix_events_booking_offer_expires_at"), "events_booking", ["offer_expires_at"])
    with op.batch_alter_table("events_position") as batch:
        batch.add_column(sa.Column("dietary", sa.String(length=200), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("events_position") as batch:
        batch.drop_column("dietary")
    op.drop_index(op.f("ix_events_booking_offer_expires_at"), table_name="events_booking")
    op.drop_index(op.f("ix_events_booking_offer_secret"), table_name="events_booking")
    with op.batch_alter_table("events_booking") as batch:
        batch.drop_column("offer_expires_at")
        batch.drop_column("offer_secret")
        batch.drop_column("answer")
        batch.drop_column("attendees")
    op.drop_index(op.f("ix_events_booking_options_event_id"), table_name="events_booking_options")
    op.drop_table("events_booking_options")
