"""paid tickets: attendee names and answers on the cart line; paid bookings beside a member's free one

Revision ID: 1a2b3c4d5e24
Revises: 1a2b3c4d5e11
Create Date: 2026-12-07 16:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from advanced_alchemy.types import JsonB
from alembic import op

revision = "1a2b3c4d5e24"
down_revision = "1a2b3c4d5e11"
branch_labels = None
depends_on = None

OLD = "state <> 'cancelled' AND user_id IS NOT NULL"
# A paid booking (order_id set) is outside the one-live-booking-per-member rule: a member may hold a
# free booking and any number of paid orders for one date, each under their own user id.
NEW = "state <> 'cancelled' AND user_id IS NOT NULL AND order_id IS NULL"


def _member_index(where: str) -> None:
    op.drop_index("uq_events_booking_member_date", table_name="events_booking")
    op.create_index("uq_events_booking_member_date", "events_booking", ["event_id", "occurrence", "user_id"],
                    unique=True, postgresql_where=sa.text(where), sqlite_where=sa.text(where))


def upgrade() -> None:
    with op.batch_alter_table("cart_order_line") as batch:
        batch.add_column(sa.Column("details", JsonB, nullable=False, server_default="{}"))
    _member_index(NEW)


def downgrade() -> None:
    _member_index(OLD)
    with op.batch_alter_table("cart_order_line") as batch:
        batch.drop_column("details")
