"""paid tickets through the cart: cart lines name their source; events ticket types; paid bookings

Revision ID: 1a2b3c4d5e11
Revises: 1a2b3c4d5e0a
Create Date: 2026-12-07 13:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from advanced_alchemy.types import GUID, DateTimeUTC
from alembic import op

revision = "1a2b3c4d5e11"
down_revision = "1a2b3c4d5e14"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cart_order_line", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source", sa.String(length=16), server_default="market", nullable=False))
    op.create_table(
        "events_ticket_type",
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("event_id", GUID(length=16), nullable=False),
        sa.Column("occurrence", sa.String(length=15), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("price_minor", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", DateTimeUTC(timezone=True), nullable=False),
        sa.CheckConstraint("price_minor > 0", name=op.f("ck_events_ticket_type_price_positive")),
        sa.ForeignKeyConstraint(["event_id"], ["events_event.id"], name=op.f("fk_events_ticket_type_event_id_events_event"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events_ticket_type")),
        sa.UniqueConstraint("event_id", "occurrence", "name", name="uq_events_ticket_type_name"),
    )
    op.create_index(op.f("ix_events_ticket_type_event_id"), "events_ticket_type", ["event_id"], unique=False)
    with op.batch_alter_table("events_booking", schema=None) as batch_op:
        batch_op.add_column(sa.Column("order_id", GUID(length=16), nullable=True))
        batch_op.add_column(sa.Column("ticket_type_id", GUID(length=16), nullable=True))
        batch_op.create_index(batch_op.f("ix_events_booking_order_id"), ["order_id"], unique=False)
        batch_op.create_foreign_key(batch_op.f("fk_events_booking_ticket_type_id_events_ticket_type"),
                                    "events_ticket_type", ["ticket_type_id"], ["id"], ondelete="SET NULL")


def downgrade() -> None:
    with op.batch_alter_table("events_booking", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_events_booking_ticket_type_id_events_ticket_type"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_events_booking_order_id"))
        batch_op.drop_column("ticket_type_id")
        batch_op.drop_column("order_id")
    op.drop_index(op.f("ix_events_ticket_type_event_id"), table_name="events_ticket_type")
    op.drop_table("events_ticket_type")
    with op.batch_alter_table("cart_order_line", schema=None) as batch_op:
        batch_op.drop_column("source")
