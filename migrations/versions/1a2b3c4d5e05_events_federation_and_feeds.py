"""events federation and personal feeds: ap_event_join (a fediverse account's place), events_booking_feed

Revision ID: 1a2b3c4d5e05
Revises: 1a2b3c4d5e04
Create Date: 2026-12-07 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from advanced_alchemy.types import GUID, DateTimeUTC
from alembic import op

revision = "1a2b3c4d5e05"
down_revision = "1a2b3c4d5e04"
branch_labels = None
depends_on = None


def _audit() -> list[sa.Column[object]]:
    return [sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
            sa.Column("created_at", DateTimeUTC(timezone=True), nullable=False),
            sa.Column("updated_at", DateTimeUTC(timezone=True), nullable=False)]


def upgrade() -> None:
    op.create_table(
        "ap_event_join",
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("booking_id", GUID(length=16), nullable=False),
        sa.Column("event_id", GUID(length=16), nullable=False),
        sa.Column("actor_uri", sa.String(length=2048), nullable=False),
        sa.Column("join_id", sa.String(length=2048), nullable=False),
        *_audit(),
        sa.ForeignKeyConstraint(["booking_id"], ["events_booking.id"],
                                name=op.f("fk_ap_event_join_booking_id_events_booking"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["event_id"], ["events_event.id"],
                                name=op.f("fk_ap_event_join_event_id_events_event"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ap_event_join")),
        sa.UniqueConstraint("booking_id", name=op.f("uq_ap_event_join_booking_id")),
    )
    for column in ("event_id", "actor_uri", "join_id"):
        op.create_index(op.f(f"ix_ap_event_join_{column}"), "ap_event_join", [column])
    op.create_table(
        "events_booking_feed",
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("user_id", GUID(length=16), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        *_audit(),
        sa.ForeignKeyConstraint(["user_id"], ["account_user.id"],
                                name=op.f("fk_events_booking_feed_user_id_account_user"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events_booking_feed")),
        sa.UniqueConstraint("user_id", name=op.f("uq_events_booking_feed_user_id")),
        sa.UniqueConstraint("digest", name=op.f("uq_events_booking_feed_digest")),
    )


def downgrade() -> None:
    op.drop_table("events_booking_feed")
    for column in ("join_id", "actor_uri", "event_id"):
        op.drop_index(op.f(f"ix_ap_event_join_{column}"), table_name="ap_event_join")
    op.drop_table("ap_event_join")
