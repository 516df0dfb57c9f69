"""activitypub: members' mutes of accounts (the Mastodon API's mute and unmute)

Revision ID: 1a2b3c4d5e13
Revises: 1a2b3c4d5e0a
Create Date: 2026-12-07 13:00:00
"""

from __future__ import annotations

import advanced_alchemy.types
import sqlalchemy as sa
from alembic import op

revision = "1a2b3c4d5e13"
down_revision = "1a2b3c4d5e0a"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ap_mute",
        sa.Column("id", advanced_alchemy.types.GUID(length=16), nullable=False),
        sa.Column("actor", sa.String(length=2048), nullable=False),
        sa.Column("target", sa.String(length=2048), nullable=False),
        sa.Column("notifications", sa.Boolean(), nullable=False),
        sa.Column("expires_at", advanced_alchemy.types.DateTimeUTC(timezone=True), nullable=True),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", advanced_alchemy.types.DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", advanced_alchemy.types.DateTimeUTC(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ap_mute")),
        sa.UniqueConstraint("actor", "target", name="uq_ap_mute_pair"),
    )
    with op.batch_alter_table("ap_mute", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ap_mute_actor"), ["actor"], unique=False)
        batch_op.create_index(batch_op.f("ix_ap_mute_target"), ["target"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ap_mute", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ap_mute_target"))
        batch_op.drop_index(batch_op.f("ix_ap_mute_actor"))
    op.drop_table("ap_mute")
